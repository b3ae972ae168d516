#include "skeleton.h"

#include <string>

#include "common.h"

namespace cleann {

void check_skeleton_args(const SkeletonParams& p, const uint8_t* adjacency) {
  if (p.n < 0 || p.num_graphs < 0) throw ArgumentError("negative shape");
  fisher_z_critical(p.alpha);  // validates alpha
  if (!(p.pivot_tol >= 0.0)) throw ArgumentError("pivot_tol must be >= 0, got " + std::to_string(p.pivot_tol));
  const int64_t n = p.n;
  for (int64_t b = 0; b < p.num_graphs; ++b) {
    const uint8_t* A = adjacency + b * n * n;
    for (int64_t i = 0; i < n; ++i) {
      if (A[i * n + i]) throw ArgumentError("initial adjacency has a self-loop at graph " + std::to_string(b) + ", node " + std::to_string(i));
      for (int64_t j = i + 1; j < n; ++j)
        if ((A[i * n + j] != 0) != (A[j * n + i] != 0))
          throw ArgumentError("initial adjacency is not symmetric at graph " + std::to_string(b) + ", (" +
                              std::to_string(i) + ", " + std::to_string(j) + ")");
    }
  }
}

void skeleton(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out) {
  check_skeleton_args(p, adjacency);
  cpu::skeleton(p, adjacency, out);
}

void remove_edges(const SkeletonResult& sk, int64_t n, uint8_t* adjacency, int max_level) {
  const int64_t nn = n * n;
  for (size_t e = 0; e < sk.edge_graph.size(); ++e) {
    if (max_level >= 0 && sk.edge_level[e] > max_level) continue;
    uint8_t* A = adjacency + sk.edge_graph[e] * nn;
    A[sk.edge_i[e] * n + sk.edge_j[e]] = 0;
    A[sk.edge_j[e] * n + sk.edge_i[e]] = 0;
  }
}

}  // namespace cleann
