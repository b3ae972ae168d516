"""Graph bridges (networkx, causal-learn), graph queries, the exception hierarchy and typing."""

from __future__ import annotations

import importlib.resources
import itertools
import subprocess
import sys
import textwrap

import networkx as nx
import numpy as np
import pytest

import cleann
from cleann import _core
from cleann.graph import (ARROW, CIRCLE, TAIL, Graph, from_causallearn, from_networkx, possible_ancestors,
                          to_causallearn)

MARKS = (CIRCLE, ARROW, TAIL)
#: every (mark at a, mark at b) an edge can have
ALL_PAIRS = set(itertools.product(MARKS, MARKS))


def random_graph(rng: np.random.Generator, k: int, density: float = 0.5, ends=MARKS, kind: str = "PAG",
                 labels: bool = True) -> Graph:
    """Random marks on random pairs, distinct ascending token indices, labels that may repeat."""
    m = np.zeros((k, k), np.int8)
    for a, b in itertools.combinations(range(k), 2):
        if rng.random() < density:
            m[b, a], m[a, b] = rng.choice(ends), rng.choice(ends)
    nodes = np.sort(rng.choice(3 * k + 5, size=k, replace=False))
    names = [str(w) for w in rng.choice(["the", "cat", "sat", "on", "mat", "a", "dog"], size=k)] if labels else None
    return Graph(m, nodes=nodes, kind=kind, labels=names)


def random_cpdag(rng: np.random.Generator, k: int) -> Graph:
    """A CPDAG-like graph: --> and --- edges only (tails and arrowheads, never two heads)."""
    m = np.zeros((k, k), np.int8)
    for a, b in itertools.combinations(range(k), 2):
        r = rng.random()
        if r < 0.25:
            m[b, a], m[a, b] = TAIL, ARROW
        elif r < 0.5:
            m[b, a], m[a, b] = ARROW, TAIL
        elif r < 0.7:
            m[b, a], m[a, b] = TAIL, TAIL
    return Graph(m, nodes=np.arange(k) * 2 + 1, kind="CPDAG")


def hand_pag() -> Graph:
    """0 --> 1 --> 2, 2 <-> 3, 3 o-> 4, 4 o-o 5, 6 --- 7, 5 --o 7, 1 o-> 4."""
    m = np.zeros((8, 8), np.int8)

    def edge(a, b, at_a, at_b):
        m[b, a], m[a, b] = at_a, at_b

    edge(0, 1, TAIL, ARROW)
    edge(1, 2, TAIL, ARROW)
    edge(2, 3, ARROW, ARROW)
    edge(3, 4, CIRCLE, ARROW)
    edge(4, 5, CIRCLE, CIRCLE)
    edge(6, 7, TAIL, TAIL)
    edge(5, 7, TAIL, CIRCLE)
    edge(1, 4, CIRCLE, ARROW)
    return Graph(m, nodes=[10, 11, 12, 13, 14, 15, 16, 17])


# --- networkx ---------------------------------------------------------------------------------


def test_random_graphs_cover_every_mark_pair():
    # the round-trip tests below draw from this generator: make sure it draws every combination
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(10):
        g = random_graph(rng, 7)
        seen |= {(at_a, at_b) for _, _, at_a, at_b in g.edges()}
    assert seen == ALL_PAIRS


@pytest.mark.parametrize("seed", range(20))
def test_networkx_round_trip(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng, int(rng.integers(1, 9)), density=float(rng.uniform(0.2, 0.9)),
                     kind=str(rng.choice(["PAG", "CPDAG", "skeleton"])), labels=bool(seed % 2))
    back = from_networkx(g.to_networkx())
    assert back == g
    assert back.kind == g.kind
    assert back.labels == (g.labels if g.labels is not None else [str(t) for t in g.nodes.tolist()])


@pytest.mark.parametrize("seed", range(10))
def test_networkx_arcs_are_the_directed_edges(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, 8, density=0.6)
    nxg = g.to_networkx()
    tok = g.nodes.tolist()
    directed = {(tok[a], tok[b]) for a in range(8) for b in range(8) if g.marks[a, b] == ARROW and g.marks[b, a] == TAIL}
    assert set(nxg.edges) == directed
    assert len(nxg.graph["edges"]) == len(g.edges())
    assert {e for _, _, e in nxg.graph["edges"]} <= {"-->", "o->", "<->", "o-o", "---", "--o"}
    for v in range(8):
        assert nx.ancestors(nxg, tok[v]) == {tok[a] for a in g.ancestors(v)}
        assert nx.descendants(nxg, tok[v]) == {tok[b] for b in g.descendants(v)}


def test_networkx_edge_listing_marks():
    g = hand_pag()
    listed = {(u, v): e for u, v, e in g.to_networkx().graph["edges"]}
    assert listed == {(10, 11): "-->", (11, 12): "-->", (12, 13): "<->", (13, 14): "o->", (14, 15): "o-o",
                      (16, 17): "---", (15, 17): "--o", (11, 14): "o->"}
    # a reversed edge is listed from its weaker end
    m = np.zeros((2, 2), np.int8)
    m[1, 0], m[0, 1] = CIRCLE, TAIL  # 0 o-- 1
    assert Graph(m).to_networkx().graph["edges"] == [(1, 0, "--o")]


def test_from_networkx_plain_digraph():
    G = nx.DiGraph([(2, 5), (5, 9)])
    g = from_networkx(G)
    assert g.nodes.tolist() == [2, 5, 9] and g.labels is None and g.kind == "PAG"
    assert g.edge_string(0, 1) == "2 --> 5" and g.edge_string(1, 2) == "5 --> 9"
    assert g.ancestors(2) == [0, 1]
    with pytest.raises(cleann.ArgumentError, match="arcs 1 -> 2 and 2 -> 1"):
        from_networkx(nx.DiGraph([(1, 2), (2, 1)]))
    with pytest.raises(cleann.ArgumentError, match="self-loop"):
        from_networkx(nx.DiGraph([(1, 1)]))


def test_from_networkx_undirected_by_kind():
    G = nx.Graph([(0, 1), (1, 2)])
    pag = from_networkx(G)
    assert pag.kind == "PAG" and (pag.marks[pag.adjacency] == CIRCLE).all()
    cpdag = from_networkx(G, kind="CPDAG")
    assert cpdag.kind == "CPDAG" and (cpdag.marks[cpdag.adjacency] == TAIL).all()
    assert cpdag.adjacency.sum() == 4
    with pytest.raises(cleann.ArgumentError, match="kind must be one of"):
        from_networkx(G, kind="DAG")


def test_from_networkx_named_nodes():
    G = nx.DiGraph()
    G.add_nodes_from(["rain", "wet", "slip"])
    G.add_edges_from([("rain", "wet"), ("wet", "slip")])
    g = from_networkx(G)
    assert g.labels == ["rain", "wet", "slip"] and g.nodes.tolist() == [0, 1, 2]
    assert g.edge_string(0, 1) == "rain --> wet"


def test_from_networkx_refuses_a_tampered_encoding():
    nxg = hand_pag().to_networkx()
    nxg.add_edge(13, 14)  # o-> is not an arc
    with pytest.raises(cleann.ArgumentError, match="13 -> 14 is an arc without a --> edge"):
        from_networkx(nxg)
    nxg = hand_pag().to_networkx()
    nxg.remove_edge(10, 11)
    with pytest.raises(cleann.ArgumentError, match="10 -> 11 is a --> edge without an arc"):
        from_networkx(nxg)
    nxg = hand_pag().to_networkx()
    nxg.graph["edges"].append((11, 10, "<->"))
    with pytest.raises(cleann.ArgumentError, match="more than one edge"):
        from_networkx(nxg)
    nxg = hand_pag().to_networkx()
    nxg.graph["edges"][0] = (10, 11, "=>")
    with pytest.raises(cleann.ArgumentError, match="an edge must be written like"):
        from_networkx(nxg)
    with pytest.raises(cleann.ArgumentError, match="multigraph"):
        from_networkx(nx.MultiDiGraph([(0, 1)]))
    with pytest.raises(cleann.ArgumentError, match="networkx graph"):
        from_networkx(np.zeros((2, 2)))


def test_from_networkx_reads_reversed_edge_text():
    G = nx.DiGraph(edges=[(1, 0, "<--"), (2, 1, "<-o")])
    G.add_nodes_from([0, 1, 2])
    G.add_edge(0, 1)
    g = from_networkx(G)
    assert g.edge_string(0, 1) == "0 --> 1" and g.edge_string(1, 2) == "1 o-> 2"


# --- queries ----------------------------------------------------------------------------------


def test_queries_on_a_hand_made_pag():
    g = hand_pag()
    assert g.parents(1) == [0] and g.parents(4) == [] and g.children(1) == [2]
    assert g.spouses(2) == [3] and g.spouses(3) == [2] and g.spouses(0) == []
    assert g.ancestors(2) == [0, 1] and g.ancestors(3) == [] and g.descendants(0) == [1, 2]
    # 3 o-> 4 <-o 1 <-- 0 and 4 o-o 5: 0, 1, 3 and 5 may cause 4
    assert g.possible_ancestors(4) == [0, 1, 3, 5]
    assert g.possible_ancestors(5) == [0, 1, 3, 4]
    # 5 --o 7 can be walked from 5 to 7 (no arrowhead at 5, no tail at 7), not back; 6 --- 7 neither way
    assert g.possible_ancestors(7) == [0, 1, 3, 4, 5]
    assert 7 not in g.possible_ancestors(5) and g.possible_ancestors(6) == []
    assert g.possible_ancestors(2) == [0, 1]  # 2 <-> 3 has an arrowhead at 3
    assert g.possible_ancestors(0) == []


def test_queries_cpdag_undirected_edges_go_both_ways():
    m = np.zeros((4, 4), np.int8)
    m[0, 1], m[1, 0] = TAIL, TAIL  # 0 --- 1
    m[1, 2], m[2, 1] = ARROW, TAIL  # 1 --> 2
    m[3, 2], m[2, 3] = ARROW, TAIL  # 3 --> 2
    g = Graph(m, kind="CPDAG")
    assert g.possible_ancestors(2) == [0, 1, 3]
    assert g.possible_ancestors(0) == [1]
    assert g.ancestors(2) == [1, 3]
    # the same marks read as a PAG: --- is a selection edge, no possible direction
    assert Graph(m, kind="PAG").possible_ancestors(0) == []


def brute_force(g: Graph, ok) -> list[set[int]]:
    """For each v, the nodes a != v joined to v by a simple path whose every step x -> y has ok(x, y)."""
    skel = nx.Graph()
    skel.add_nodes_from(range(g.num_nodes))
    skel.add_edges_from((a, b) for a, b, _, _ in g.edges())
    out = []
    for v in range(g.num_nodes):
        found = set()
        for a in range(g.num_nodes):
            if a != v and any(all(ok(x, y) for x, y in zip(p, p[1:])) for p in nx.all_simple_paths(skel, a, v)):
                found.add(a)
        out.append(found)
    return out


@pytest.mark.parametrize("seed", range(25))
def test_queries_against_path_enumeration(seed):
    rng = np.random.default_rng(1000 + seed)
    k = int(rng.integers(2, 8))
    kind = "PAG" if seed % 3 else "CPDAG"
    g = random_graph(rng, k, density=float(rng.uniform(0.3, 0.8)), kind=kind, labels=False)
    m = g.marks
    directed = brute_force(g, lambda x, y: m[x, y] == ARROW and m[y, x] == TAIL)
    if kind == "PAG":  # Zhang (2008): no arrowhead at x, no tail at y
        possible = brute_force(g, lambda x, y: m[y, x] != ARROW and m[x, y] != TAIL)
    else:  # undirected edges may point either way
        possible = brute_force(g, lambda x, y: m[y, x] != ARROW)
    for v in range(k):
        assert set(g.ancestors(v)) == directed[v]
        assert set(g.descendants(v)) == {b for b in range(k) if v in directed[b]}
        assert set(g.possible_ancestors(v)) == possible[v]
        assert set(g.ancestors(v)) <= set(g.possible_ancestors(v))
        assert set(g.parents(v)) == {a for a in range(k) if m[a, v] == ARROW and m[v, a] == TAIL}
        assert set(g.spouses(v)) == {a for a in range(k) if m[a, v] == ARROW and m[v, a] == ARROW}
        assert g.ancestors(v) == sorted(g.ancestors(v))


@pytest.mark.skipif(not _core.have_core(), reason="compiled core not built")
@pytest.mark.parametrize("seed", range(10))
def test_possible_ancestors_agree_with_the_core(seed):
    g = random_graph(np.random.default_rng(2000 + seed), 9, density=0.5)
    matrix = possible_ancestors(g)  # [x, y]: x is a possible ancestor of y (diagonal set)
    for v in range(g.num_nodes):
        assert g.possible_ancestors(v) == [x for x in np.flatnonzero(matrix[:, v]).tolist() if x != v]


def test_positions_and_tokens():
    g = hand_pag()
    assert g.position(13) == 3 and g.position(np.int64(17)) == 7
    assert g.nodes[g.parents(g.position(11))].tolist() == [10]
    with pytest.raises(cleann.ArgumentError, match="token 99 is not a node"):
        g.position(99)
    for bad in (8, -1, True, 1.0):
        with pytest.raises(cleann.ArgumentError, match=r"v must be a node position in \[0, 8\)"):
            g.parents(bad)


# --- causal-learn -----------------------------------------------------------------------------


def test_causallearn_names():
    g = Graph(np.zeros((3, 3), np.int8), nodes=[2, 4, 6], labels=["a", "b", "c"])
    assert to_causallearn(g, as_array=True).shape == (3, 3)
    cl = pytest.importorskip("causallearn")
    assert cl is not None
    assert [n.get_name() for n in to_causallearn(g).nodes] == ["a", "b", "c"]
    g.labels = ["the", "cat", "the"]
    assert [n.get_name() for n in to_causallearn(g).nodes] == ["the#2", "cat#4", "the#6"]
    g.labels = None
    assert [n.get_name() for n in to_causallearn(g).nodes] == ["2", "4", "6"]
    assert [n.get_name() for n in to_causallearn(g.marks).nodes] == ["X1", "X2", "X3"]
    assert [n.get_name() for n in to_causallearn(g, names=["x", "y", "z"]).nodes] == ["x", "y", "z"]
    with pytest.raises(cleann.ArgumentError, match="3 distinct names"):
        to_causallearn(g, names=["x", "x", "z"])


def _endpoint_marks(gg) -> np.ndarray:
    """Our marks read through causal-learn's own edge API, not its matrix."""
    from causallearn.graph.Endpoint import Endpoint

    ours = {Endpoint.TAIL.name: TAIL, Endpoint.ARROW.name: ARROW, Endpoint.CIRCLE.name: CIRCLE}
    k = len(gg.nodes)
    m = np.zeros((k, k), np.int8)
    for a, b in itertools.permutations(range(k), 2):
        e = gg.get_edge(gg.nodes[a], gg.nodes[b])
        if e is not None:
            m[a, b] = ours[e.get_proximal_endpoint(gg.nodes[b]).name]
    return m


@pytest.mark.parametrize("seed", range(12))
def test_causallearn_round_trip(seed):
    pytest.importorskip("causallearn")
    rng = np.random.default_rng(3000 + seed)
    k = int(rng.integers(2, 9))
    g = random_graph(rng, k, density=0.6, labels=bool(seed % 2)) if seed % 3 else random_cpdag(rng, k)
    gg = to_causallearn(g)
    assert np.array_equal(_endpoint_marks(gg), g.marks)
    back = from_causallearn(gg, kind=g.kind)
    assert back == g and back.labels == g.labels
    assert from_causallearn(to_causallearn(g, as_array=True), nodes=g.nodes, kind=g.kind) == g


def test_causallearn_pc_and_fci_results():
    pytest.importorskip("causallearn")
    import contextlib
    import io
    import warnings

    from causallearn.search.ConstraintBased.FCI import fci
    from causallearn.search.ConstraintBased.PC import pc

    rng = np.random.default_rng(7)
    x = rng.normal(size=2000)
    y = x + 0.5 * rng.normal(size=2000)
    z = rng.normal(size=2000)
    w = y + z + 0.5 * rng.normal(size=2000)
    data = np.column_stack([x, y, z, w])
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        cg = pc(data, 0.01, "fisherz", node_names=["x", "y", "z", "w"], show_progress=False)
        G, _ = fci(data, "fisherz", 0.01, show_progress=False, verbose=False)
    g = from_causallearn(cg)  # a CausalGraph: its .G is read
    assert g.kind == "CPDAG" and g.labels == ["x", "y", "z", "w"]
    assert np.array_equal(g.marks, _endpoint_marks(cg.G))
    assert g.edge_string(1, 3) == "y --> w" and g.edge_string(2, 3) == "z --> w"
    f = from_causallearn(G)
    assert f.kind == "PAG" and f.labels == ["X1", "X2", "X3", "X4"]
    assert np.array_equal(f.marks, _endpoint_marks(G))
    assert f.marks[1, 3] == ARROW and f.marks[2, 3] == ARROW  # y *-> w <-* z
    with pytest.raises(cleann.ArgumentError, match="fci returns"):
        from_causallearn((G, []))


def test_causallearn_refuses_two_edges_per_pair():
    pytest.importorskip("causallearn")
    from causallearn.graph.Edge import Edge
    from causallearn.graph.Endpoint import Endpoint
    from causallearn.graph.GeneralGraph import GeneralGraph
    from causallearn.graph.GraphNode import GraphNode

    a, b = GraphNode("a"), GraphNode("b")
    gg = GeneralGraph([a, b])
    gg.add_edge(Edge(a, b, Endpoint.TAIL, Endpoint.ARROW))
    gg.add_edge(Edge(a, b, Endpoint.ARROW, Endpoint.ARROW))
    assert set(np.unique(gg.graph)) >= {4}  # causal-learn's TAIL_AND_ARROW
    with pytest.raises(cleann.ArgumentError, match="two edges between nodes"):
        from_causallearn(gg)


def test_from_causallearn_bad_inputs():
    with pytest.raises(cleann.ArgumentError, match="GeneralGraph, a CausalGraph or a square mark matrix"):
        from_causallearn(object())
    with pytest.raises(cleann.ArgumentError, match="0, -1, 1 or 2"):
        from_causallearn(np.array([[0, 3], [1, 0]]))
    with pytest.raises(cleann.ArgumentError, match="one end only"):
        from_causallearn(np.array([[0, 1], [0, 0]]))


# --- exceptions -------------------------------------------------------------------------------


def test_exception_hierarchy():
    assert issubclass(cleann.ArgumentError, cleann.CleannError) and issubclass(cleann.ArgumentError, ValueError)
    assert issubclass(cleann.BackendUnavailableError, cleann.CleannError)
    assert issubclass(cleann.BackendUnavailableError, RuntimeError)
    assert issubclass(cleann.CoreUnavailableError, cleann.CleannError)
    assert issubclass(cleann.CoreUnavailableError, ImportError)
    assert cleann.errors.ArgumentError is cleann.ArgumentError
    for name in ("ArgumentError", "CleannError"):
        assert name in cleann.__all__


def test_python_layer_raises_argument_error():
    with pytest.raises(cleann.ArgumentError, match=r"alpha must be a number in \(0, 1\)"):
        cleann.skeleton(np.eye(3), 50, alpha=2.0)
    with pytest.raises(cleann.ArgumentError, match="backend must be one of"):
        cleann.skeleton(np.eye(3), 50, backend="gpu")
    with pytest.raises(cleann.CleannError, match="marks 0-3"):
        Graph(np.array([[0, 7], [3, 0]]))


@pytest.mark.skipif(not _core.have_core(), reason="compiled core not built")
def test_core_raises_the_public_argument_error():
    from cleann import _C

    assert _C.ArgumentError is cleann.ArgumentError
    g = hand_pag()
    # the sepset pair is checked only in the compiled core
    with pytest.raises(cleann.ArgumentError, match=r"sepset pair \(0, 9\) out of range") as info:
        cleann.graph.orient(g, sepsets={(0, 9): ()})
    assert type(info.value) is cleann.ArgumentError
    with pytest.raises(cleann.CleannError, match="root 9 out of range"):
        _C.pds_tree(np.zeros((2, 2), np.int8), 9, -1)
    try:
        _C.pds_tree(np.zeros((2, 2), np.int8), 9, -1)
    except ValueError as exc:  # existing except clauses still catch it
        assert isinstance(exc, cleann.CleannError)


# --- typing -----------------------------------------------------------------------------------


def test_typing_files_ship_in_the_package():
    files = importlib.resources.files("cleann")
    assert files.joinpath("py.typed").is_file()
    stub = files.joinpath("_C.pyi")
    assert stub.is_file()
    text = stub.read_text()
    if _core.have_core():
        from cleann import _C

        public = {name for name in dir(_C) if not name.startswith("_") and not name.startswith("cuda")}
        missing = {name for name in public if f"def {name}(" not in text and f"{name} as {name}" not in text}
        assert not missing, f"_C.pyi lacks {sorted(missing)}"


MYPY_SNIPPET = """
import networkx as nx
import numpy as np
import cleann
from cleann.graph import Graph, from_causallearn, from_networkx, to_causallearn

g = cleann.graph.Graph(np.zeros((3, 3), dtype=np.int8), nodes=[1, 4, 6], labels=["a", "b", "c"])
parents: list[int] = g.parents(g.position(4))
tokens = g.nodes[g.possible_ancestors(0)]
nxg: nx.DiGraph = g.to_networkx()
back: Graph = from_networkx(nxg)
again: Graph = from_causallearn(to_causallearn(g, as_array=True), nodes=[1, 4, 6])
R = cleann.attention_to_correlation(np.full((3, 3), 1 / 3))
pag = cleann.icd(np.eye(3), 100)
try:
    cleann.skeleton(np.eye(3), 10)
except cleann.ArgumentError as exc:
    err: cleann.CleannError = exc
    also: ValueError = exc
"""


def test_mypy_accepts_the_public_api(tmp_path):
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(MYPY_SNIPPET))
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                          "--follow-imports=silent", "--ignore-missing-imports", str(snippet)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
