// CPU path of the batched CI queries: one query per loop iteration, spread over OpenMP threads.
// Set sizes 0-4 use fixed-size code the compiler unrolls; larger sets use per-thread scratch.
#include <cmath>
#include <vector>

#include "ci.h"
#include "common.h"
#include "pcorr.h"

namespace cleann {
namespace cpu {
namespace {

inline void finish(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, int64_t q, bool ok,
                   double num, double di, double dj) {
  const double r = ok ? num / std::sqrt(di * dj) : NAN;
  if (out.rho) out.rho[q] = r;
  if (out.pvalue) out.pvalue[q] = fisher_z_pvalue(r, p.num_samples, p.cond_size);
  if (out.outcome) out.outcome[q] = !ok ? kSingular : is_independent(num, di, dj, fz) ? kIndependent : kDependent;
}

template <int L>
void run_fixed(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, int nt) {
  const int64_t nn = p.n * p.n;
  (void)nt;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel for schedule(static) num_threads(nt) if (p.num_queries > 4096)
#endif
  for (int64_t q = 0; q < p.num_queries; ++q) {
    const double* R = p.corr + (p.graph ? p.graph[q] : 0) * nn;
    double scratch[L > 0 ? 2 * L * L + 7 * L : 1];
    PcorrState st;
    st.bind(scratch, L);
    const int64_t i = p.i[q], j = p.j[q];
    const double* Ri = R + i * p.n;
    const double* Rj = R + j * p.n;
    st.update(R, p.n, Ri, Rj, p.cond + q * L, 0, p.pivot_tol);
    double num = 0, di = 0, dj = 0;
    const bool ok = st.terms(i, j, Ri, Rj, p.pivot_tol, num, di, dj);
    finish(p, out, fz, q, ok, num, di, dj);
  }
}

void run_dynamic(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, int nt) {
  const int64_t nn = p.n * p.n;
  const int l = p.cond_size;
  (void)nt;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel num_threads(nt) if (p.num_queries > 1024)
#endif
  {
    std::vector<double> scratch(PcorrState::scratch_size(l));
    PcorrState st;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp for schedule(static)
#endif
    for (int64_t q = 0; q < p.num_queries; ++q) {
      const double* R = p.corr + (p.graph ? p.graph[q] : 0) * nn;
      st.bind(scratch.data(), l);
      const int64_t i = p.i[q], j = p.j[q];
      const double* Ri = R + i * p.n;
      const double* Rj = R + j * p.n;
      st.update(R, p.n, Ri, Rj, p.cond + q * l, 0, p.pivot_tol);
      double num = 0, di = 0, dj = 0;
      const bool ok = st.terms(i, j, Ri, Rj, p.pivot_tol, num, di, dj);
      finish(p, out, fz, q, ok, num, di, dj);
    }
  }
}

}  // namespace

void ci_queries(const CIQueryParams& p, const CIQueryOutput& out) {
  const int nt = resolve_threads(p.num_threads);
  const FisherZ fz = out.outcome ? make_fisher_z(p.alpha, p.num_samples, p.cond_size) : FisherZ{};
  switch (p.cond_size) {
    case 0: run_fixed<0>(p, out, fz, nt); break;
    case 1: run_fixed<1>(p, out, fz, nt); break;
    case 2: run_fixed<2>(p, out, fz, nt); break;
    case 3: run_fixed<3>(p, out, fz, nt); break;
    case 4: run_fixed<4>(p, out, fz, nt); break;
    default: run_dynamic(p, out, fz, nt); break;
  }
}

}  // namespace cpu
}  // namespace cleann
