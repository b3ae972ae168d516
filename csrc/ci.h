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

}  // namespace cleann
