"""A perfect CI test for testing learners: d-separation in a known DAG with latent nodes."""

from __future__ import annotations

import numpy as np

from .errors import ArgumentError


class DSeparation:
    """Answers "i _||_ j | S" by d-separation in a DAG; pass it to :func:`cleann.fci` or
    :func:`cleann.icd` in place of a correlation matrix.

    Args:
        dag: a networkx.DiGraph, or a square bool/0-1 matrix with ``dag[a, b]`` for the edge a -> b.
        observed: the DAG nodes that are graph nodes, in order (node k of the learned graph is
            ``observed[k]``); every other DAG node is latent. Default: all nodes, in order.
    """

    def __init__(self, dag, observed=None):
        try:
            import networkx as nx
        except ImportError:  # pragma: no cover - networkx is a dependency
            nx = None
        if nx is not None and isinstance(dag, nx.DiGraph):
            names = list(dag.nodes)
            index = {v: k for k, v in enumerate(names)}
            edges = [(index[a], index[b]) for a, b in dag.edges]
            if not nx.is_directed_acyclic_graph(dag):
                raise ArgumentError("dag has a directed cycle")
        else:
            m = np.asarray(dag)
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise ArgumentError(f"dag must be a networkx.DiGraph or a square matrix, got shape {list(m.shape)}")
            names = list(range(m.shape[0]))
            index = {v: v for v in names}
            edges = [(int(a), int(b)) for a, b in np.argwhere(m != 0)]
            if any(a == b for a, b in edges):
                raise ArgumentError("dag has a self-loop")
            _check_acyclic(len(names), edges)
        observed = list(names) if observed is None else list(observed)
        missing = [v for v in observed if v not in index]
        if missing:
            raise ArgumentError(f"observed nodes {missing[:5]} are not in the DAG")
        if len(set(observed)) != len(observed):
            raise ArgumentError("observed nodes must be distinct")
        # Renumber: observed nodes first (0..k-1), latent after.
        order = [index[v] for v in observed] + [index[v] for v in names if v not in set(observed)]
        pos = {old: new for new, old in enumerate(order)}
        total = len(order)
        parents = [[] for _ in range(total)]
        for a, b in edges:
            parents[pos[b]].append(pos[a])
        offset = np.zeros(total + 1, dtype=np.int64)
        offset[1:] = np.cumsum([len(p) for p in parents])
        self.n = len(observed)
        self.observed = observed
        self._dag = (total, offset, np.asarray([p for ps in parents for p in sorted(ps)], dtype=np.int32))

    def __repr__(self) -> str:
        return f"DSeparation({self.n} observed of {self._dag[0]} nodes)"


def _check_acyclic(n: int, edges) -> None:
    indeg = [0] * n
    out = [[] for _ in range(n)]
    for a, b in edges:
        out[a].append(b)
        indeg[b] += 1
    stack = [v for v in range(n) if indeg[v] == 0]
    seen = 0
    while stack:
        v = stack.pop()
        seen += 1
        for w in out[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                stack.append(w)
    if seen != n:
        raise ArgumentError("dag has a directed cycle")
