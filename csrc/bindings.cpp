// The one file that knows pybind11. Each binding checks shapes, fills a params struct, releases
// the GIL and calls the op; the Python layer in python/cleann/ does the user-facing validation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "ci.h"
#include "ci_tester.h"
#include "common.h"
#include "fci_causallearn.h"
#include "learn.h"
#include "orient.h"
#include "pds_tree.h"
#include "pc.h"
#include "skeleton.h"

namespace py = pybind11;

namespace {

using F64 = py::array_t<double, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;
using U8 = py::array_t<uint8_t, py::array::c_style>;

std::string shape_of(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + "]";
}

void expect(bool ok, const std::string& what, const py::array& a) {
  if (!ok) throw cleann::ArgumentError(what + ", got " + shape_of(a));
}

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// Fills the query part of CIQueryParams from the arrays, checking their shapes.
cleann::CIQueryParams query_params(const F64& corr, const py::object& graph, const I64& i, const I64& j,
                                   const I64& cond, I64& graph_arr) {
  expect(corr.ndim() == 3 && corr.shape(1) == corr.shape(2), "corr must have shape [B, n, n]", corr);
  expect(i.ndim() == 1, "i must have shape [q]", i);
  const py::ssize_t q = i.shape(0);
  expect(j.ndim() == 1 && j.shape(0) == q, "j must have shape [" + std::to_string(q) + "]", j);
  expect(cond.ndim() == 2 && cond.shape(0) == q, "S must have shape [" + std::to_string(q) + ", l]", cond);
  cleann::CIQueryParams p;
  p.corr = corr.data();
  p.num_graphs = corr.shape(0);
  p.n = corr.shape(1);
  p.num_queries = q;
  p.i = i.data();
  p.j = j.data();
  p.cond = cond.data();
  p.cond_size = static_cast<int>(cond.shape(1));
  if (!graph.is_none()) {
    graph_arr = graph.cast<I64>();
    expect(graph_arr.ndim() == 1 && graph_arr.shape(0) == q, "graph must have shape [" + std::to_string(q) + "]",
           graph_arr);
    p.graph = graph_arr.data();
  } else if (p.num_graphs != 1) {
    throw cleann::ArgumentError("graph indices are needed for a stack of " + std::to_string(p.num_graphs) +
                                " correlation matrices");
  }
  return p;
}

py::array_t<double> partial_correlation(const F64& corr, const py::object& graph, const I64& i, const I64& j,
                                        const I64& cond, double pivot_tol, int num_threads) {
  I64 graph_arr;
  cleann::CIQueryParams p = query_params(corr, graph, i, j, cond, graph_arr);
  p.pivot_tol = pivot_tol;
  p.num_threads = num_threads;
  py::array_t<double> rho(p.num_queries);
  cleann::CIQueryOutput out;
  out.rho = rho.mutable_data();
  {
    py::gil_scoped_release release;
    cleann::ci_queries(p, out);
  }
  return rho;
}

py::tuple ci_test(const F64& corr, const py::object& graph, const I64& i, const I64& j, const I64& cond,
                  double num_samples, double alpha, double pivot_tol, bool with_pvalue, int num_threads) {
  I64 graph_arr;
  cleann::CIQueryParams p = query_params(corr, graph, i, j, cond, graph_arr);
  p.pivot_tol = pivot_tol;
  p.num_threads = num_threads;
  p.num_samples = num_samples;
  p.alpha = alpha;
  py::array_t<double> rho(p.num_queries), pvalue(with_pvalue ? p.num_queries : 0);
  py::array_t<int8_t> outcome(p.num_queries);
  cleann::CIQueryOutput out{rho.mutable_data(), with_pvalue ? pvalue.mutable_data() : nullptr,
                            outcome.mutable_data()};
  {
    py::gil_scoped_release release;
    cleann::ci_queries(p, out);
  }
  return py::make_tuple(rho, pvalue, outcome);
}

py::array_t<double> fisher_z_pvalue(const F64& r, double num_samples, const I64& cond_size, int num_threads) {
  expect(r.ndim() == 1, "r must be 1-D", r);
  const bool scalar = cond_size.size() == 1;
  expect(cond_size.ndim() == 1 && (scalar || cond_size.shape(0) == r.shape(0)),
         "cond_size must have shape [1] or [" + std::to_string(r.shape(0)) + "]", cond_size);
  py::array_t<double> out(r.shape(0));
  {
    py::gil_scoped_release release;
    cleann::fisher_z_pvalues(r.data(), r.shape(0), num_samples, cond_size.data(), scalar, out.mutable_data(),
                             num_threads);
  }
  return out;
}

cleann::SkeletonParams skeleton_params(const F64& corr, const U8& adjacency, double num_samples, double alpha,
                                       int max_level, bool all_sepsets, double pivot_tol, int num_threads) {
  expect(corr.ndim() == 3 && corr.shape(1) == corr.shape(2), "corr must have shape [B, n, n]", corr);
  expect(adjacency.ndim() == 3 && adjacency.shape(0) == corr.shape(0) && adjacency.shape(1) == corr.shape(1) &&
             adjacency.shape(2) == corr.shape(2),
         "adjacency must have the shape of corr " + shape_of(corr), adjacency);
  cleann::SkeletonParams p;
  p.corr = corr.data();
  p.num_graphs = corr.shape(0);
  p.n = corr.shape(1);
  p.num_samples = num_samples;
  p.alpha = alpha;
  p.pivot_tol = pivot_tol;
  p.max_level = max_level;
  p.all_sepsets = all_sepsets;
  p.num_threads = num_threads;
  return p;
}

// [rows][B] counts as an int64 array of that shape.
py::array_t<int64_t> per_level(const std::vector<int64_t>& v, int rows, int64_t num_graphs) {
  py::array_t<int64_t> a({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(num_graphs)});
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// The skeleton's removed edges, separating sets and per-level counts, as the Python layer reads them.
py::dict skeleton_dict(const cleann::SkeletonResult& res, int64_t num_graphs) {
  py::dict d;
  d["edge_graph"] = to_numpy(res.edge_graph);
  d["edge_i"] = to_numpy(res.edge_i);
  d["edge_j"] = to_numpy(res.edge_j);
  d["edge_level"] = to_numpy(res.edge_level);
  d["set_offset"] = to_numpy(res.set_offset);
  d["set_count"] = to_numpy(res.set_count);
  d["set_members"] = to_numpy(res.set_members);
  d["num_levels"] = res.num_levels;
  d["tests"] = per_level(res.tests, res.num_levels, num_graphs);
  d["singular"] = per_level(res.singular, res.num_levels, num_graphs);
  return d;
}

// A skeleton search's output as the Python layer holds it (the dict skeleton_dict writes).
cleann::SkeletonResult skeleton_from_dict(const py::dict& d, int64_t num_graphs) {
  auto vec = [&](const char* key, auto tag) {
    using T = decltype(tag);
    auto a = d[key].cast<py::array_t<T, py::array::c_style | py::array::forcecast>>();
    return std::vector<T>(a.data(), a.data() + a.size());
  };
  cleann::SkeletonResult r;
  r.edge_graph = vec("edge_graph", int64_t{});
  r.edge_i = vec("edge_i", int64_t{});
  r.edge_j = vec("edge_j", int64_t{});
  r.edge_level = vec("edge_level", int32_t{});
  r.set_offset = vec("set_offset", int64_t{});
  r.set_count = vec("set_count", int64_t{});
  r.set_members = vec("set_members", int32_t{});
  r.num_levels = d["num_levels"].cast<int>();
  r.tests = vec("tests", int64_t{});
  r.singular = vec("singular", int64_t{});
  if (d.contains("capped")) r.capped = vec("capped", int64_t{});
  const size_t e = r.edge_graph.size();
  const size_t cells = static_cast<size_t>(r.num_levels) * num_graphs;
  if (r.edge_i.size() != e || r.edge_j.size() != e || r.edge_level.size() != e || r.set_offset.size() != e ||
      r.set_count.size() != e || r.tests.size() != cells || r.singular.size() != cells ||
      (!r.capped.empty() && static_cast<int64_t>(r.capped.size()) != num_graphs))
    throw cleann::ArgumentError("given skeleton: inconsistent array lengths");
  for (size_t k = 0; k < e; ++k)
    if (r.edge_graph[k] < 0 || r.edge_graph[k] >= num_graphs)
      throw cleann::ArgumentError("given skeleton: graph index out of range");
  return r;
}

py::dict skeleton(const F64& corr, U8& adjacency, double num_samples, double alpha, int max_level,
                  bool all_sepsets, double pivot_tol, int num_threads) {
  const cleann::SkeletonParams p =
      skeleton_params(corr, adjacency, num_samples, alpha, max_level, all_sepsets, pivot_tol, num_threads);
  cleann::SkeletonResult res;
  uint8_t* adj = adjacency.mutable_data();
  {
    py::gil_scoped_release release;
    cleann::skeleton(p, adj, res);
  }
  return skeleton_dict(res, p.num_graphs);
}

py::dict pc(const F64& corr, U8& adjacency, double num_samples, double alpha, int max_level, bool all_sepsets,
            int uc_priority, double pivot_tol, int num_threads, const py::object& given) {
  cleann::PcParams p;
  p.skeleton = skeleton_params(corr, adjacency, num_samples, alpha, max_level, all_sepsets, pivot_tol, num_threads);
  p.uc_priority = uc_priority;
  cleann::SkeletonResult given_sk;
  if (!given.is_none()) {
    given_sk = skeleton_from_dict(given.cast<py::dict>(), p.skeleton.num_graphs);
    p.given = &given_sk;
  }
  py::array_t<int8_t> marks({corr.shape(0), corr.shape(1), corr.shape(2)});
  cleann::PcResult res;
  uint8_t* adj = adjacency.mutable_data();
  int8_t* m = marks.mutable_data();
  {
    py::gil_scoped_release release;
    cleann::pc(p, adj, m, res);
  }
  py::dict d = skeleton_dict(res.skeleton, p.skeleton.num_graphs);
  d["marks"] = marks;
  d["uc_tests"] = per_level(res.uc_tests, res.uc_levels, p.skeleton.num_graphs);
  d["uc_singular"] = per_level(res.uc_singular, res.uc_levels, p.skeleton.num_graphs);
  return d;
}

// Runs FCI or ICD with Fisher z on `corr` [B, n, n], or with d-separation in a DAG when `dag` is
// (total_nodes, parent_offset, parents) and corr is None.
py::dict learn(const std::string& method, const py::object& corr_obj, const py::object& dag, U8& adjacency,
               double num_samples, double alpha, double pivot_tol, int max_level, bool all_sepsets, bool pds_stage,
               int max_pds_size, bool icd_stable, int64_t path_budget, int num_threads, const py::object& given,
               int64_t pds_budget, int64_t skeleton_budget) {
  expect(adjacency.ndim() == 3 && adjacency.shape(1) == adjacency.shape(2), "adjacency must have shape [B, n, n]",
         adjacency);
  cleann::LearnParams p;
  p.num_graphs = adjacency.shape(0);
  p.n = static_cast<int>(adjacency.shape(1));
  p.max_level = max_level;
  p.all_sepsets = all_sepsets;
  p.pds_stage = pds_stage;
  p.max_pds_size = max_pds_size;
  p.pds_budget = pds_budget;
  p.skeleton_budget = skeleton_budget;
  p.icd_stable = icd_stable;
  p.path_budget = path_budget;
  p.num_threads = num_threads;
  std::unique_ptr<cleann::CITester> tester;
  F64 corr;
  if (!corr_obj.is_none()) {
    corr = corr_obj.cast<F64>();
    expect(corr.ndim() == 3 && corr.shape(0) == adjacency.shape(0) && corr.shape(1) == adjacency.shape(1) &&
               corr.shape(2) == adjacency.shape(2),
           "corr must have the shape of adjacency " + shape_of(adjacency), corr);
    tester = std::make_unique<cleann::FisherZTester>(corr.data(), p.num_graphs, p.n, num_samples, alpha, pivot_tol);
  } else {
    if (p.num_graphs != 1) throw cleann::ArgumentError("a d-separation oracle describes one graph, got a stack");
    auto t = dag.cast<py::tuple>();
    const int total = t[0].cast<int>();
    auto off = t[1].cast<I64>();
    auto par = t[2].cast<py::array_t<int32_t, py::array::c_style>>();
    tester = std::make_unique<cleann::DSeparationTester>(
        p.n, total, std::vector<int64_t>(off.data(), off.data() + off.size()),
        std::vector<int32_t>(par.data(), par.data() + par.size()));
  }
  cleann::SkeletonResult given_sk;
  if (!given.is_none()) {
    given_sk = skeleton_from_dict(given.cast<py::dict>(), p.num_graphs);
    p.given = &given_sk;
  }
  cleann::LearnResult res;
  const uint8_t* adj = adjacency.data();
  {
    py::gil_scoped_release release;
    if (method == "fci") {
      cleann::fci(*tester, p, adj, res);
    } else if (method == "icd") {
      cleann::icd(*tester, p, adj, res);
    } else {
      throw cleann::ArgumentError("unknown method " + method);
    }
  }
  py::dict d;
  py::array_t<int8_t> marks({static_cast<py::ssize_t>(p.num_graphs), static_cast<py::ssize_t>(p.n),
                             static_cast<py::ssize_t>(p.n)});
  std::copy(res.marks.begin(), res.marks.end(), marks.mutable_data());
  d["marks"] = marks;
  d["tests"] = per_level(res.tests, res.num_levels, p.num_graphs);
  d["singular"] = per_level(res.singular, res.num_levels, p.num_graphs);
  py::array_t<int64_t> fired({static_cast<py::ssize_t>(p.num_graphs), static_cast<py::ssize_t>(11)});
  py::array_t<int64_t> exhausted(static_cast<py::ssize_t>(p.num_graphs));
  py::array_t<int64_t> capped(static_cast<py::ssize_t>(p.num_graphs));
  for (int64_t b = 0; b < p.num_graphs; ++b) {
    std::copy(res.stats[b].fired, res.stats[b].fired + 11, fired.mutable_data() + b * 11);
    exhausted.mutable_data()[b] = res.stats[b].budget_exhausted;
    capped.mutable_data()[b] = res.stats[b].pds_capped;
  }
  d["rules_fired"] = fired;
  d["budget_exhausted"] = exhausted;
  d["pds_capped"] = capped;
  py::array_t<int64_t> sk_capped(static_cast<py::ssize_t>(p.num_graphs));
  for (int64_t b = 0; b < p.num_graphs; ++b)
    sk_capped.mutable_data()[b] = res.skeleton.capped.empty() ? 0 : res.skeleton.capped[b];
  d["skeleton_capped"] = sk_capped;
  d["sep_graph"] = to_numpy(res.sep_graph);
  d["sep_i"] = to_numpy(res.sep_i);
  d["sep_j"] = to_numpy(res.sep_j);
  d["sep_offset"] = to_numpy(res.sep_offset);
  d["sep_members"] = to_numpy(res.sep_members);
  return d;
}

// causal-learn's FCI (fci_causallearn.h) with Fisher z on `corr` [n, n], or with d-separation in a
// DAG when `dag` is (total_nodes, parent_offset, parents) and corr is None.
py::dict fci_causallearn(const py::object& corr_obj, const py::object& dag, int n, double num_samples, double alpha,
                         double pivot_tol, int max_level, int max_path_length, int max_pds_nodes, const I64& name_hash,
                         const py::array_t<int32_t, py::array::c_style>& name_rank, int num_threads) {
  expect(name_hash.ndim() == 1 && name_hash.shape(0) == n, "name_hash must have shape [" + std::to_string(n) + "]",
         name_hash);
  expect(name_rank.ndim() == 1 && name_rank.shape(0) == n, "name_rank must have shape [" + std::to_string(n) + "]",
         name_rank);
  std::unique_ptr<cleann::CITester> tester;
  F64 corr;
  if (!corr_obj.is_none()) {
    corr = corr_obj.cast<F64>();
    expect(corr.ndim() == 2 && corr.shape(0) == n && corr.shape(1) == n,
           "corr must have shape [" + std::to_string(n) + ", " + std::to_string(n) + "]", corr);
    tester = std::make_unique<cleann::FisherZTester>(corr.data(), 1, n, num_samples, alpha, pivot_tol);
  } else {
    auto t = dag.cast<py::tuple>();
    const int total = t[0].cast<int>();
    auto off = t[1].cast<I64>();
    auto par = t[2].cast<py::array_t<int32_t, py::array::c_style>>();
    tester = std::make_unique<cleann::DSeparationTester>(
        n, total, std::vector<int64_t>(off.data(), off.data() + off.size()),
        std::vector<int32_t>(par.data(), par.data() + par.size()));
  }
  cleann::CausalLearnFciParams p;
  p.n = n;
  p.max_level = max_level;
  p.max_path_length = max_path_length;
  p.max_pds_nodes = max_pds_nodes;
  p.num_threads = num_threads;
  p.name_hash = name_hash.data();
  p.name_rank = name_rank.data();
  cleann::CausalLearnFciResult res;
  {
    py::gil_scoped_release release;
    cleann::fci_causallearn(*tester, p, res);
  }
  const auto sn = static_cast<py::ssize_t>(n);
  py::array_t<int8_t> graph({sn, sn}), prop_a({sn, sn}), prop_b({sn, sn});
  py::array_t<int64_t> dpath({sn, sn});
  std::copy(res.graph.begin(), res.graph.end(), graph.mutable_data());
  std::copy(res.dpath.begin(), res.dpath.end(), dpath.mutable_data());
  std::copy(res.property_a.begin(), res.property_a.end(), prop_a.mutable_data());
  std::copy(res.property_b.begin(), res.property_b.end(), prop_b.mutable_data());
  py::dict d;
  d["graph"] = graph;
  d["dpath"] = dpath;
  d["property_a"] = prop_a;
  d["property_b"] = prop_b;
  d["skeleton_tests"] = to_numpy(res.skeleton_tests);
  d["pds_tests"] = res.pds_tests;
  d["r4_tests"] = res.r4_tests;
  return d;
}

// causal-learn's CausalGraph.sepset for one graph's separating sets (the skeleton arrays of
// skeleton_dict): object [n, n], None where no edge was removed; for a removed pair, at [i, j] and
// at [j, i] a list of its own holding one tuple, the sorted union of the pair's sets. Built here
// because at 200 variables that is 20,000 lists, most of them [()].
using I32 = py::array_t<int32_t, py::array::c_style>;

py::array causallearn_sepset(int n, const I64& edge_i, const I64& edge_j, const I32& edge_level, const I64& set_offset,
                             const I64& set_count, const I32& set_members) {
  const py::ssize_t e = edge_i.size();
  expect(edge_j.size() == e && edge_level.size() == e && set_offset.size() == e && set_count.size() == e,
         "edge_j, edge_level, set_offset and set_count must have edge_i's length " + std::to_string(e), edge_j);
  const auto sn = static_cast<py::ssize_t>(n);
  py::array out(py::dtype("O"), {sn, sn});
  auto* cell = static_cast<PyObject**>(out.mutable_data());
  for (py::ssize_t k = 0; k < sn * sn; ++k) cell[k] = Py_NewRef(Py_None);  // not NumPy's NULLs
  const int64_t* ei = edge_i.data();
  const int64_t* ej = edge_j.data();
  const int32_t* lv = edge_level.data();
  const int64_t* off = set_offset.data();
  const int64_t* cnt = set_count.data();
  const int32_t* mem = set_members.data();
  const auto num_members = static_cast<int64_t>(set_members.size());
  std::vector<int32_t> u;
  for (py::ssize_t k = 0; k < e; ++k) {
    if (ei[k] < 0 || ei[k] >= n || ej[k] < 0 || ej[k] >= n || ei[k] == ej[k])
      throw cleann::ArgumentError("edge " + std::to_string(k) + " is not a pair of distinct nodes of " +
                                  std::to_string(n));
    const int64_t stop = off[k] + cnt[k] * lv[k];
    if (off[k] < 0 || stop < off[k] || stop > num_members)
      throw cleann::ArgumentError("edge " + std::to_string(k) + "'s sets lie outside set_members");
    u.assign(mem + off[k], mem + stop);
    std::sort(u.begin(), u.end());
    u.erase(std::unique(u.begin(), u.end()), u.end());
    py::tuple members(u.size());
    for (size_t m = 0; m < u.size(); ++m) PyTuple_SET_ITEM(members.ptr(), m, PyLong_FromLong(u[m]));
    for (PyObject** at : {cell + ei[k] * n + ej[k], cell + ej[k] * n + ei[k]}) {
      PyObject* holder = PyList_New(1);
      if (holder == nullptr) throw py::error_already_set();
      PyList_SET_ITEM(holder, 0, Py_NewRef(members.ptr()));
      Py_SETREF(*at, holder);
    }
  }
  return out;
}

// GeneralGraph's ancestor cache (dpath) as reconstitute_dpath leaves it for a graph of single
// edges, `graph` in causal-learn's encoding ([a, b] the mark at a): the identity, then for each
// directed edge parent --> child, in reverse row-major order of its pair (i < j), child's row
// takes parent's and parent's column takes child's (adjust_dpath).
py::array_t<int64_t> causallearn_dpath(const py::array_t<int64_t, py::array::c_style>& graph) {
  expect(graph.ndim() == 2 && graph.shape(0) == graph.shape(1), "graph must have shape [n, n]", graph);
  const py::ssize_t n = graph.shape(0);
  const int64_t* g = graph.data();
  py::array_t<int64_t> out({n, n});
  int64_t* d = out.mutable_data();
  std::fill(d, d + n * n, int64_t{0});
  for (py::ssize_t a = 0; a < n; ++a) d[a * n + a] = 1;
  std::vector<std::pair<py::ssize_t, py::ssize_t>> edges;  // (parent, child)
  for (py::ssize_t a = 0; a < n; ++a)
    for (py::ssize_t b = a + 1; b < n; ++b) {
      if (g[b * n + a] == 1 && g[a * n + b] == -1) edges.emplace_back(a, b);       // a --> b
      else if (g[a * n + b] == 1 && g[b * n + a] == -1) edges.emplace_back(b, a);  // b --> a
    }
  for (auto it = edges.rbegin(); it != edges.rend(); ++it) {
    const py::ssize_t parent = it->first, child = it->second;
    d[child * n + parent] = 1;
    for (py::ssize_t k = 0; k < n; ++k) d[child * n + k] |= d[parent * n + k];
    for (py::ssize_t k = 0; k < n; ++k) d[k * n + parent] |= d[k * n + child];
  }
  return out;
}

// The order in which CPython iterates a set of keys 0..k-1 added in that order with these hashes.
py::array_t<int64_t> python_set_order(const I64& hashes) {
  expect(hashes.ndim() == 1, "hashes must have shape [k]", hashes);
  std::vector<int> keys(static_cast<size_t>(hashes.shape(0)));
  for (size_t k = 0; k < keys.size(); ++k) keys[k] = static_cast<int>(k);
  const std::vector<int> order = cleann::python_set_order(keys, hashes.data());
  return to_numpy(std::vector<int64_t>(order.begin(), order.end()));
}

// A SepsetTable from flat arrays: pair e is (i[e], j[e]) with members[offset[e] .. offset[e + 1]).
cleann::SepsetTable sepset_table(int n, const I64& i, const I64& j, const I64& offset,
                                 const py::array_t<int32_t, py::array::c_style>& members) {
  expect(i.ndim() == 1 && j.ndim() == 1 && i.shape(0) == j.shape(0), "sepset i and j must be 1-D of one length", j);
  expect(offset.ndim() == 1 && offset.shape(0) == i.shape(0) + 1, "sepset offsets must have one more entry than pairs",
         offset);
  cleann::SepsetTable t(n);
  for (py::ssize_t e = 0; e < i.shape(0); ++e) {
    const int64_t a = i.data()[e], b = j.data()[e], lo = offset.data()[e], hi = offset.data()[e + 1];
    if (a < 0 || a >= n || b < 0 || b >= n || a == b)
      throw cleann::ArgumentError("sepset pair (" + std::to_string(a) + ", " + std::to_string(b) + ") out of range");
    if (lo < 0 || hi < lo || hi > members.size()) throw cleann::ArgumentError("sepset offsets out of range");
    for (int64_t k = lo; k < hi; ++k)
      if (members.data()[k] < 0 || members.data()[k] >= n)
        throw cleann::ArgumentError("sepset member " + std::to_string(members.data()[k]) + " out of range");
    t.add(static_cast<int>(a), static_cast<int>(b), members.data() + lo, static_cast<int>(hi - lo));
  }
  return t;
}

// Applies R0 (when asked) and the rules of `mask` to a copy of `marks`.
py::tuple orient(const py::array_t<int8_t, py::array::c_style>& marks, const I64& sep_i, const I64& sep_j,
                 const I64& sep_offset, const py::array_t<int32_t, py::array::c_style>& sep_members, bool r0,
                 unsigned mask, int64_t budget) {
  expect(marks.ndim() == 2 && marks.shape(0) == marks.shape(1), "marks must have shape [n, n]", marks);
  const int n = static_cast<int>(marks.shape(0));
  cleann::SepsetTable sep = sepset_table(n, sep_i, sep_j, sep_offset, sep_members);
  py::array_t<int8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n)});
  std::copy(marks.data(), marks.data() + marks.size(), out.mutable_data());
  cleann::OrientStats stats;
  {
    py::gil_scoped_release release;
    cleann::Marks g{n, out.mutable_data()};
    if (r0) stats.fired[0] = cleann::rule0(g, sep);
    cleann::apply_rules(g, sep, mask, stats, budget);
  }
  py::array_t<int64_t> fired(11);
  std::copy(stats.fired, stats.fired + 11, fired.mutable_data());
  return py::make_tuple(out, fired, stats.budget_exhausted);
}

// The PDS-tree of `root` on `marks`: (node, parent, depth) per occurrence and min depth per node.
py::tuple pds_tree(const py::array_t<int8_t, py::array::c_style>& marks, int root, int max_depth) {
  expect(marks.ndim() == 2 && marks.shape(0) == marks.shape(1), "marks must have shape [n, n]", marks);
  const int n = static_cast<int>(marks.shape(0));
  if (root < 0 || root >= n) throw cleann::ArgumentError("root " + std::to_string(root) + " out of range");
  std::vector<int8_t> copy(marks.data(), marks.data() + marks.size());
  cleann::PdsTree t;
  {
    py::gil_scoped_release release;
    t = cleann::build_pds_tree(cleann::Marks{n, copy.data()}, root, max_depth);
  }
  return py::make_tuple(to_numpy(t.node), to_numpy(t.parent), to_numpy(t.depth), to_numpy(t.min_depth));
}

// Possible-ancestor matrix of `marks`: out[x, y] is true when x is a possible ancestor of y.
py::array_t<bool> possible_ancestors(const py::array_t<int8_t, py::array::c_style>& marks) {
  expect(marks.ndim() == 2 && marks.shape(0) == marks.shape(1), "marks must have shape [n, n]", marks);
  const int n = static_cast<int>(marks.shape(0));
  std::vector<int8_t> copy(marks.data(), marks.data() + marks.size());
  const std::vector<uint64_t> anc = cleann::possible_ancestors(cleann::Marks{n, copy.data()});
  const int w = cleann::words_per_row(n);
  py::array_t<bool> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n)});
  for (int x = 0; x < n; ++x)
    for (int y = 0; y < n; ++y) out.mutable_data()[x * n + y] = (anc[static_cast<size_t>(y) * w + x / 64] >> (x % 64)) & 1u;
  return out;
}

#if defined(CLEANN_WITH_CUDA)
// CUDA entry points take device pointers (torch's data_ptr()) and a cudaStream_t as integers, so
// the core never links libtorch. The Python layer allocates every buffer and checks the indices.
template <typename T>
T* dev(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void cuda_ci_test(uintptr_t corr, int64_t num_graphs, int64_t n, uintptr_t graph, uintptr_t i, uintptr_t j,
                  uintptr_t cond, int64_t num_queries, int cond_size, double num_samples, double alpha,
                  double pivot_tol, uintptr_t rho, uintptr_t pvalue, uintptr_t outcome, uintptr_t scratch,
                  int64_t scratch_doubles, uintptr_t stream) {
  cleann::CIQueryParams p;
  p.corr = dev<const double>(corr);
  p.num_graphs = num_graphs;
  p.n = n;
  p.num_queries = num_queries;
  p.graph = dev<const int64_t>(graph);
  p.i = dev<const int64_t>(i);
  p.j = dev<const int64_t>(j);
  p.cond = dev<const int64_t>(cond);
  p.cond_size = cond_size;
  p.pivot_tol = pivot_tol;
  p.num_samples = num_samples;
  p.alpha = alpha;
  cleann::CIQueryOutput out;
  out.rho = dev<double>(rho);
  out.pvalue = dev<double>(pvalue);
  out.outcome = dev<int8_t>(outcome);
  const cleann::FisherZ fz = cleann::make_fisher_z(alpha, num_samples, cond_size);
  py::gil_scoped_release release;
  cleann::cuda::ci_queries(p, out, fz, dev<double>(scratch), scratch_doubles, dev<void>(stream));
}

void cuda_skeleton_level(uintptr_t corr, uintptr_t adj, uintptr_t nbr, uintptr_t deg, uintptr_t binom,
                         int64_t num_graphs, int64_t n, int level, double num_samples, double alpha, double pivot_tol,
                         uintptr_t rank, uintptr_t tests, uintptr_t singular, uintptr_t scratch,
                         int64_t scratch_doubles, uintptr_t stream) {
  cleann::cuda::LevelArgs a;
  a.corr = dev<const double>(corr);
  a.adj = dev<const uint8_t>(adj);
  a.nbr = dev<const int32_t>(nbr);
  a.deg = dev<const int32_t>(deg);
  a.binom = dev<const int64_t>(binom);
  a.rank = dev<int64_t>(rank);
  a.tests = dev<int64_t>(tests);
  a.singular = dev<int64_t>(singular);
  a.scratch = dev<double>(scratch);
  a.scratch_doubles = scratch_doubles;
  a.num_graphs = num_graphs;
  a.n = n;
  a.level = level;
  a.pivot_tol = pivot_tol;
  a.fz = cleann::make_fisher_z(alpha, num_samples, level);
  py::gil_scoped_release release;
  cleann::cuda::skeleton_level(a, dev<void>(stream));
}
#endif

py::dict build_info() {
  py::dict d;
  d["openmp"] = cleann::have_openmp();
#if defined(CLEANN_WITH_CUDA)
  d["cuda"] = true;
  d["cuda_devices"] = cleann::cuda::device_count();
#else
  d["cuda"] = false;
#endif
  d["max_threads"] = cleann::resolve_threads(0);
  return d;
}

// cleann.errors.ArgumentError, held for the life of the process.
PyObject* argument_error = nullptr;

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cleann's compiled core: batched partial-correlation CI tests, the PC-stable skeleton and PC";
  // The core's argument errors arrive as cleann.errors.ArgumentError itself (a ValueError), so one
  // except clause catches them and the Python layer's own checks alike.
  argument_error = py::object(py::module_::import("cleann.errors").attr("ArgumentError")).release().ptr();
  m.attr("ArgumentError") = py::handle(argument_error);
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cleann::ArgumentError& e) {
      PyErr_SetString(argument_error, e.what());
    }
  });
  m.def("partial_correlation", &partial_correlation, py::arg("corr"), py::arg("graph"), py::arg("i"), py::arg("j"),
        py::arg("cond"), py::arg("pivot_tol"), py::arg("num_threads") = 0);
  m.def("ci_test", &ci_test, py::arg("corr"), py::arg("graph"), py::arg("i"), py::arg("j"), py::arg("cond"),
        py::arg("num_samples"), py::arg("alpha"), py::arg("pivot_tol"), py::arg("with_pvalue") = true,
        py::arg("num_threads") = 0);
  m.def("fisher_z_pvalue", &fisher_z_pvalue, py::arg("r"), py::arg("num_samples"), py::arg("cond_size"),
        py::arg("num_threads") = 0);
  m.def("fisher_z_critical", &cleann::fisher_z_critical, py::arg("alpha"));
  m.def("fisher_z_threshold", &cleann::fisher_z_threshold, py::arg("alpha"), py::arg("num_samples"),
        py::arg("cond_size"));
  m.def("skeleton", &skeleton, py::arg("corr"), py::arg("adjacency"), py::arg("num_samples"), py::arg("alpha"),
        py::arg("max_level"), py::arg("all_sepsets"), py::arg("pivot_tol"), py::arg("num_threads") = 0);
  m.def("learn", &learn, py::arg("method"), py::arg("corr"), py::arg("dag"), py::arg("adjacency"),
        py::arg("num_samples"), py::arg("alpha"), py::arg("pivot_tol"), py::arg("max_level"), py::arg("all_sepsets"),
        py::arg("pds_stage"), py::arg("max_pds_size"), py::arg("icd_stable"), py::arg("path_budget"),
        py::arg("num_threads") = 0, py::arg("given") = py::none(), py::arg("pds_budget") = -1,
        py::arg("skeleton_budget") = -1);
  m.def("orient", &orient, py::arg("marks"), py::arg("sep_i"), py::arg("sep_j"), py::arg("sep_offset"),
        py::arg("sep_members"), py::arg("r0"), py::arg("mask"), py::arg("budget"));
  m.def("pds_tree", &pds_tree, py::arg("marks"), py::arg("root"), py::arg("max_depth"));
  m.def("possible_ancestors", &possible_ancestors, py::arg("marks"));
  m.def("pc", &pc, py::arg("corr"), py::arg("adjacency"), py::arg("num_samples"), py::arg("alpha"),
        py::arg("max_level"), py::arg("all_sepsets"), py::arg("uc_priority"), py::arg("pivot_tol"),
        py::arg("num_threads") = 0, py::arg("given") = py::none());
  m.def("fci_causallearn", &fci_causallearn, py::arg("corr"), py::arg("dag"), py::arg("n"), py::arg("num_samples"),
        py::arg("alpha"), py::arg("pivot_tol"), py::arg("max_level"), py::arg("max_path_length"),
        py::arg("max_pds_nodes"), py::arg("name_hash"), py::arg("name_rank"), py::arg("num_threads"));
  m.def("causallearn_sepset", &causallearn_sepset, py::arg("n"), py::arg("edge_i"), py::arg("edge_j"),
        py::arg("edge_level"), py::arg("set_offset"), py::arg("set_count"), py::arg("set_members"));
  m.def("causallearn_dpath", &causallearn_dpath, py::arg("graph"));
  m.def("python_set_order", &python_set_order, py::arg("hashes"));
  m.def("build_info", &build_info);
#if defined(CLEANN_WITH_CUDA)
  m.def("cuda_device_count", &cleann::cuda::device_count);
  m.def("cuda_ci_scratch_doubles", &cleann::cuda::ci_scratch_doubles, py::arg("cond_size"));
  m.def("cuda_level_scratch_doubles", &cleann::cuda::level_scratch_doubles, py::arg("level"));
  m.def("cuda_ci_test", &cuda_ci_test);
  m.def("cuda_skeleton_level", &cuda_skeleton_level);
#endif
}
