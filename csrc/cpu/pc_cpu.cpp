// CPU PC orientation (semantics in pc.h) and the driver over a stack: the skeleton of the whole
// stack first (its levels are parallel inside), then one orientation per graph, graphs spread over
// OpenMP threads. Orientation is sequential within a graph: each decision reads the marks the
// previous ones left, exactly as causal-learn's loops do.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#if defined(_MSC_VER)
#include <intrin.h>
#endif

#include "common.h"
#include "pc.h"
#include "pcorr.h"

namespace cleann {
namespace cpu {
namespace {

// Largest neighbourhood whose subsets uc_priority 3 and 4 will enumerate (2^k CI tests).
constexpr int kMaxScoredDegree = 24;

// Index of the lowest set bit of a non-zero word.
inline int lowest_bit(uint64_t w) {
#if defined(_MSC_VER)
  unsigned long k;
  _BitScanForward64(&k, w);
  return static_cast<int>(k);
#else
  return __builtin_ctzll(w);
#endif
}

// causal-learn's cached ancestor relation (GeneralGraph.dpath). anc(b) holds a when the cache
// says a is an ancestor of b; every node is its own ancestor. Adding a --> b merges anc(a) into
// anc(b) and puts a into anc(d) for every d that had b as an ancestor, but does not put the
// ancestors of a there: the closure is incomplete (after 0 -> 1, 2 -> 3, 1 -> 2 the cache does
// not know that 0 is an ancestor of 3). Meek's cycle guard reads this cache, so we keep it as is.
// desc is the transpose of anc, so that "every d with b in anc(d)" is a row scan.
class AncestorCache {
 public:
  explicit AncestorCache(int n)
      : n_(n), words_((n + 63) / 64), anc_(static_cast<size_t>(n) * words_), desc_(anc_.size()) {
    reset();
  }

  bool is_ancestor(int a, int b) const { return test(anc_, b, a); }

  void reset() {
    std::fill(anc_.begin(), anc_.end(), 0);
    std::fill(desc_.begin(), desc_.end(), 0);
    for (int v = 0; v < n_; ++v) {
      set(anc_, v, v);
      set(desc_, v, v);
    }
  }

  // The cache update of adding a --> b (GeneralGraph.adjust_dpath(a, b)).
  void add_edge(int a, int b) {
    uint64_t* rb = row(anc_, b);
    const uint64_t* ra = row(anc_, a);
    for (int w = 0; w < words_; ++w) {
      uint64_t fresh = ra[w] & ~rb[w];
      rb[w] |= fresh;
      for (; fresh; fresh &= fresh - 1) set(desc_, w * 64 + lowest_bit(fresh), b);
    }
    // desc(b) is as it was before this edge: b is in anc(b), so the loop above never touched it.
    const uint64_t* db = row(desc_, b);
    for (int w = 0; w < words_; ++w) {
      for (uint64_t bits = db[w]; bits; bits &= bits - 1) {
        const int d = w * 64 + lowest_bit(bits);
        if (!test(anc_, d, a)) {
          set(anc_, d, a);
          set(desc_, a, d);
        }
      }
    }
  }

  // GeneralGraph.reconstitute_dpath(get_graph_edges()): identity, then the directed edges in the
  // reverse of (i, j), i < j, order, each added as above.
  void rebuild(const Marks& g) {
    reset();
    for (int i = n_ - 1; i >= 0; --i) {
      for (int j = n_ - 1; j > i; --j) {
        if (g.directed(i, j))
          add_edge(i, j);
        else if (g.directed(j, i))
          add_edge(j, i);
      }
    }
  }

 private:
  uint64_t* row(std::vector<uint64_t>& m, int v) { return m.data() + static_cast<size_t>(v) * words_; }
  bool test(const std::vector<uint64_t>& m, int v, int bit) const {
    return (m[static_cast<size_t>(v) * words_ + (bit >> 6)] >> (bit & 63)) & 1u;
  }
  void set(std::vector<uint64_t>& m, int v, int bit) {
    m[static_cast<size_t>(v) * words_ + (bit >> 6)] |= uint64_t{1} << (bit & 63);
  }

  int n_, words_;
  std::vector<uint64_t> anc_, desc_;
};

// causal-learn's Fisher-z p-value computed its way: |r| >= 1 clipped to 1 - eps, atanh through a
// log, and p = 2 (1 - Phi(stat)) with Phi as scipy's ndtr. This matters only for ranking colliders
// (priorities 3, 4): p is exactly 0.0 once Phi rounds to 1 (stat above about 8.3), and those ties
// must be ties here too, broken by scan order.
double causallearn_pvalue(double r, double dof) {
  if (!(std::fabs(r) < 1.0)) r = std::copysign(1.0 - DBL_EPSILON, r);
  const double z = 0.5 * std::log((1.0 + r) / (1.0 - r));
  const double x = std::sqrt(dof) * std::fabs(z) * 0.70710678118654752440;
  const double phi = x < 0.70710678118654752440 ? 0.5 + 0.5 * std::erf(x) : 1.0 - 0.5 * std::erfc(x);
  return 2.0 * (1.0 - phi);
}

class Orienter {
 public:
  Orienter(Marks g, const SepsetTable& sepsets, const OrientCI& ci, PcOrientStats& stats)
      : g_(g), n_(g.n), sep_(sepsets), ci_(ci), stats_(stats), cache_(g.n), adj_(static_cast<size_t>(g.n) * g.n),
        nb_(g.n) {
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b)
        if (g_.adjacent(a, b)) {
          adj_[static_cast<size_t>(a) * n_ + b] = 1;
          nb_[a].push_back(b);
        }
  }

  void colliders(int priority);
  void meek();

 private:
  // The skeleton's adjacency, which orientation never changes.
  bool adj(int a, int b) const { return adj_[static_cast<size_t>(a) * n_ + b] != 0; }
  bool directed(int a, int b) const { return g_.directed(a, b); }
  bool undirected(int a, int b) const { return g_.at(a, b) == kTail && g_.at(b, a) == kTail; }

  // causal-learn's remove_edge then add_edge(a --> b): removing an edge that was directed (either
  // way) rebuilds the ancestor cache from the remaining edges before a --> b is added to it.
  void make_directed(int a, int b) {
    remove(a, b);
    g_.orient(a, b, kTail, kArrow);
    cache_.add_edge(a, b);
  }
  // remove_edge then add a <-> b, which the ancestor cache ignores.
  void make_bidirected(int a, int b) {
    remove(a, b);
    g_.orient(a, b, kArrow, kArrow);
  }
  void remove(int a, int b) {
    const bool was_directed = directed(a, b) || directed(b, a);
    g_.orient(a, b, kNone, kNone);
    if (was_directed) cache_.rebuild(g_);
  }

  // The collider rule of priorities 2-4: x --> y <-- z unless y --> x or y --> z already.
  void orient_unless_reversing(int x, int y, int z) {
    if (directed(y, x) || directed(y, z)) return;
    make_directed(x, y);
    make_directed(z, y);
  }

  std::vector<double> collider_scores(const std::vector<int>& triples, int priority);

  Marks g_;
  int n_;
  const SepsetTable& sep_;
  const OrientCI& ci_;
  PcOrientStats& stats_;
  AncestorCache cache_;
  std::vector<uint8_t> adj_;
  std::vector<std::vector<int>> nb_;
};

// Unshielded triples x - y - z, x < z, of the undirected skeleton in ascending (y, x, z): the order
// causal-learn's find_unshielded_triples gives on a graph with tails only. A triple is a collider
// when y is in no separating set of (x, z).
void Orienter::colliders(int priority) {
  std::vector<int> passing;  // x, y, z of each collider, scan order (priorities 3, 4)
  for (int y = 0; y < n_; ++y) {
    const std::vector<int>& ny = nb_[y];
    for (size_t ix = 0; ix < ny.size(); ++ix) {
      const int x = ny[ix];
      for (size_t iz = ix + 1; iz < ny.size(); ++iz) {
        const int z = ny[iz];
        if (adj(x, z) || sep_.contains(x, z, y)) continue;
        switch (priority) {
          case kUcOverwrite:
            make_directed(x, y);
            make_directed(z, y);
            break;
          case kUcBidirected:
            for (const int a : {x, z}) {
              if (undirected(a, y))
                make_directed(a, y);
              else if (directed(y, a))
                make_bidirected(a, y);
            }
            break;
          case kUcExisting:
            orient_unless_reversing(x, y, z);
            break;
          default:
            passing.insert(passing.end(), {x, y, z});
        }
      }
    }
  }
  if (priority < kUcStronger) return;

  // Priority 3: ascending max p(x, z | S) over S containing y; priority 4: descending max over S
  // without y. Stable, as Python's sorted is (with reverse=True too): ties keep scan order.
  const std::vector<double> score = collider_scores(passing, priority);
  std::vector<int> order(score.size());
  for (size_t t = 0; t < order.size(); ++t) order[t] = static_cast<int>(t);
  if (priority == kUcStronger)
    std::stable_sort(order.begin(), order.end(), [&](int s, int t) { return score[s] < score[t]; });
  else
    std::stable_sort(order.begin(), order.end(), [&](int s, int t) { return score[s] > score[t]; });
  for (const int t : order) orient_unless_reversing(passing[3 * t], passing[3 * t + 1], passing[3 * t + 2]);
}

// Scores of the colliders (x, y, z) for priorities 3 and 4. causal-learn tests x against z given
// every subset of adj(x) and every subset of adj(z) (the skeleton's adjacency), each set once per
// pair; we run those tests once per pair (x, z) and keep, for each middle node y of the pair, the
// largest p-value over the sets holding y (priority 3) or not holding it (priority 4).
std::vector<double> Orienter::collider_scores(const std::vector<int>& triples, int priority) {
  const size_t count = triples.size() / 3;
  std::vector<double> score(count, 0.0);
  std::vector<int> by_pair(count);
  for (size_t t = 0; t < count; ++t) by_pair[t] = static_cast<int>(t);
  std::stable_sort(by_pair.begin(), by_pair.end(), [&](int s, int t) {
    return std::make_pair(triples[3 * s], triples[3 * s + 2]) < std::make_pair(triples[3 * t], triples[3 * t + 2]);
  });

  const int64_t n = n_;
  std::vector<uint8_t> in_set(n_, 0), in_x(n_, 0);
  std::vector<double> scratch;
  std::vector<int32_t> idx, S;
  for (size_t start = 0; start < count;) {
    const int x = triples[3 * by_pair[start]], z = triples[3 * by_pair[start] + 2];
    size_t stop = start;
    while (stop < count && triples[3 * by_pair[stop]] == x && triples[3 * by_pair[stop] + 2] == z) ++stop;
    // Each middle node's best p-value so far; -1 marks "no set seen yet".
    std::vector<std::pair<int, double>> best;
    for (size_t t = start; t < stop; ++t) best.emplace_back(triples[3 * by_pair[t] + 1], -1.0);

    const std::vector<int>& nx = nb_[x];
    const std::vector<int>& nz = nb_[z];
    for (const int v : {x, z}) {
      const int deg = static_cast<int>(nb_[v].size());
      if (deg > kMaxScoredDegree)
        throw ArgumentError("uc_priority " + std::to_string(priority) + " tests every subset of a collider's " +
                            "end neighbourhoods, and node " + std::to_string(v) + " has " + std::to_string(deg) +
                            " neighbours (2^" + std::to_string(deg) + " tests; at most " +
                            std::to_string(kMaxScoredDegree) + " are allowed): use uc_priority 0, 1 or 2");
    }
    for (const int v : nx) in_x[v] = 1;
    const double* R = ci_.corr;
    const double* Ri = R + x * n;
    const double* Rj = R + z * n;

    // Walk the l-subsets of one side in lexicographic order, skipping (on z's side) the sets that
    // lie inside adj(x), already tested from x's side.
    auto walk = [&](const std::vector<int>& side, int l, bool skip_inside_x) {
      const int m = static_cast<int>(side.size());
      if (m < l) return;
      const double dof = ci_.num_samples - l - 3.0;
      if (!(dof > 0.0))
        throw ArgumentError("num_samples too small for the collider scores of uc_priority " +
                            std::to_string(priority) + ": a test given " + std::to_string(l) +
                            " nodes needs num_samples - " + std::to_string(l) + " - 3 > 0, got num_samples = " +
                            std::to_string(ci_.num_samples));
      scratch.assign(PcorrState::scratch_size(l) + 1, 0.0);
      idx.assign(l + 1, 0);
      S.assign(l + 1, 0);
      PcorrState st;
      st.bind(scratch.data(), l);
      if (static_cast<int>(stats_.tests.size()) <= l) {
        stats_.tests.resize(l + 1, 0);
        stats_.singular.resize(l + 1, 0);
      }
      for (int a = 0; a < l; ++a) idx[a] = a;
      int changed = 0, dirty = 0;
      for (;;) {
        for (int a = changed; a < l; ++a) S[a] = side[idx[a]];
        dirty = std::min(dirty, changed);
        bool skip = skip_inside_x;
        for (int a = 0; skip && a < l; ++a) skip = in_x[S[a]] != 0;
        if (!skip) {
          st.update(R, n, Ri, Rj, S.data(), dirty, ci_.pivot_tol);
          dirty = l;
          ++stats_.tests[l];
          double num, di, dj, p = 0.0;  // a singular block counts as dependent: p = 0
          if (st.terms(x, z, Ri, Rj, ci_.pivot_tol, num, di, dj))
            p = causallearn_pvalue(num / std::sqrt(di * dj), dof);
          else
            ++stats_.singular[l];
          for (int a = 0; a < l; ++a) in_set[S[a]] = 1;
          for (auto& [y, b] : best) {
            const bool has_y = in_set[y] != 0;
            if (has_y == (priority == kUcStronger) && p > b) b = p;
          }
          for (int a = 0; a < l; ++a) in_set[S[a]] = 0;
        }
        int a = l - 1;
        while (a >= 0 && idx[a] == m - l + a) --a;
        if (a < 0) return;
        ++idx[a];
        for (int c = a + 1; c < l; ++c) idx[c] = idx[c - 1] + 1;
        changed = a;
      }
    };
    for (int l = 0; l <= static_cast<int>(nx.size()); ++l) walk(nx, l, false);
    for (int l = 1; l <= static_cast<int>(nz.size()); ++l) walk(nz, l, true);
    for (const int v : nx) in_x[v] = 0;

    for (size_t t = start; t < stop; ++t) score[by_pair[t]] = best[t - start].second;
    start = stop;
  }
  return score;
}

// Meek's R1-R3 in passes until a pass orients nothing, scanning causal-learn's lists: its
// adjacency list holds every ordered pair (a, b) with a tail at b, by (b, a), then every pair with
// an arrowhead at b, by (b, a), taken once after the collider stage; unshielded triples, triangles
// and kites are read off it in list order. We walk the same orders without building the lists: for
// a pair (a, b) in list order, the pairs (b, c) follow in list order as out(b) below.
void Orienter::meek() {
  std::vector<std::pair<int, int>> pairs;
  std::vector<std::vector<int>> out(n_);
  for (const int8_t mark : {kTail, kArrow}) {
    for (int b = 0; b < n_; ++b)
      for (int a = 0; a < n_; ++a)
        if (g_.at(a, b) == mark) pairs.emplace_back(a, b);
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b)
        if (g_.at(a, b) == mark) out[a].push_back(b);
  }

  for (bool again = true; again;) {
    again = false;
    // R1, over unshielded triples (i, j, k): i --> j --- k becomes j --> k.
    for (const auto& [i, j] : pairs) {
      if (!directed(i, j)) continue;
      for (const int k : out[j]) {
        if (k == i || adj(i, k) || !undirected(j, k)) continue;
        if (cache_.is_ancestor(k, j)) continue;
        make_directed(j, k);
        again = true;
      }
    }
    // R2, over triangles (i, j, k): i --> j --> k and i --- k makes i --> k.
    for (const auto& [i, j] : pairs) {
      if (!directed(i, j)) continue;
      for (const int k : out[j]) {
        if (k == i || !adj(i, k) || !directed(j, k) || !undirected(i, k)) continue;
        if (cache_.is_ancestor(k, i)) continue;
        make_directed(i, k);
        again = true;
      }
    }
    // R3, over kites (i, j, k, l) from triangle pairs (i, j, l), (i, k, l) with j < k non-adjacent:
    // i --- j --> l, i --- k --> l and i --- l makes i --> l. The triangles (i, k, l) of one (i, l)
    // come in the list order of (i, k), which is out(i).
    for (const auto& [i, j] : pairs) {
      if (!undirected(i, j)) continue;
      for (const int l : out[j]) {
        if (l == i || !adj(i, l)) continue;
        for (const int k : out[i]) {
          if (k <= j || !adj(k, l) || adj(j, k)) continue;
          if (!(undirected(i, k) && directed(j, l) && directed(k, l) && undirected(i, l))) continue;
          if (cache_.is_ancestor(l, i)) continue;
          make_directed(i, l);
          again = true;
        }
      }
    }
  }
}

// Separating-set tables of every graph of a stack, built from one pass over the removed edges.
std::vector<std::vector<size_t>> edges_by_graph(const SkeletonResult& sk, int64_t num_graphs) {
  std::vector<std::vector<size_t>> by(num_graphs);
  for (size_t e = 0; e < sk.edge_graph.size(); ++e) by[sk.edge_graph[e]].push_back(e);
  return by;
}

}  // namespace

void orient_pc(Marks g, const SepsetTable& sepsets, int uc_priority, const OrientCI& ci, PcOrientStats& stats) {
  Orienter o(g, sepsets, ci, stats);
  o.colliders(uc_priority);
  o.meek();
}

void pc(const PcParams& p, uint8_t* adjacency, int8_t* marks, PcResult& out) {
  const SkeletonParams& sp = p.skeleton;
  if (p.given) {
    out.skeleton = *p.given;
    remove_edges(out.skeleton, sp.n, adjacency);
  } else {
    cpu::skeleton(sp, adjacency, out.skeleton);
  }

  const int64_t B = sp.num_graphs, n = sp.n, nn = n * n;
  const std::vector<std::vector<size_t>> edges = edges_by_graph(out.skeleton, B);
  std::vector<PcOrientStats> stats(B);
  std::vector<std::exception_ptr> errors(B);
  const int nt = resolve_threads(sp.num_threads);
  (void)nt;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (B > 1)
#endif
  for (int64_t b = 0; b < B; ++b) {
    try {
      SepsetTable table(static_cast<int>(n));
      for (const size_t e : edges[b]) {
        const SkeletonResult& sk = out.skeleton;
        table.add(static_cast<int>(sk.edge_i[e]), static_cast<int>(sk.edge_j[e]),
                  sk.set_members.data() + sk.set_offset[e], static_cast<int>(sk.set_count[e] * sk.edge_level[e]));
      }
      int8_t* m = marks + b * nn;
      const uint8_t* a = adjacency + b * nn;
      for (int64_t k = 0; k < nn; ++k) m[k] = a[k] ? kTail : kNone;
      const OrientCI ci{sp.corr + b * nn, sp.num_samples, sp.pivot_tol};
      orient_pc(Marks{static_cast<int>(n), m}, table, p.uc_priority, ci, stats[b]);
    } catch (...) {
      errors[b] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);  // the first graph's error, whatever the threads did

  int levels = 0;
  for (const PcOrientStats& s : stats) levels = std::max(levels, static_cast<int>(s.tests.size()));
  out.uc_levels = levels;
  out.uc_tests.assign(static_cast<size_t>(levels) * B, 0);
  out.uc_singular.assign(static_cast<size_t>(levels) * B, 0);
  for (int64_t b = 0; b < B; ++b)
    for (size_t l = 0; l < stats[b].tests.size(); ++l) {
      out.uc_tests[l * B + b] = stats[b].tests[l];
      out.uc_singular[l * B + b] = stats[b].singular[l];
    }
}

}  // namespace cpu
}  // namespace cleann
