// FCI as causal-learn 0.1.4.8 runs it (causallearn.search.ConstraintBased.FCI.fci), decision for
// decision: its adjacency search, R0, its possible-d-sep stage, R0 again, its rules R1-R10 in its
// order, and the edge properties of get_color_edges. The graph is kept in causal-learn's encoding
// (GeneralGraph.graph: g[i, j] is the mark at i on the edge i-j: -1 tail, 1 arrowhead, 2 circle),
// and the ancestor cache (GeneralGraph.dpath) is updated the way GeneralGraph updates it, so the
// caller can rebuild causal-learn's objects exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "ci_tester.h"

namespace cleann {

struct CausalLearnFciParams {
  int n = 0;
  int max_level = -1;             // depth of the adjacency search; -1: unlimited
  int max_path_length = -1;       // causal-learn's max_path_length (R4); -1: unlimited
  int max_pds_nodes = 28;         // possible-d-sep sets larger than this are refused (2^size subsets)
  int num_threads = 0;
  // Python's hash() of each node's name: causal-learn iterates Python sets of nodes in two
  // places, whose order follows these hashes.
  const int64_t* name_hash = nullptr;   // [n]
  // Rank of each node's name in ascending string order (causal-learn sorts possible-d-sep sets by name).
  const int32_t* name_rank = nullptr;   // [n]
};

struct CausalLearnFciResult {
  std::vector<int8_t> graph;      // [n, n], GeneralGraph.graph
  std::vector<int64_t> dpath;     // [n, n], GeneralGraph.dpath
  // Per pair (i, j), i < j, that get_color_edges reports as directed: its properties, 1 dd or
  // 3 pd, then 2 nl or 4 pl (Edge.Property values); 0 elsewhere. [n, n], only i < j used.
  std::vector<int8_t> property_a, property_b;
  int num_levels = 0;
  std::vector<int64_t> skeleton_tests;  // per level
  int64_t pds_tests = 0, r4_tests = 0;
};

void fci_causallearn(const CITester& tester, const CausalLearnFciParams& p, CausalLearnFciResult& out);

// The order in which CPython (3.7 to 3.13: Objects/setobject.c) iterates a set built by adding
// keys with these hashes one by one, without deletions: keys are indices into `hash`.
std::vector<int> python_set_order(const std::vector<int>& keys, const int64_t* hash);

}  // namespace cleann
