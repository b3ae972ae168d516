// PAG orientation: R0 (unshielded colliders from separating sets) and Zhang's (2008) rules R1-R10,
// plus the path queries they and ICD need (possible ancestors, uncovered potentially directed
// paths, discriminating paths). Everything is iterative: 512 nodes never touch the call stack.
//
// Reference: J. Zhang, "On the completeness of orientation rules for causal discovery in the
// presence of latent confounders and selection bias", Artificial Intelligence 172 (2008).
#pragma once

#include <cstdint>
#include <vector>

#include "pag.h"
#include "sepsets.h"

namespace cleann {

// How often each rule fired, and how many path searches gave up at the budget (a rule that gives
// up does not fire: the result stays sound, with a circle where a mark might have been decided).
struct OrientStats {
  int64_t fired[11] = {0};
  int64_t budget_exhausted = 0;
  int64_t pds_capped = 0;  // FCI: possible-d-sep searches cut short by max_pds_size or the budget
};

// Default cap on the partial paths one search may extend.
constexpr int64_t kPathSearchBudget = 1 << 20;

// Sets every edge to o-o.
void reset_circles(Marks& g);

// R0: a *-* b *-* c with a, c non-adjacent, separated by a set without b: a *-> b <-* c.
// Pairs with no recorded separating set are left alone.
int64_t rule0(Marks& g, const SepsetTable& sep);

// Rule sets as bit masks: bit k stands for Rk.
constexpr unsigned kRules1to4 = 0x1E, kRules5to7 = 0xE0, kRules8to10 = 0x700, kRules1to10 = 0x7FE;

// Applies the rules in `mask`, each in turn (R1 first), in passes until a pass changes nothing.
// Returns whether anything changed.
bool apply_rules(Marks& g, const SepsetTable& sep, unsigned mask, OrientStats& stats,
                 int64_t budget = kPathSearchBudget);

// Bitsets of possible ancestors: bit x of row y (words_per_row(n) words each) is set when a
// potentially directed path runs from x to y (edges with no arrowhead at the near end and no tail
// at the far end). Every node is its own possible ancestor.
inline int words_per_row(int n) { return (n + 63) / 64; }
std::vector<uint64_t> possible_ancestors(const Marks& g);

}  // namespace cleann
