// PC: the PC-stable skeleton, then unshielded colliders from the separating sets and Meek's rules
// R1-R3 to a fixpoint, over one correlation matrix or a stack.
//
// The orientation follows causal-learn 0.1.4.8 (`uc_sepset` with uc_rule 0, then `meek`) decision
// for decision, so that even conflicting inputs (noisy, dense skeletons where colliders disagree)
// give causal-learn's marks:
//   - colliders are scanned as unshielded triples (x, y, z), x < z, in ascending (y, x, z);
//   - Meek's passes scan triples, triangles and kites in the order causal-learn builds its lists
//     (from the adjacency list "tails first, then arrowheads", fixed after the collider stage);
//   - the cycle guard of R1-R3 reads causal-learn's cached ancestor matrix ("dpath"), which is an
//     incomplete transitive closure rebuilt whenever a directed edge is removed; we keep the same
//     cache, updated by the same operations in the same order.
#pragma once

#include <cstdint>
#include <vector>

#include "pag.h"
#include "sepsets.h"
#include "skeleton.h"

namespace cleann {

// How conflicting unshielded colliders are resolved (causal-learn's uc_priority for uc_sepset).
enum UcPriority : int {
  kUcOverwrite = 0,       // every collider is oriented, later ones overwrite earlier ones
  kUcBidirected = 1,      // a conflict makes the edge x <-> y
  kUcExisting = 2,        // a collider is skipped when it would reverse an oriented edge
  kUcStronger = 3,        // as 2, colliders taken by ascending max p(x, z | S), y in S
  kUcStrongerStar = 4,    // as 2, colliders taken by descending max p(x, z | S), y not in S
};

struct PcParams {
  SkeletonParams skeleton;
  int uc_priority = kUcExisting;
  const SkeletonResult* given = nullptr;  // a skeleton search already run (the GPU) from `adjacency`
};

struct PcResult {
  SkeletonResult skeleton;
  // Extra CI tests of the collider stage (uc_priority 3 and 4 score colliders with them), by
  // conditioning-set size: uc_tests[size * B + b] for size < uc_levels.
  int uc_levels = 0;
  std::vector<int64_t> uc_tests;
  std::vector<int64_t> uc_singular;
};

// CI tests the collider stage may run (uc_priority 3, 4): Fisher z on one correlation matrix.
struct OrientCI {
  const double* corr = nullptr;  // [n, n]
  double num_samples = 0.0;
  double pivot_tol = 1e-10;
};

// Per-graph counts of the orientation stage's CI tests, by conditioning-set size.
struct PcOrientStats {
  std::vector<int64_t> tests;
  std::vector<int64_t> singular;
};

// adjacency: [B, n, n] starting graph (complete for plain PC), the skeleton on exit.
// marks: [B, n, n] int8 output, the CPDAGs in pcalg's convention.
void pc(const PcParams& p, uint8_t* adjacency, int8_t* marks, PcResult& out);

namespace cpu {

// Orients one skeleton in place. On entry every edge has tails at both ends; on exit `g` holds
// the CPDAG. `sepsets` holds a set for every non-adjacent pair; `ci` is read for priorities 3, 4.
void orient_pc(Marks g, const SepsetTable& sepsets, int uc_priority, const OrientCI& ci, PcOrientStats& stats);

void pc(const PcParams& p, uint8_t* adjacency, int8_t* marks, PcResult& out);

}  // namespace cpu
}  // namespace cleann
