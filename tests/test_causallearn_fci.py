"""cleann.causallearn.fci in causal-learn semantics, compiled: every mark, the ancestor cache, the
edge properties and the node objects equal causal-learn 0.1.4.8's own fci, on random data (with
latent variables, few and many rows), its options, d-separation oracles and other string-hash
seeds; and the one CPython detail it depends on (the iteration order of a set)."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import textwrap

import networkx as nx
import numpy as np
import pytest

pytest.importorskip("causallearn")

from conftest import quiet, random_dag  # noqa: E402

import cleann  # noqa: E402
from cleann import causallearn as ccl  # noqa: E402

from causallearn.graph.GraphNode import GraphNode  # noqa: E402
from causallearn.search.ConstraintBased.FCI import fci as cl_fci  # noqa: E402
from causallearn.utils.cit import d_separation, fisherz  # noqa: E402


def latent_data(rng: np.random.Generator) -> np.ndarray:
    """8-20 observed variables of a linear-Gaussian DAG with 2 more hidden, 100-1,000 rows: the
    small samples make conflicting marks, which exercise the rules' scan orders."""
    n = int(rng.integers(10, 23))
    W = random_dag(n, rng, rng.uniform(1.5, 3.5))
    rows = int(rng.choice([100, 300, 1000]))
    x = np.linalg.solve(np.eye(n) - W.T, rng.normal(size=(rows, n)).T).T
    return x[:, 2:]


def same_result(ours, theirs) -> str:
    """'' when (G, edges) equal causal-learn's in every observable part, else what differs."""
    G, edges = ours
    G_cl, edges_cl = theirs
    if not np.array_equal(G.graph, G_cl.graph):
        where = np.argwhere(G.graph != G_cl.graph)
        return f"{len(where)} marks differ, first at {where[:4].tolist()}"
    if not np.array_equal(G.dpath, G_cl.dpath):
        return "the ancestor caches (dpath) differ"
    mine = [(str(e), [p.name for p in e.properties]) for e in edges]
    want = [(str(e), [p.name for p in e.properties]) for e in edges_cl]
    if mine != want:
        return f"edges differ: {mine[:3]} vs {want[:3]}"

    def fields(e):  # every attribute the constructor sets, nodes by name and identity in the graph
        d = dict(vars(e))
        for k in ("node1", "node2"):
            d[k] = (d[k].get_name(), type(d[k]).__name__)
        return type(e), sorted((k, type(v).__name__, v) for k, v in d.items())

    for k, (e, e_cl) in enumerate(zip(edges, edges_cl)):
        if fields(e) != fields(e_cl):
            return f"edge {k} differs attribute by attribute: {fields(e)} vs {fields(e_cl)}"
        if any(v is not w for v, w in zip((e.node1, e.node2), (G.nodes[G.node_map[e.node1]],
                                                                G.nodes[G.node_map[e.node2]]))):
            return f"edge {k}'s nodes are not the graph's node objects"
    if [(v.get_name(), v.get_all_attributes()) for v in G.get_nodes()] != \
            [(v.get_name(), v.get_all_attributes()) for v in G_cl.get_nodes()]:
        return "the nodes differ"
    if G.is_pag() != G_cl.is_pag() or G.node_map != G_cl.node_map:
        return "the graph's flags or node map differ"
    return ""


# ---------------------------------------------------------------------------------------------
# CPython's set order, which causal-learn's possible-d-sep search and R10 follow


def test_python_set_order_is_cpythons():
    order = cleann._core.core().python_set_order
    rng = random.Random(5)
    for size in list(range(0, 40)) + [rng.randrange(40, 700) for _ in range(300)]:
        names = [f"{''.join(rng.choices(string.ascii_letters, k=rng.randrange(1, 7)))}{k}" for k in range(size)]
        hashes = np.array([hash(s) for s in names], dtype=np.int64)
        got = order(hashes).tolist()
        assert got == [names.index(s) for s in set(names)], size
        nodes = [GraphNode(s) for s in names]  # what causal-learn puts in its sets
        grown = set()
        for v in nodes:
            grown.add(v)
        assert got == [names.index(v.get_name()) for v in grown], size


# ---------------------------------------------------------------------------------------------
# Live causal-learn: 120 random data sets in this process


@pytest.mark.parametrize("seed", range(6))
def test_fci_equals_causal_learn_on_random_data_with_latents(seed):
    rng = np.random.default_rng(7100 + seed)
    for case in range(20):
        x = latent_data(rng)
        ours = ccl.fci(x, fisherz, 0.05, show_progress=False)
        theirs = quiet(cl_fci, x, fisherz, 0.05, show_progress=False)
        assert same_result(ours, theirs) == "", f"seed {seed}, case {case} ({x.shape[0]} x {x.shape[1]})"


def test_the_rules_really_fire_on_these_data():
    """The random cases reach R4's discriminating paths and the rules after R4, so the
    comparison above covers them."""
    core = cleann._core.core()
    rng = np.random.default_rng(7100)
    with_r4, tails, directed = 0, 0, 0
    for _ in range(40):
        x = latent_data(rng)
        n = x.shape[1]
        names = [f"X{k + 1}" for k in range(n)]
        rank = np.argsort(np.argsort(names, kind="stable")).astype(np.int32)
        raw = core.fci_causallearn(np.corrcoef(x.T), None, n, float(x.shape[0]), 0.05, 1e-10, -1, -1, 28,
                                   np.array([hash(s) for s in names], dtype=np.int64), rank, 0)
        with_r4 += raw["r4_tests"] > 0
        g = raw["graph"]
        tails += int(np.sum((g == -1) & (g.T == -1)))
        directed += int(np.sum((g == -1) & (g.T == 1)))
    assert with_r4 >= 3 and directed >= 20


@pytest.mark.parametrize("options", [dict(depth=0), dict(depth=1), dict(depth=2), dict(max_path_length=0),
                                     dict(max_path_length=1), dict(max_path_length=3), dict(alpha=0.2),
                                     dict(alpha=0.001)], ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_fci_options_are_causal_learns(options):
    rng = np.random.default_rng(sum(map(ord, str(options))))
    alpha = options.pop("alpha", 0.05)
    for case in range(6):
        x = latent_data(rng)
        ours = ccl.fci(x, fisherz, alpha, show_progress=False, **options)
        theirs = quiet(cl_fci, x, fisherz, alpha, show_progress=False, **options)
        assert same_result(ours, theirs) == "", f"case {case}"


def test_names_order_the_possible_d_sep_sets_as_causal_learn_does():
    rng = np.random.default_rng(71)
    for case in range(10):
        x = latent_data(rng)
        n = x.shape[1]
        # string order differs from column order: "a10" < "a2", and mixed prefixes
        names = [f"{'ab'[k % 2]}{n - k}" for k in range(n)]
        ours = ccl.fci(x, fisherz, 0.05, node_names=names, show_progress=False)
        theirs = quiet(cl_fci, x, fisherz, 0.05, node_names=names, show_progress=False)
        assert same_result(ours, theirs) == "", f"case {case}"


def test_d_separation_fci_equals_causal_learn():
    rng = np.random.default_rng(72)
    for case in range(25):
        n = int(rng.integers(6, 12))
        W = random_dag(n, rng, rng.uniform(2.0, 3.5))
        dag = nx.DiGraph()
        dag.add_nodes_from(range(n))
        dag.add_edges_from((int(a), int(b)) for a, b in np.argwhere(W != 0))
        n_obs = n - int(rng.integers(0, 3))  # the last nodes latent
        placeholder = np.empty((0, n_obs))
        ours = ccl.fci(placeholder, d_separation, 0.05, true_dag=dag, show_progress=False)
        theirs = quiet(cl_fci, placeholder, d_separation, 0.05, true_dag=dag, show_progress=False)
        assert same_result(ours, theirs) == "", f"case {case}"


# ---------------------------------------------------------------------------------------------
# Other string-hash seeds: causal-learn's PAG itself depends on them


SEEDED_RUN = textwrap.dedent("""
    import contextlib, io, warnings, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_causallearn_fci import latent_data, same_result, quiet
    from cleann import causallearn as ccl
    from causallearn.search.ConstraintBased.FCI import fci as cl_fci
    rng = np.random.default_rng({seed})
    bad = []
    for case in range(15):
        x = latent_data(rng)
        why = same_result(ccl.fci(x, "fisherz", 0.05, show_progress=False),
                          quiet(cl_fci, x, "fisherz", 0.05, show_progress=False))
        if why:
            bad.append(f"case {{case}}: {{why}}")
    print("BAD" if bad else "OK", bad)
""")


@pytest.mark.parametrize("hash_seed", ["1", "2", "12345"])
def test_fci_equals_causal_learn_under_other_hash_seeds(hash_seed):
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", SEEDED_RUN.format(tests=tests, seed=int(hash_seed))], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("OK"), out.stdout[-2000:]


# ---------------------------------------------------------------------------------------------
# Where causal-learn would not finish


def test_a_possible_d_sep_set_too_large_to_enumerate_is_refused():
    rng = np.random.default_rng(73)
    core = cleann._core.core()
    for _ in range(30):  # data whose possible-d-sep stage tests sets of at least 3 nodes
        x = latent_data(rng)
        n = x.shape[1]
        names = [f"X{k + 1}" for k in range(n)]
        args = (np.corrcoef(x.T), None, n, float(x.shape[0]), 0.05, 1e-10, -1, -1)
        tail = (np.array([hash(s) for s in names], dtype=np.int64), np.arange(n, dtype=np.int32), 0)
        if core.fci_causallearn(*args, 28, *tail)["pds_tests"] == 0:
            continue
        with pytest.raises(ValueError, match=r"possible-d-sep set of edge \d+ \*-\* \d+ has \d+ nodes.*2\^"):
            core.fci_causallearn(*args, 1, *tail)
        return
    pytest.fail("no data set reached the possible-d-sep tests")
