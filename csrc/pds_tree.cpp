#include "pds_tree.h"

#include <algorithm>
#include <set>

namespace cleann {

void PdsScratch::prepare(const Marks& g) {
  nbrs.assign(g.n, {});
  for (int a = 0; a < g.n; ++a)
    for (int b = 0; b < g.n; ++b)
      if (g.adjacent(a, b)) nbrs[a].push_back(b);
  if (stamp.size() != static_cast<size_t>(g.n) * g.n) {
    stamp.assign(static_cast<size_t>(g.n) * g.n, 0);
    generation = 0;
  }
}

PdsTree build_pds_tree(const Marks& g, int root, int max_depth, PdsScratch* scratch) {
  PdsScratch local;
  if (!scratch) {
    local.prepare(g);
    scratch = &local;
  }
  const int n = g.n;
  if (++scratch->generation == 0) {  // wrapped: clear the stamps
    std::fill(scratch->stamp.begin(), scratch->stamp.end(), 0);
    scratch->generation = 1;
  }
  const uint32_t gen = scratch->generation;
  // An edge is explored once: its stamp equals this tree's generation afterwards.
  auto closed = [&](int a, int b) { return scratch->stamp[static_cast<size_t>(a) * n + b] == gen; };
  auto close = [&](int a, int b) {
    scratch->stamp[static_cast<size_t>(a) * n + b] = gen;
    scratch->stamp[static_cast<size_t>(b) * n + a] = gen;
  };
  PdsTree t;
  t.root = root;
  t.min_depth.assign(n, -1);
  t.min_depth[root] = 0;
  std::vector<int32_t> last_child;  // occurrence -> its last child, for appending in order
  auto add = [&](int v, int parent_occ, int d) {
    const int occ = static_cast<int>(t.node.size());
    t.node.push_back(v);
    t.parent.push_back(parent_occ);
    t.depth.push_back(d);
    t.first_child.push_back(-1);
    t.next_sibling.push_back(-1);
    last_child.push_back(-1);
    if (parent_occ >= 0) {
      if (last_child[parent_occ] < 0) {
        t.first_child[parent_occ] = occ;
      } else {
        t.next_sibling[last_child[parent_occ]] = occ;
      }
      last_child[parent_occ] = occ;
    }
    if (t.min_depth[v] < 0 || d < t.min_depth[v]) t.min_depth[v] = d;
    return occ;
  };
  add(root, -1, 0);
  if (max_depth == 0) return t;
  struct Step {
    int from, occ;  // the path ... from, node(occ)
  };
  std::vector<Step> queue;
  for (int v : scratch->nbrs[root]) queue.push_back({root, add(v, 0, 1)});
  for (int v : scratch->nbrs[root]) close(root, v);
  for (size_t h = 0; h < queue.size(); ++h) {
    const int a = queue[h].from, occ = queue[h].occ, b = t.node[occ];
    if (max_depth >= 0 && t.depth[occ] >= max_depth) continue;
    const bool into_b_from_a = g.into(a, b);
    for (int c : scratch->nbrs[b]) {
      if (c == a || closed(b, c)) continue;
      if (!g.adjacent(a, c) && !(into_b_from_a && g.into(c, b))) continue;  // b must be a possible collider
      close(b, c);
      queue.push_back({b, add(c, occ, t.depth[occ] + 1)});
    }
  }
  return t;
}

void tree_subsets(const PdsTree& tree, int n, int size, const uint64_t* allowed, std::vector<CandidateSet>& out) {
  if (size <= 0) return;
  auto is_allowed = [&](int v) { return (allowed[v / 64] >> (v % 64)) & 1u; };
  std::set<std::vector<int32_t>> level{{}};
  std::vector<int32_t> stack, addable;
  for (int k = 0; k < size; ++k) {
    std::set<std::vector<int32_t>> next;
    for (const std::vector<int32_t>& S : level) {
      // Occurrences whose whole root path lies in S are active; their children's nodes can join.
      addable.clear();
      stack.assign(1, 0);
      while (!stack.empty()) {
        const int occ = stack.back();
        stack.pop_back();
        for (int c = tree.first_child[occ]; c >= 0; c = tree.next_sibling[c]) {
          const int v = tree.node[c];
          if (std::binary_search(S.begin(), S.end(), v)) {
            stack.push_back(c);
          } else if (is_allowed(v)) {
            addable.push_back(v);
          }
        }
      }
      std::sort(addable.begin(), addable.end());
      addable.erase(std::unique(addable.begin(), addable.end()), addable.end());
      for (int v : addable) {
        std::vector<int32_t> T = S;
        T.insert(std::upper_bound(T.begin(), T.end(), v), v);
        next.insert(std::move(T));
      }
    }
    level.swap(next);
    if (level.empty()) return;
  }
  (void)n;
  for (const std::vector<int32_t>& S : level) {  // std::set iterates in lexicographic order
    int64_t d = 0;
    for (int v : S) d += tree.min_depth[v];
    out.push_back({S, d});
  }
}

}  // namespace cleann
