// ICD, iterative causal discovery (Rohekar, Gurwicz and Nisimov, NeurIPS 2021).
//
// Iteration r tests, for every remaining edge (i, j), conditioning sets of size r: r = 0 the
// empty set; r = 1 single neighbours of i, then of j; r >= 2 the sets drawn from the PDS-trees of
// i and of j (depth <= r) whose members are reachable from the root through members only, are
// neither i nor j, and are possible ancestors of i or j, tried by increasing sum of minimal tree
// distances (i's tree first on ties, then lexicographic). After each iteration the skeleton is
// re-oriented from scratch (R0, then R1-R4); r = 1 and the final iteration, where no set was
// left to test, add R5-R7 and R8-R10.
//
// "stable" draws every edge's candidates from the graph at the start of the iteration, so the
// edges of an iteration are independent (and spread over threads); "sequential" deletes edges as
// it goes and draws each edge's candidates from the graph as it is at that moment, in the order
// of the reference implementation (with node pairs, neighbours and subsets in ascending order).
#include <algorithm>
#include <vector>

#include "common.h"
#include "learn.h"
#include "pds_tree.h"

namespace cleann {
namespace {

struct IcdGraph {
  Marks g;
  SepsetTable sep;
  LevelCounts counts;
  OrientStats stats;
};

// PDS-trees of depth r, built on first use; `fresh` rebuilds them from the current graph.
struct TreeCache {
  std::vector<PdsTree> trees;
  std::vector<char> built;
  PdsScratch scratch;
  bool prepared = false;
  const PdsTree& get(const Marks& g, int v, int r, bool fresh) {
    if (fresh || !prepared) {  // the sequential mode's graph changes between edges
      scratch.prepare(g);
      prepared = true;
    }
    if (fresh) {
      trees.resize(1);
      trees[0] = build_pds_tree(g, v, r, &scratch);
      return trees[0];
    }
    if (built.empty()) {
      trees.assign(g.n, PdsTree{});
      built.assign(g.n, 0);
    }
    if (!built[v]) {
      trees[v] = build_pds_tree(g, v, r, &scratch);
      built[v] = 1;
    }
    return trees[v];
  }
};

// Candidate conditioning sets of size r >= 2 for the edge (i, j) on graph `g`, with the possible
// ancestors `anc` of that graph.
void candidates(const Marks& g, const std::vector<uint64_t>& anc, int i, int j, int r, TreeCache& cache,
                bool fresh, std::vector<CandidateSet>& out) {
  const int n = g.n, w = words_per_row(n);
  std::vector<uint64_t> allowed(w, 0);
  for (int k = 0; k < w; ++k) allowed[k] = anc[static_cast<size_t>(i) * w + k] | anc[static_cast<size_t>(j) * w + k];
  allowed[i / 64] &= ~(uint64_t{1} << (i % 64));
  allowed[j / 64] &= ~(uint64_t{1} << (j % 64));
  out.clear();
  tree_subsets(cache.get(g, i, r, fresh), n, r, allowed.data(), out);
  tree_subsets(cache.get(g, j, r, fresh), n, r, allowed.data(), out);
  std::stable_sort(out.begin(), out.end(),
                   [](const CandidateSet& a, const CandidateSet& b) { return a.distance < b.distance; });
  // A set drawn from both trees is tried once, at its first place.
  std::vector<CandidateSet> unique;
  for (CandidateSet& c : out) {
    bool seen = false;
    for (const CandidateSet& u : unique)
      if (u.members == c.members) {
        seen = true;
        break;
      }
    if (!seen) unique.push_back(std::move(c));
  }
  out.swap(unique);
}

// The r = 1 candidates: neighbours of i (but j) in ascending order, then those of j not listed.
// Tested in place, without building a candidate list. Returns true when a set was tested.
bool test_singles(const CITester& tester, CIWorker& w, const Marks& source, IcdGraph& G, int64_t graph, int i,
                  int j) {
  bool started = false;
  for (int side = 0; side < 2; ++side) {
    const int a = side ? j : i, other = side ? i : j;
    for (int32_t v = 0; v < source.n; ++v) {
      if (v == other || !source.adjacent(a, v) || (side && source.adjacent(i, v))) continue;
      if (!started) {
        tester.check_level(1);
        w.begin(graph, i, j, 1);
        started = true;
      }
      const int8_t outcome = w.test(&v, 0);
      G.counts.add(1, outcome);
      if (outcome == kIndependent) {
        G.g.orient(i, j, kNone, kNone);
        G.sep.set(i, j, &v, 1);
        return true;
      }
    }
  }
  return started;
}

// Tests the candidates in order; on the first independence removes the edge and records the set.
// Returns true when at least one set was tested.
bool test_edge(const CITester& tester, CIWorker& w, IcdGraph& G, int64_t graph, int i, int j, int r,
               const std::vector<CandidateSet>& cands, bool& removed) {
  removed = false;
  if (cands.empty()) return false;
  tester.check_level(r);
  w.begin(graph, i, j, r);
  const std::vector<int32_t>* prev = nullptr;
  for (const CandidateSet& c : cands) {
    int first = 0;
    if (prev)
      while (first < r && (*prev)[first] == c.members[first]) ++first;
    const int8_t outcome = w.test(c.members.data(), prev ? first : 0);
    prev = &c.members;
    G.counts.add(r, outcome);
    if (outcome == kIndependent) {
      G.g.orient(i, j, kNone, kNone);
      G.sep.set(i, j, c.members.data(), r);
      removed = true;
      break;
    }
  }
  return true;
}

void reorient(IcdGraph& G, int64_t budget) {
  reset_circles(G.g);
  G.stats.fired[0] += rule0(G.g, G.sep);
  apply_rules(G.g, G.sep, kRules1to4, G.stats, budget);
}

void final_rules(IcdGraph& G, int64_t budget) {
  apply_rules(G.g, G.sep, kRules5to7, G.stats, budget);
  apply_rules(G.g, G.sep, kRules8to10, G.stats, budget);
}

// One iteration r >= 1 on one graph. Returns whether any set was tested.
bool iteration(const CITester& tester, CIWorker& w, IcdGraph& G, int64_t graph, int r, bool stable) {
  const int n = G.g.n;
  std::vector<int8_t> snapshot;
  Marks source = G.g;  // the graph candidates are drawn from
  if (stable) {
    snapshot.assign(G.g.m, G.g.m + static_cast<size_t>(n) * n);
    source.m = snapshot.data();
  }
  std::vector<uint64_t> anc = r >= 2 ? possible_ancestors(source) : std::vector<uint64_t>();
  std::vector<CandidateSet> cands;
  TreeCache cache;
  bool tested = false;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      if (!G.g.adjacent(i, j)) continue;
      if (r == 1) {
        tested |= test_singles(tester, w, source, G, graph, i, j);
        continue;
      }
      candidates(source, anc, i, j, r, cache, !stable, cands);
      bool removed = false;
      tested |= test_edge(tester, w, G, graph, i, j, r, cands, removed);
      if (removed && !stable && r >= 2) anc = possible_ancestors(G.g);
    }
  return tested;
}

// Iterations r = first, first + 1, ... until one tests nothing (or max_level).
void iterate(const CITester& tester, const LearnParams& p, IcdGraph& G, int64_t graph, CIWorker& w, int first);

// Applies the removals of skeleton level `level` of graph `graph` (ICD's iteration r = level <= 1)
// and their counts. Returns whether the level tested any set.
bool replay_level(const SkeletonResult& sk, int64_t num_graphs, IcdGraph& G, int64_t graph, int level) {
  if (level >= sk.num_levels) return false;
  for (size_t e = 0; e < sk.edge_graph.size(); ++e) {
    if (sk.edge_graph[e] != graph || sk.edge_level[e] != level) continue;
    const int i = static_cast<int>(sk.edge_i[e]), j = static_cast<int>(sk.edge_j[e]);
    G.g.orient(i, j, kNone, kNone);
    G.sep.set(i, j, sk.set_members.data() + sk.set_offset[e], level);
  }
  const int64_t tests = sk.tests[static_cast<size_t>(level) * num_graphs + graph];
  if (tests) {
    G.counts.add(level, kDependent);  // sizes the tables
    G.counts.tests[level] = tests;
    G.counts.singular[level] = sk.singular[static_cast<size_t>(level) * num_graphs + graph];
  }
  return tests > 0;
}

void icd_one(const CITester& tester, const LearnParams& p, IcdGraph& G, int64_t graph) {
  const int n = G.g.n;
  auto w = tester.worker();
  if (p.given) {  // r = 0 and r = 1 ran as skeleton levels 0 and 1 (stable mode)
    replay_level(*p.given, p.num_graphs, G, graph, 0);
    reorient(G, p.path_budget);
    if (p.max_level == 0) {
      final_rules(G, p.path_budget);
      return;
    }
    const bool tested = replay_level(*p.given, p.num_graphs, G, graph, 1);
    reorient(G, p.path_budget);
    final_rules(G, p.path_budget);
    if (!tested) return;
    iterate(tester, p, G, graph, *w, 2);
    return;
  }
  // r = 0: every pair, unconditionally.
  bool any_pair = false;
  for (int i = 0; i < n && !any_pair; ++i)
    for (int j = i + 1; j < n; ++j)
      if (G.g.adjacent(i, j)) {
        any_pair = true;
        break;
      }
  if (any_pair) tester.check_level(0);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      if (!G.g.adjacent(i, j)) continue;
      w->begin(graph, i, j, 0);
      const int8_t outcome = w->test(nullptr, 0);
      G.counts.add(0, outcome);
      if (outcome == kIndependent) {
        G.g.orient(i, j, kNone, kNone);
        G.sep.set(i, j, nullptr, 0);
      }
    }
  reorient(G, p.path_budget);
  iterate(tester, p, G, graph, *w, 1);
}

void iterate(const CITester& tester, const LearnParams& p, IcdGraph& G, int64_t graph, CIWorker& w, int first) {
  for (int r = first;; ++r) {
    if (p.max_level >= 0 && r > p.max_level) {
      final_rules(G, p.path_budget);
      return;
    }
    const bool tested = iteration(tester, w, G, graph, r, p.icd_stable);
    if (r == 1) {
      reorient(G, p.path_budget);
      final_rules(G, p.path_budget);
      if (!tested) return;
    } else if (tested) {
      reorient(G, p.path_budget);
    } else {
      final_rules(G, p.path_budget);
      return;
    }
  }
}

}  // namespace

void icd(const CITester& tester, const LearnParams& p, const uint8_t* adjacency, LearnResult& out) {
  const int64_t B = p.num_graphs;
  const int n = p.n;
  const int64_t nn = static_cast<int64_t>(n) * n;
  out.marks.assign(B * nn, kNone);
  out.stats.assign(B, OrientStats{});
  out.num_levels = 0;
  out.tests.clear();
  out.singular.clear();
  std::vector<LevelCounts> counts(B);
  std::vector<SepsetTable> tables(B, SepsetTable(n));
  for_each_graph(B, p.num_threads, [&](int64_t b) {
    IcdGraph G{Marks{n, out.marks.data() + b * nn}, SepsetTable(n), LevelCounts{}, OrientStats{}};
    const uint8_t* A = adjacency + b * nn;
    for (int64_t k = 0; k < nn; ++k) G.g.m[k] = A[k] ? kCircle : kNone;
    icd_one(tester, p, G, b);
    counts[b] = std::move(G.counts);
    tables[b] = std::move(G.sep);
    out.stats[b] = G.stats;
  });
  merge_counts(counts, out);
  store_sepsets(tables, out);
}

}  // namespace cleann
