// Separating sets per unordered node pair, as the orientation rules read them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "skeleton.h"

namespace cleann {

// For each removed pair {a, b}: the set of nodes that separated them (the union of every
// separating set recorded for the pair, so "all" mode gives causal-learn's union semantics and
// "first" mode the first set found). Pairs never separated have no entry.
class SepsetTable {
 public:
  explicit SepsetTable(int n = 0) : n_(n), index_(static_cast<size_t>(n) * n, -1) {}

  int size() const { return n_; }

  bool has(int a, int b) const { return index_[key(a, b)] >= 0; }

  // Adds members to the pair's set (creating it, possibly empty).
  void add(int a, int b, const int32_t* members, int count) {
    int32_t& slot = index_[key(a, b)];
    if (slot < 0) {
      slot = static_cast<int32_t>(sets_.size());
      sets_.emplace_back();
    }
    std::vector<int32_t>& s = sets_[slot];
    for (int k = 0; k < count; ++k)
      if (std::find(s.begin(), s.end(), members[k]) == s.end()) s.push_back(members[k]);
    std::sort(s.begin(), s.end());
  }

  // Replaces the pair's set.
  void set(int a, int b, const int32_t* members, int count) {
    int32_t& slot = index_[key(a, b)];
    if (slot >= 0) sets_[slot].clear();
    add(a, b, members, count);
  }

  bool contains(int a, int b, int v) const {
    const int32_t slot = index_[key(a, b)];
    if (slot < 0) return false;
    const std::vector<int32_t>& s = sets_[slot];
    return std::binary_search(s.begin(), s.end(), v);
  }

  // Members of the pair's set (empty when the pair has none: check has()).
  const std::vector<int32_t>& get(int a, int b) const {
    static const std::vector<int32_t> empty;
    const int32_t slot = index_[key(a, b)];
    return slot < 0 ? empty : sets_[slot];
  }

  // The table of graph `graph` of a skeleton result.
  static SepsetTable from_skeleton(const SkeletonResult& sk, int64_t graph, int n) {
    SepsetTable t(n);
    for (size_t e = 0; e < sk.edge_graph.size(); ++e) {
      if (sk.edge_graph[e] != graph) continue;
      const int level = sk.edge_level[e];
      const int32_t* m = sk.set_members.data() + sk.set_offset[e];
      t.add(static_cast<int>(sk.edge_i[e]), static_cast<int>(sk.edge_j[e]), m,
            static_cast<int>(sk.set_count[e] * level));
    }
    return t;
  }

 private:
  size_t key(int a, int b) const {
    return a < b ? static_cast<size_t>(a) * n_ + b : static_cast<size_t>(b) * n_ + a;
  }

  int n_;
  std::vector<int32_t> index_;
  std::vector<std::vector<int32_t>> sets_;
};

}  // namespace cleann
