"""Graph types over a marks matrix in pcalg's convention, and bridges to networkx and causal-learn.

``marks[a, b]`` is the mark at ``b`` on the edge between ``a`` and ``b``:
0 no edge, 1 circle, 2 arrowhead, 3 tail. So ``a --> b`` is ``marks[a, b] = 2, marks[b, a] = 3``,
``a <-> b`` is 2 / 2, ``a o-> b`` is ``marks[a, b] = 2, marks[b, a] = 1``.

:meth:`Graph.to_networkx` keeps PAG semantics: only ``-->`` edges become arcs, every edge is listed
with its marks in the graph attribute ``edges``, and :func:`from_networkx` reads it back.
causal-learn's GeneralGraph matrix ``G`` uses ``G[i, j]`` = mark at ``i`` (0 none, -1 tail,
1 arrowhead, 2 circle); :func:`to_causallearn` and :func:`from_causallearn` convert.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ArgumentError

if TYPE_CHECKING:
    import networkx as nx
    import numpy.typing as npt

NONE, CIRCLE, ARROW, TAIL = 0, 1, 2, 3
_SYMBOL_AT_SOURCE = {CIRCLE: "o", ARROW: "<", TAIL: "-"}
_SYMBOL_AT_TARGET = {CIRCLE: "o", ARROW: ">", TAIL: "-"}
_MARK_AT_SOURCE = {v: k for k, v in _SYMBOL_AT_SOURCE.items()}
_MARK_AT_TARGET = {v: k for k, v in _SYMBOL_AT_TARGET.items()}
# to_networkx lists each edge from its weaker end: "-->", "o->", "--o", never "<--", "<-o", "o--"
_RANK = {TAIL: 0, CIRCLE: 1, ARROW: 2}
KINDS = ("PAG", "CPDAG", "skeleton")
_DOT_HEAD = {CIRCLE: "odot", ARROW: "normal", TAIL: "none"}

# ours -> causal-learn and back
_TO_CL = np.array([0, 2, 1, -1], dtype=np.int8)
_FROM_CL = {0: NONE, -1: TAIL, 1: ARROW, 2: CIRCLE}


def check_marks(marks: Any, name: str = "marks") -> np.ndarray:
    """``marks`` as int8 [k, k], checked: values 0-3, zero diagonal, an edge has marks at both ends."""
    m = np.asarray(marks)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ArgumentError(f"{name} must have shape [k, k], got {list(m.shape)}")
    if m.dtype == bool or not np.issubdtype(m.dtype, np.integer):
        raise ArgumentError(f"{name} must hold integers 0-3, got dtype {m.dtype}")
    if m.size and (m.min() < 0 or m.max() > 3):
        bad = tuple(int(v) for v in np.argwhere((m < 0) | (m > 3))[0])
        raise ArgumentError(f"{name} must hold marks 0-3, got {m[bad]} at {bad}")
    if np.any(np.diagonal(m)):
        k = int(np.flatnonzero(np.diagonal(m))[0])
        raise ArgumentError(f"{name} has a self-loop at node {k}")
    half = (m != 0) != (m.T != 0)
    if half.any():
        a, b = (int(v) for v in np.argwhere(half)[0])
        raise ArgumentError(f"{name} has a mark at one end only of the edge ({a}, {b})")
    return m.astype(np.int8)


@dataclass
class Graph:
    """A mixed graph over token nodes.

    Attributes:
        marks: int8 [k, k] in pcalg's convention (module docstring).
        nodes: int64 [k], the token index of each node (ascending).
        kind: "PAG", "CPDAG" or "skeleton".
        labels: optional node labels (e.g. tokens), one per node.
        params: the arguments of the learner that produced it.
        tests_per_level: CI tests per conditioning-set size, when a learner produced it.
        backend: which implementation ran.
        sepsets: separating sets of the removed pairs, keyed by node positions (i, j), i < j.
        info: learner diagnostics (singular tests per level, how often each rule fired, ...).
    """

    marks: np.ndarray
    nodes: np.ndarray = None  # type: ignore[assignment]  # None: 0..k-1, filled in by __post_init__
    kind: str = "PAG"
    labels: list[str] | None = None
    params: dict = field(default_factory=dict)
    tests_per_level: np.ndarray | None = None
    backend: str | None = None
    sepsets: Mapping = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    if TYPE_CHECKING:  # what the generated __init__ accepts: array-likes, converted by __post_init__
        def __init__(self, marks: npt.ArrayLike, nodes: npt.ArrayLike | None = None, kind: str = "PAG",
                     labels: Sequence[str] | None = None, params: dict | None = None,
                     tests_per_level: np.ndarray | None = None, backend: str | None = None,
                     sepsets: Mapping | None = None, info: dict | None = None) -> None: ...

    def __post_init__(self) -> None:
        self.marks = check_marks(self.marks)
        k = self.marks.shape[0]
        if self.nodes is None:
            self.nodes = np.arange(k, dtype=np.int64)
        else:
            nodes = np.asarray(self.nodes)
            if nodes.size and (nodes.dtype == bool or not np.issubdtype(nodes.dtype, np.integer)):
                raise ArgumentError(f"nodes must be integer token indices, got dtype {nodes.dtype}")
            self.nodes = nodes.astype(np.int64)
        if self.nodes.shape != (k,):
            raise ArgumentError(f"nodes must have shape [{k}], got {list(self.nodes.shape)}")
        uniq, counts = np.unique(self.nodes, return_counts=True)
        if (counts > 1).any():
            raise ArgumentError(f"nodes must be distinct, token {int(uniq[counts > 1][0])} appears "
                             f"{int(counts[counts > 1][0])} times")
        if self.labels is not None and len(self.labels) != k:
            raise ArgumentError(f"labels must have {k} entries, got {len(self.labels)}")

    @property
    def num_nodes(self) -> int:
        return self.marks.shape[0]

    @property
    def adjacency(self) -> np.ndarray:
        """The skeleton: bool [k, k]."""
        return self.marks != 0

    def skeleton(self) -> Graph:
        """The same adjacencies with every end a tail (undirected)."""
        return Graph(np.where(self.marks != 0, TAIL, NONE).astype(np.int8), self.nodes.copy(), "skeleton",
                     self.labels, dict(self.params), self.tests_per_level, self.backend)

    def edges(self) -> list[tuple[int, int, int, int]]:
        """(a, b, mark at a, mark at b) for every edge, a < b, as node positions."""
        a_idx, b_idx = np.nonzero(np.triu(self.marks != 0, 1))
        return [(int(a), int(b), int(self.marks[b, a]), int(self.marks[a, b])) for a, b in zip(a_idx, b_idx)]

    def edge_string(self, a: int, b: int) -> str:
        """``"a o-> b"`` style text for the edge between positions a and b ('' when absent)."""
        if not self.marks[a, b]:
            return ""
        left = _SYMBOL_AT_SOURCE[int(self.marks[b, a])]
        right = _SYMBOL_AT_TARGET[int(self.marks[a, b])]
        return f"{self._name(a)} {left}-{right} {self._name(b)}"

    def _name(self, a: int, labels: Sequence[str] | None = None) -> str:
        labels = labels if labels is not None else self.labels
        return str(labels[a]) if labels is not None else str(int(self.nodes[a]))

    # Queries. Nodes are named by position (0..k-1, as in edges() and the sepsets), like every
    # other method here; ``position(token)`` turns a token index into one, ``nodes[result]`` back.

    def position(self, token: int) -> int:
        """The node position of the token index ``token``."""
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            raise ArgumentError(f"token must be an integer token index, got {token!r}")
        hit = np.flatnonzero(self.nodes == int(token))
        if not hit.size:
            raise ArgumentError(f"token {int(token)} is not a node of this graph (nodes: {self.nodes.tolist()})")
        return int(hit[0])

    def _position(self, v: int) -> int:
        k = self.num_nodes
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < k:
            raise ArgumentError(f"v must be a node position in [0, {k}), got {v!r}")
        return int(v)

    def _neighbours(self, v: int, at_v: int, at_other: int) -> list[int]:
        """Positions a adjacent to v with mark ``at_v`` at v and ``at_other`` at a."""
        v = self._position(v)
        return np.flatnonzero((self.marks[:, v] == at_v) & (self.marks[v, :] == at_other)).tolist()

    def parents(self, v: int) -> list[int]:
        """Positions a with ``a --> v``, ascending."""
        return self._neighbours(v, ARROW, TAIL)

    def children(self, v: int) -> list[int]:
        """Positions b with ``v --> b``, ascending."""
        return self._neighbours(v, TAIL, ARROW)

    def spouses(self, v: int) -> list[int]:
        """Positions a with ``a <-> v``, ascending."""
        return self._neighbours(v, ARROW, ARROW)

    def _reach(self, v: int, step: np.ndarray) -> list[int]:
        """Positions x != v from which v is reached along edges x -> y with ``step[x, y]``."""
        v = self._position(v)
        seen = np.zeros(self.num_nodes, dtype=bool)
        seen[v] = True
        queue = deque([v])
        while queue:
            y = queue.popleft()
            for x in np.flatnonzero(step[:, y] & ~seen).tolist():
                seen[x] = True
                queue.append(x)
        seen[v] = False
        return np.flatnonzero(seen).tolist()

    def _directed(self) -> np.ndarray:
        """bool [k, k]: ``[a, b]`` when ``a --> b``."""
        return (self.marks == ARROW) & (self.marks.T == TAIL)

    def ancestors(self, v: int) -> list[int]:
        """Definite ancestors of v: positions with a directed path ``a --> ... --> v`` (v excluded)."""
        return self._reach(v, self._directed())

    def descendants(self, v: int) -> list[int]:
        """Definite descendants of v: positions with a directed path ``v --> ... --> b`` (v excluded)."""
        return self._reach(v, self._directed().T)

    def possible_ancestors(self, v: int) -> list[int]:
        """Positions with a possibly directed path to v (v excluded), ascending.

        In a PAG (Zhang 2008) a path <a = x0, x1, ..., xm = v> is possibly directed when no edge
        <x_i, x_i+1> has an arrowhead at x_i or a tail at x_i+1: the edges ``-->``, ``o->`` and
        ``o-o`` can be walked forward, and ``<->``, ``---`` (selection) and ``--o`` cannot. In a
        CPDAG or a skeleton an undirected edge may point either way, so only an arrowhead at x_i
        stops the path. The definite ancestors are always among the possible ones.
        """
        m = self.marks
        step = (m != NONE) & (m.T != ARROW)  # step[x, y]: the edge x-y has no arrowhead at x
        if self.kind == "PAG":
            step &= m != TAIL
        return self._reach(v, step)

    def to_networkx(self, labels: Sequence[str] | None = None) -> nx.DiGraph:
        """The graph as a ``networkx.DiGraph`` whose arcs are exactly its directed edges.

        Only ``a --> b`` (a tail at a, an arrowhead at b) is an arc a -> b, so networkx's path
        queries (``nx.ancestors``, ``nx.descendants``, ``nx.has_path``, ``nx.is_directed_acyclic_graph``)
        answer about definite causal relations. ``o->``, ``<->``, ``o-o``, ``---`` and ``--o`` edges
        are not arcs; they, and the ``-->`` edges too, are listed in ``G.graph["edges"]``, so no edge
        is lost and :func:`from_networkx` reads the graph back.

        Returns:
            A DiGraph whose nodes are the token indices, with attributes ``label`` (``labels``, the
            graph's labels, or the token index as text) and ``position``; graph attributes ``kind``
            ("PAG", "CPDAG" or "skeleton") and ``edges``: one ``(u, v, edge)`` per adjacency,
            u and v token indices and ``edge`` one of "-->", "o->", "<->", "o-o", "---", "--o"
            (u's mark on the left); the end with the weaker mark (tail, then circle, then
            arrowhead) comes first, the lower position on a tie; in the order of :meth:`edges`.
        """
        import networkx as nx

        labels = labels if labels is not None else self.labels
        if labels is not None and len(labels) != self.num_nodes:
            raise ArgumentError(f"labels must have {self.num_nodes} entries, got {len(labels)}")
        tokens = self.nodes.tolist()
        listed = []
        for a, b, at_a, at_b in self.edges():
            if _RANK[at_b] < _RANK[at_a]:
                a, b, at_a, at_b = b, a, at_b, at_a
            listed.append((tokens[a], tokens[b], _edge_text(at_a, at_b)))
        g = nx.DiGraph(kind=self.kind, edges=listed)
        for a, token in enumerate(tokens):
            g.add_node(token, label=self._name(a, labels), position=a)
        g.add_edges_from((u, v) for u, v, edge in listed if edge == "-->")
        return g

    def to_dot(self, labels: Sequence[str] | None = None, highlight: Iterable[int] = ()) -> str:
        """Graphviz DOT text; nodes in ``highlight`` (token indices) are filled."""
        labels = labels if labels is not None else self.labels
        hl = {int(h) for h in highlight}
        lines = [f"graph {self.kind} {{", "  node [shape=ellipse];"]
        for a in range(self.num_nodes):
            name = self._name(a, labels).replace("\\", "\\\\").replace('"', '\\"')
            style = ', style=filled, fillcolor="#ffd27f"' if int(self.nodes[a]) in hl else ""
            lines.append(f'  n{int(self.nodes[a])} [label="{name}"{style}];')
        for a, b, at_a, at_b in self.edges():
            lines.append(f"  n{int(self.nodes[a])} -- n{int(self.nodes[b])} "
                         f"[dir=both, arrowtail={_DOT_HEAD[at_a]}, arrowhead={_DOT_HEAD[at_b]}];")
        lines.append("}")
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return np.array_equal(self.marks, other.marks) and np.array_equal(self.nodes, other.nodes)

    def __repr__(self) -> str:
        return f"{self.kind}({self.num_nodes} nodes, {len(self.edges())} edges)"


def _edge_text(at_a: int, at_b: int) -> str:
    return f"{_SYMBOL_AT_SOURCE[at_a]}-{_SYMBOL_AT_TARGET[at_b]}"


def _parse_edge(edge: object) -> tuple[int, int]:
    """(mark at the left node, mark at the right node) of text such as "o->" or "<--"."""
    if (not isinstance(edge, str) or len(edge) != 3 or edge[1] != "-" or edge[0] not in _MARK_AT_SOURCE
            or edge[2] not in _MARK_AT_TARGET):
        raise ArgumentError(f"an edge must be written like '-->', 'o->', '<->', 'o-o', '---' or '--o', got {edge!r}")
    return _MARK_AT_SOURCE[edge[0]], _MARK_AT_TARGET[edge[2]]


def _is_token(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and bool(v >= 0)


def from_networkx(G: nx.Graph, kind: str | None = None) -> Graph:
    """A :class:`Graph` from a networkx graph; the inverse of :meth:`Graph.to_networkx`.

    Three inputs are read:

    - a DiGraph with a graph attribute ``edges`` (what :meth:`Graph.to_networkx` returns): the
      edges come from that list, and its arcs must be exactly the ``-->`` edges listed there;
    - any other DiGraph: every arc u -> v is ``u --> v``. Two opposite arcs are refused, not
      guessed: other libraries write ``<->``, an undirected CPDAG edge or a 2-cycle that way;
    - an undirected Graph: every edge is ``o-o`` in a PAG (nothing known about its marks) and
      ``---`` in a CPDAG or a skeleton.

    Nodes that are all non-negative integers are token indices (sorted ascending); other node
    names become positions in the graph's node order, with the names as labels. A ``label`` node
    attribute, where present, gives the labels.

    Args:
        kind: "PAG", "CPDAG" or "skeleton"; default the graph attribute ``kind``, else "PAG".
    """
    import networkx as nx

    if not isinstance(G, nx.Graph):
        raise ArgumentError(f"G must be a networkx graph, got {type(G).__name__}")
    if G.is_multigraph():
        raise ArgumentError("G is a multigraph; cleann's graphs hold at most one edge per pair of nodes")
    loops = list(nx.selfloop_edges(G))
    if loops:
        raise ArgumentError(f"G has a self-loop at node {loops[0][0]!r}")
    kind = G.graph.get("kind", "PAG") if kind is None else kind
    if kind not in KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    ids = list(G.nodes)
    tokens = all(_is_token(v) for v in ids)
    if tokens:
        ids = sorted(ids)
    pos = {v: a for a, v in enumerate(ids)}
    k = len(ids)
    labels = None
    if any("label" in G.nodes[v] for v in ids):
        labels = [str(G.nodes[v].get("label", v)) for v in ids]
    elif not tokens:
        labels = [str(v) for v in ids]
    marks = np.zeros((k, k), dtype=np.int8)

    def put(u: object, v: object, at_u: int, at_v: int) -> None:
        if u not in pos or v not in pos:
            raise ArgumentError(f"edge ({u!r}, {v!r}) names a node that is not in G")
        a, b = pos[u], pos[v]
        if a == b:
            raise ArgumentError(f"G has a self-loop at node {u!r}")
        if marks[a, b]:
            raise ArgumentError(f"G has more than one edge between {u!r} and {v!r}")
        marks[b, a], marks[a, b] = at_u, at_v

    if "edges" in G.graph:
        if not G.is_directed():
            raise ArgumentError("G.graph['edges'] is the encoding of Graph.to_networkx, which is a DiGraph; "
                                "got an undirected graph")
        directed = set()
        for item in G.graph["edges"]:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise ArgumentError(f"G.graph['edges'] must hold (u, v, edge) triples, got {item!r}")
            u, v, edge = item
            at_u, at_v = _parse_edge(edge)
            put(u, v, at_u, at_v)
            if (at_u, at_v) == (TAIL, ARROW):
                directed.add((u, v))
            elif (at_u, at_v) == (ARROW, TAIL):
                directed.add((v, u))
        arcs = set(G.edges())
        if arcs != directed:
            u, v = sorted(arcs ^ directed, key=repr)[0]
            raise ArgumentError(
                f"G's arcs must be exactly the --> edges of G.graph['edges']: {u!r} -> {v!r} is "
                + ("an arc without a --> edge" if (u, v) in arcs else "a --> edge without an arc"))
    elif G.is_directed():
        for u, v in G.edges():
            if G.has_edge(v, u):
                raise ArgumentError(
                    f"G has arcs {u!r} -> {v!r} and {v!r} -> {u!r}: a plain DiGraph is read as --> edges only; "
                    "write <-> and other edges in G.graph['edges'], as Graph.to_networkx does")
            put(u, v, TAIL, ARROW)
    else:
        at = CIRCLE if kind == "PAG" else TAIL
        for u, v in G.edges():
            put(u, v, at, at)
    return Graph(marks, nodes=np.asarray(ids if tokens else range(k), dtype=np.int64), kind=kind, labels=labels)


def _causallearn_names(graph: Graph) -> list[str]:
    """Node names for causal-learn, which needs them distinct: the labels when they are, each
    label with its token index ("the#3") when some repeat, the token indices without labels."""
    tokens = graph.nodes.tolist()
    if graph.labels is None:
        return [str(t) for t in tokens]
    labels = [str(lab) for lab in graph.labels]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{lab}#{t}" for lab, t in zip(labels, tokens)]


def to_causallearn(graph: Graph | np.ndarray, as_array: bool = False, names: Sequence[str] | None = None) -> Any:
    """causal-learn's encoding of ``graph`` (a :class:`Graph` or a marks matrix).

    Returns a ``causallearn.graph.GeneralGraph``, or with ``as_array=True`` (or without causal-learn
    installed) the int matrix ``G`` with ``G[i, j]`` the mark at i: 0 none, -1 tail, 1 arrowhead,
    2 circle. Its nodes are named ``names``, by default the graph's labels when they are distinct,
    ``label#token`` when some repeat, and the token indices without labels (``X1`` .. ``Xk``, as
    causal-learn names them, for a bare marks matrix). Each node also carries the attributes
    ``token`` and, with labels, ``label``, which :func:`from_causallearn` reads back.
    """
    g = graph if isinstance(graph, Graph) else None
    marks = g.marks if g is not None else check_marks(graph)
    k = marks.shape[0]
    G = _TO_CL[marks.T.astype(np.intp)].astype(int)
    if names is None:
        names = _causallearn_names(g) if g is not None else [f"X{a + 1}" for a in range(k)]
    else:
        names = [str(name) for name in names]
        if len(names) != k or len(set(names)) != k:
            raise ArgumentError(f"names must be {k} distinct names, got {list(names)!r}")
    if as_array:
        return G
    try:
        from causallearn.graph.GeneralGraph import GeneralGraph
        from causallearn.graph.GraphNode import GraphNode
    except ImportError:
        return G
    nodes = [GraphNode(name) for name in names]
    for a, node in enumerate(nodes):
        node.add_attribute("token", int(g.nodes[a]) if g is not None else a)
        if g is not None and g.labels is not None:
            node.add_attribute("label", g.labels[a])
    gg = GeneralGraph(nodes)
    gg.graph = G.copy()
    gg.reconstitute_dpath(gg.get_graph_edges())
    return gg


def from_causallearn(G: Any, kind: str | None = None, nodes: Sequence[int] | np.ndarray | None = None,
                     labels: Sequence[str] | None = None) -> Graph:
    """A :class:`Graph` from causal-learn's result.

    Args:
        G: a ``GeneralGraph`` (what ``fci`` returns first, or :func:`to_causallearn`), a
            ``CausalGraph`` (what ``pc`` returns; its ``.G`` is read), or a ``GeneralGraph.graph``
            matrix (``G[i, j]`` the mark at i: 0 none, -1 tail, 1 arrowhead, 2 circle).
        kind: default "CPDAG" for a CausalGraph, else "PAG".
        nodes: token indices; default the nodes' ``token`` attributes (written by
            :func:`to_causallearn`) where every node has one, else 0..k-1.
        labels: default the nodes' ``label`` attributes where the nodes carry tokens, else the
            node names; none for a bare matrix.
    """
    if isinstance(G, tuple):
        raise ArgumentError("G is a tuple: pass the graph itself (causal-learn's fci returns (graph, edges))")
    obj = G
    if kind is None:
        kind = "CPDAG" if hasattr(obj, "G") and hasattr(obj.G, "graph") else "PAG"
    if hasattr(obj, "G") and hasattr(obj.G, "graph"):
        obj = obj.G
    cl_nodes = list(obj.nodes) if hasattr(obj, "graph") and hasattr(obj, "nodes") else None
    arr = np.asarray(getattr(obj, "graph", obj))
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not np.issubdtype(arr.dtype, np.number):
        raise ArgumentError(f"from_causallearn takes a GeneralGraph, a CausalGraph or a square mark matrix, got "
                            f"{type(G).__name__} (as an array: shape {list(arr.shape)}, dtype {arr.dtype})")
    vals = np.round(arr).astype(int)
    multi = np.isin(vals, [4, 5]) & (vals == arr)
    if multi.any():
        i, j = (int(v) for v in np.argwhere(multi)[0])
        raise ArgumentError(f"causal-learn graph has two edges between nodes {i} and {j} (marks 4/5: --> and <-> "
                            "together); cleann's graphs hold one edge per pair")
    if not np.array_equal(vals, arr) or not np.isin(vals, list(_FROM_CL)).all():
        bad = tuple(int(v) for v in np.argwhere(~np.isin(vals, list(_FROM_CL)) | (vals != arr))[0])
        raise ArgumentError(f"causal-learn marks must be 0, -1, 1 or 2, got {arr[bad]} at {bad}")
    if cl_nodes is not None and len(cl_nodes) != arr.shape[0]:
        raise ArgumentError(f"causal-learn graph has {len(cl_nodes)} nodes but a {list(arr.shape)} matrix")
    if cl_nodes is not None:
        attrs = [getattr(node, "attributes", None) or {} for node in cl_nodes]
        ours = all("token" in at for at in attrs)
        if nodes is None and ours:
            nodes = [int(at["token"]) for at in attrs]
        if labels is None:
            if not ours:
                labels = [str(node.get_name()) for node in cl_nodes]
            elif all("label" in at for at in attrs):
                labels = [at["label"] for at in attrs]
    at = np.vectorize(_FROM_CL.get, otypes=[np.int8])(vals) if vals.size else vals.astype(np.int8)
    return Graph(at.T.copy(), nodes=nodes, kind=kind, labels=labels)


class SepsetMap(Mapping):
    """Separating sets {(i, j): tuple of node positions} of one graph, read from the learner's
    arrays on demand: a 5,000-node graph removes about 12 million pairs, and a dict of tuples for
    them would take gigabytes that most callers never read."""

    def __init__(self, i: np.ndarray, j: np.ndarray, offset: np.ndarray, members: np.ndarray):
        self._i, self._j, self._offset, self._members = i, j, offset, members
        self._index: dict | None = None

    def _lookup(self) -> dict:
        if self._index is None:
            self._index = {(a, b): e for e, (a, b) in enumerate(zip(self._i.tolist(), self._j.tolist()))}
        return self._index

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, ...]:
        e = self._lookup()[tuple(key)]
        return tuple(self._members[self._offset[e]:self._offset[e + 1]].tolist())

    def __contains__(self, key: Any) -> bool:
        try:
            return tuple(key) in self._lookup()
        except TypeError:
            return False

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._i.tolist(), self._j.tolist())

    def __len__(self) -> int:
        return len(self._i)

    def __repr__(self) -> str:
        return f"SepsetMap({len(self)} pairs)"

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(i, j, offset, members): the sets as the compiled core takes them."""
        return self._i, self._j, self._offset, self._members


def _sepset_arrays(sepsets: Mapping, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(sepsets, SepsetMap):
        i, j, offset, members = sepsets.arrays()
        return (np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64),
                np.ascontiguousarray(offset, dtype=np.int64), np.ascontiguousarray(members, dtype=np.int32))
    keys = sorted(sepsets)
    i = np.array([min(a, b) for a, b in keys], dtype=np.int64)
    j = np.array([max(a, b) for a, b in keys], dtype=np.int64)
    flat = [int(v) for key in keys for v in sepsets[key]]
    offset = np.zeros(len(keys) + 1, dtype=np.int64)
    offset[1:] = np.cumsum([len(sepsets[key]) for key in keys])
    return i, j, offset, np.asarray(flat, dtype=np.int32)


def orient(graph: Graph | np.ndarray, sepsets: Mapping | None = None, rules: Iterable[int] = range(1, 11),
           r0: bool = False, path_budget: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Applies R0 (with ``r0=True``) and Zhang's rules to a copy of ``graph``'s marks.

    Args:
        graph: a :class:`Graph` or a marks matrix.
        sepsets: {(a, b): separating set} over node positions (default: the graph's own).
        rules: the rule numbers (1-10) to apply, each in turn, in passes until none changes a mark.

    Returns:
        (marks, fired): the new int8 marks and how often each rule R0-R10 fired.
    """
    from ._core import core

    marks = graph.marks if isinstance(graph, Graph) else check_marks(graph)
    if sepsets is None:
        sepsets = graph.sepsets if isinstance(graph, Graph) else {}
    rules = [int(r) for r in rules]
    if any(r < 1 or r > 10 for r in rules):
        raise ArgumentError(f"rules must be numbers 1-10, got {rules}")
    mask = sum(1 << r for r in set(rules))
    i, j, offset, members = _sepset_arrays(sepsets, marks.shape[0])
    out, fired, _ = core().orient(np.ascontiguousarray(marks, dtype=np.int8), i, j, offset, members, bool(r0),
                                  mask, int(path_budget))
    return out, fired


def possible_ancestors(graph: Graph | np.ndarray) -> np.ndarray:
    """bool [k, k]: ``[x, y]`` is true when a potentially directed path runs from x to y."""
    from ._core import core

    marks = graph.marks if isinstance(graph, Graph) else check_marks(graph)
    return core().possible_ancestors(np.ascontiguousarray(marks, dtype=np.int8))


@dataclass
class PdsTree:
    """A PDS-tree: node occurrences reached from the root along possible-d-sep paths.

    Attributes:
        root: the root's node position.
        node, parent, depth: per occurrence (occurrence 0 is the root, parent -1).
        distance: {node position: smallest depth} for every node in the tree.
    """

    root: int
    node: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    distance: dict

    def children(self, occurrence: int) -> list[int]:
        return [int(c) for c in np.flatnonzero(self.parent == occurrence)]


def pds_tree(graph: Graph | np.ndarray, root: int, max_depth: int | None = None) -> PdsTree:
    """The PDS-tree rooted at node position ``root`` (depth at most ``max_depth``)."""
    from ._core import core

    marks = graph.marks if isinstance(graph, Graph) else check_marks(graph)
    k = marks.shape[0]
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < k:
        raise ArgumentError(f"root must be a node position in [0, {k}), got {root!r}")
    node, parent, depth, min_depth = core().pds_tree(np.ascontiguousarray(marks, dtype=np.int8), int(root),
                                                     -1 if max_depth is None else int(max_depth))
    return PdsTree(int(root), node, parent, depth, {int(v): int(d) for v, d in enumerate(min_depth) if d >= 0})
