// FCI in causal-learn's semantics (see fci_causallearn.h). Each function below mirrors one
// function of causal-learn 0.1.4.8 (FCI.py, GeneralGraph.py), in its iteration orders, with its
// snapshots (lists computed once before a loop) and live reads kept where they are, because the
// rules are order-dependent: a different scan order gives a different PAG on noisy data.
//
// Where causal-learn departs from Zhang (2008), this file follows causal-learn:
// - its possible-d-sep search queues the pair (a, c) after (a, b), so every path keeps its first
//   node, and a node joins the set through a test on the parents seen so far;
// - it tests the subsets of possible-d-sep (size >= 2) not inside adj(a) or adj(b), but never the
//   first one of each size (its generator's list is read after it has moved on);
// - R4 runs two fresh CI tests per discriminating path, and only in passes where R1-R3 changed a mark;
// - R8 is tried in one direction per pair of neighbours; R9 and R10 are its own versions;
// - GeneralGraph.add_edge drops an edge whose marks it cannot store (circle at node1, tail at node2).
#include "fci_causallearn.h"

#include <algorithm>
#include <deque>
#include <string>
#include <utility>

#include "common.h"
#include "learn.h"
#include "skeleton.h"

namespace cleann {

std::vector<int> python_set_order(const std::vector<int>& keys, const int64_t* hash) {
  // CPython's open addressing: 9 linear probes, then perturbed jumps; the table grows (to the
  // smallest power of two above 4x the entries) when 5 * fill >= 3 * mask.
  constexpr size_t kLinearProbes = 9, kPerturbShift = 5;
  std::vector<int> table(8, -1);
  size_t mask = 7, fill = 0;
  auto insert_clean = [&](std::vector<int>& t, size_t m, int key) {
    const uint64_t h = static_cast<uint64_t>(hash[key]);
    size_t perturb = h, i = h & m;
    for (;;) {
      if (t[i] < 0) {
        t[i] = key;
        return;
      }
      if (i + kLinearProbes <= m)
        for (size_t j = 1; j <= kLinearProbes; ++j)
          if (t[i + j] < 0) {
            t[i + j] = key;
            return;
          }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & m;
    }
  };
  for (int key : keys) {
    const uint64_t h = static_cast<uint64_t>(hash[key]);
    size_t perturb = h, i = h & mask, slot = 0;
    bool placed = false;
    while (!placed) {
      const size_t probes = (i + kLinearProbes <= mask) ? kLinearProbes : 0;
      for (size_t j = 0; j <= probes; ++j)
        if (table[i + j] < 0) {
          slot = i + j;
          placed = true;
          break;
        }
      if (!placed) {
        perturb >>= kPerturbShift;
        i = (i * 5 + 1 + perturb) & mask;
      }
    }
    table[slot] = key;
    ++fill;
    if (fill * 5 >= mask * 3) {
      const size_t minused = fill > 50000 ? fill * 2 : fill * 4;
      size_t size = 8;
      while (size <= minused) size <<= 1;
      std::vector<int> grown(size, -1);
      for (int k : table)
        if (k >= 0) insert_clean(grown, size - 1, k);
      table.swap(grown);
      mask = size - 1;
    }
  }
  std::vector<int> order;
  order.reserve(keys.size());
  for (int k : table)
    if (k >= 0) order.push_back(k);
  return order;
}

namespace {

constexpr int8_t TAIL = -1, ARROW = 1, CIRCLE = 2;

// ChoiceGenerator(len(v), 2) over a list: fn(v[x], v[y]) for x < y, lexicographically.
template <typename F>
void for_each_pair(const std::vector<int>& v, F&& fn) {
  const int k = static_cast<int>(v.size());
  for (int x = 0; x < k; ++x)
    for (int y = x + 1; y < k; ++y) fn(v[x], v[y]);
}

// causal-learn's sep_sets dict, keyed by ordered pairs: the adjacency search stores both orders,
// the possible-d-sep stage only the order of the edge it removed.
class OrderedSepsets {
 public:
  explicit OrderedSepsets(int n) : n_(n), slot_(static_cast<size_t>(n) * n, -1) {}
  bool has(int a, int b) const { return slot_[static_cast<size_t>(a) * n_ + b] >= 0; }
  bool contains(int a, int b, int v) const {
    const int32_t s = slot_[static_cast<size_t>(a) * n_ + b];
    return s >= 0 && std::binary_search(sets_[s].begin(), sets_[s].end(), v);
  }
  void put(int a, int b, std::vector<int32_t> members) {
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    int32_t& s = slot_[static_cast<size_t>(a) * n_ + b];
    if (s < 0) {
      s = static_cast<int32_t>(sets_.size());
      sets_.push_back(std::move(members));
    } else {
      sets_[s] = std::move(members);
    }
  }

 private:
  int n_;
  std::vector<int32_t> slot_;
  std::vector<std::vector<int32_t>> sets_;
};

// GeneralGraph: marks, the ancestor cache and ascending neighbour lists.
class CLGraph {
 public:
  explicit CLGraph(int n) : n(n), g(static_cast<size_t>(n) * n, 0), dpath(static_cast<size_t>(n) * n, 0), nb(n) {
    reconstitute_dpath();
  }

  int n;
  std::vector<int8_t> g;       // g[i * n + j]: mark at i on i-j
  std::vector<int64_t> dpath;  // as GeneralGraph.dpath
  std::vector<std::vector<int>> nb;
  int64_t version = 0;         // bumped when an edge disappears

  int8_t mark(int at, int other) const { return g[static_cast<size_t>(at) * n + other]; }
  bool adjacent(int a, int b) const { return mark(b, a) != 0; }
  // get_endpoint(a, b): the mark at b on a-b (0 when not adjacent)
  int8_t endpoint(int a, int b) const { return mark(a, b) != 0 ? mark(b, a) : 0; }
  bool is_parent_of(int a, int b) const { return mark(b, a) == ARROW && mark(a, b) == TAIL; }
  bool is_def_collider(int a, int b, int c) const {
    return mark(a, b) != 0 && mark(b, c) != 0 && mark(b, a) == ARROW && mark(b, c) == ARROW;
  }
  // get_nodes_into(v, e): nodes u with the mark e at v on u-v, ascending
  std::vector<int> nodes_into(int v, int8_t e) const {
    std::vector<int> out;
    for (int u = 0; u < n; ++u)
      if (mark(v, u) == e) out.push_back(u);
    return out;
  }
  // get_nodes_out_of(v, e): nodes u with the mark e at u on u-v
  std::vector<int> nodes_out_of(int v, int8_t e) const {
    std::vector<int> out;
    for (int u = 0; u < n; ++u)
      if (mark(u, v) == e) out.push_back(u);
    return out;
  }
  std::vector<int> parents(int v) const {
    std::vector<int> out;
    for (int u = 0; u < n; ++u)
      if (mark(u, v) == TAIL && mark(v, u) == ARROW) out.push_back(u);
    return out;
  }

  void adjust_dpath(int i, int j) {
    dpath[static_cast<size_t>(j) * n + i] = 1;
    for (int k = 0; k < n; ++k) {
      if (dpath[static_cast<size_t>(i) * n + k] == 1) dpath[static_cast<size_t>(j) * n + k] = 1;
      if (dpath[static_cast<size_t>(k) * n + j] == 1) dpath[static_cast<size_t>(k) * n + i] = 1;
    }
  }
  // reconstitute_dpath(get_graph_edges()): the edges are popped from the end of the list
  void reconstitute_dpath() {
    std::fill(dpath.begin(), dpath.end(), 0);
    for (int i = 0; i < n; ++i) adjust_dpath(i, i);
    for (int i = n - 1; i >= 0; --i)
      for (int j = n - 1; j > i; --j) {
        if (mark(j, i) == 0) continue;
        if (is_parent_of(i, j)) {
          adjust_dpath(i, j);
        } else if (is_parent_of(j, i)) {
          adjust_dpath(j, i);
        }
      }
  }

  void drop_neighbours(int a, int b) {
    nb[a].erase(std::find(nb[a].begin(), nb[a].end(), b));
    nb[b].erase(std::find(nb[b].begin(), nb[b].end(), a));
    ++version;
  }

  // remove_edge(get_edge(x, y)) then add_edge(Edge(x, y, mx, my)): the marks at x and y become
  // mx and my, with GeneralGraph's bookkeeping of the ancestor cache and its refusals.
  void set_edge(int x, int y, int8_t mx, int8_t my) {
    const bool directed = is_parent_of(x, y) || is_parent_of(y, x);
    g[static_cast<size_t>(x) * n + y] = 0;
    g[static_cast<size_t>(y) * n + x] = 0;
    if (directed) reconstitute_dpath();
    int u = x, v = y;
    int8_t e1 = mx, e2 = my;
    if (e1 == ARROW && (e2 == TAIL || e2 == CIRCLE)) {  // Edge stores a left-pointing edge flipped
      std::swap(u, v);
      std::swap(e1, e2);
    }
    int8_t at_u = 0, at_v = 0;
    if (e1 == TAIL && (e2 == TAIL || e2 == ARROW || e2 == CIRCLE)) {
      at_u = TAIL;
      at_v = e2;
    } else if (e1 == ARROW && e2 == ARROW) {
      at_u = at_v = ARROW;
    } else if (e1 == CIRCLE && (e2 == ARROW || e2 == CIRCLE)) {
      at_u = CIRCLE;
      at_v = e2;
    }
    if (at_u == 0) {  // add_edge returned False: the edge is gone
      drop_neighbours(x, y);
      return;
    }
    g[static_cast<size_t>(u) * n + v] = at_u;
    g[static_cast<size_t>(v) * n + u] = at_v;
    if (at_u == TAIL && at_v == ARROW) adjust_dpath(u, v);
  }

  void remove_edge(int a, int b) {
    const bool directed = is_parent_of(a, b) || is_parent_of(b, a);
    g[static_cast<size_t>(a) * n + b] = 0;
    g[static_cast<size_t>(b) * n + a] = 0;
    drop_neighbours(a, b);
    if (directed) reconstitute_dpath();
  }

  // get_graph_edges(): (node1, node2) per adjacent pair i < j, flipped when it points left
  std::vector<std::pair<int, int>> graph_edges() const {
    std::vector<std::pair<int, int>> out;
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) {
        if (mark(j, i) == 0) continue;
        const bool left = mark(i, j) == ARROW && (mark(j, i) == TAIL || mark(j, i) == CIRCLE);
        out.emplace_back(left ? j : i, left ? i : j);
      }
    return out;
  }

  // reorientAllWith(graph, CIRCLE)
  void reorient_all_circle() {
    for (const auto& e : graph_edges()) set_edge(e.first, e.second, CIRCLE, CIRCLE);
  }

  // is_arrow_point_allowed(x, y, graph, None)
  bool arrow_allowed(int x, int y) const {
    const int8_t e = endpoint(x, y);
    return e == ARROW || e == CIRCLE;
  }
};

// Breadth-first searches with a reusable visited stamp.
class Searcher {
 public:
  explicit Searcher(int n) : stamp_(n, 0), parent_(n, -1) {}

  // existsSemiDirectedPath(from, to): steps u -> v where the mark at u is a tail or a circle
  bool semi_directed(const CLGraph& G, int from, int to) {
    const int s = next();
    queue_.clear();
    for (int u : G.nb[from])
      if ((G.mark(from, u) == TAIL || G.mark(from, u) == CIRCLE) && stamp_[u] != s) {
        stamp_[u] = s;
        queue_.push_back(u);
      }
    for (size_t h = 0; h < queue_.size(); ++h) {
      const int t = queue_[h];
      if (t == to) return true;
      for (int u : G.nb[t])
        if ((G.mark(t, u) == TAIL || G.mark(t, u) == CIRCLE) && stamp_[u] != s) {
          stamp_[u] = s;
          queue_.push_back(u);
        }
    }
    return false;
  }

  // Every node existsSemiDirectedPath(from, .) reaches (the nodes its search dequeues).
  void semi_directed_reach(const CLGraph& G, int from, std::vector<char>& reach) {
    const int s = next();
    queue_.clear();
    reach.assign(G.n, 0);
    for (int u : G.nb[from])
      if ((G.mark(from, u) == TAIL || G.mark(from, u) == CIRCLE) && stamp_[u] != s) {
        stamp_[u] = s;
        queue_.push_back(u);
      }
    for (size_t h = 0; h < queue_.size(); ++h) {
      const int t = queue_[h];
      reach[t] = 1;
      for (int u : G.nb[t])
        if ((G.mark(t, u) == TAIL || G.mark(t, u) == CIRCLE) && stamp_[u] != s) {
          stamp_[u] = s;
          queue_.push_back(u);
        }
    }
  }

  // is_uncovered_path on the path that ends at `last`, read back through parent_
  bool uncovered(const CLGraph& G, int last) {
    path_.clear();
    for (int v = last; v >= 0; v = parent_[v]) path_.push_back(v);
    for (size_t k = 0; k + 2 < path_.size(); ++k)
      if (G.adjacent(path_[k], path_[k + 2])) return false;
    return true;
  }

  // existsUncoveredPdPath(from, next, to): potentially directed steps (no arrowhead at the
  // current node's side being a tail or circle, the far mark an arrowhead or circle)
  bool uncovered_pd_path(const CLGraph& G, int from, int nxt, int to) {
    const int s = next();
    queue_.clear();
    stamp_[from] = s;
    stamp_[nxt] = s;
    parent_[from] = -1;
    parent_[nxt] = from;
    auto step = [&](int t, int u) {
      const int8_t near = G.mark(t, u), far = G.mark(u, t);
      return (near == TAIL || near == CIRCLE) && (far == ARROW || far == CIRCLE);
    };
    for (int u : G.nb[nxt])
      if (step(nxt, u) && stamp_[u] != s) {
        stamp_[u] = s;
        parent_[u] = nxt;
        queue_.push_back(u);
      }
    for (size_t h = 0; h < queue_.size(); ++h) {
      const int t = queue_[h];
      if (t == to && uncovered(G, t)) return true;
      for (int u : G.nb[t])
        if (step(t, u) && stamp_[u] != s) {
          stamp_[u] = s;
          parent_[u] = t;
          queue_.push_back(u);
        }
    }
    return false;
  }

  // GetUncoveredCirclePath(from, to, exclude {x1, x2}): the path it yields, or empty. It yields at
  // most once (`to` is queued at most once), so running it to the end changes nothing. The start
  // is not marked as seen, so a path may pass through it again: paths are kept whole, as there.
  std::vector<int> uncovered_circle_path(const CLGraph& G, int from, int to, int x1, int x2) {
    const int s = next();
    paths_.clear();
    auto circle = [&](int t, int u) { return G.mark(t, u) == CIRCLE && G.mark(u, t) == CIRCLE; };
    for (int u : G.nb[from]) {
      if (u == x1 || u == x2 || !circle(from, u) || stamp_[u] == s) continue;
      stamp_[u] = s;
      paths_.push_back({from, u});
    }
    for (size_t h = 0; h < paths_.size(); ++h) {
      const int t = paths_[h].back();
      if (t == to) {
        bool ok = true;
        const std::vector<int>& path = paths_[h];
        for (size_t k = 0; k + 2 < path.size() && ok; ++k) ok = !G.adjacent(path[k], path[k + 2]);
        if (ok) return path;
      }
      for (int u : G.nb[t]) {
        if (u == x1 || u == x2 || !circle(t, u) || stamp_[u] == s) continue;
        stamp_[u] = s;
        std::vector<int> longer = paths_[h];
        longer.push_back(u);
        paths_.push_back(std::move(longer));
      }
    }
    return {};
  }

 private:
  int next() {
    if (++current_ == 0) {  // wrapped: clear the stamps
      std::fill(stamp_.begin(), stamp_.end(), 0);
      current_ = 1;
    }
    return current_;
  }

  std::vector<int> stamp_, parent_, queue_, path_;
  std::vector<std::vector<int>> paths_;
  int current_ = 0;
};

struct Tests {
  CIWorker& worker;
  const CITester& tester;
  int64_t count = 0;
  // p > alpha in causal-learn's words: independent; singular blocks count as dependent
  bool independent(int x, int y, const std::vector<int32_t>& S) {
    const int l = static_cast<int>(S.size());
    tester.check_level(l);
    worker.begin(0, std::min(x, y), std::max(x, y), l);
    ++count;
    return worker.test(S.data(), 0) == kIndependent;
  }
};

class CausalLearnFci {
 public:
  CausalLearnFci(const CausalLearnFciParams& p, CLGraph& G, OrderedSepsets& sep, Tests& ci)
      : p_(p), n_(p.n), G_(G), sep_(sep), ci_(ci), search_(p.n), prev_stamp_(static_cast<size_t>(p.n) * p.n, 0),
        pair_stamp_(static_cast<size_t>(p.n) * p.n, 0), reach_(p.n), reach_version_(p.n, -1) {}

  void run() {
    G_.reorient_all_circle();
    rule0();
    remove_by_possible_dsep();
    G_.reorient_all_circle();
    rule0();
    bool change = true;
    int64_t passes = 0;
    while (change) {
      if (++passes > static_cast<int64_t>(n_) * n_ + 16)
        throw std::logic_error("fci_causallearn: the orientation rules did not reach a fixpoint");
      change = rules_r1_r2(false);
      change = rule_r3(change);
      if (change) change = rule_r4b(change);
      change = rule_r5(change);
      change = rule_r6(change);
      change = rule_r7(change);
      change = rule_r8(change);
      change = rule_r9(change);
      change = rule_r10(change);
    }
  }

  // get_color_edges: properties of the directed edges, and the ancestor cache it leaves
  void color_edges(std::vector<int8_t>& prop_a, std::vector<int8_t>& prop_b) {
    prop_a.assign(static_cast<size_t>(n_) * n_, 0);
    prop_b.assign(static_cast<size_t>(n_) * n_, 0);
    int last_tail = -1, last_head = -1;
    for (const auto& e : G_.graph_edges()) {
      const int u = e.first, v = e.second;
      if (!(G_.mark(u, v) == TAIL && G_.mark(v, u) == ARROW)) continue;  // stored flipped: tail first
      const int8_t keep_u = G_.mark(u, v), keep_v = G_.mark(v, u);
      G_.g[static_cast<size_t>(u) * n_ + v] = 0;
      G_.g[static_cast<size_t>(v) * n_ + u] = 0;
      auto& nu = G_.nb[u];
      auto& nv = G_.nb[v];
      nu.erase(std::find(nu.begin(), nu.end(), v));
      nv.erase(std::find(nv.begin(), nv.end(), u));
      const bool path = search_.semi_directed(G_, u, v);
      G_.g[static_cast<size_t>(u) * n_ + v] = keep_u;
      G_.g[static_cast<size_t>(v) * n_ + u] = keep_v;
      nu.insert(std::lower_bound(nu.begin(), nu.end(), v), v);
      nv.insert(std::lower_bound(nv.begin(), nv.end(), u), u);
      const size_t k = static_cast<size_t>(std::min(u, v)) * n_ + std::max(u, v);
      prop_a[k] = path ? 3 : 1;  // pd : dd
      prop_b[k] = visible(u, v) ? 2 : 4;  // nl : pl
      last_tail = u;
      last_head = v;
    }
    if (last_tail >= 0) {  // each directed edge was removed (a full rebuild) and added back
      G_.g[static_cast<size_t>(last_tail) * n_ + last_head] = 0;
      G_.g[static_cast<size_t>(last_head) * n_ + last_tail] = 0;
      G_.reconstitute_dpath();
      G_.g[static_cast<size_t>(last_tail) * n_ + last_head] = TAIL;
      G_.g[static_cast<size_t>(last_head) * n_ + last_tail] = ARROW;
      G_.adjust_dpath(last_tail, last_head);
    }
  }

 private:
  // defVisible for a --> b. Its helper's recursive visit starts from a node already on its path,
  // so it returns at once: what remains is the first loop of visibleEdgeHelper.
  bool visible(int a, int b) const {
    for (int c : G_.nb[a])
      if (c != b && !G_.adjacent(c, b) && G_.mark(a, c) == ARROW) return true;
    for (int c : G_.nodes_into(a, ARROW))
      if (G_.is_parent_of(c, a)) return true;
    return false;
  }

  void rule0() {
    G_.reorient_all_circle();
    for (int b = 0; b < n_; ++b) {
      for_each_pair(std::vector<int>(G_.nb[b]), [&](int a, int c) {
        if (G_.adjacent(a, c) || G_.is_def_collider(a, b, c)) return;
        if (!sep_.has(a, c) || sep_.contains(a, c, b)) return;
        if (!G_.arrow_allowed(a, b) || !G_.arrow_allowed(c, b)) return;
        G_.set_edge(a, b, G_.mark(a, b), ARROW);
        G_.set_edge(c, b, G_.mark(c, b), ARROW);
      });
    }
  }

  // --- possible-d-sep stage ------------------------------------------------------------------

  bool reaches(int from, int to) {
    if (reach_version_[from] != G_.version) {
      search_.semi_directed_reach(G_, from, reach_[from]);
      reach_version_[from] = G_.version;
    }
    return reach_[from][to] != 0;
  }

  // getPossibleDsep(x, y, graph, -1), sorted by name, descending
  std::vector<int> possible_dsep(int x, int y) {
    const int s = ++stamp_;
    std::vector<std::vector<int>> previous(n_);  // previous[v]: the nodes v was reached from
    std::vector<char> has_previous(n_, 0), in_dsep(n_, 0);
    auto add_previous = [&](int v, int from) {
      has_previous[v] = 1;
      int& st = prev_stamp_[static_cast<size_t>(v) * n_ + from];
      if (st != s) {
        st = s;
        previous[v].push_back(from);
      }
    };
    std::deque<std::pair<int, int>> Q;
    std::pair<int, int> e{-1, -1};
    int distance = 0;
    for (int b : python_set_order(G_.nb[x], p_.name_hash)) {
      if (b == y) continue;
      if (e.first < 0) e = {x, b};
      Q.emplace_back(x, b);
      pair_stamp_[static_cast<size_t>(x) * n_ + b] = s;
      add_previous(x, b);
      in_dsep[b] = 1;
    }
    while (!Q.empty()) {
      const std::pair<int, int> t = Q.front();
      Q.pop_front();
      if (e == t) {
        e = {-1, -1};
        if (++distance > 1000) break;
      }
      const int a = t.first, b = t.second;
      // existOnePathWithPossibleParents(previous, b, x, b)
      if (has_previous[b])
        for (int r : previous[b]) {
          if (r == b || r == x) continue;
          if (reaches(r, x) || reaches(r, b)) {
            in_dsep[b] = 1;
            break;
          }
        }
      for (int c : G_.nb[b]) {
        if (c == a || c == x || c == y) continue;
        add_previous(c, b);
        if (G_.is_def_collider(a, b, c) || G_.adjacent(a, c)) {
          int& st = pair_stamp_[static_cast<size_t>(a) * n_ + c];
          if (st == s) continue;
          st = s;
          Q.emplace_back(a, c);
          if (e.first < 0) e = {a, c};
        }
      }
    }
    in_dsep[x] = in_dsep[y] = 0;
    std::vector<int> out;
    for (int v = 0; v < n_; ++v)
      if (in_dsep[v]) out.push_back(v);
    std::sort(out.begin(), out.end(), [&](int u, int v) { return p_.name_rank[u] > p_.name_rank[v]; });
    return out;
  }

  bool inside(const std::vector<int32_t>& S, int v) const {
    for (int32_t s : S)
      if (!G_.adjacent(v, s)) return false;
    return true;
  }

  // One side of removeByPossibleDsep's loop for edge a *-* b: true when it removed the edge.
  bool pds_side(int a, int b, const std::vector<int>& pds) {
    const int m = static_cast<int>(pds.size());
    if (m > p_.max_pds_nodes)
      throw ArgumentError("fci: the possible-d-sep set of edge " + std::to_string(a) + " *-* " + std::to_string(b) +
                          " has " + std::to_string(m) + " nodes, and causal-learn's FCI tests all 2^" +
                          std::to_string(m) + " of its subsets, which does not finish; semantics='zhang' caps "
                          "the sets it tests (max_pds_size)");
    std::vector<int> idx;
    std::vector<int32_t> S;
    for (int l = 2; l <= m; ++l) {
      idx.resize(l);
      S.resize(l);
      for (int k = 0; k < l; ++k) idx[k] = k;
      // causal-learn keeps the generator's list and asks it for the next subset before reading
      // it: the list has moved on, so the first subset of each size (when there are several) is
      // never tested, and the last is tested twice (with the same answer)
      bool first = l < m;
      for (;;) {
        for (int k = 0; k < l; ++k) S[k] = pds[idx[k]];
        if (first) {
          first = false;
        } else if (!inside(S, a) && !inside(S, b) && ci_.independent(a, b, S)) {
          G_.remove_edge(a, b);
          sep_.put(a, b, S);
          return true;
        }
        int k = l - 1;
        while (k >= 0 && idx[k] == m - l + k) --k;
        if (k < 0) break;
        ++idx[k];
        for (int q = k + 1; q < l; ++q) idx[q] = idx[q - 1] + 1;
      }
    }
    return false;
  }

  void remove_by_possible_dsep() {
    const int64_t before = ci_.count;
    for (const auto& e : G_.graph_edges()) {
      const int a = e.first, b = e.second;
      if (pds_side(a, b, possible_dsep(a, b))) continue;
      // graph.contains_edge(edge): the marks do not change in this stage, so: still adjacent
      pds_side(a, b, possible_dsep(b, a));
    }
    pds_tests_ = ci_.count - before;
  }

  // --- R1-R4 -----------------------------------------------------------------------------------

  bool r1(int a, int b, int c, bool change) {
    if (G_.adjacent(a, c)) return change;
    if (G_.endpoint(a, b) == ARROW && G_.endpoint(c, b) == CIRCLE) {
      if (!G_.arrow_allowed(b, c)) return change;
      G_.set_edge(c, b, ARROW, TAIL);
      change = true;
    }
    return change;
  }

  bool r2(int a, int b, int c, bool change) {
    if (G_.adjacent(a, c) && G_.endpoint(a, c) == CIRCLE) {
      if (G_.endpoint(a, b) == ARROW && G_.endpoint(b, c) == ARROW &&
          (G_.endpoint(b, a) == TAIL || G_.endpoint(c, b) == TAIL)) {
        if (!G_.arrow_allowed(a, c)) return change;
        G_.set_edge(a, c, G_.mark(a, c), ARROW);
        change = true;
      }
    }
    return change;
  }

  bool rules_r1_r2(bool change) {
    for (int b = 0; b < n_; ++b) {
      for_each_pair(std::vector<int>(G_.nb[b]), [&](int a, int c) {
        change = r1(a, b, c, change);
        change = r1(c, b, a, change);
        change = r2(a, b, c, change);
        change = r2(c, b, a, change);
      });
    }
    return change;
  }

  bool rule_r3(bool change) {
    for (int b = 0; b < n_; ++b) {
      const std::vector<int> arrows = G_.nodes_into(b, ARROW), circles = G_.nodes_into(b, CIRCLE);
      for (int d : circles)
        for_each_pair(arrows, [&](int a, int c) {
          if (G_.adjacent(a, c)) return;
          if (!G_.adjacent(a, d) || !G_.adjacent(c, d)) return;
          if (!(sep_.has(a, c) && sep_.contains(a, c, d))) return;  // isNoncollider
          if (G_.endpoint(a, d) != CIRCLE || G_.endpoint(c, d) != CIRCLE) return;
          if (!G_.arrow_allowed(d, b)) return;
          G_.set_edge(d, b, G_.mark(d, b), ARROW);
          change = true;
        });
    }
    return change;
  }

  // doDdpOrientation: (oriented, change)
  std::pair<bool, bool> ddp_orientation(int d, int a, int b, int c, const std::vector<int>& previous, bool change) {
    std::vector<int32_t> path;  // getPath(d, previous)
    for (int v = previous[d]; v >= 0; v = previous[v]) path.push_back(v);
    bool ind = ci_.independent(d, c, path);
    std::vector<int32_t> path2;
    for (int32_t v : path)
      if (v != b) path2.push_back(v);
    const bool ind2 = ci_.independent(d, c, path2);
    if (!ind && !ind2) {
      if (!sep_.has(d, c)) return {false, change};
      ind = sep_.contains(d, c, b);
    }
    if (ind) {
      G_.set_edge(c, b, G_.mark(c, b), TAIL);
      return {true, true};
    }
    if (!G_.arrow_allowed(a, b) || !G_.arrow_allowed(c, b)) return {false, change};
    G_.set_edge(a, b, G_.mark(a, b), ARROW);
    G_.set_edge(c, b, G_.mark(c, b), ARROW);
    return {true, true};
  }

  // ddpOrient(a, b, c): search back from a for a discriminating path for b
  bool ddp_orient(int a, int b, int c, bool change) {
    std::deque<int> Q;
    std::vector<char> V(n_, 0);
    std::vector<int> previous(n_, -1);
    const std::vector<int> c_parents = G_.parents(c);
    std::vector<char> is_c_parent(n_, 0);
    for (int v : c_parents) is_c_parent[v] = 1;
    const int limit = p_.max_path_length == -1 ? 1000 : p_.max_path_length;
    Q.push_back(a);
    V[a] = V[b] = 1;
    previous[a] = b;
    bool first = true;
    while (!Q.empty()) {
      const int t = Q.front();
      Q.pop_front();
      if (first) {  // causal-learn counts one step of distance, at the first node only
        first = false;
        if (1 > limit) return change;
      }
      for (int d : G_.nodes_into(t, ARROW)) {
        if (V[d]) continue;
        previous[d] = t;
        if (!G_.is_def_collider(d, t, previous[t])) continue;
        if (!G_.adjacent(d, c) && d != c) {
          const auto res = ddp_orientation(d, a, b, c, previous, change);
          change = res.second;
          if (res.first) return change;
        }
        if (is_c_parent[d]) {
          Q.push_back(d);
          V[d] = 1;
        }
      }
    }
    return change;
  }

  bool rule_r4b(bool change) {
    const int64_t before = ci_.count;
    for (int b = 0; b < n_; ++b) {
      const std::vector<int> poss_a = G_.nodes_out_of(b, ARROW), poss_c = G_.nodes_into(b, CIRCLE);
      for (int a : poss_a)
        for (int c : poss_c) {
          if (!G_.is_parent_of(a, c)) continue;
          if (G_.endpoint(b, c) != ARROW) continue;
          change = ddp_orient(a, b, c, change);
        }
    }
    r4_tests_ += ci_.count - before;
    return change;
  }

  // --- R5-R10 ----------------------------------------------------------------------------------

  bool rule_r5(bool change) {
    for (int b = 0; b < n_; ++b) {
      const std::vector<int> circles = G_.nodes_into(b, CIRCLE);
      for (int a : circles) {
        if (G_.endpoint(b, a) != CIRCLE) continue;
        std::vector<int> a_circle, b_circle;
        for (int v : G_.nb[a])
          if (v != a && v != b && G_.endpoint(v, a) == CIRCLE && G_.endpoint(a, v) == CIRCLE) a_circle.push_back(v);
        for (int v : G_.nb[b])
          if (v != a && v != b && G_.endpoint(v, b) == CIRCLE && G_.endpoint(b, v) == CIRCLE) b_circle.push_back(v);
        std::vector<std::pair<int, int>> pairs;  // the generators, consumed in this order
        for (int c : a_circle) {
          if (G_.adjacent(b, c)) continue;
          for (int d : b_circle)
            if (!G_.adjacent(a, d)) pairs.emplace_back(c, d);
        }
        for (const auto& cd : pairs) {
          const std::vector<int> path = search_.uncovered_circle_path(G_, cd.first, cd.second, a, b);
          if (path.empty()) continue;
          change = true;
          G_.set_edge(a, b, TAIL, TAIL);
          G_.set_edge(a, path.front(), TAIL, TAIL);
          G_.set_edge(b, path.back(), TAIL, TAIL);
          for (size_t k = 0; k + 1 < path.size(); ++k) G_.set_edge(path[k], path[k + 1], TAIL, TAIL);
        }
      }
    }
    return change;
  }

  bool rule_r6(bool change) {
    for (int b = 0; b < n_; ++b) {
      bool exist = false;
      for (int a : G_.nodes_into(b, TAIL))
        if (G_.endpoint(b, a) == TAIL) exist = true;
      if (!exist) continue;
      for (int c : G_.nodes_into(b, CIRCLE)) {
        change = true;
        G_.set_edge(b, c, TAIL, G_.mark(c, b));
      }
    }
    return change;
  }

  bool rule_r7(bool change) {
    for (int b = 0; b < n_; ++b) {
      const std::vector<int> circles = G_.nodes_into(b, CIRCLE);
      std::vector<int> tails_a;
      for (int v : circles)
        if (G_.endpoint(b, v) == TAIL) tails_a.push_back(v);
      for (int c : circles)
        for (int a : tails_a) {
          if (a == c) continue;
          if (!G_.adjacent(a, c)) {
            change = true;
            G_.set_edge(b, c, TAIL, G_.mark(c, b));
          }
        }
    }
    return change;
  }

  bool rule_r8(bool change) {
    for (int b = 0; b < n_; ++b) {
      for_each_pair(std::vector<int>(G_.nb[b]), [&](int a, int c) {
        const bool b_to_c = G_.endpoint(b, c) == ARROW && G_.endpoint(c, b) == TAIL;
        const bool a_oc = G_.adjacent(a, c) && G_.endpoint(a, c) == ARROW && G_.endpoint(c, a) == CIRCLE;
        const bool a_b = G_.endpoint(b, a) == TAIL && (G_.endpoint(a, b) == ARROW || G_.endpoint(a, b) == CIRCLE);
        if (a_b && b_to_c && a_oc) {
          G_.set_edge(a, c, TAIL, ARROW);
          change = true;
        }
      });
    }
    return change;
  }

  // find_possible_children(a, en_nodes): adjacent nodes whose edge has no arrowhead at a, in the
  // iteration order of the Python set causal-learn collects them in
  std::vector<int> possible_children(int a, const std::vector<int>& en_nodes) const {
    std::vector<int> kids;
    for (int v : en_nodes)
      if (v != a && G_.adjacent(a, v) && G_.endpoint(v, a) != ARROW) kids.push_back(v);
    return python_set_order(kids, p_.name_hash);
  }

  bool rule_r9(bool change) {
    for (int c = 0; c < n_; ++c) {
      const std::vector<int> arrows = G_.nodes_into(c, ARROW);
      for (int a : arrows) {
        if (G_.endpoint(c, a) != CIRCLE) continue;
        std::vector<int> en;
        for (int v : G_.nb[a])
          if (v != a && v != c) en.push_back(v);
        // the order of the set does not matter: the first success orients a --> c and stops
        for (int b : possible_children(a, en)) {
          if (G_.adjacent(b, c)) continue;
          if (search_.uncovered_pd_path(G_, a, b, c)) {
            G_.set_edge(a, c, TAIL, ARROW);
            change = true;
            break;
          }
        }
      }
    }
    return change;
  }

  bool rule_r10(bool change) {
    for (int c = 0; c < n_; ++c) {
      const std::vector<int> arrows = G_.nodes_into(c, ARROW);
      const int k = static_cast<int>(arrows.size());
      if (k < 2) continue;
      std::vector<int> anodes;
      for (int a : arrows)
        if (G_.endpoint(c, a) == CIRCLE) anodes.push_back(a);
      for (int a : anodes) {
        std::vector<int> en;
        for (int v : G_.nb[a])
          if (v != c) en.push_back(v);
        const std::vector<int> kids = possible_children(a, en);
        const int m = static_cast<int>(kids.size());
        if (m < 2) continue;
        for (int x = 0; x < k; ++x)
          for (int y = x + 1; y < k; ++y) {
            const int b = arrows[x], d = arrows[y];
            if (G_.endpoint(c, b) != TAIL || G_.endpoint(c, d) != TAIL) continue;
            bool done = false;
            for (int i = 0; i < m && !done; ++i)
              for (int j = i + 1; j < m && !done; ++j) {
                const int one = kids[i], two = kids[j];
                if (!search_.semi_directed(G_, one, b) || !search_.semi_directed(G_, two, d)) continue;
                if (!G_.adjacent(one, two)) {
                  G_.set_edge(a, c, TAIL, ARROW);
                  change = true;
                  done = true;
                }
              }
          }
      }
    }
    return change;
  }

  const CausalLearnFciParams& p_;
  int n_;
  CLGraph& G_;
  OrderedSepsets& sep_;
  Tests& ci_;
  Searcher search_;
  std::vector<int> prev_stamp_, pair_stamp_;
  int stamp_ = 0;
  std::vector<std::vector<char>> reach_;
  std::vector<int64_t> reach_version_;

 public:
  int64_t pds_tests_ = 0, r4_tests_ = 0;
};

}  // namespace

void fci_causallearn(const CITester& tester, const CausalLearnFciParams& p, CausalLearnFciResult& out) {
  const int n = p.n;
  if (n <= 0) throw ArgumentError("fci needs at least one variable");
  if (!p.name_hash || !p.name_rank) throw ArgumentError("fci_causallearn needs the names' hashes and ranks");
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<uint8_t> adj(nn, 1);
  for (int i = 0; i < n; ++i) adj[static_cast<size_t>(i) * n + i] = 0;
  SkeletonParams sp;
  sp.num_graphs = 1;
  sp.n = n;
  sp.max_level = p.max_level;
  sp.all_sepsets = true;  // causal-learn's FAS keeps the union of the removal level's sets
  sp.num_threads = p.num_threads;
  SkeletonResult sk;
  cpu::skeleton_with(tester, sp, adj.data(), sk);
  out.num_levels = sk.num_levels;
  out.skeleton_tests = sk.tests;

  CLGraph G(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (adj[static_cast<size_t>(i) * n + j]) {
        G.g[static_cast<size_t>(i) * n + j] = TAIL;  // FAS's undirected edges
        G.nb[i].push_back(j);
      }
  OrderedSepsets sep(n);
  const SepsetTable unions = SepsetTable::from_skeleton(sk, 0, n);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (unions.has(i, j)) {
        sep.put(i, j, unions.get(i, j));
        sep.put(j, i, unions.get(i, j));
      }
  auto worker = tester.worker();
  Tests ci{*worker, tester};
  CausalLearnFci fci(p, G, sep, ci);
  fci.run();
  fci.color_edges(out.property_a, out.property_b);
  out.graph = G.g;
  out.dpath = G.dpath;
  out.pds_tests = fci.pds_tests_;
  out.r4_tests = fci.r4_tests_;
}

}  // namespace cleann
