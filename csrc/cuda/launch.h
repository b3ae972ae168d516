// Launch helpers shared by the CUDA sources: error checks and the grid of the generic paths.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace cleann {
namespace cuda {

// Threads of a launch whose set size is past the compiled-in ones: each owns a slice of the
// caller's scratch buffer (see scratch_doubles), so the grid is fixed and threads stride.
constexpr int kGenericBlocks = 256;
constexpr int kThreads = 128;
constexpr int kMaxStaticLevel = 6;

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

inline int64_t blocks_for(int64_t items, int threads) {
  const int64_t b = (items + threads - 1) / threads;
  return b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b);
}

}  // namespace cuda
}  // namespace cleann
