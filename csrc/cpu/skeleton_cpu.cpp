// CPU PC-stable skeleton. Each level reads neighbour lists built at its start and applies its
// removals only at its end, so the edges of a level are independent: they are spread over OpenMP
// threads in one flat list across the whole stack. Within one edge, conditioning sets are walked
// in lexicographic order (first from adj(i) \ {j}, then the sets from adj(j) \ {i} not tried yet);
// the Fisher-z worker reuses the factorisation of the unchanged prefix from one set to the next.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ci_tester.h"
#include "common.h"
#include "pcorr.h"
#include "skeleton.h"

namespace cleann {
namespace cpu {
namespace {

struct EdgeTask {
  int64_t graph;
  int32_t i, j;
};

struct EdgeOutcome {
  int64_t tests = 0;
  int64_t singular = 0;
  int64_t found = 0;          // separating sets found
  std::vector<int32_t> sets;  // their members, `level` each
};

// Walks the l-subsets of nb[0..m) in lexicographic order; `skip(S)` says a set was already tried.
// Returns true when the edge should stop (first independence in "first" mode).
template <typename Worker, typename Skip>
bool walk_side(Worker& w, const int32_t* nb, int m, int l, bool all_sepsets, std::vector<int32_t>& idx,
               std::vector<int32_t>& S, EdgeOutcome& res, Skip skip) {
  if (m < l) return false;
  for (int a = 0; a < l; ++a) idx[a] = a;
  int changed = 0;  // first position of S that changed since the last test
  int pending = 0;
  for (;;) {
    for (int a = changed; a < l; ++a) S[a] = nb[idx[a]];
    pending = std::min(pending, changed);
    if (!skip(S.data())) {
      const int8_t r = w.test(S.data(), pending);
      pending = l;
      ++res.tests;
      if (r == kSingular) {
        ++res.singular;
      } else if (r == kIndependent) {
        ++res.found;
        res.sets.insert(res.sets.end(), S.begin(), S.begin() + l);
        if (!all_sepsets) return true;
      }
    }
    int a = l - 1;
    while (a >= 0 && idx[a] == m - l + a) --a;
    if (a < 0) return false;
    ++idx[a];
    for (int b = a + 1; b < l; ++b) idx[b] = idx[b - 1] + 1;
    changed = a;
  }
}

// C(m, l) as a double, saturating far above any budget (a bound, not an exact count).
double binomial_bound(int64_t m, int l) {
  if (m < l) return 0.0;
  double c = 1.0;
  for (int k = 1; k <= l && c < 1e30; ++k) c = c * static_cast<double>(m - l + k) / k;
  return c;
}

template <typename MakeWorker>
void skeleton_impl(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out, MakeWorker make_worker,
                   const CITester& tester) {
  const int64_t B = p.num_graphs, n = p.n, nn = n * n;
  const int nt = resolve_threads(p.num_threads);
  (void)nt;
  std::vector<int64_t> nb_offset(static_cast<size_t>(B * n + 1));
  std::vector<int32_t> nb;
  std::vector<EdgeTask> tasks;
  std::vector<EdgeOutcome> outcomes;
  // test_budget: tests run so far per graph, and the graphs that stopped early.
  std::vector<int64_t> spent(static_cast<size_t>(B), 0);
  std::vector<char> stopped(static_cast<size_t>(B), 0);
  if (p.test_budget >= 0) out.capped.assign(static_cast<size_t>(B), 0);

  for (int level = 0; p.max_level < 0 || level <= p.max_level; ++level) {
    // Neighbour lists at the start of the level (ascending).
    nb.clear();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t v = 0; v < n; ++v) {
        nb_offset[b * n + v] = static_cast<int64_t>(nb.size());
        const uint8_t* row = adjacency + b * nn + v * n;
        for (int64_t w = 0; w < n; ++w)
          if (row[w]) nb.push_back(static_cast<int32_t>(w));
      }
    }
    nb_offset[B * n] = static_cast<int64_t>(nb.size());
    auto degree = [&](int64_t b, int64_t v) { return nb_offset[b * n + v + 1] - nb_offset[b * n + v]; };

    tasks.clear();
    for (int64_t b = 0; b < B; ++b) {
      if (stopped[b]) continue;
      const size_t first = tasks.size();
      double bound = 0.0;  // the level's tests for graph b if no edge stopped early
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = nb_offset[b * n + i]; k < nb_offset[b * n + i + 1]; ++k) {
          const int32_t j = nb[k];
          if (j <= i) continue;
          if (degree(b, i) - 1 >= level || degree(b, j) - 1 >= level) {
            tasks.push_back({b, static_cast<int32_t>(i), j});
            if (p.test_budget >= 0)
              bound += level == 0 ? 1.0  // the empty set, once
                                  : binomial_bound(degree(b, i) - 1, level) + binomial_bound(degree(b, j) - 1, level);
          }
        }
      if (p.test_budget >= 0 && tasks.size() > first &&
          static_cast<double>(spent[b]) + bound > static_cast<double>(p.test_budget)) {
        stopped[b] = 1;
        out.capped[b] = static_cast<int64_t>(tasks.size() - first);
        tasks.resize(first);
      }
    }
    if (tasks.empty()) break;
    tester.check_level(level);  // throws if sets of this size cannot be tested

    outcomes.assign(tasks.size(), EdgeOutcome{});
    const int64_t num_tasks = static_cast<int64_t>(tasks.size());
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel num_threads(nt) if (num_tasks > 256)
#endif
    {
      auto worker = make_worker();
      std::vector<int32_t> nbi, nbj, idx(level + 1), S(level + 1);
#if defined(CLEANN_WITH_OPENMP)
#pragma omp for schedule(dynamic, 16)
#endif
      for (int64_t t = 0; t < num_tasks; ++t) {
        const EdgeTask& e = tasks[t];
        const uint8_t* adj_i = adjacency + e.graph * nn + static_cast<int64_t>(e.i) * n;
        const int32_t* ni = nb.data() + nb_offset[e.graph * n + e.i];
        const int32_t* nj = nb.data() + nb_offset[e.graph * n + e.j];
        nbi.clear();
        nbj.clear();
        if (level > 0) {  // level 0 tests the empty set only: copying neighbour lists there made it O(n^3)
          for (int64_t k = 0; k < degree(e.graph, e.i); ++k)
            if (ni[k] != e.j) nbi.push_back(ni[k]);
          for (int64_t k = 0; k < degree(e.graph, e.j); ++k)
            if (nj[k] != e.i) nbj.push_back(nj[k]);
        }
        EdgeOutcome& res = outcomes[t];
        auto& w = *worker;
        w.begin(e.graph, e.i, e.j, level);
        const bool stop = walk_side(w, nbi.data(), static_cast<int>(nbi.size()), level, p.all_sepsets, idx, S, res,
                                    [](const int32_t*) { return false; });
        if (!stop) {
          // A set from adj(j) lying wholly inside adj(i) \ {j} was tried from i's side.
          walk_side(w, nbj.data(), static_cast<int>(nbj.size()), level, p.all_sepsets, idx, S, res,
                    [&](const int32_t* s) {
                      for (int a = 0; a < level; ++a)
                        if (!adj_i[s[a]]) return false;
                      return true;
                    });
        }
      }
    }

    // Apply the level's removals and record them, in (graph, i, j) order.
    out.tests.resize(out.tests.size() + B, 0);
    out.singular.resize(out.singular.size() + B, 0);
    int64_t* tests = out.tests.data() + static_cast<int64_t>(level) * B;
    int64_t* singular = out.singular.data() + static_cast<int64_t>(level) * B;
    for (int64_t t = 0; t < num_tasks; ++t) {
      const EdgeTask& e = tasks[t];
      const EdgeOutcome& res = outcomes[t];
      tests[e.graph] += res.tests;
      singular[e.graph] += res.singular;
      spent[e.graph] += res.tests;
      if (res.found == 0) continue;
      adjacency[e.graph * nn + static_cast<int64_t>(e.i) * n + e.j] = 0;
      adjacency[e.graph * nn + static_cast<int64_t>(e.j) * n + e.i] = 0;
      out.edge_graph.push_back(e.graph);
      out.edge_i.push_back(e.i);
      out.edge_j.push_back(e.j);
      out.edge_level.push_back(level);
      out.set_offset.push_back(static_cast<int64_t>(out.set_members.size()));
      out.set_count.push_back(res.found);
      out.set_members.insert(out.set_members.end(), res.sets.begin(), res.sets.end());
    }
    out.num_levels = level + 1;
  }
}

}  // namespace

void skeleton(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out) {
  const FisherZTester tester(p.corr, p.num_graphs, static_cast<int>(p.n), p.num_samples, p.alpha, p.pivot_tol);
  skeleton_impl(p, adjacency, out, [&] { return std::make_unique<FisherZTester::Worker>(tester); }, tester);
}

void skeleton_with(const CITester& tester, const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out) {
  if (auto* fz = dynamic_cast<const FisherZTester*>(&tester)) {  // the devirtualised fast path
    skeleton_impl(p, adjacency, out, [&] { return std::make_unique<FisherZTester::Worker>(*fz); }, tester);
  } else {
    skeleton_impl(p, adjacency, out, [&] { return tester.worker(); }, tester);
  }
}

}  // namespace cpu
}  // namespace cleann
