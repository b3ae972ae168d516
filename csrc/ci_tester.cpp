#include "ci_tester.h"

#include <string>

namespace cleann {

DSeparationTester::DSeparationTester(int n, int total, std::vector<int64_t> parent_offset, std::vector<int32_t> parents)
    : n_(n), total_(total), parent_offset_(std::move(parent_offset)), parents_(std::move(parents)) {
  if (n < 0 || total < n) throw ArgumentError("the DAG must hold at least the " + std::to_string(n) + " observed nodes");
  if (static_cast<int>(parent_offset_.size()) != total + 1) throw ArgumentError("parent offsets must have total + 1 entries");
  std::vector<int64_t> count(total + 1, 0);
  for (int v = 0; v < total; ++v)
    for (int64_t k = parent_offset_[v]; k < parent_offset_[v + 1]; ++k) {
      const int p = parents_[k];
      if (p < 0 || p >= total || p == v) throw ArgumentError("bad parent " + std::to_string(p) + " of node " + std::to_string(v));
      ++count[p + 1];
    }
  child_offset_.assign(total + 1, 0);
  for (int v = 0; v < total; ++v) child_offset_[v + 1] = child_offset_[v] + count[v + 1];
  children_.assign(child_offset_[total], 0);
  std::vector<int64_t> fill(child_offset_.begin(), child_offset_.end() - 1);
  for (int v = 0; v < total; ++v)
    for (int64_t k = parent_offset_[v]; k < parent_offset_[v + 1]; ++k) children_[fill[parents_[k]]++] = v;
}

DSeparationTester::Worker::Worker(const DSeparationTester& t)
    : t_(t), in_z_(t.total_), anc_z_(t.total_), seen_up_(t.total_), seen_down_(t.total_) {}

void DSeparationTester::Worker::begin(int64_t, int i, int j, int level) {
  i_ = i;
  j_ = j;
  level_ = level;
}

int8_t DSeparationTester::Worker::test(const int32_t* S, int) {
  return t_.separated(i_, j_, S, level_, *this) ? kIndependent : kDependent;
}

// Bayes-ball reachability: x and y are d-connected given z iff y is reachable from x along a
// trail that passes non-colliders outside z and colliders with a descendant in z.
bool DSeparationTester::separated(int x, int y, const int32_t* z, int count, Worker& w) const {
  std::fill(w.in_z_.begin(), w.in_z_.end(), 0);
  std::fill(w.anc_z_.begin(), w.anc_z_.end(), 0);
  std::fill(w.seen_up_.begin(), w.seen_up_.end(), 0);
  std::fill(w.seen_down_.begin(), w.seen_down_.end(), 0);
  w.stack_.clear();
  for (int k = 0; k < count; ++k) {
    w.in_z_[z[k]] = 1;
    if (!w.anc_z_[z[k]]) {
      w.anc_z_[z[k]] = 1;
      w.stack_.push_back(z[k]);
    }
  }
  while (!w.stack_.empty()) {  // ancestors of z (z included)
    const int v = w.stack_.back();
    w.stack_.pop_back();
    for (int64_t k = parent_offset_[v]; k < parent_offset_[v + 1]; ++k)
      if (!w.anc_z_[parents_[k]]) {
        w.anc_z_[parents_[k]] = 1;
        w.stack_.push_back(parents_[k]);
      }
  }
  // States: node * 2 + direction (0: arrived from a child, moving up; 1: arrived from a parent).
  w.stack_.push_back(x * 2);
  w.seen_up_[x] = 1;
  while (!w.stack_.empty()) {
    const int s = w.stack_.back();
    w.stack_.pop_back();
    const int v = s / 2;
    const bool down = s % 2;
    if (v == y) return false;
    auto push_up = [&](int u) {
      if (!w.seen_up_[u]) {
        w.seen_up_[u] = 1;
        w.stack_.push_back(u * 2);
      }
    };
    auto push_down = [&](int u) {
      if (!w.seen_down_[u]) {
        w.seen_down_[u] = 1;
        w.stack_.push_back(u * 2 + 1);
      }
    };
    if (!down) {
      if (w.in_z_[v]) continue;
      for (int64_t k = parent_offset_[v]; k < parent_offset_[v + 1]; ++k) push_up(parents_[k]);
      for (int64_t k = child_offset_[v]; k < child_offset_[v + 1]; ++k) push_down(children_[k]);
    } else {
      if (!w.in_z_[v])
        for (int64_t k = child_offset_[v]; k < child_offset_[v + 1]; ++k) push_down(children_[k]);
      if (w.anc_z_[v])
        for (int64_t k = parent_offset_[v]; k < parent_offset_[v + 1]; ++k) push_up(parents_[k]);
    }
  }
  return true;
}

}  // namespace cleann
