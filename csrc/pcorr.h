// Partial correlation and the Fisher-z decision, shared by the CPU build and the CUDA kernels.
//
// For tokens i, j and a conditioning set S of size l over a correlation matrix R (symmetric),
//   rho = (R_ij - x' D^-1 y') / sqrt((R_ii - x' D^-1 x') (R_jj - y' D^-1 y'))
// with R_SS = L D L^T (unit lower L, diagonal D) and L x' = R_Si, L y' = R_Sj. This is the same
// number as -P_01 / sqrt(P_00 P_11) for P the inverse of R over {i, j} + S, without an inverse.
// The "pivots" are D (the squared Cholesky pivots, Schur complements of R_SS) and the residual
// variances d_i = R_ii - x' D^-1 x', d_j = R_jj - y' D^-1 y'. When one falls under `tol` the block
// is singular for our purposes: the test says "dependent" and the caller counts it. So is a block
// that is not positive semi-definite, where num^2 > d_i d_j beyond rounding (|rho| > 1): a matrix
// that is no correlation matrix gives such blocks, and their "rho" means nothing.
//
// The decision needs neither a square root nor a division per test: with t the |rho| threshold
// of the Fisher z test, independent iff num^2 < t^2 d_i d_j where num = R_ij - x' D^-1 y'. Within a
// rounding band of the threshold the p-value itself decides, so the two forms never disagree.
//
// Rows of L, D, x', y' depend only on S[0..a], so a caller that walks conditioning sets in
// lexicographic order recomputes only from the first position that changed (PcorrState::update).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define CLEANN_HD __host__ __device__ __forceinline__
#else
#define CLEANN_HD inline
#endif

namespace cleann {

// Outcome of one CI test.
enum : int8_t { kDependent = 0, kIndependent = 1, kSingular = 2 };

// Relative half-width of the band around the threshold inside which the exact p-value decides.
constexpr double kThresholdBand = 1e-10;
// Relative slack of num^2 <= d_i d_j (Cauchy-Schwarz) before a block counts as not PSD.
constexpr double kPsdSlack = 1e-9;

CLEANN_HD double fisher_z_pvalue(double r, double num_samples, int cond_size) {
  const double a = std::fabs(r);
  if (!(a < 1.0)) return 0.0;  // |r| >= 1 or NaN: dependent
  const double stat = std::sqrt(num_samples - cond_size - 3.0) * std::atanh(a);
  return std::erfc(stat * 0.70710678118654752440);
}

// Per-level constants of the Fisher z decision.
struct FisherZ {
  double threshold;   // tanh(z_crit / sqrt(N - l - 3))
  double threshold2;  // threshold^2
  double num_samples;
  double alpha;
  int cond_size;
};

// Independent iff p > alpha, decided on num^2 against threshold^2 * di * dj (di, dj > 0).
CLEANN_HD bool is_independent(double num, double di, double dj, const FisherZ& fz) {
  const double lhs = num * num;
  const double rhs = fz.threshold2 * di * dj;
  if (lhs < rhs * (1.0 - 2.0 * kThresholdBand)) return true;
  if (lhs > rhs * (1.0 + 2.0 * kThresholdBand)) return false;
  return fisher_z_pvalue(num / std::sqrt(di * dj), fz.num_samples, fz.cond_size) > fz.alpha;
}

// Incremental LDL^T state for a fixed pair (i, j) and conditioning sets of size l.
// Storage is caller-provided (see scratch_size): W and L are l*l row-major (W_ab = L_ab D_b),
// the other arrays l each; xx, yy, xy are running sums of x'^2/D, y'^2/D, x'y'/D up to row a.
struct PcorrState {
  double* W;
  double* L;
  double* D;
  double* invD;
  double* x;
  double* y;
  double* xx;
  double* yy;
  double* xy;
  int l;
  int singular_row;  // first row with a pivot under tol; l when none

  CLEANN_HD static int scratch_size(int l) { return 2 * l * l + 7 * l; }

  CLEANN_HD void bind(double* scratch, int size) {
    W = scratch;
    L = W + size * size;
    D = L + size * size;
    invD = D + size;
    x = invD + size;
    y = x + size;
    xx = y + size;
    yy = xx + size;
    xy = yy + size;
    l = size;
    singular_row = size;
  }

  // Recompute rows first..l-1 for the set S. Ri, Rj are rows i and j of R.
  template <typename Index>
  CLEANN_HD void update(const double* R, int64_t n, const double* Ri, const double* Rj, const Index* S,
                        int first, double tol) {
    if (singular_row < first) return;  // the singular prefix is unchanged
    singular_row = l;
    for (int a = first; a < l; ++a) {
      const double* Ra = R + static_cast<int64_t>(S[a]) * n;
      double* Wa = W + a * l;
      double* La = L + a * l;
      double d = Ra[S[a]];
      for (int b = 0; b < a; ++b) {
        const double* Lb = L + b * l;
        double w = Ra[S[b]];
        for (int k = 0; k < b; ++k) w -= Wa[k] * Lb[k];
        Wa[b] = w;
        La[b] = w * invD[b];
        d -= w * La[b];
      }
      if (!(d >= tol)) {  // also catches NaN
        singular_row = a;
        return;
      }
      D[a] = d;
      const double inv = 1.0 / d;
      invD[a] = inv;
      double sx = Ri[S[a]];
      double sy = Rj[S[a]];
      for (int k = 0; k < a; ++k) {
        sx -= La[k] * x[k];
        sy -= La[k] * y[k];
      }
      x[a] = sx;
      y[a] = sy;
      const double px = a ? xx[a - 1] : 0.0, py = a ? yy[a - 1] : 0.0, pxy = a ? xy[a - 1] : 0.0;
      xx[a] = px + sx * sx * inv;
      yy[a] = py + sy * sy * inv;
      xy[a] = pxy + sx * sy * inv;
    }
  }

  // Numerator and residual variances of the current set; false when the block is singular.
  CLEANN_HD bool terms(int64_t i, int64_t j, const double* Ri, const double* Rj, double tol, double& num,
                       double& di, double& dj) const {
    if (singular_row < l) return false;
    di = Ri[i] - (l ? xx[l - 1] : 0.0);
    dj = Rj[j] - (l ? yy[l - 1] : 0.0);
    num = Ri[j] - (l ? xy[l - 1] : 0.0);
    return di >= tol && dj >= tol && !(num * num > di * dj * (1.0 + kPsdSlack));
  }
};

// One-shot partial correlation with a compile-time set size (used for batched queries).
// Returns NaN when the block is singular; writes the decision terms when asked.
template <int L, typename Index>
CLEANN_HD double partial_correlation_fixed(const double* R, int64_t n, int64_t i, int64_t j, const Index* S,
                                           double tol, double* num_out = nullptr, double* di_out = nullptr,
                                           double* dj_out = nullptr) {
  constexpr int size = L > 0 ? 2 * L * L + 7 * L : 1;
  double scratch[size];
  PcorrState st;
  st.bind(scratch, L);
  const double* Ri = R + i * n;
  const double* Rj = R + j * n;
  st.update(R, n, Ri, Rj, S, 0, tol);
  double num, di, dj;
  if (!st.terms(i, j, Ri, Rj, tol, num, di, dj)) return NAN;
  if (num_out) {
    *num_out = num;
    *di_out = di;
    *dj_out = dj;
  }
  return num / std::sqrt(di * dj);
}

}  // namespace cleann
