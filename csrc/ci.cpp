#include "ci.h"

#include <cmath>
#include <string>

#include "common.h"
#include "pcorr.h"

namespace cleann {

double fisher_z_critical(double alpha) {
  if (!(alpha > 0.0 && alpha < 1.0)) throw ArgumentError("alpha must be in (0, 1), got " + std::to_string(alpha));
  // Newton on f(z) = erfc(z / sqrt 2) - alpha, monotone decreasing and convex for z >= 0.
  double z = 1.0;
  for (int it = 0; it < 200; ++it) {
    const double f = std::erfc(z * 0.70710678118654752440) - alpha;
    const double df = -0.79788456080286535588 * std::exp(-0.5 * z * z);  // -sqrt(2/pi) e^{-z^2/2}
    double step = f / df;
    double next = z - step;
    if (next < 0.0) next = 0.5 * z;
    if (std::fabs(next - z) <= 1e-15 * std::fmax(1.0, z)) return next;
    z = next;
  }
  return z;
}

void check_dof(double num_samples, int cond_size) {
  if (!(num_samples - cond_size - 3.0 > 0.0)) {
    throw ArgumentError("num_samples too small for conditioning sets of size " + std::to_string(cond_size) +
                        ": the Fisher z test needs num_samples - |S| - 3 > 0, got num_samples = " +
                        std::to_string(num_samples));
  }
}

double fisher_z_threshold(double alpha, double num_samples, int cond_size) {
  check_dof(num_samples, cond_size);
  return std::tanh(fisher_z_critical(alpha) / std::sqrt(num_samples - cond_size - 3.0));
}

void ci_queries(const CIQueryParams& p, const CIQueryOutput& out) {
  // Validate every index before touching memory: a bad query is an error, not a wrong answer.
  for (int64_t q = 0; q < p.num_queries; ++q) {
    const int64_t g = p.graph ? p.graph[q] : 0;
    const int64_t i = p.i[q], j = p.j[q];
    auto where = [&]() { return " (query " + std::to_string(q) + ")"; };
    if (g < 0 || g >= p.num_graphs)
      throw ArgumentError("graph index " + std::to_string(g) + " out of range [0, " + std::to_string(p.num_graphs) + ")" + where());
    if (i < 0 || i >= p.n) throw ArgumentError("i = " + std::to_string(i) + " out of range [0, " + std::to_string(p.n) + ")" + where());
    if (j < 0 || j >= p.n) throw ArgumentError("j = " + std::to_string(j) + " out of range [0, " + std::to_string(p.n) + ")" + where());
    if (i == j) throw ArgumentError("i == j == " + std::to_string(i) + where());
    const int64_t* S = p.cond + q * p.cond_size;
    for (int a = 0; a < p.cond_size; ++a) {
      const int64_t s = S[a];
      if (s < 0 || s >= p.n) throw ArgumentError("S contains " + std::to_string(s) + ", out of range [0, " + std::to_string(p.n) + ")" + where());
      if (s == i || s == j) throw ArgumentError("S contains i or j (" + std::to_string(s) + ")" + where());
      for (int b = 0; b < a; ++b)
        if (S[b] == s) throw ArgumentError("S contains " + std::to_string(s) + " twice" + where());
    }
  }
  if (out.pvalue || out.outcome) check_dof(p.num_samples, p.cond_size);
  if (out.outcome) fisher_z_critical(p.alpha);                   // validates alpha
  cpu::ci_queries(p, out);
}

void fisher_z_pvalues(const double* r, int64_t count, double num_samples, const int64_t* cond_size,
                      bool scalar_cond_size, double* out, int num_threads) {
  for (int64_t k = 0; k < (scalar_cond_size ? 1 : count); ++k) check_dof(num_samples, static_cast<int>(cond_size[k]));
  const int nt = resolve_threads(num_threads);
  (void)nt;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel for schedule(static) num_threads(nt) if (count > 65536)
#endif
  for (int64_t k = 0; k < count; ++k) {
    const int l = static_cast<int>(scalar_cond_size ? cond_size[0] : cond_size[k]);
    out[k] = fisher_z_pvalue(r[k], num_samples, l);
  }
}

}  // namespace cleann
