"""cleann.causallearn: causal-learn's pc and fci, same objects and graphs: its published results,
live causal-learn on random linear-Gaussian data and on d-separation oracles, what is handed over,
and bad input."""

from __future__ import annotations

import contextlib
import io

import networkx as nx
import numpy as np
import pytest

pytest.importorskip("causallearn")

from conftest import quiet, random_dag  # noqa: E402

import cleann  # noqa: E402
from cleann import causallearn as ccl  # noqa: E402
from cleann.graph import from_causallearn  # noqa: E402

from causallearn.graph.GeneralGraph import GeneralGraph  # noqa: E402
from causallearn.graph.GraphClass import CausalGraph  # noqa: E402
from causallearn.search.ConstraintBased.FCI import fci as cl_fci  # noqa: E402
from causallearn.search.ConstraintBased.PC import pc as cl_pc  # noqa: E402
from causallearn.utils.cit import CIT, d_separation, fisherz  # noqa: E402

PC_CONFIGS = [(rule, priority) for rule in (0, 1, 2) for priority in (-1, 0, 1, 2, 3, 4)
              if rule != 2 or priority not in (0, 1)]  # definite maxP takes priorities 2-4 only


def quiet_prints(fn, *args, **kwargs):
    """A drop-in call with causal-learn's prints and progress bars silenced, its warnings not."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def linear_data(rng: np.random.Generator, rows: int = 1000) -> np.ndarray:
    n = int(rng.integers(8, 21))
    W = random_dag(n, rng, rng.uniform(1.5, 3.0))
    e = rng.normal(size=(rows, n))
    return np.linalg.solve(np.eye(n) - W.T, e.T).T


def differ(ours: np.ndarray, theirs: np.ndarray) -> str:
    where = np.argwhere(ours != theirs)
    return f"{len(where)} marks differ, first at {where[:4].tolist()}"


# ---------------------------------------------------------------------------------------------
# causal-learn's published results


@pytest.mark.parametrize("rule,priority", [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, -1), (2, -1)])
def test_pc_reproduces_published_cpdags(cl_fixtures, rule, priority):
    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)
    cg = ccl.pc(data, 0.05, fisherz, True, rule, priority, show_progress=False)
    published = np.loadtxt(cl_fixtures / f"linear_10_pc_fisherz_0.05_stable_{rule}_{priority}.txt")
    assert isinstance(cg, CausalGraph) and isinstance(cg.G, GeneralGraph)
    assert np.array_equal(cg.G.graph, published), differ(cg.G.graph, published)
    assert [node.get_name() for node in cg.G.get_nodes()] == [f"X{i + 1}" for i in range(20)]
    assert cg.PC_elapsed > 0


def test_fci_reproduces_live_causal_learn_and_its_published_pag(cl_fixtures):
    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)
    G, edges = ccl.fci(data, fisherz, 0.05, show_progress=False)
    G_cl, edges_cl = quiet(cl_fci, data, fisherz, 0.05, show_progress=False)
    assert isinstance(G, GeneralGraph)
    assert np.array_equal(G.graph, G_cl.graph), differ(G.graph, G_cl.graph)
    assert [(str(e), sorted(map(str, e.properties))) for e in edges] == \
        [(str(e), sorted(map(str, e.properties))) for e in edges_cl]
    # The published file predates causal-learn's 2025 R9 change: tails at X8 on X8-X9, X8-X14,
    # X8-X19 there, circles in 0.1.4.8; every other mark is the same.
    published = np.loadtxt(cl_fixtures / "linear_10_fci_fisherz_0.05.txt")
    where = {tuple(v) for v in np.argwhere(G.graph != published).tolist()}
    assert where == {(7, 8), (7, 13), (7, 18)}
    assert all(published[a, b] == -1 and G.graph[a, b] == 2 for a, b in where)


def test_sepsets_hold_causal_learns_separating_sets(cl_fixtures):
    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)
    ours = ccl.pc(data, 0.05, show_progress=False)
    theirs = quiet(cl_pc, data, 0.05, show_progress=False)
    n = data.shape[1]
    removed = 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if theirs.sepset[i, j] is None:
                assert ours.sepset[i, j] is None
                continue
            removed += 1
            assert set().union(*map(set, ours.sepset[i, j])) == set().union(*map(set, theirs.sepset[i, j]))
    assert removed > 100


def test_fisher_z_p_values_are_causal_learns_bit_for_bit(rng):
    x = linear_data(rng)
    n = x.shape[1]
    theirs = CIT(x, fisherz)
    ours = ccl._fisher_z(x, np.corrcoef(x.T))
    for _ in range(300):
        k = int(rng.integers(0, 5))
        v = rng.permutation(n)[:k + 2]
        assert ours(v[0], v[1], tuple(v[2:])) == theirs(v[0], v[1], tuple(v[2:]))


def test_the_correlation_matrix_is_numpys_bit_for_bit(rng):
    """causal-learn's fisherz computes np.corrcoef(data.T); the drop-in's cheaper one must equal
    it exactly, or p-values compared against each other (maxP, priorities 3, 4) could differ."""
    layouts = ("C", "F", "int", "strided", "offset")
    for case in range(150):
        rows = int(rng.choice([4, 5, 7, 127, 1000, int(rng.integers(4, 20_001))]))
        cols = int(rng.choice([1, 2, 3, 17, 64, int(rng.integers(1, 251))]))
        rows = min(rows, max(4, 600_000 // cols))  # the test stays fast
        x = rng.normal(size=(rows, cols)) @ rng.normal(size=(cols, cols))
        layout = layouts[case % len(layouts)]
        if layout == "F":
            x = np.asfortranarray(x)
        elif layout == "int":
            x = np.rint(x * 50).astype(np.int64)
            x[0] += 1  # no constant columns
        elif layout == "strided":
            x = np.repeat(x, 2, axis=0)[::2]
        elif layout == "offset":
            x = x * rng.uniform(1e-3, 1e3) + rng.choice([1e4, -1e8, 3e12])
        want = np.atleast_2d(np.corrcoef(x.T))
        got = ccl._correlation(np.asarray(x, dtype=np.float64), "data")
        assert got.dtype == np.float64 and np.array_equal(got, want), \
            f"case {case} ({layout}, {rows} x {cols}): max |diff| {np.max(np.abs(got - want)):.3g}"


def assert_same(ours, theirs, path: str = "obj") -> None:
    """ours and theirs alike attribute by attribute: the same types, the same vars() keys in the
    same order, NumPy arrays of the same dtype and values, the same lists, dicts and scalars."""
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"
    if isinstance(ours, np.ndarray):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), \
            f"{path}: {ours.dtype} {ours.shape} vs {theirs.dtype} {theirs.shape}"
        if ours.dtype == object:
            for k, (a, b) in enumerate(zip(ours.ravel().tolist(), theirs.ravel().tolist())):
                assert_same(a, b, f"{path}.flat[{k}]")
        else:
            assert np.array_equal(ours, theirs), f"{path}: {differ(ours, theirs)}"
    elif isinstance(ours, dict):
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)[:8]} vs {list(theirs)[:8]}"
        for key in ours:
            assert_same(ours[key], theirs[key], f"{path}[{key!r}]")
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items vs {len(theirs)}"
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{k}]")
    elif hasattr(ours, "__dict__"):
        assert_same(vars(ours), vars(theirs), f"{path}.")
    else:
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"


def test_result_objects_are_causal_learns_attribute_by_attribute(rng):
    """The drop-in builds GeneralGraph and CausalGraph without their constructors' loops; every
    attribute must still be what the constructors and then the same edits leave (a causal-learn
    release that adds or changes one fails here)."""
    from causallearn.graph.GraphNode import GraphNode

    for case in range(6):
        x = linear_data(rng, rows=500)
        n = x.shape[1]
        names = [f"v{k}" for k in range(n)] if case % 2 else [f"X{k + 1}" for k in range(n)]
        cg = ccl.pc(x, 0.05, node_names=names, show_progress=False)
        graph, sepset = cg.G.graph.copy(), cg.sepset
        assert np.any((graph == 1) & (graph.T == -1)), "no directed edge: the ancestor cache goes untested"

        G = GeneralGraph([GraphNode(name) for name in names])
        G.graph[:] = graph
        G.reconstitute_dpath(G.get_graph_edges())
        assert_same(ccl._general_graph(names, graph.copy(), ccl._dpath(graph)), G, "G")

        want = CausalGraph(n, names)
        for i, j in zip(*np.nonzero(np.triu(graph == 0, 1))):
            want.G.remove_edge(want.G.get_edge(want.G.nodes[i], want.G.nodes[j]))
        want.G.graph[:] = graph
        want.G.reconstitute_dpath(want.G.get_graph_edges())
        for i, j in zip(*np.nonzero(np.not_equal(sepset, None))):
            want.sepset[i, j] = [sepset[i, j][0]]
        want.set_ind_test(cg.test)
        want.PC_elapsed = cg.PC_elapsed
        assert_same(cg, want, "cg")
        assert all(sepset[i, j] is not sepset[j, i] for i, j in zip(*np.nonzero(np.not_equal(sepset, None))))

        theirs = quiet(cl_pc, x, 0.05, node_names=names, show_progress=False)
        assert set(vars(cg)) == set(vars(theirs))
        assert set(vars(cg.test)) | {"data_hash"} == set(vars(theirs.test))
        for key in ("method", "sample_size", "num_features", "cache_path", "data_hash"):
            assert_same(getattr(cg.test, key), getattr(theirs.test, key), f"test.{key}")
        assert cg.test.data is x
        assert np.array_equal(cg.test.correlation_matrix, theirs.test.correlation_matrix)


# ---------------------------------------------------------------------------------------------
# Live causal-learn on random linear-Gaussian data: 128 PC data sets, 8 per configuration, and
# 60 FCI data sets; 8-20 variables, 1,000 rows.


@pytest.mark.parametrize("rule,priority", PC_CONFIGS, ids=[f"uc{r}_{p}" for r, p in PC_CONFIGS])
def test_pc_matches_causal_learn_on_random_data(rule, priority):
    rng = np.random.default_rng(1000 + 10 * rule + priority)
    for case in range(8):
        x = linear_data(rng)
        ours = ccl.pc(x, 0.05, fisherz, True, rule, priority, show_progress=False)
        theirs = quiet(cl_pc, x, 0.05, fisherz, True, rule, priority, show_progress=False)
        assert np.array_equal(ours.G.graph, theirs.G.graph), \
            f"case {case} ({x.shape[1]} variables): {differ(ours.G.graph, theirs.G.graph)}"


def test_pc_cases_really_orient():
    """The random data sets are not trivially sparse: they hold colliders and undirected edges."""
    rng = np.random.default_rng(1002)
    directed = undirected = 0
    for _ in range(6):
        G = ccl.pc(linear_data(rng), 0.05, show_progress=False).G.graph
        directed += int(np.sum((G == -1) & (G.T == 1)))
        undirected += int(np.sum(np.triu((G == -1) & (G.T == -1))))
    assert directed >= 10 and undirected >= 3


@pytest.mark.parametrize("seed", range(6))
def test_fci_matches_causal_learn_on_random_data(seed):
    rng = np.random.default_rng(2000 + seed)
    for case in range(10):
        x = linear_data(rng)
        # hide two variables: latent confounders make <-> and o-> edges
        x = x[:, 2:]
        G, edges = ccl.fci(x, fisherz, 0.05, show_progress=False)
        G_cl, edges_cl = quiet(cl_fci, x, fisherz, 0.05, show_progress=False)
        assert np.array_equal(G.graph, G_cl.graph), f"case {case} ({x.shape[1]} variables): " \
            f"{differ(G.graph, G_cl.graph)}"
        assert [str(e) for e in edges] == [str(e) for e in edges_cl]


# ---------------------------------------------------------------------------------------------
# d-separation oracles


def oracle_dag(rng: np.random.Generator, n: int, degree: float) -> nx.DiGraph:
    W = random_dag(n, rng, degree)
    dag = nx.DiGraph()
    dag.add_nodes_from(range(n))
    dag.add_edges_from((int(a), int(b)) for a, b in np.argwhere(W != 0))
    return dag


def test_d_separation_pc_and_fci_match_causal_learn(rng):
    for case in range(12):
        n = int(rng.integers(6, 10))
        dag = oracle_dag(rng, n, 2.5)
        n_obs = n - 2 if case % 2 else n
        placeholder = np.empty((0, n_obs))
        for rule, priority in ((0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3)):
            ours = ccl.pc(placeholder, 0.05, d_separation, True, rule, priority, true_dag=dag, show_progress=False)
            theirs = quiet(cl_pc, placeholder, 0.05, d_separation, True, rule, priority, true_dag=dag,
                           show_progress=False)
            assert np.array_equal(ours.G.graph, theirs.G.graph), f"case {case}, pc {rule}/{priority}"
        G, _ = ccl.fci(placeholder, d_separation, 0.05, true_dag=dag, show_progress=False)
        G_cl, _ = quiet(cl_fci, placeholder, d_separation, 0.05, true_dag=dag, show_progress=False)
        assert np.array_equal(G.graph, G_cl.graph), f"case {case}, fci: {differ(G.graph, G_cl.graph)}"


def test_d_separation_test_object_answers_as_causal_learns(rng):
    """The orientation stages' d-separation test (priorities 3 and 4 ask it once per subset of a
    node's neighbours) against causal-learn's networkx-backed one, query by query, latent nodes
    included."""
    from causallearn.utils.cit import CIT

    queries = 0
    for case in range(20):
        n = int(rng.integers(5, 14))
        dag = oracle_dag(rng, n, float(rng.uniform(1.5, 4.0)))
        n_obs = n - 3 if case % 2 else n  # the last three latent: trails run through them
        placeholder = np.empty((0, n_obs))
        ours, theirs = ccl._d_separation(placeholder, dag), CIT(placeholder, "d_separation", true_dag=dag)
        for _ in range(60):
            x, y = (int(v) for v in rng.choice(n_obs, 2, replace=False))
            rest = [v for v in range(n_obs) if v not in (x, y)]
            S = [int(v) for v in rng.choice(rest, int(rng.integers(0, min(len(rest), 5) + 1)), replace=False)]
            p = ours(x, y, S)
            assert p == theirs(x, y, S) and type(p) is float, f"case {case}: {x} _||_ {y} | {S}"
            assert ours(y, x, S[::-1]) == p
            queries += 1
    assert queries == 1200


def test_zhang_semantics_is_cleann_fci_without_caps(rng):
    for _ in range(5):
        x = linear_data(rng)[:, 1:]
        G, edges = ccl.fci(x, fisherz, 0.05, semantics="zhang")
        want = cleann.fci(np.corrcoef(x.T), x.shape[0], 0.05, sepsets="all", max_pds_size=None, pds_budget=None,
                          skeleton_budget=None)
        assert np.array_equal(from_causallearn(G).marks, want.marks)
        assert len(edges) == len(want.edges())
        assert [node.get_name() for node in G.get_nodes()] == [f"X{i + 1}" for i in range(x.shape[1])]


def test_node_names_and_depth_are_causal_learns(rng):
    x = linear_data(rng)
    names = [f"v{i}" for i in range(x.shape[1])]
    ours = ccl.pc(x, 0.01, node_names=names, max_k=1, show_progress=False)
    theirs = quiet(cl_pc, x, 0.01, node_names=names, max_k=1, show_progress=False)
    assert np.array_equal(ours.G.graph, theirs.G.graph)
    assert [node.get_name() for node in ours.G.get_nodes()] == names
    G, _ = ccl.fci(x, fisherz, 0.01, depth=1, node_names=names)
    G_cl, _ = quiet(cl_fci, x, fisherz, 0.01, depth=1, node_names=names, show_progress=False)
    assert np.array_equal(G.graph, G_cl.graph)
    assert [node.get_name() for node in G.get_nodes()] == names


# ---------------------------------------------------------------------------------------------
# Handed to causal-learn


def test_other_tests_and_options_are_handed_to_causal_learn(rng):
    x = rng.integers(0, 3, size=(300, 5)).astype(float)
    x[:, 1] = (x[:, 0] + rng.integers(0, 2, 300)) % 3
    with pytest.warns(UserWarning, match="'gsq' is not in cleann; running causal-learn's own pc"):
        ours = ccl.pc(x, 0.05, "gsq", show_progress=False)
    assert np.array_equal(ours.G.graph, quiet(cl_pc, x, 0.05, "gsq", show_progress=False).G.graph)
    with pytest.warns(UserWarning, match="'chisq' is not in cleann; running causal-learn's own fci"):
        G, _ = quiet_prints(ccl.fci, x, "chisq", 0.05, show_progress=False)
    assert np.array_equal(G.graph, quiet(cl_fci, x, "chisq", 0.05, show_progress=False)[0].graph)
    y = linear_data(rng)
    with pytest.warns(UserWarning, match="stable=False"):
        ours = ccl.pc(y, 0.05, fisherz, False, show_progress=False)
    assert np.array_equal(ours.G.graph, quiet(cl_pc, y, 0.05, fisherz, False, show_progress=False).G.graph)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_names_the_argument(rng):
    x = linear_data(rng)
    with pytest.raises(cleann.ArgumentError, match="indep_test 'fisher' is not a CI test"):
        ccl.pc(x, 0.05, "fisher")
    with pytest.raises(cleann.ArgumentError, match="independence_test_method 'nope'"):
        ccl.fci(x, "nope")
    with pytest.raises(cleann.ArgumentError, match="indep_test must be the name"):
        ccl.pc(x, 0.05, len)
    with pytest.raises(cleann.ArgumentError, match="needs the true DAG: pass true_dag"):
        ccl.pc(x, 0.05, d_separation)
    with pytest.raises(cleann.ArgumentError, match="true_dag must have the nodes"):
        ccl.fci(x, d_separation, true_dag=nx.DiGraph([(0, 1)]))
    for alpha in (0, 1, -0.1, 1.5, "0.05", True):
        with pytest.raises(cleann.ArgumentError, match="alpha must be a number in"):
            ccl.pc(x, alpha)
        with pytest.raises(cleann.ArgumentError, match="alpha must be a number in"):
            ccl.fci(x, fisherz, alpha)
    with pytest.raises(cleann.ArgumentError, match="uc_rule must be 0, 1 or 2"):
        ccl.pc(x, 0.05, uc_rule=3)
    with pytest.raises(cleann.ArgumentError, match="uc_priority must be"):
        ccl.pc(x, 0.05, uc_priority=5)
    with pytest.raises(cleann.ArgumentError, match="with uc_rule=2"):
        ccl.pc(x, 0.05, uc_rule=2, uc_priority=1)
    with pytest.raises(cleann.ArgumentError, match="node_names must be"):
        ccl.pc(x, 0.05, node_names=["a"])
    with pytest.raises(cleann.ArgumentError, match="max_k must be None"):
        ccl.pc(x, 0.05, max_k=-1)
    with pytest.raises(cleann.ArgumentError, match="depth must be an int"):
        ccl.fci(x, fisherz, 0.05, depth=-2)
    with pytest.raises(cleann.ArgumentError, match="semantics must be"):
        ccl.fci(x, semantics="pcalg")
    for value, column in ((np.nan, 1), (np.inf, 0), (-np.inf, 4)):
        bad = x.copy()
        bad[3, column] = value
        with pytest.raises(cleann.ArgumentError, match=f"data holds a non-finite value at row 3, column {column}$"):
            ccl.pc(bad)
        with pytest.raises(cleann.ArgumentError, match=f"dataset holds a non-finite value at row 3, column {column}$"):
            ccl.fci(bad)
    with pytest.raises(cleann.ArgumentError, match="data is too large for float64 arithmetic"):
        ccl.pc(x * 1e300)
    with pytest.raises(cleann.ArgumentError, match="data must have shape"):
        ccl.pc(x[:, 0])


@pytest.mark.parametrize("value", [0.0, 3.0, 0.1, -7.3e5], ids=["zero", "exact", "inexact", "large"])
def test_a_constant_column_is_named(rng, value):
    """0.1 sums with rounding error, so its centred values are not exactly 0: np.corrcoef gives
    noise there rather than NaN; the drop-in refuses it the same way."""
    x = linear_data(rng)
    x[:, 2] = value
    with pytest.raises(cleann.ArgumentError, match="data column 2 is constant"):
        ccl.pc(x)
    with pytest.raises(cleann.ArgumentError, match="dataset column 2 is constant"):
        ccl.fci(x)
    assert ccl.pc(x[:, 2:3]).G.graph.shape == (1, 1)  # one variable: nothing to test


def test_background_knowledge_is_handed_to_causal_learn(cl_fixtures):
    from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge

    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)[:2000]
    plain = ccl.pc(data, 0.05, show_progress=False).G
    a, b = (int(v) for v in np.argwhere(plain.graph != 0)[0])  # an edge of the graph without it
    nodes = plain.get_nodes()
    bk = BackgroundKnowledge().add_forbidden_by_node(nodes[a], nodes[b]).add_forbidden_by_node(nodes[b], nodes[a])
    with pytest.warns(UserWarning, match="background_knowledge .* is not in cleann; running causal-learn's own pc") \
            as caught:
        ours = quiet_prints(ccl.pc, data, 0.05, background_knowledge=bk, show_progress=False)
    assert caught[0].filename == __file__  # attributed to the caller
    theirs = quiet(cl_pc, data, 0.05, background_knowledge=bk, show_progress=False)
    assert np.array_equal(ours.G.graph, theirs.G.graph)
    assert ours.G.graph[a, b] == 0 and not np.array_equal(ours.G.graph, plain.graph)
    with pytest.warns(UserWarning, match="background_knowledge .* is not in cleann; running causal-learn's own fci") \
            as caught:
        G, edges = quiet_prints(ccl.fci, data, fisherz, 0.05, background_knowledge=bk, show_progress=False)
    assert caught[0].filename == __file__
    G_cl, edges_cl = quiet(cl_fci, data, fisherz, 0.05, background_knowledge=bk, show_progress=False)
    assert np.array_equal(G.graph, G_cl.graph) and G.graph[a, b] == 0
    assert [str(e) for e in edges] == [str(e) for e in edges_cl]


def test_missing_causal_learn_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_causallearn(name, *args, **kwargs):
        if name.startswith("causallearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_causallearn)
    with pytest.raises(ImportError, match="pip install causal-learn"):
        ccl.pc(np.zeros((10, 3)))
    with pytest.raises(ccl.CausalLearnMissingError):
        ccl.fci(np.zeros((10, 3)))


def test_the_core_search_gives_one_answer_on_any_number_of_threads(monkeypatch):
    """From 150 variables the drop-in's searches run on all cores: the same CPDAG, separating
    sets and PAG as on one thread (and so as causal-learn's, which runs too long to test here)."""
    rng = np.random.default_rng(150)
    n = 160
    x = np.linalg.solve(np.eye(n) - random_dag(n, rng, 2.0).T, rng.normal(size=(2000, n)).T).T
    assert ccl._threads(n) == 0 and ccl._threads(149) == 1
    cg, (G, edges) = ccl.pc(x, show_progress=False), ccl.fci(x, show_progress=False)
    monkeypatch.setattr(ccl, "_threads", lambda n: 1)
    cg1, (G1, edges1) = ccl.pc(x, show_progress=False), ccl.fci(x, show_progress=False)
    assert np.count_nonzero(cg.G.graph == 1) > 50, "too few arrowheads to compare"
    assert np.array_equal(cg.G.graph, cg1.G.graph) and np.array_equal(cg.sepset != None, cg1.sepset != None)  # noqa: E711
    assert all(a == b for a, b in zip(cg.sepset.ravel(), cg1.sepset.ravel()))
    assert np.array_equal(G.graph, G1.graph) and [str(e) for e in edges] == [str(e) for e in edges1]


def test_the_core_result_builders_refuse_bad_arrays():
    from cleann import _core

    core = _core.core()
    i64, i32 = (lambda *v: np.array(v, dtype=np.int64)), (lambda *v: np.array(v, dtype=np.int32))
    with pytest.raises(cleann.ArgumentError, match="edge 0 is not a pair of distinct nodes of 3"):
        core.causallearn_sepset(3, i64(0), i64(3), i32(0), i64(0), i64(1), i32())
    with pytest.raises(cleann.ArgumentError, match="edge 0 is not a pair"):
        core.causallearn_sepset(3, i64(1), i64(1), i32(0), i64(0), i64(1), i32())
    with pytest.raises(cleann.ArgumentError, match="edge 0's sets lie outside set_members"):
        core.causallearn_sepset(3, i64(0), i64(2), i32(1), i64(0), i64(2), i32(1))
    with pytest.raises(cleann.ArgumentError, match="must have edge_i's length 2"):
        core.causallearn_sepset(3, i64(0, 1), i64(2), i32(0, 0), i64(0, 0), i64(1, 1), i32())
    with pytest.raises(cleann.ArgumentError, match="graph must have shape"):
        core.causallearn_dpath(np.zeros((2, 3), dtype=np.int64))
    sep = core.causallearn_sepset(3, i64(0), i64(2), i32(2), i64(0), i64(2), i32(1, 1, 1, 1))
    assert sep[0, 2] == [(1,)] and sep[2, 0] == [(1,)] and sep[0, 2] is not sep[2, 0]
    assert all(v is None for k, v in enumerate(sep.ravel()) if k not in (2, 6))


def test_the_ancestor_cache_is_causal_learns():
    from causallearn.graph.GeneralGraph import GeneralGraph
    from causallearn.graph.GraphNode import GraphNode

    from cleann.causallearn import _dpath

    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(2, 14))
        G = GeneralGraph([GraphNode(f"X{k + 1}") for k in range(n)])
        for a in range(n):
            for b in range(a + 1, n):
                kind = rng.integers(0, 4)  # none, a --> b, b --> a, a --- b
                if kind == 1:
                    G.graph[b, a], G.graph[a, b] = 1, -1
                elif kind == 2:
                    G.graph[a, b], G.graph[b, a] = 1, -1
                elif kind == 3:
                    G.graph[a, b] = G.graph[b, a] = -1
        G.reconstitute_dpath(G.get_graph_edges())
        assert np.array_equal(_dpath(G.graph), G.dpath)


def test_data_causal_learn_would_answer_blindly_is_refused(rng):
    """Too few rows: causal-learn's Fisher z has no degrees of freedom left and answers p = 1
    (every pair independent) or fails with a math domain error; non-numeric data and NaN in FCI."""
    z = rng.normal(size=(40, 1))
    x = z * 2.0 + rng.normal(size=(40, 5)) * 0.3  # every pair dependent at level 0
    for fn, name in ((ccl.pc, "data"), (ccl.fci, "dataset")):
        with pytest.raises(cleann.ArgumentError, match=f"{name} needs at least 4 rows for a Fisher z test, got 3"):
            fn(x[:3])
        with pytest.raises(cleann.ArgumentError, match="num_samples too small for conditioning sets of size 1"):
            fn(x[:4])  # level 1 would test with N - |S| - 3 = 0
        with pytest.raises(cleann.ArgumentError, match=f"{name} must be a numeric array"):
            fn(np.array([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]]))
        bad = x.copy()
        bad[7, 3] = np.inf
        with pytest.raises(cleann.ArgumentError, match=f"{name} holds a non-finite value at row 7, column 3"):
            fn(bad)
    assert ccl.pc(x[:5]).G.graph.shape == (5, 5)  # five rows: level 1 is the last one it can test
