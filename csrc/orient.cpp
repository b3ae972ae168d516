#include "orient.h"

#include <algorithm>

namespace cleann {
namespace {

// Depth-first search over simple uncovered potentially directed paths from `start` (whose
// predecessor on the path is `prev`) to `target`; nodes marked in `blocked` are not entered.
// Returns 1 found, 0 none, -1 budget exhausted.
int uncovered_pd_path_exists(const Marks& g, const std::vector<std::vector<int>>& nb, int prev, int start,
                             int target, std::vector<char>& on_path, int64_t& budget) {
  if (start == target) return 1;
  struct Frame {
    int node, prev, next;
  };
  std::vector<Frame> stack;
  stack.push_back({start, prev, 0});
  on_path[start] = 1;
  int result = 0;
  while (!stack.empty()) {
    Frame& f = stack.back();
    bool pushed = false;
    const std::vector<int>& around = nb[f.node];
    while (f.next < static_cast<int>(around.size())) {
      const int v = around[f.next++];
      if (on_path[v] || !g.pd(f.node, v)) continue;
      if (f.prev >= 0 && g.adjacent(f.prev, v)) continue;  // the triple (prev, node, v) must be unshielded
      if (v == target) {
        result = 1;
        break;
      }
      if (--budget < 0) {
        result = -1;
        break;
      }
      on_path[v] = 1;
      stack.push_back({v, f.node, 0});
      pushed = true;
      break;
    }
    if (result != 0) break;
    if (!pushed) {
      on_path[stack.back().node] = 0;
      stack.pop_back();
    }
  }
  for (const Frame& f : stack) on_path[f.node] = 0;
  return result;
}

// Plain reachability over potentially directed edges from `from`, never entering `avoid`.
bool pd_reachable(const Marks& g, const std::vector<std::vector<int>>& nb, int from, int target, int avoid,
                  std::vector<int>& queue, std::vector<char>& seen) {
  std::fill(seen.begin(), seen.end(), 0);
  queue.clear();
  queue.push_back(from);
  seen[from] = 1;
  seen[avoid] = 1;
  for (size_t h = 0; h < queue.size(); ++h) {
    const int u = queue[h];
    if (u == target) return true;
    for (int v : nb[u])
      if (!seen[v] && g.pd(u, v)) {
        seen[v] = 1;
        queue.push_back(v);
      }
  }
  return false;
}

struct Rules {
  Marks& g;
  const SepsetTable& sep;
  OrientStats& stats;
  int64_t budget;
  std::vector<char> on_path, seen;
  std::vector<int> queue, steps_a, steps_b;

  std::vector<std::vector<int>> nb;  // the skeleton does not change while marks are oriented

  Rules(Marks& g_, const SepsetTable& s, OrientStats& st, int64_t b)
      : g(g_), sep(s), stats(st), budget(b), on_path(g_.n, 0), seen(g_.n, 0), nb(neighbours(g_)) {}

  int n() const { return g.n; }

  // Neighbours of b whose edge has mark `m` at b, ascending.
  void marked_at(int b, int8_t m, std::vector<int>& out) const {
    out.clear();
    for (int v : nb[b])
      if (g.at(v, b) == m) out.push_back(v);
  }

  // The sweeps of R1-R4 visit nodes in ascending order and take their candidate lists at the same
  // moments as the reference implementation, so that where inconsistent separating sets make
  // rules conflict, the last write is the same.

  // R1: a *-> b o-* c, a and c non-adjacent => b --> c.
  bool r1() {
    bool changed = false;
    std::vector<int> cs, as;
    for (int b = 0; b < n(); ++b) {
      marked_at(b, kCircle, cs);
      marked_at(b, kArrow, as);
      for (int a : as)
        for (int c : cs) {
          if (g.adjacent(a, c)) continue;
          g.orient(b, c, kTail, kArrow);
          ++stats.fired[1];
          changed = true;
        }
    }
    return changed;
  }

  // R2: a *-> b --> c or a --> b *-> c, and a *-o c => a *-> c.
  bool r2() {
    bool changed = false;
    std::vector<int> as, bs, cs;
    for (int b = 0; b < n(); ++b) {  // a *-> b --> c
      marked_at(b, kTail, cs);
      for (int c : cs) {
        if (!g.into(b, c)) continue;
        marked_at(b, kArrow, as);
        for (int a : as)
          if (g.at(a, c) == kCircle) {
            g.set(a, c, kArrow);
            ++stats.fired[2];
            changed = true;
          }
      }
    }
    for (int c = 0; c < n(); ++c) {  // a --> b *-> c
      marked_at(c, kArrow, bs);
      for (int b : bs) {
        marked_at(b, kArrow, as);
        for (int a : as) {
          if (g.at(b, a) != kTail) continue;
          if (g.at(a, c) == kCircle) {
            g.set(a, c, kArrow);
            ++stats.fired[2];
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  // R3: a *-> b <-* c, a *-o d o-* c, a and c non-adjacent, d *-o b => d *-> b.
  bool r3() {
    bool changed = false;
    std::vector<int> ds, ac;
    for (int b = 0; b < n(); ++b) {
      marked_at(b, kCircle, ds);
      for (int d : ds) {
        ac.clear();
        for (int v : nb[b])
          if (g.at(v, b) == kArrow && g.adjacent(v, d) && g.at(v, d) == kCircle) ac.push_back(v);
        for (size_t x = 0; x < ac.size(); ++x)
          for (size_t y = x + 1; y < ac.size(); ++y) {
            if (g.adjacent(ac[x], ac[y])) continue;
            g.set(d, b, kArrow);
            ++stats.fired[3];
            changed = true;
          }
      }
    }
    return changed;
  }

  // Start of a discriminating path <d, ..., a, b, c> for b, or -1: breadth-first backwards from a
  // over colliders that are parents of c, one level at a time in ascending node order; the first
  // d not adjacent to c ends it.
  int discriminating_source(int a, int b, int c, std::vector<int>& frontier, std::vector<int>& next) {
    std::fill(seen.begin(), seen.end(), 0);
    seen[a] = seen[b] = seen[c] = 1;
    frontier.assign(1, a);
    while (!frontier.empty()) {
      next.clear();
      for (int t : frontier) {
        for (int d : nb[t]) {
          if (d == a || d == b || d == c || !g.into(d, t)) continue;  // d *-> t
          if (!g.adjacent(d, c)) return d;
          // d continues the path as a collider (t *-> d) and a parent of c
          if (!seen[d] && g.directed(d, c) && g.into(t, d)) {
            seen[d] = 1;
            next.push_back(d);
          }
        }
      }
      std::sort(next.begin(), next.end());
      frontier.swap(next);
    }
    return -1;
  }

  // R4: <d, ..., a, b, c> discriminating for b, b o-* c: b --> c if b is in sepset(d, c), else
  // a <-> b <-> c.
  bool r4() {
    bool changed = false;
    std::vector<int> cs, parents, frontier, next;
    for (int b = 0; b < n(); ++b) {
      marked_at(b, kCircle, cs);
      for (int c : cs) {
        parents.clear();
        for (int a : nb[c])
          if (g.directed(a, c)) parents.push_back(a);
        for (int a : parents) {
          if (!g.into(b, a)) continue;  // the edge a-b has an arrowhead at a
          const int d = discriminating_source(a, b, c, frontier, next);
          if (d < 0 || !sep.has(d, c)) continue;
          if (sep.contains(d, c, b)) {
            g.orient(b, c, kTail, kArrow);
          } else {
            g.orient(a, b, kArrow, kArrow);
            g.orient(b, c, kArrow, kArrow);
          }
          ++stats.fired[4];
          changed = true;
        }
      }
    }
    return changed;
  }

  // R5: a o-o b with an uncovered circle path <a, c, ..., d, b>, a/d and b/c non-adjacent =>
  // a --- b and every edge of the path ---.
  bool r5() {
    bool changed = false;
    std::vector<int> path, next;
    for (int a = 0; a < n(); ++a)
      for (int b = a + 1; b < n(); ++b) {
        if (g.at(a, b) != kCircle || g.at(b, a) != kCircle) continue;
        if (find_circle_path(a, b, path)) {
          g.orient(a, b, kTail, kTail);
          for (size_t k = 0; k + 1 < path.size(); ++k) g.orient(path[k], path[k + 1], kTail, kTail);
          ++stats.fired[5];
          changed = true;
        }
      }
    return changed;
  }

  bool circle_edge(int u, int v) const { return g.at(u, v) == kCircle && g.at(v, u) == kCircle; }

  // Depth-first search for an uncovered circle path a, c, ..., d, b as R5 needs it.
  bool find_circle_path(int a, int b, std::vector<int>& path) {
    struct Frame {
      int node, next;
    };
    int64_t left = budget;
    for (int c : nb[a]) {
      if (c == b || !circle_edge(a, c) || g.adjacent(c, b)) continue;
      std::vector<Frame> stack{{c, 0}};
      std::fill(on_path.begin(), on_path.end(), 0);
      on_path[a] = on_path[c] = 1;
      while (!stack.empty()) {
        Frame& f = stack.back();
        const int prev = stack.size() >= 2 ? stack[stack.size() - 2].node : a;
        bool pushed = false;
        const std::vector<int>& around = nb[f.node];
        while (f.next < static_cast<int>(around.size())) {
          const int v = around[f.next++];
          if (v == prev || !circle_edge(f.node, v) || g.adjacent(prev, v)) continue;
          if (v == b) {
            if (g.adjacent(f.node, a)) continue;  // d must not be adjacent to a
            path.assign(1, a);
            for (const Frame& s : stack) path.push_back(s.node);
            path.push_back(b);
            return true;
          }
          if (on_path[v]) continue;
          if (--left < 0) {
            ++stats.budget_exhausted;
            return false;
          }
          on_path[v] = 1;
          stack.push_back({v, 0});
          pushed = true;
          break;
        }
        if (!pushed) {
          on_path[stack.back().node] = 0;
          stack.pop_back();
        }
      }
    }
    return false;
  }

  // R6: a --- b o-* c => b --* c (tail at b).
  bool r6() {
    bool changed = false;
    for (int b = 0; b < n(); ++b) {
      bool undirected = false;
      for (int a : nb[b]) undirected = undirected || (g.at(a, b) == kTail && g.at(b, a) == kTail);
      if (!undirected) continue;
      for (int c : nb[b])
        if (g.at(c, b) == kCircle) {
          g.set(c, b, kTail);
          ++stats.fired[6];
          changed = true;
        }
    }
    return changed;
  }

  // R7: a --o b o-* c, a and c non-adjacent => b --* c.
  bool r7() {
    bool changed = false;
    for (int b = 0; b < n(); ++b)
      for (int c : nb[b]) {
        if (g.at(c, b) != kCircle) continue;
        for (int a : nb[b]) {
          if (a == c || g.at(b, a) != kTail || g.at(a, b) != kCircle || g.adjacent(a, c)) continue;
          g.set(c, b, kTail);
          ++stats.fired[7];
          changed = true;
          break;
        }
      }
    return changed;
  }

  static bool is_o_arrow(const Marks& g, int a, int c) { return g.at(a, c) == kArrow && g.at(c, a) == kCircle; }

  // R8: a --> b --> c or a --o b --> c, and a o-> c => a --> c.
  bool r8() {
    bool changed = false;
    for (int a = 0; a < n(); ++a)
      for (int c : nb[a]) {
        if (!is_o_arrow(g, a, c)) continue;
        for (int b : nb[a]) {
          if (b == c || g.at(b, a) != kTail || g.at(a, b) == kTail) continue;
          if (!g.directed(b, c)) continue;
          g.set(c, a, kTail);
          ++stats.fired[8];
          changed = true;
          break;
        }
      }
    return changed;
  }

  // Does an uncovered potentially directed path a, m, ..., target start with m (m != target
  // unless the path is the single edge)? `-1` when the budget ran out.
  int path_via(int a, int m, int target) {
    if (!g.pd(a, m)) return 0;
    if (m == target) return 1;
    if (!pd_reachable(g, nb, m, target, a, queue, seen)) return 0;
    std::fill(on_path.begin(), on_path.end(), 0);
    on_path[a] = 1;
    int64_t left = budget;
    const int r = uncovered_pd_path_exists(g, nb, a, m, target, on_path, left);
    if (r < 0) ++stats.budget_exhausted;
    return r;
  }

  // R9: a o-> c, an uncovered p.d. path <a, b, ..., c> with b and c non-adjacent => a --> c.
  // One orientation per sweep (then R10 runs and the pass repeats), in the reference's order.
  bool r9() {
    for (int a = 0; a < n(); ++a)
      for (int c : nb[a]) {
        if (!is_o_arrow(g, a, c)) continue;
        for (int b : nb[a]) {
          if (b == c || g.adjacent(b, c) || !g.pd(a, b)) continue;
          if (path_via(a, b, c) == 1) {
            g.set(c, a, kTail);
            ++stats.fired[9];
            return true;
          }
        }
      }
    return false;
  }

  // R10: a o-> c, b --> c <-- d, uncovered p.d. paths from a to b and from a to d whose first
  // steps m != w are non-adjacent => a --> c. One orientation per sweep, c in the outer loop.
  bool r10() {
    std::vector<int> parents;
    for (int c = 0; c < n(); ++c) {
      parents.clear();
      for (int b : nb[c])
        if (g.directed(b, c)) parents.push_back(b);
      if (parents.size() < 2) continue;
      for (int a : nb[c]) {
        if (!is_o_arrow(g, a, c)) continue;
        bool done = false;
        for (size_t x = 0; x < parents.size() && !done; ++x) {
          if (parents[x] == a) continue;
          first_steps(a, parents[x], steps_a);
          if (steps_a.empty()) continue;
          for (size_t y = x + 1; y < parents.size() && !done; ++y) {
            if (parents[y] == a) continue;
            first_steps(a, parents[y], steps_b);
            for (int m : steps_a) {
              for (int w : steps_b)
                if (m != w && !g.adjacent(m, w)) {
                  done = true;
                  break;
                }
              if (done) break;
            }
          }
        }
        if (done) {
          g.set(c, a, kTail);
          ++stats.fired[10];
          return true;
        }
      }
    }
    return false;
  }

  void first_steps(int a, int target, std::vector<int>& out) {
    out.clear();
    for (int m : nb[a])
      if (g.pd(a, m) && path_via(a, m, target) == 1) out.push_back(m);
  }
};

}  // namespace

void reset_circles(Marks& g) {
  for (int i = 0; i < g.n * g.n; ++i)
    if (g.m[i] != kNone) g.m[i] = kCircle;
}

int64_t rule0(Marks& g, const SepsetTable& sep) {
  // Decide every triple on the unoriented graph first: arrowheads only accumulate, so the order
  // of application cannot matter.
  std::vector<std::pair<int, int>> heads;  // (a, b): arrowhead at b on a-b
  const std::vector<std::vector<int>> nb = neighbours(g);
  for (int b = 0; b < g.n; ++b)
    for (size_t x = 0; x < nb[b].size(); ++x) {
      const int a = nb[b][x];
      for (size_t y = x + 1; y < nb[b].size(); ++y) {
        const int c = nb[b][y];
        if (g.adjacent(a, c)) continue;
        if (!sep.has(a, c) || sep.contains(a, c, b)) continue;
        heads.emplace_back(a, b);
        heads.emplace_back(c, b);
      }
    }
  for (auto& h : heads) g.set(h.first, h.second, kArrow);
  return static_cast<int64_t>(heads.size() / 2);
}

bool apply_rules(Marks& g, const SepsetTable& sep, unsigned mask, OrientStats& stats, int64_t budget) {
  Rules rules(g, sep, stats, budget);
  bool any = false;
  for (;;) {
    bool changed = false;
    if (mask & (1u << 1)) changed |= rules.r1();
    if (mask & (1u << 2)) changed |= rules.r2();
    if (mask & (1u << 3)) changed |= rules.r3();
    if (mask & (1u << 4)) changed |= rules.r4();
    if (mask & (1u << 5)) changed |= rules.r5();
    if (mask & (1u << 6)) changed |= rules.r6();
    if (mask & (1u << 7)) changed |= rules.r7();
    if (mask & (1u << 8)) changed |= rules.r8();
    if (mask & (1u << 9)) changed |= rules.r9();
    if (mask & (1u << 10)) changed |= rules.r10();
    if (!changed) return any;
    any = true;
  }
}

std::vector<uint64_t> possible_ancestors(const Marks& g) {
  const int n = g.n, w = words_per_row(n);
  std::vector<uint64_t> anc(static_cast<size_t>(n) * w, 0);
  const std::vector<std::vector<int>> nb = neighbours(g);
  std::vector<int> queue;
  std::vector<char> seen(n);
  for (int x = 0; x < n; ++x) {
    std::fill(seen.begin(), seen.end(), 0);
    queue.assign(1, x);
    seen[x] = 1;
    for (size_t h = 0; h < queue.size(); ++h) {
      const int u = queue[h];
      anc[static_cast<size_t>(u) * w + x / 64] |= uint64_t{1} << (x % 64);
      for (int v : nb[u])
        if (!seen[v] && g.pd(u, v)) {
          seen[v] = 1;
          queue.push_back(v);
        }
    }
  }
  return anc;
}

}  // namespace cleann
