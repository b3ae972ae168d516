// CPU PC-stable skeleton. Each level reads neighbour lists built at its start and applies its
// removals only at its end, so the edges of a level are independent: they are spread over OpenMP
// threads in one flat list across the whole stack. Within one edge, conditioning sets are walked
// in lexicographic order (first from adj(i) \ {j}, then the sets from adj(j) \ {i} not tried yet),
// reusing the Cholesky rows of the unchanged prefix from one set to the next.
#include <algorithm>
#include <cmath>
#include <vector>

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

struct Scratch {
  std::vector<double> buf;
  std::vector<int32_t> idx, S;
  PcorrState st;
  explicit Scratch(int l) : buf(PcorrState::scratch_size(l) + 1), idx(l + 1), S(l + 1) { st.bind(buf.data(), l); }
};

// Walks the l-subsets of nb[0..m) in lexicographic order; `skip(S)` says a set was already tried.
// Returns true when the edge should stop (first independence in "first" mode).
template <typename Skip>
bool walk_side(const double* R, int64_t n, int32_t i, int32_t j, const int32_t* nb, int m, int l,
               const FisherZ& fz, const SkeletonParams& p, Scratch& sc, EdgeOutcome& res, Skip skip) {
  const double* Ri = R + static_cast<int64_t>(i) * n;
  const double* Rj = R + static_cast<int64_t>(j) * n;
  if (m < l) return false;
  int32_t* idx = sc.idx.data();
  int32_t* S = sc.S.data();
  for (int a = 0; a < l; ++a) idx[a] = a;
  int changed = 0;   // first position of S that changed since S was last written
  int dirty = 0;     // first row of the Cholesky state that no longer matches S
  for (;;) {
    for (int a = changed; a < l; ++a) S[a] = nb[idx[a]];
    dirty = std::min(dirty, changed);
    if (!skip(S)) {
      sc.st.update(R, n, Ri, Rj, S, dirty, p.pivot_tol);
      dirty = l;
      double num, di, dj;
      ++res.tests;
      if (!sc.st.terms(i, j, Ri, Rj, p.pivot_tol, num, di, dj)) {
        ++res.singular;
      } else if (is_independent(num, di, dj, fz)) {
        ++res.found;
        res.sets.insert(res.sets.end(), S, S + l);
        if (!p.all_sepsets) return true;
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

}  // namespace

void skeleton(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out) {
  const int64_t B = p.num_graphs, n = p.n, nn = n * n;
  const int nt = resolve_threads(p.num_threads);
  (void)nt;
  std::vector<int64_t> nb_offset(static_cast<size_t>(B * n + 1));
  std::vector<int32_t> nb;
  std::vector<EdgeTask> tasks;
  std::vector<EdgeOutcome> outcomes;

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
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = nb_offset[b * n + i]; k < nb_offset[b * n + i + 1]; ++k) {
          const int32_t j = nb[k];
          if (j <= i) continue;
          if (degree(b, i) - 1 >= level || degree(b, j) - 1 >= level)
            tasks.push_back({b, static_cast<int32_t>(i), j});
        }
    if (tasks.empty()) break;
    const FisherZ fz = make_fisher_z(p.alpha, p.num_samples, level);  // throws if N too small

    outcomes.assign(tasks.size(), EdgeOutcome{});
    const int64_t num_tasks = static_cast<int64_t>(tasks.size());
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel num_threads(nt) if (num_tasks > 64)
#endif
    {
      Scratch sc(level);
      std::vector<int32_t> nbi, nbj;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp for schedule(dynamic, 8)
#endif
      for (int64_t t = 0; t < num_tasks; ++t) {
        const EdgeTask& e = tasks[t];
        const double* R = p.corr + e.graph * nn;
        const uint8_t* adj_i = adjacency + e.graph * nn + static_cast<int64_t>(e.i) * n;
        const int32_t* ni = nb.data() + nb_offset[e.graph * n + e.i];
        const int32_t* nj = nb.data() + nb_offset[e.graph * n + e.j];
        nbi.clear();
        nbj.clear();
        for (int64_t k = 0; k < degree(e.graph, e.i); ++k)
          if (ni[k] != e.j) nbi.push_back(ni[k]);
        for (int64_t k = 0; k < degree(e.graph, e.j); ++k)
          if (nj[k] != e.i) nbj.push_back(nj[k]);
        EdgeOutcome& res = outcomes[t];
        const bool stop = walk_side(R, n, e.i, e.j, nbi.data(), static_cast<int>(nbi.size()), level, fz, p,
                                    sc, res, [](const int32_t*) { return false; });
        if (!stop) {
          // A set from adj(j) lying wholly inside adj(i) \ {j} was tried from i's side.
          walk_side(R, n, e.i, e.j, nbj.data(), static_cast<int>(nbj.size()), level, fz, p, sc, res,
                    [&](const int32_t* S) {
                      for (int a = 0; a < level; ++a)
                        if (!adj_i[S[a]]) return false;
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
      EdgeOutcome& res = outcomes[t];
      tests[e.graph] += res.tests;
      singular[e.graph] += res.singular;
      const int64_t count = res.found;
      if (count == 0) continue;
      adjacency[e.graph * nn + static_cast<int64_t>(e.i) * n + e.j] = 0;
      adjacency[e.graph * nn + static_cast<int64_t>(e.j) * n + e.i] = 0;
      out.edge_graph.push_back(e.graph);
      out.edge_i.push_back(e.i);
      out.edge_j.push_back(e.j);
      out.edge_level.push_back(level);
      out.set_offset.push_back(static_cast<int64_t>(out.set_members.size()));
      out.set_count.push_back(count);
      out.set_members.insert(out.set_members.end(), res.sets.begin(), res.sets.end());
    }
    out.num_levels = level + 1;
  }
}

}  // namespace cpu
}  // namespace cleann
