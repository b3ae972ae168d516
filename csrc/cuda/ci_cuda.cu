// Batched Fisher-z CI tests on the GPU: one thread per (graph, i, j, S) query.
//
// The partial correlation is pcorr.h's LDL^T (the code the CPU build runs), in float64. Set sizes
// up to kMaxStaticLevel keep their factorisation in registers/local memory; larger ones use a
// slice of the caller's scratch buffer per thread, on a fixed grid of striding threads.
#include <cmath>

#include "ci.h"
#include "cuda/launch.h"
#include "pcorr.h"

namespace cleann {
namespace cuda {
namespace {

template <int L>
__global__ void ci_kernel(CIQueryParams p, CIQueryOutput out, FisherZ fz, double* scratch) {
  const int l = L >= 0 ? L : p.cond_size;
  double local[L > 0 ? 2 * L * L + 7 * L : 1];
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double* work = L >= 0 ? local : scratch + tid * PcorrState::scratch_size(l);
  const int64_t nn = p.n * p.n;
  for (int64_t q = tid; q < p.num_queries; q += stride) {
    const double* R = p.corr + (p.graph ? p.graph[q] : 0) * nn;
    const int64_t i = p.i[q], j = p.j[q];
    const double* Ri = R + i * p.n;
    const double* Rj = R + j * p.n;
    PcorrState st;
    st.bind(work, l);
    st.update(R, p.n, Ri, Rj, p.cond + q * l, 0, p.pivot_tol);
    double num = 0, di = 0, dj = 0;
    const bool ok = st.terms(i, j, Ri, Rj, p.pivot_tol, num, di, dj);
    const double r = ok ? num / sqrt(di * dj) : NAN;
    if (out.rho) out.rho[q] = r;
    if (out.pvalue) out.pvalue[q] = fisher_z_pvalue(r, p.num_samples, l);
    if (out.outcome) out.outcome[q] = !ok ? kSingular : is_independent(num, di, dj, fz) ? kIndependent : kDependent;
  }
}

template <int L>
void launch(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, double* scratch,
            cudaStream_t stream) {
  const int64_t blocks = L >= 0 ? blocks_for(p.num_queries, kThreads) : kGenericBlocks;
  ci_kernel<L><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, out, fz, scratch);
}

}  // namespace

int64_t ci_scratch_doubles(int cond_size) {
  if (cond_size <= kMaxStaticLevel) return 0;
  return static_cast<int64_t>(kGenericBlocks) * kThreads * PcorrState::scratch_size(cond_size);
}

void ci_queries(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, double* scratch,
                int64_t scratch_doubles, void* stream) {
  if (p.num_queries == 0) return;
  if (scratch_doubles < ci_scratch_doubles(p.cond_size))
    throw std::invalid_argument("ci_queries: scratch buffer too small for this set size");
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.cond_size) {
    case 0: launch<0>(p, out, fz, scratch, s); break;
    case 1: launch<1>(p, out, fz, scratch, s); break;
    case 2: launch<2>(p, out, fz, scratch, s); break;
    case 3: launch<3>(p, out, fz, scratch, s); break;
    case 4: launch<4>(p, out, fz, scratch, s); break;
    case 5: launch<5>(p, out, fz, scratch, s); break;
    case 6: launch<6>(p, out, fz, scratch, s); break;
    default: launch<-1>(p, out, fz, scratch, s); break;
  }
  check(cudaGetLastError(), "ci_queries kernel launch");
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return count;
}

}  // namespace cuda
}  // namespace cleann
