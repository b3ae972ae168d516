// The one file that knows pybind11. Each binding checks shapes, fills a params struct, releases
// the GIL and calls the op; the Python layer in python/cleann/ does the user-facing validation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "ci.h"
#include "common.h"
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
            int uc_priority, double pivot_tol, int num_threads) {
  cleann::PcParams p;
  p.skeleton = skeleton_params(corr, adjacency, num_samples, alpha, max_level, all_sepsets, pivot_tol, num_threads);
  p.uc_priority = uc_priority;
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

py::dict build_info() {
  py::dict d;
  d["openmp"] = cleann::have_openmp();
#if defined(CLEANN_WITH_CUDA)
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["max_threads"] = cleann::resolve_threads(0);
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cleann's compiled core: batched partial-correlation CI tests, the PC-stable skeleton and PC";
  py::register_exception<cleann::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
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
  m.def("pc", &pc, py::arg("corr"), py::arg("adjacency"), py::arg("num_samples"), py::arg("alpha"),
        py::arg("max_level"), py::arg("all_sepsets"), py::arg("uc_priority"), py::arg("pivot_tol"),
        py::arg("num_threads") = 0);
  m.def("build_info", &build_info);
}
