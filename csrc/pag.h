// Mixed-graph marks in pcalg's convention: m[a * n + b] is the mark at b on the edge a-b.
#pragma once

#include <cstdint>
#include <vector>

namespace cleann {

enum Mark : int8_t { kNone = 0, kCircle = 1, kArrow = 2, kTail = 3 };

struct Marks {
  int n = 0;
  int8_t* m = nullptr;  // [n, n], not owned

  int8_t at(int a, int b) const { return m[a * n + b]; }  // mark at b on a-b
  void set(int a, int b, int8_t v) { m[a * n + b] = v; }
  bool adjacent(int a, int b) const { return m[a * n + b] != kNone; }

  // a --> b
  bool directed(int a, int b) const { return at(a, b) == kArrow && at(b, a) == kTail; }
  // a *-> b
  bool into(int a, int b) const { return at(a, b) == kArrow; }
  // the edge a-b can be on a potentially directed path from a to b: no arrowhead at a, no tail at b
  bool pd(int a, int b) const { return adjacent(a, b) && at(b, a) != kArrow && at(a, b) != kTail; }

  void orient(int a, int b, int8_t at_a, int8_t at_b) {
    set(b, a, at_a);
    set(a, b, at_b);
  }
};

// Neighbour lists of the current marks, ascending.
inline std::vector<std::vector<int>> neighbours(const Marks& g) {
  std::vector<std::vector<int>> nb(g.n);
  for (int a = 0; a < g.n; ++a)
    for (int b = 0; b < g.n; ++b)
      if (g.adjacent(a, b)) nb[a].push_back(b);
  return nb;
}

}  // namespace cleann
