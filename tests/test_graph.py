import numpy as np
import pytest

import cleann
from cleann.graph import ARROW, CIRCLE, TAIL, Graph, from_causallearn, to_causallearn

def _example():
    # 0 --> 1, 1 <-> 2, 2 o-> 3, 3 o-o 4, 0 --- 4
    m = np.zeros((5, 5), np.int8)
    m[0, 1], m[1, 0] = ARROW, TAIL
    m[1, 2], m[2, 1] = ARROW, ARROW
    m[2, 3], m[3, 2] = ARROW, CIRCLE
    m[3, 4], m[4, 3] = CIRCLE, CIRCLE
    m[0, 4], m[4, 0] = TAIL, TAIL
    return Graph(m, nodes=[3, 5, 6, 8, 9], labels=["the", "cat", "sat", "on", "mat"])


def test_edges_and_strings():
    g = _example()
    assert g.edges() == [(0, 1, TAIL, ARROW), (0, 4, TAIL, TAIL), (1, 2, ARROW, ARROW), (2, 3, CIRCLE, ARROW),
                         (3, 4, CIRCLE, CIRCLE)]
    assert g.edge_string(0, 1) == "the --> cat"
    assert g.edge_string(1, 0) == "cat <-- the"
    assert g.edge_string(2, 3) == "sat o-> on"
    assert g.edge_string(1, 2) == "cat <-> sat"
    assert g.edge_string(0, 2) == ""
    assert g.adjacency.sum() == 10
    assert (g.skeleton().marks[g.adjacency] == TAIL).all()


def test_to_networkx():
    nxg = _example().to_networkx()
    assert sorted(nxg.nodes) == [3, 5, 6, 8, 9]
    assert nxg.nodes[5] == {"label": "cat", "position": 1}
    # only the --> edge is an arc; every edge is listed with its marks
    assert list(nxg.edges) == [(3, 5)]
    assert nxg.graph["kind"] == "PAG"
    assert nxg.graph["edges"] == [(3, 5, "-->"), (3, 9, "---"), (5, 6, "<->"), (6, 8, "o->"), (8, 9, "o-o")]


def test_to_networkx_keeps_pag_semantics_for_ancestors():
    import networkx as nx

    nxg = _example().to_networkx()
    # sat o-> on and cat <-> sat are not causal arcs: sat is no ancestor of on, nor cat of sat
    assert nx.ancestors(nxg, 8) == set() and nx.ancestors(nxg, 6) == set()
    assert nx.ancestors(nxg, 5) == {3}


def test_directed_edge_points_from_tail():
    m = np.zeros((2, 2), np.int8)
    m[1, 0], m[0, 1] = ARROW, TAIL  # 1 --> 0
    nxg = Graph(m).to_networkx()
    assert list(nxg.edges) == [(1, 0)] and nxg.graph["edges"] == [(1, 0, "-->")]


def test_to_networkx_labels_argument():
    nxg = _example().to_networkx(labels=list("abcde"))
    assert [nxg.nodes[t]["label"] for t in sorted(nxg.nodes)] == list("abcde")
    assert Graph(np.zeros((2, 2), np.int8), nodes=[4, 7]).to_networkx().nodes[7]["label"] == "7"
    with pytest.raises(cleann.ArgumentError, match="labels must have 5"):
        _example().to_networkx(labels=["a"])


def test_to_dot():
    dot = _example().to_dot(highlight=[5])
    assert dot.startswith("graph PAG {")
    assert 'n5 [label="cat", style=filled' in dot
    assert "n3 -- n5 [dir=both, arrowtail=none, arrowhead=normal];" in dot
    assert "n6 -- n8 [dir=both, arrowtail=odot, arrowhead=normal];" in dot


def test_causallearn_encoding_by_hand():
    g = _example()
    G = to_causallearn(g, as_array=True)
    # causal-learn: G[i, j] is the mark at i; 0 --> 1 is G[0, 1] = -1, G[1, 0] = 1
    assert G[0, 1] == -1 and G[1, 0] == 1
    assert G[1, 2] == 1 and G[2, 1] == 1
    assert G[2, 3] == 2 and G[3, 2] == 1
    assert G[3, 4] == 2 and G[4, 3] == 2
    assert G[0, 4] == -1 and G[4, 0] == -1
    back = from_causallearn(G, nodes=g.nodes)
    assert back == g


@pytest.mark.parametrize("name", ["linear_10_fci_fisherz_0.05.txt", "linear_10_pc_fisherz_0.05_stable_0_2.txt"])
def test_causallearn_fixture_roundtrip(name, cl_fixtures):
    G = np.loadtxt(cl_fixtures / name)
    g = from_causallearn(G)
    assert np.array_equal(to_causallearn(g, as_array=True), G.astype(int))
    assert g.num_nodes == 20


def test_causallearn_generalgraph_object():
    pytest.importorskip("causallearn")
    g = _example()
    gg = to_causallearn(g)
    assert np.array_equal(gg.graph, to_causallearn(g, as_array=True))
    assert from_causallearn(gg, nodes=g.nodes) == g


@pytest.mark.parametrize("marks,msg", [
    (np.zeros((2, 3)), r"shape \[k, k\]"),
    (np.array([[0, 4], [3, 0]]), "marks 0-3"),
    (np.array([[1, 0], [0, 0]]), "self-loop"),
    (np.array([[0, 2], [0, 0]]), "one end only"),
    (np.array([[0.0, 2.0], [3.0, 0.0]]), "integers"),
])
def test_bad_marks(marks, msg):
    with pytest.raises(cleann.ArgumentError, match=msg):
        Graph(marks)


def test_bad_nodes_and_labels():
    with pytest.raises(ValueError, match="nodes must have shape"):
        Graph(np.zeros((3, 3), np.int8), nodes=[0, 1])
    with pytest.raises(ValueError, match="labels must have 3"):
        Graph(np.zeros((3, 3), np.int8), labels=["a"])
    with pytest.raises(ValueError, match="0, -1, 1 or 2"):
        from_causallearn(np.array([[0, 3], [1, 0]]))
