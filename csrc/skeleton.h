// PC-stable skeleton search over one correlation matrix or a stack, level by level.
#pragma once

#include <cstdint>
#include <vector>

#include "pcorr.h"

namespace cleann {

struct SkeletonParams {
  const double* corr = nullptr;  // [B, n, n]
  int64_t num_graphs = 1;
  int64_t n = 0;
  double num_samples = 0.0;
  double alpha = 0.01;
  double pivot_tol = 1e-10;
  int max_level = -1;            // -1: until no edge has `level` other neighbours
  bool all_sepsets = false;      // false: stop each edge at its first independence
  int num_threads = 0;
  // Most CI tests per graph (-1: no cap). A graph whose next level could take its tests past this
  // (each edge counted at its full number of conditioning sets) runs no further levels; the edges
  // that level would have tested are counted in SkeletonResult::capped.
  int64_t test_budget = -1;
};

// Removed edges in the order they were removed (level, then graph, i, j) with their separating
// sets: edge e has set_count[e] sets of size level[e], members in
// set_members[set_offset[e] .. set_offset[e] + set_count[e] * level[e]).
struct SkeletonResult {
  std::vector<int64_t> edge_graph, edge_i, edge_j;
  std::vector<int32_t> edge_level;
  std::vector<int64_t> set_offset, set_count;
  std::vector<int32_t> set_members;
  int num_levels = 0;                 // levels that ran
  std::vector<int64_t> tests;         // [num_levels][B]
  std::vector<int64_t> singular;      // [num_levels][B]
  std::vector<int64_t> capped;        // [B]: edges left untested by test_budget (empty: none)
};

// Removes the edges `sk` records (those of level <= max_level; -1: all) from `adjacency` [B, n, n].
void remove_edges(const SkeletonResult& sk, int64_t n, uint8_t* adjacency, int max_level = -1);

// Throws ArgumentError for a bad alpha or pivot_tol, or a starting graph with a self-loop or an
// asymmetric entry.
void check_skeleton_args(const SkeletonParams& p, const uint8_t* adjacency);

// `adjacency` ([B, n, n], 0/1) is the starting graph on entry (symmetric, zero diagonal) and the
// skeleton on exit.
void skeleton(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out);

class CITester;

// Built with CLEANN_CUDA: one level >= 1 of the search on the GPU (device pointers throughout).
namespace cuda {
struct LevelArgs {
  const double* corr = nullptr;  // [B, n, n]
  const uint8_t* adj = nullptr;  // [B, n, n], the level's snapshot
  const int32_t* nbr = nullptr;  // [B, n, n], ascending neighbours of each node, first deg entries used
  const int32_t* deg = nullptr;  // [B, n]
  const int64_t* binom = nullptr;  // [n + 1, level + 1], C(a, b)
  int64_t* rank = nullptr;       // [B, n, n] out, per ordered pair; must hold -1 on entry
  int64_t* tests = nullptr;      // [B, n, n] out
  int64_t* singular = nullptr;   // [B, n, n] out
  double* scratch = nullptr;     // level_scratch_doubles(level) elements
  int64_t scratch_doubles = 0;
  int64_t num_graphs = 0;
  int64_t n = 0;
  int level = 1;
  double pivot_tol = 1e-10;
  FisherZ fz;
};
int64_t level_scratch_doubles(int level);
void skeleton_level(const LevelArgs& a, void* stream);
}  // namespace cuda

namespace cpu {
void skeleton(const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out);
// The same search with any CI tester (p.corr, num_samples, alpha and pivot_tol are ignored).
void skeleton_with(const CITester& tester, const SkeletonParams& p, uint8_t* adjacency, SkeletonResult& out);
}

}  // namespace cleann
