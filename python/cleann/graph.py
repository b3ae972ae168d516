"""Graph types over a marks matrix in pcalg's convention.

``marks[a, b]`` is the mark at ``b`` on the edge between ``a`` and ``b``:
0 no edge, 1 circle, 2 arrowhead, 3 tail. So ``a --> b`` is ``marks[a, b] = 2, marks[b, a] = 3``,
``a <-> b`` is 2 / 2, ``a o-> b`` is ``marks[a, b] = 2, marks[b, a] = 1``.

causal-learn's GeneralGraph matrix ``G`` uses ``G[i, j]`` = mark at ``i`` (0 none, -1 tail,
1 arrowhead, 2 circle); :func:`to_causallearn` and :func:`from_causallearn` convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

NONE, CIRCLE, ARROW, TAIL = 0, 1, 2, 3
_SYMBOL_AT_SOURCE = {CIRCLE: "o", ARROW: "<", TAIL: "-"}
_SYMBOL_AT_TARGET = {CIRCLE: "o", ARROW: ">", TAIL: "-"}
_MARK_NAME = {CIRCLE: "circle", ARROW: "arrow", TAIL: "tail"}
_DOT_HEAD = {CIRCLE: "odot", ARROW: "normal", TAIL: "none"}

# ours -> causal-learn and back
_TO_CL = np.array([0, 2, 1, -1], dtype=np.int8)
_FROM_CL = {0: NONE, -1: TAIL, 1: ARROW, 2: CIRCLE}


def check_marks(marks, name: str = "marks") -> np.ndarray:
    """``marks`` as int8 [k, k], checked: values 0-3, zero diagonal, an edge has marks at both ends."""
    m = np.asarray(marks)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must have shape [k, k], got {list(m.shape)}")
    if m.dtype == bool or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{name} must hold integers 0-3, got dtype {m.dtype}")
    if m.size and (m.min() < 0 or m.max() > 3):
        bad = tuple(int(v) for v in np.argwhere((m < 0) | (m > 3))[0])
        raise ValueError(f"{name} must hold marks 0-3, got {m[bad]} at {bad}")
    if np.any(np.diagonal(m)):
        k = int(np.flatnonzero(np.diagonal(m))[0])
        raise ValueError(f"{name} has a self-loop at node {k}")
    half = (m != 0) != (m.T != 0)
    if half.any():
        a, b = (int(v) for v in np.argwhere(half)[0])
        raise ValueError(f"{name} has a mark at one end only of the edge ({a}, {b})")
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
    nodes: np.ndarray | None = None
    kind: str = "PAG"
    labels: list[str] | None = None
    params: dict = field(default_factory=dict)
    tests_per_level: np.ndarray | None = None
    backend: str | None = None
    sepsets: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.marks = check_marks(self.marks)
        k = self.marks.shape[0]
        if self.nodes is None:
            self.nodes = np.arange(k, dtype=np.int64)
        else:
            nodes = np.asarray(self.nodes)
            if nodes.size and (nodes.dtype == bool or not np.issubdtype(nodes.dtype, np.integer)):
                raise ValueError(f"nodes must be integer token indices, got dtype {nodes.dtype}")
            self.nodes = nodes.astype(np.int64)
        if self.nodes.shape != (k,):
            raise ValueError(f"nodes must have shape [{k}], got {list(self.nodes.shape)}")
        uniq, counts = np.unique(self.nodes, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"nodes must be distinct, token {int(uniq[counts > 1][0])} appears "
                             f"{int(counts[counts > 1][0])} times")
        if self.labels is not None and len(self.labels) != k:
            raise ValueError(f"labels must have {k} entries, got {len(self.labels)}")

    @property
    def num_nodes(self) -> int:
        return self.marks.shape[0]

    @property
    def adjacency(self) -> np.ndarray:
        """The skeleton: bool [k, k]."""
        return self.marks != 0

    def skeleton(self) -> "Graph":
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

    def _name(self, a: int, labels=None) -> str:
        labels = labels if labels is not None else self.labels
        return str(labels[a]) if labels is not None else str(int(self.nodes[a]))

    def to_networkx(self, labels=None):
        """A networkx DiGraph: one edge per adjacency, directed a -> b when a --> b, else low -> high.

        Nodes are token indices with a ``label`` attribute; edges carry ``source_mark`` and
        ``target_mark`` ("tail", "arrow", "circle") and ``edge`` ("-->", "o->", "<->", "o-o", "---").
        """
        import networkx as nx

        labels = labels if labels is not None else self.labels
        g = nx.DiGraph(kind=self.kind)
        for a in range(self.num_nodes):
            g.add_node(int(self.nodes[a]), label=self._name(a, labels))
        for a, b, at_a, at_b in self.edges():
            if at_a == ARROW and at_b == TAIL:  # b --> a
                a, b, at_a, at_b = b, a, at_b, at_a
            g.add_edge(int(self.nodes[a]), int(self.nodes[b]), source_mark=_MARK_NAME[at_a],
                       target_mark=_MARK_NAME[at_b],
                       edge=f"{_SYMBOL_AT_SOURCE[at_a]}-{_SYMBOL_AT_TARGET[at_b]}")
        return g

    def to_dot(self, labels=None, highlight=()) -> str:
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

    def __eq__(self, other) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return np.array_equal(self.marks, other.marks) and np.array_equal(self.nodes, other.nodes)

    def __repr__(self) -> str:
        return f"{self.kind}({self.num_nodes} nodes, {len(self.edges())} edges)"


def to_causallearn(graph, as_array: bool = False):
    """causal-learn's encoding of ``graph`` (a :class:`Graph` or a marks matrix).

    Returns a ``causallearn.graph.GeneralGraph`` (nodes named X1..Xk, as causal-learn names them),
    or with ``as_array=True`` (or without causal-learn installed) the int matrix ``G`` with
    ``G[i, j]`` the mark at i: 0 none, -1 tail, 1 arrowhead, 2 circle.
    """
    marks = graph.marks if isinstance(graph, Graph) else check_marks(graph)
    G = _TO_CL[marks.T.astype(np.intp)].astype(int)
    if as_array:
        return G
    try:
        from causallearn.graph.GeneralGraph import GeneralGraph
        from causallearn.graph.GraphNode import GraphNode
    except ImportError:
        return G
    nodes = [GraphNode(f"X{k + 1}") for k in range(G.shape[0])]
    gg = GeneralGraph(nodes)
    gg.graph = G.copy()
    gg.reconstitute_dpath(gg.get_graph_edges())
    return gg


def from_causallearn(G, kind: str = "PAG", nodes=None, labels=None) -> Graph:
    """A :class:`Graph` from causal-learn's GeneralGraph (or its ``.graph`` matrix)."""
    arr = np.asarray(getattr(G, "graph", G))
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"causal-learn graph matrix must be square, got shape {list(arr.shape)}")
    vals = np.round(arr).astype(int)
    if not np.array_equal(vals, arr) or not np.isin(vals, list(_FROM_CL)).all():
        bad = tuple(int(v) for v in np.argwhere(~np.isin(vals, list(_FROM_CL)) | (vals != arr))[0])
        raise ValueError(f"causal-learn marks must be 0, -1, 1 or 2, got {arr[bad]} at {bad}")
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

    def __getitem__(self, key) -> tuple:
        e = self._lookup()[tuple(key)]
        return tuple(self._members[self._offset[e]:self._offset[e + 1]].tolist())

    def __contains__(self, key) -> bool:
        try:
            return tuple(key) in self._lookup()
        except TypeError:
            return False

    def __iter__(self):
        return zip(self._i.tolist(), self._j.tolist())

    def __len__(self) -> int:
        return len(self._i)

    def __repr__(self) -> str:
        return f"SepsetMap({len(self)} pairs)"

    def arrays(self):
        """(i, j, offset, members): the sets as the compiled core takes them."""
        return self._i, self._j, self._offset, self._members


def _sepset_arrays(sepsets: dict, k: int):
    if isinstance(sepsets, SepsetMap):
        i, j, offset, members = sepsets.arrays()
        return (np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64),
                np.ascontiguousarray(offset, dtype=np.int64), np.ascontiguousarray(members, dtype=np.int32))
    keys = sorted(sepsets)
    i = np.array([min(a, b) for a, b in keys], dtype=np.int64)
    j = np.array([max(a, b) for a, b in keys], dtype=np.int64)
    members = [int(v) for key in keys for v in sepsets[key]]
    offset = np.zeros(len(keys) + 1, dtype=np.int64)
    offset[1:] = np.cumsum([len(sepsets[key]) for key in keys])
    return i, j, offset, np.asarray(members, dtype=np.int32)


def orient(graph, sepsets: dict | None = None, rules=range(1, 11), r0: bool = False, path_budget: int = 1 << 20):
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
        raise ValueError(f"rules must be numbers 1-10, got {rules}")
    mask = sum(1 << r for r in set(rules))
    i, j, offset, members = _sepset_arrays(sepsets, marks.shape[0])
    out, fired, _ = core().orient(np.ascontiguousarray(marks, dtype=np.int8), i, j, offset, members, bool(r0),
                                  mask, int(path_budget))
    return out, fired


def possible_ancestors(graph) -> np.ndarray:
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


def pds_tree(graph, root: int, max_depth: int | None = None) -> PdsTree:
    """The PDS-tree rooted at node position ``root`` (depth at most ``max_depth``)."""
    from ._core import core

    marks = graph.marks if isinstance(graph, Graph) else check_marks(graph)
    k = marks.shape[0]
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < k:
        raise ValueError(f"root must be a node position in [0, {k}), got {root!r}")
    node, parent, depth, min_depth = core().pds_tree(np.ascontiguousarray(marks, dtype=np.int8), int(root),
                                                     -1 if max_depth is None else int(max_depth))
    return PdsTree(int(root), node, parent, depth, {int(v): int(d) for v, d in enumerate(min_depth) if d >= 0})
