// Constraint-based learners over a stack of graphs: FCI and ICD (PAGs). Each takes any CITester;
// with the Fisher-z tester the skeleton stage runs the specialised incremental path.
#pragma once

#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "ci_tester.h"
#include "common.h"
#include "orient.h"
#include "skeleton.h"

namespace cleann {

struct LearnParams {
  int64_t num_graphs = 1;
  int n = 0;
  int max_level = -1;           // largest conditioning set (skeleton levels, ICD iterations); -1: no cap
  bool all_sepsets = false;     // skeleton stage: keep every separating set of the removal level
  bool pds_stage = true;        // FCI: the possible-d-sep stage
  int max_pds_size = -1;        // FCI: largest possible-d-sep subset tested; -1: no cap
  int64_t pds_budget = -1;      // FCI: most possible-d-sep tests per graph; -1: no cap
  int64_t skeleton_budget = -1; // FCI: most skeleton-stage tests per graph (SkeletonParams::test_budget)
  bool icd_stable = true;       // ICD: candidates from the snapshot at the start of each iteration
  int64_t path_budget = kPathSearchBudget;
  int num_threads = 0;
  // A skeleton search already run elsewhere (the GPU) from the starting graph, "first" sepsets:
  // FCI takes it as its skeleton stage; ICD as its iterations r = 0 and 1 (levels 0 and 1 only).
  const SkeletonResult* given = nullptr;
};

struct LearnResult {
  std::vector<int8_t> marks;             // [B, n, n]
  std::vector<int64_t> tests;            // [levels][B], every CI test of the learner
  std::vector<int64_t> singular;         // [levels][B]
  int num_levels = 0;
  std::vector<OrientStats> stats;        // [B]
  SkeletonResult skeleton;               // FCI: the skeleton stage's removals
  // Separating sets of every removed pair at the end, flattened: (graph, i, j) with i < j and
  // members in set_members[set_offset[e] .. set_offset[e + 1]).
  std::vector<int64_t> sep_graph, sep_i, sep_j, sep_offset;
  std::vector<int32_t> sep_members;
};

// `adjacency` [B, n, n]: the starting graph (symmetric, no self-loops); nodes without edges stay
// out of the graph (latent, or padding).
void fci(const CITester& tester, const LearnParams& p, const uint8_t* adjacency, LearnResult& out);
void icd(const CITester& tester, const LearnParams& p, const uint8_t* adjacency, LearnResult& out);

// Collects the first exception thrown inside an OpenMP region, to rethrow outside it.
class ExceptionSlot {
 public:
  template <typename F>
  void run(F&& f) {
    if (failed_) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      failed_ = true;
    }
  }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mu_;
  std::exception_ptr error_;
  volatile bool failed_ = false;
};

// Runs fn(b) for every graph of a stack, spread over threads; the first exception thrown by any
// graph is rethrown here, after the others finished or were skipped.
template <typename F>
void for_each_graph(int64_t num_graphs, int num_threads, F&& fn) {
  ExceptionSlot failure;
  const int nt = resolve_threads(num_threads);
  (void)nt;
#if defined(CLEANN_WITH_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (num_graphs > 1)
#endif
  for (int64_t b = 0; b < num_graphs; ++b) failure.run([&] { fn(b); });
  failure.rethrow();
}

// Tallies of tests per level for one graph, merged into LearnResult after the parallel stage.
struct LevelCounts {
  std::vector<int64_t> tests, singular;
  void add(int level, int8_t outcome) {
    if (static_cast<int>(tests.size()) <= level) {
      tests.resize(level + 1, 0);
      singular.resize(level + 1, 0);
    }
    ++tests[level];
    if (outcome == kSingular) ++singular[level];
  }
};

void merge_counts(const std::vector<LevelCounts>& per_graph, LearnResult& out);
void store_sepsets(const std::vector<SepsetTable>& tables, LearnResult& out);

}  // namespace cleann
