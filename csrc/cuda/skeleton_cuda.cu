// One level l >= 1 of the PC-stable skeleton on the GPU, in the manner of cuPC (Zarebavani et al.,
// "cuPC: CUDA-based Parallel PC Algorithm for Causal Structure Learning on GPU", IEEE TPDS 2020).
//
// Thread mapping: a block per (graph, node u), striding over the stack; each warp of the block
// takes neighbours v of u in turn and tests the l-subsets of adj(u) \ {v} (from the level's
// snapshot) 32 at a time, lane t taking the set of lexicographic rank start + t. Rounds go in rank
// order and stop after the first round with an independence: the lowest-ranked separating set
// wins, whatever the timing (cuPC keeps whichever thread wins an atomic race). The upper side
// (u > v) does not test sets lying wholly inside adj(v): the lower side's walk holds them and its
// result takes precedence; it also gives up once the lower side has recorded a set.
//
// Arithmetic is float64 through pcorr.h, the threshold the textbook sqrt(N - l - 3) (cuPC and
// gpucsl use N - l - 4), and the level is not capped: sizes past kMaxStaticLevel run the same code
// on a fixed grid with per-thread scratch.
//
// Outputs per ordered pair (g, u, v): rank of the set found (-1: none), and the tests and singular
// blocks a lexicographic walk would have counted up to that set (all, when none was found); the
// host combines the two sides of each edge (python/cleann/_gpu.py).
#include <climits>
#include <cmath>

#include "cuda/launch.h"
#include "pcorr.h"
#include "skeleton.h"

namespace cleann {
namespace cuda {
namespace {

__device__ __forceinline__ int64_t warp_min(int64_t x) {
  for (int o = 16; o > 0; o >>= 1) {
    const int64_t y = __shfl_xor_sync(0xffffffffu, x, o);
    x = y < x ? y : x;
  }
  return x;
}

__device__ __forceinline__ int warp_sum(int x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Positions (in [0, k)) of the set with lexicographic rank r among the l-subsets of [0, k).
__device__ __forceinline__ void unrank(int64_t r, int k, int l, const int64_t* binom, int stride, int32_t* pos) {
  int c = 0;
  for (int t = 0; t < l; ++t) {
    for (;;) {
      const int64_t cnt = binom[static_cast<int64_t>(k - 1 - c) * stride + (l - 1 - t)];
      if (r < cnt) break;
      r -= cnt;
      ++c;
    }
    pos[t] = c++;
  }
}

template <int L>
__global__ void skeleton_level_kernel(LevelArgs a) {
  const int l = L >= 0 ? L : a.level;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int64_t n = a.n, nn = n * n;
  const int stride = a.level + 1;  // columns of the binomial table
  double local[L > 0 ? 2 * L * L + 7 * L : 1];
  int32_t local_set[L > 0 ? L : 1];
  double* work = local;
  int32_t* set = local_set;
  if (L < 0) {
    const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    work = a.scratch + tid * (PcorrState::scratch_size(l) + l);
    set = reinterpret_cast<int32_t*>(work + PcorrState::scratch_size(l));
  }
  for (int64_t item = blockIdx.x; item < a.num_graphs * n; item += gridDim.x) {
    const int64_t g = item / n;
    const int u = static_cast<int>(item % n);
    const int32_t* nb = a.nbr + item * n;
    const int du = a.deg[item];
    const int k = du - 1;
    const double* R = a.corr + g * nn;
    const uint8_t* adj = a.adj + g * nn;
    const double* Ru = R + static_cast<int64_t>(u) * n;
    for (int vi = warp; vi < du; vi += warps) {
      const int v = nb[vi];
      const bool lower = u < v;
      const double* Rv = R + static_cast<int64_t>(v) * n;
      const int64_t total = k >= l ? a.binom[static_cast<int64_t>(k) * stride + l] : 0;
      const volatile int64_t* mirror = a.rank + g * nn + static_cast<int64_t>(v) * n + u;  // (g, v, u)
      int64_t found = -1, tests = 0, singular = 0;
      for (int64_t start = 0; start < total; start += 32) {
        if (!lower) {  // the lower side decides the edge once it has a set
          const int64_t other = __shfl_sync(0xffffffffu, lane == 0 ? *mirror : int64_t{-1}, 0);
          if (other >= 0) break;
        }
        const int64_t r = start + lane;
        bool run = false;
        int8_t outcome = kDependent;
        if (r < total) {
          unrank(r, k, l, a.binom, stride, set);
          for (int t = 0; t < l; ++t) set[t] = nb[set[t] + (set[t] >= vi ? 1 : 0)];
          run = lower;
          for (int t = 0; t < l && !run; ++t) run = !adj[static_cast<int64_t>(v) * n + set[t]];
          if (run) {
            PcorrState st;
            st.bind(work, l);
            st.update(R, n, Ru, Rv, set, 0, a.pivot_tol);
            double num = 0, di = 0, dj = 0;
            if (!st.terms(u, v, Ru, Rv, a.pivot_tol, num, di, dj))
              outcome = kSingular;
            else if (is_independent(num, di, dj, a.fz))
              outcome = kIndependent;
          }
        }
        const int64_t first = warp_min(run && outcome == kIndependent ? r : LLONG_MAX);
        const bool counted = run && r <= first;
        tests += warp_sum(counted ? 1 : 0);
        singular += warp_sum(counted && outcome == kSingular ? 1 : 0);
        if (first != LLONG_MAX) {
          found = first;
          break;
        }
      }
      if (lane == 0) {
        const int64_t out = item * n + v;
        a.rank[out] = found;
        a.tests[out] = tests;
        a.singular[out] = singular;
      }
    }
  }
}

template <int L>
void launch(const LevelArgs& a, cudaStream_t stream) {
  const int64_t items = a.num_graphs * a.n;
  const int64_t blocks = L >= 0 ? (items < 2147483647 ? items : 2147483647) : kGenericBlocks;
  skeleton_level_kernel<L><<<static_cast<unsigned>(blocks < 1 ? 1 : blocks), kThreads, 0, stream>>>(a);
}

}  // namespace

int64_t level_scratch_doubles(int level) {
  if (level <= kMaxStaticLevel) return 0;
  return static_cast<int64_t>(kGenericBlocks) * kThreads * (PcorrState::scratch_size(level) + level);
}

void skeleton_level(const LevelArgs& a, void* stream) {
  if (a.num_graphs * a.n == 0) return;
  if (a.level < 1) throw std::invalid_argument("skeleton_level: level must be >= 1 (level 0 is a CI batch)");
  if (a.scratch_doubles < level_scratch_doubles(a.level))
    throw std::invalid_argument("skeleton_level: scratch buffer too small for this level");
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.level) {
    case 1: launch<1>(a, s); break;
    case 2: launch<2>(a, s); break;
    case 3: launch<3>(a, s); break;
    case 4: launch<4>(a, s); break;
    case 5: launch<5>(a, s); break;
    case 6: launch<6>(a, s); break;
    default: launch<-1>(a, s); break;
  }
  check(cudaGetLastError(), "skeleton_level kernel launch");
}

}  // namespace cuda
}  // namespace cleann
