// Batched CI queries: partial correlations (and optionally Fisher-z p-values and decisions) for
// many (graph, i, j, S) at once over one correlation matrix or a stack of them.
#pragma once

#include <cstdint>

namespace cleann {

struct CIQueryParams {
  const double* corr = nullptr;   // [B, n, n] row-major
  int64_t num_graphs = 1;         // B
  int64_t n = 0;
  int64_t num_queries = 0;        // q
  const int64_t* graph = nullptr; // [q] or null when B == 1
  const int64_t* i = nullptr;     // [q]
  const int64_t* j = nullptr;     // [q]
  const int64_t* cond = nullptr;  // [q, cond_size]
  int cond_size = 0;              // l
  double pivot_tol = 1e-10;
  // Fisher z (used when pvalue or independent is requested)
  double num_samples = 0.0;
  double alpha = 0.01;
  int num_threads = 0;
};

struct CIQueryOutput {
  double* rho = nullptr;        // [q], NaN where the block is singular
  double* pvalue = nullptr;     // [q] or null
  int8_t* outcome = nullptr;    // [q] kDependent / kIndependent / kSingular, or null
};

// Checks every index (throws ArgumentError naming the first bad query) and runs the queries.
void ci_queries(const CIQueryParams& p, const CIQueryOutput& out);

// Fisher-z p-values of given partial correlations (elementwise).
void fisher_z_pvalues(const double* r, int64_t count, double num_samples, const int64_t* cond_size,
                      bool scalar_cond_size, double* out, int num_threads);

namespace cpu {
void ci_queries(const CIQueryParams& p, const CIQueryOutput& out);
}

struct FisherZ;

// Built with CLEANN_CUDA: every pointer in p and out is device memory (indices are not checked
// here; the Python layer checks them on the device), `stream` is a cudaStream_t, `fz` the
// decision constants (make_fisher_z) when out.outcome is set.
namespace cuda {
// Scratch (float64 elements) a launch with this set size needs; 0 for compiled-in sizes.
int64_t ci_scratch_doubles(int cond_size);
void ci_queries(const CIQueryParams& p, const CIQueryOutput& out, const FisherZ& fz, double* scratch,
                int64_t scratch_doubles, void* stream);
// CUDA devices visible (0 without a driver or device).
int device_count();
}  // namespace cuda

}  // namespace cleann
