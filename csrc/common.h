// Small helpers shared by the CPU sources: thread control and argument errors.
#pragma once

#include <stdexcept>
#include <string>

#include "pcorr.h"

#if defined(CLEANN_WITH_OPENMP)
#include <omp.h>
#endif

namespace cleann {

// Raised for bad arguments; the bindings turn it into a Python ValueError.
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Threads to use: `requested` if positive, else the OpenMP default (1 without OpenMP).
inline int resolve_threads(int requested) {
#if defined(CLEANN_WITH_OPENMP)
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

inline bool have_openmp() {
#if defined(CLEANN_WITH_OPENMP)
  return true;
#else
  return false;
#endif
}

// Throws when the Fisher z test cannot use sets of this size (num_samples - l - 3 <= 0).
void check_dof(double num_samples, int cond_size);

// z such that erfc(z / sqrt 2) = alpha, for 0 < alpha < 1 (two-sided normal critical value).
double fisher_z_critical(double alpha);

// |rho| threshold of the Fisher-z test for conditioning size l: tanh(z_crit / sqrt(N - l - 3)).
double fisher_z_threshold(double alpha, double num_samples, int cond_size);

// The per-level decision constants (throws when num_samples - l - 3 <= 0).
inline FisherZ make_fisher_z(double alpha, double num_samples, int cond_size) {
  const double t = fisher_z_threshold(alpha, num_samples, cond_size);
  return FisherZ{t, t * t, num_samples, alpha, cond_size};
}

}  // namespace cleann
