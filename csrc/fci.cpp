// FCI: PC-stable skeleton, R0, the possible-d-sep stage, R0 again on the new skeleton, then
// Zhang's R1-R10 (Spirtes, Meek and Richardson 1995; Zhang 2008).
#include <algorithm>
#include <vector>

#include "common.h"
#include "learn.h"

namespace cleann {

void merge_counts(const std::vector<LevelCounts>& per_graph, LearnResult& out) {
  const int64_t B = static_cast<int64_t>(per_graph.size());
  size_t levels = static_cast<size_t>(out.num_levels);
  for (const LevelCounts& c : per_graph) levels = std::max(levels, c.tests.size());
  std::vector<int64_t> tests(levels * B, 0), singular(levels * B, 0);
  for (int l = 0; l < out.num_levels; ++l)
    for (int64_t b = 0; b < B; ++b) {
      tests[l * B + b] = out.tests[l * B + b];
      singular[l * B + b] = out.singular[l * B + b];
    }
  for (int64_t b = 0; b < B; ++b)
    for (size_t l = 0; l < per_graph[b].tests.size(); ++l) {
      tests[l * B + b] += per_graph[b].tests[l];
      singular[l * B + b] += per_graph[b].singular[l];
    }
  out.tests.swap(tests);
  out.singular.swap(singular);
  out.num_levels = static_cast<int>(levels);
}

void store_sepsets(const std::vector<SepsetTable>& tables, LearnResult& out) {
  out.sep_offset.assign(1, 0);
  for (size_t b = 0; b < tables.size(); ++b) {
    const SepsetTable& t = tables[b];
    for (int i = 0; i < t.size(); ++i)
      for (int j = i + 1; j < t.size(); ++j) {
        if (!t.has(i, j)) continue;
        const std::vector<int32_t>& s = t.get(i, j);
        out.sep_graph.push_back(static_cast<int64_t>(b));
        out.sep_i.push_back(i);
        out.sep_j.push_back(j);
        out.sep_members.insert(out.sep_members.end(), s.begin(), s.end());
        out.sep_offset.push_back(static_cast<int64_t>(out.sep_members.size()));
      }
  }
}

namespace {

// Possible-D-Sep(a) on the current marks: nodes v != a reachable from a along a path on which every
// inner node is a collider or the middle of a triangle (searched over (previous, current) pairs).
std::vector<int> possible_d_sep(const Marks& g, int a) {
  const int n = g.n;
  std::vector<char> seen_edge(static_cast<size_t>(n) * n, 0), in_set(n, 0);
  std::vector<std::pair<int, int>> queue;
  for (int v = 0; v < n; ++v)
    if (g.adjacent(a, v)) {
      queue.emplace_back(a, v);
      seen_edge[static_cast<size_t>(a) * n + v] = 1;
    }
  for (size_t h = 0; h < queue.size(); ++h) {
    const int x = queue[h].first, y = queue[h].second;
    in_set[y] = 1;
    for (int z = 0; z < n; ++z) {
      if (z == x || z == a || !g.adjacent(y, z)) continue;
      const bool collider = g.into(x, y) && g.into(z, y);
      if (!collider && !g.adjacent(x, z)) continue;
      if (seen_edge[static_cast<size_t>(y) * n + z]) continue;
      seen_edge[static_cast<size_t>(y) * n + z] = 1;
      queue.emplace_back(y, z);
    }
  }
  std::vector<int> out;
  for (int v = 0; v < n; ++v)
    if (in_set[v] && v != a) out.push_back(v);
  return out;
}

// Tests the subsets (size >= 1, not wholly inside adj(a) \ {b}) of `pds` in order of size, then
// lexicographically; returns true and fills `sepset` at the first independence.
bool pds_search(const Marks& g, CIWorker& w, const CITester& tester, int64_t graph, int a, int b,
                const std::vector<int>& pds, int max_size, LevelCounts& counts, std::vector<int32_t>& sepset,
                int64_t& budget) {
  const int m = static_cast<int>(pds.size());
  const int top = max_size < 0 ? m : std::min(m, max_size);
  std::vector<int32_t> idx, S;
  for (int l = 1; l <= top; ++l) {
    tester.check_level(l);
    idx.resize(l);
    S.resize(l);
    for (int k = 0; k < l; ++k) idx[k] = k;
    w.begin(graph, std::min(a, b), std::max(a, b), l);
    int changed = 0, pending = 0;
    for (;;) {
      for (int k = changed; k < l; ++k) S[k] = pds[idx[k]];
      pending = std::min(pending, changed);
      bool inside = true;
      for (int k = 0; k < l && inside; ++k) inside = g.adjacent(a, S[k]);
      if (!inside) {
        if (budget == 0) return false;  // the graph's test budget is spent
        if (budget > 0) --budget;
        const int8_t r = w.test(S.data(), pending);
        pending = l;
        counts.add(l, r);
        if (r == kIndependent) {
          sepset.assign(S.begin(), S.end());
          return true;
        }
      }
      int k = l - 1;
      while (k >= 0 && idx[k] == m - l + k) --k;
      if (k < 0) break;
      ++idx[k];
      for (int q = k + 1; q < l; ++q) idx[q] = idx[q - 1] + 1;
      changed = k;
    }
  }
  return false;
}

}  // namespace

void fci(const CITester& tester, const LearnParams& p, const uint8_t* adjacency, LearnResult& out) {
  const int64_t B = p.num_graphs;
  const int n = p.n;
  const int64_t nn = static_cast<int64_t>(n) * n;
  std::vector<uint8_t> adj(adjacency, adjacency + B * nn);

  SkeletonParams sp;
  sp.num_graphs = B;
  sp.n = n;
  sp.max_level = p.max_level;
  sp.all_sepsets = p.all_sepsets;
  sp.num_threads = p.num_threads;
  sp.test_budget = p.skeleton_budget;
  if (p.given) {
    out.skeleton = *p.given;
    remove_edges(out.skeleton, n, adj.data());
  } else {
    cpu::skeleton_with(tester, sp, adj.data(), out.skeleton);
  }
  out.tests = out.skeleton.tests;
  out.singular = out.skeleton.singular;
  out.num_levels = out.skeleton.num_levels;

  out.marks.assign(B * nn, kNone);
  out.stats.assign(B, OrientStats{});
  std::vector<LevelCounts> counts(B);
  std::vector<SepsetTable> tables(B);
  for_each_graph(B, p.num_threads, [&](int64_t b) {
    Marks g{n, out.marks.data() + b * nn};
    const uint8_t* A = adj.data() + b * nn;
    for (int64_t k = 0; k < nn; ++k) g.m[k] = A[k] ? kCircle : kNone;
    SepsetTable& sep = tables[b];
    sep = SepsetTable::from_skeleton(out.skeleton, b, n);
    out.stats[b].fired[0] += rule0(g, sep);
    if (p.pds_stage) {
      // Possible-D-Sep sets come from the graph after R0 (a snapshot); removals take effect at once.
      // Each set is found when first needed, and not at all once the test budget is spent: the
      // search is O(n^3) per node, hours for all nodes of a dense 1,000-node graph.
      std::vector<int8_t> snapshot(g.m, g.m + nn);
      const Marks after_r0{n, snapshot.data()};
      std::vector<std::vector<int>> pds(n);
      std::vector<char> have(n, 0);
      auto pds_of = [&](int v) -> const std::vector<int>& {
        if (!have[v]) {
          pds[v] = possible_d_sep(after_r0, v);
          have[v] = 1;
        }
        return pds[v];
      };
      auto w = tester.worker();
      std::vector<int32_t> found;
      int64_t budget = p.pds_budget;
      for (int x = 0; x < n; ++x)
        for (int y = x + 1; y < n; ++y) {
          if (!g.adjacent(x, y)) continue;
          for (int side = 0; side < 2; ++side) {
            const int a = side ? y : x, c = side ? x : y;
            if (budget == 0) {  // spent: the edge stays, counted once per side as before
              ++out.stats[b].pds_capped;
              continue;
            }
            std::vector<int> cand;
            for (int v : pds_of(a))
              if (v != c) cand.push_back(v);
            if (pds_search(g, *w, tester, b, a, c, cand, p.max_pds_size, counts[b], found, budget)) {
              g.orient(x, y, kNone, kNone);
              sep.set(x, y, found.data(), static_cast<int>(found.size()));
              break;
            }
            if (budget == 0 || (p.max_pds_size >= 0 && static_cast<int>(cand.size()) > p.max_pds_size))
              ++out.stats[b].pds_capped;
          }
        }
      reset_circles(g);
      out.stats[b].fired[0] += rule0(g, sep);
    }
    apply_rules(g, sep, kRules1to10, out.stats[b], p.path_budget);
  });
  merge_counts(counts, out);
  store_sepsets(tables, out);
}

}  // namespace cleann
