// PDS-trees (Rohekar et al., NeurIPS 2021): the possible-d-sep paths from a root, as a tree of
// node occurrences. Edges are explored breadth-first, each skeleton edge at most once; an edge
// b-c extends the path ... a, b when b is a possible collider there (a *-> b <-* c, or a and c
// adjacent). A node may occur more than once; its distance is its smallest depth.
#pragma once

#include <cstdint>
#include <vector>

#include "pag.h"

namespace cleann {

struct PdsTree {
  int root = 0;
  std::vector<int32_t> node;      // occurrence -> graph node; occurrence 0 is the root
  std::vector<int32_t> parent;    // occurrence -> parent occurrence (-1 for the root)
  std::vector<int32_t> depth;     // occurrence -> depth (root 0)
  std::vector<int32_t> first_child, next_sibling;  // children lists, in insertion order
  std::vector<int32_t> min_depth;  // graph node -> smallest depth, -1 when absent (root: 0)
};

// Scratch reused across the trees of one graph: neighbour lists and explored-edge stamps.
struct PdsScratch {
  std::vector<std::vector<int>> nbrs;
  std::vector<uint32_t> stamp;
  uint32_t generation = 0;
  void prepare(const Marks& g);  // call again whenever the skeleton changes
};

// max_depth < 0: no limit. Without scratch, neighbour lists are built for this call.
PdsTree build_pds_tree(const Marks& g, int root, int max_depth, PdsScratch* scratch = nullptr);

// Conditioning sets of size `size` drawn from `tree`: every member is reachable from the root
// through tree occurrences whose nodes are all members, and every member is allowed (bit set in
// `allowed`, words_per_row(n) words). Appends (sorted members, sum of minimal depths) to `out`
// in lexicographic order of the members.
struct CandidateSet {
  std::vector<int32_t> members;
  int64_t distance;
};
void tree_subsets(const PdsTree& tree, int n, int size, const uint64_t* allowed, std::vector<CandidateSet>& out);

}  // namespace cleann
