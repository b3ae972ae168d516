"""PC-stable skeleton search over one correlation matrix or a stack of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _backend, _core, _reference
from ._checks import (alpha_value, corr_stack, level_value, num_samples_value, pivot_tol_value, threads_value,
                      to_numpy)
from .ci import PIVOT_TOL
from .errors import ArgumentError

SEPSET_MODES = ("first", "all")


class SepSets:
    """Separating sets of the removed edges.

    Keys are ``(i, j)`` for one graph, ``(b, i, j)`` for a stack; order of i and j does not matter.
    ``sepsets[key]`` is the first separating set found (a tuple of node indices);
    ``sepsets.all(key)`` lists every set found (more than one only with ``sepsets="all"``),
    ``sepsets.union(key)`` is their union, ``sepsets.level(key)`` the level that removed the edge.
    """

    def __init__(self, raw: dict, batched: bool):
        self._batched = batched
        self._graph = raw["edge_graph"]
        self._i = raw["edge_i"]
        self._j = raw["edge_j"]
        self._level = raw["edge_level"]
        self._offset = raw["set_offset"]
        self._count = raw["set_count"]
        self._members = raw["set_members"]
        self._lookup: dict | None = None  # (b, i, j) -> edge, built on first use

    @property
    def _index(self) -> dict:
        if self._lookup is None:  # tolist: no per-entry NumPy scalars (20,000 pairs at 200 nodes)
            keys = zip(np.asarray(self._graph).tolist(), np.asarray(self._i).tolist(), np.asarray(self._j).tolist())
            self._lookup = {k: e for e, k in enumerate(keys)}
        return self._lookup

    @classmethod
    def from_dict(cls, found: dict, batched: bool = False) -> "SepSets":
        """Build from ``{(b, i, j) or (i, j): [sets]}`` (the reference's output)."""
        raw = {k: [] for k in ("edge_graph", "edge_i", "edge_j", "edge_level", "set_offset", "set_count")}
        members: list[int] = []
        for key, sets in found.items():
            b, i, j = key if len(key) == 3 else (0, *key)
            raw["edge_graph"].append(b)
            raw["edge_i"].append(min(i, j))
            raw["edge_j"].append(max(i, j))
            raw["edge_level"].append(len(sets[0]))
            raw["set_offset"].append(len(members))
            raw["set_count"].append(len(sets))
            for s in sets:
                members.extend(s)
        raw = {k: np.asarray(v, dtype=np.int64) for k, v in raw.items()}
        raw["set_members"] = np.asarray(members, dtype=np.int32)
        return cls(raw, batched)

    def _key(self, key) -> tuple[int, int, int]:
        key = tuple(int(k) for k in key)
        if self._batched:
            if len(key) != 3:
                raise KeyError(f"keys of a stack's sepsets are (b, i, j), got {key}")
            b, i, j = key
        else:
            if len(key) != 2:
                raise KeyError(f"keys of one graph's sepsets are (i, j), got {key}")
            b, (i, j) = 0, key
        return b, min(i, j), max(i, j)

    def _edge(self, key) -> int:
        k = self._key(key)
        if k not in self._index:
            raise KeyError(f"no separating set for {key}: the edge was not removed")
        return self._index[k]

    def all(self, key) -> list[tuple[int, ...]]:
        e = self._edge(key)
        lvl, start, cnt = int(self._level[e]), int(self._offset[e]), int(self._count[e])
        flat = self._members[start:start + cnt * lvl].tolist()
        return [tuple(flat[k * lvl:(k + 1) * lvl]) for k in range(cnt)]

    def __getitem__(self, key) -> tuple[int, ...]:
        return self.all(key)[0]

    def get(self, key: tuple[int, ...], default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def union(self, key) -> frozenset[int]:
        return frozenset(v for s in self.all(key) for v in s)

    def level(self, key) -> int:
        return int(self._level[self._edge(key)])

    def __contains__(self, key) -> bool:
        try:
            return self._key(key) in self._index
        except KeyError:
            return False

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> Iterator[tuple[int, ...]]:
        for b, i, j in self._index:
            yield (b, i, j) if self._batched else (i, j)

    __iter__ = keys

    def items(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        for k in self.keys():
            yield k, self[k]

    def arrays(self) -> dict:
        """The flat arrays (edge_graph, edge_i, edge_j, edge_level, set_offset, set_count, set_members)."""
        return {
            "edge_graph": self._graph, "edge_i": self._i, "edge_j": self._j, "edge_level": self._level,
            "set_offset": self._offset, "set_count": self._count, "set_members": self._members,
        }

    def __repr__(self) -> str:
        return f"SepSets({len(self)} removed edges)"


@dataclass(frozen=True)
class Skeleton:
    """Result of :func:`skeleton`.

    Attributes:
        adjacency: bool [n, n] or [B, n, n].
        sepsets: :class:`SepSets` of the removed edges.
        tests_per_level: int64 [levels] or [B, levels], CI tests run at each level.
        singular_per_level: tests whose conditioning block was singular (counted as dependent).
        params: the arguments that produced it.
        backend: which implementation ran.
    """

    adjacency: np.ndarray
    sepsets: SepSets
    tests_per_level: np.ndarray
    singular_per_level: np.ndarray
    params: dict = field(default_factory=dict)
    backend: str = "cpu"

    @property
    def num_tests(self) -> int:
        return int(self.tests_per_level.sum())

    @property
    def num_levels(self) -> int:
        return int(self.tests_per_level.shape[-1])


def skeleton(R, num_samples, alpha: float = 0.01, max_level: int | None = None, sepsets: str = "first",
             backend: str = "auto", *, adjacency=None, pivot_tol: float = PIVOT_TOL,
             num_threads: int | None = None) -> Skeleton:
    """PC-stable skeleton with Fisher-z CI tests.

    Level l = 0, 1, ...: for every edge (i, j), i < j, present at the start of the level, the
    l-subsets of adj(i) \\ {j} are tried in lexicographic order, then those of adj(j) \\ {i} not
    tried yet; removals take effect at the next level. The search stops when no edge has l other
    neighbours, or after ``max_level``.

    Args:
        R: correlation matrix [n, n] or stack [B, n, n] (NumPy or torch).
        num_samples: N of the Fisher z test (for attention: the model's hidden size).
        alpha: significance level; independent iff p > alpha.
        max_level: largest conditioning-set size (None: no limit).
        sepsets: "first" stops each edge at its first independence; "all" tests every set of the
            level and keeps them all (causal-learn's stable semantics).
        backend: "auto" | "cpu" | "numpy" (and "cuda" | "triton" where built).
        adjacency: optional starting graph, bool [n, n] or [B, n, n] (symmetric, no self-loops);
            default complete.
        pivot_tol: conditioning blocks with a pivot under this are singular, counted as dependent.
        num_threads: threads for the compiled path (None: all).

    Raises:
        ArgumentError (a ValueError): bad shapes or values, or a level reached where num_samples - l - 3 <= 0.
    """
    N = num_samples_value(num_samples)
    a = alpha_value(alpha)
    if sepsets not in SEPSET_MODES:
        raise ArgumentError(f"sepsets must be 'first' or 'all', got {sepsets!r}")
    level = level_value(max_level)
    pivot_tol = pivot_tol_value(pivot_tol)
    nt = threads_value(num_threads)
    params = {"num_samples": N, "alpha": a, "max_level": max_level, "sepsets": sepsets, "pivot_tol": pivot_tol}
    if sepsets == "all" and backend in _backend.GPU_BACKENDS:
        raise _backend.BackendUnavailableError(
            f"backend {backend!r} keeps the first separating set of each edge only; use sepsets='first' "
            "or backend='cpu'")
    which = _backend.resolve(backend, "skeleton", R, gpu=sepsets == "first")
    if which in _backend.GPU_BACKENDS:
        raw, adj, batched = _gpu_skeleton(which, R, adjacency, N, a, max_level, pivot_tol)
    else:
        corr, batched = corr_stack(R, "R")
        adj = _start_graph(adjacency, corr.shape, batched)
        if which == "numpy":
            raw = _reference_stack(corr, adj, N, a, max_level, sepsets, pivot_tol)
        else:
            raw = _core.core().skeleton(corr, adj, N, a, level,
                                        sepsets == "all", float(pivot_tol), nt)
    tests = raw["tests"].T.copy()        # [B, levels]
    singular = raw["singular"].T.copy()
    out_adj = adj.astype(bool)
    if not batched:
        out_adj, tests, singular = out_adj[0], tests[0], singular[0]
    return Skeleton(adjacency=out_adj, sepsets=SepSets(raw, batched), tests_per_level=tests,
                    singular_per_level=singular, params=params, backend=which)


def _start_graph(adjacency, shape, batched: bool) -> np.ndarray:
    """The starting graph as a contiguous uint8 [B, n, n] array (complete when None)."""
    B, n = shape[0], shape[1]
    if adjacency is None:
        adj = np.ones((B, n, n), dtype=np.uint8)
        adj[:, np.arange(n), np.arange(n)] = 0
        return adj
    a0 = to_numpy(adjacency, "adjacency")
    if a0.dtype.kind not in "biuf":
        raise ArgumentError(f"adjacency must hold booleans or numbers (nonzero: an edge), got dtype {a0.dtype}")
    if a0.shape != (tuple(shape) if batched else tuple(shape[1:])):
        raise ArgumentError(f"adjacency must have the shape of R {list(shape if batched else shape[1:])}, "
                            f"got {list(a0.shape)}")
    return np.ascontiguousarray(a0.reshape(shape) != 0, dtype=np.uint8)


def _check_start_graph(adj: np.ndarray) -> None:
    """The core's checks of a starting graph (check_skeleton_args), for the GPU path that bypasses it."""
    n = adj.shape[-1]
    loops = adj[:, np.arange(n), np.arange(n)] != 0
    if loops.any():
        b, i = np.argwhere(loops)[0]
        raise ArgumentError(f"initial adjacency has a self-loop at graph {b}, node {i}")
    asym = adj != adj.transpose(0, 2, 1)
    if asym.any():
        b, i, j = np.argwhere(asym)[0]
        raise ArgumentError(f"initial adjacency is not symmetric at graph {b}, ({i}, {j})")


def _gpu_skeleton(which, R, adjacency, N, alpha, max_level, pivot_tol):
    """The search on a GPU backend; returns the raw result, the final adjacency (NumPy) and the stack flag."""
    import torch

    from . import _gpu
    from ._checks import corr_stack_tensor, same_device

    device = _backend.device_for(which, R)
    corr, batched = corr_stack_tensor(R, "R", device)
    same_device(adjacency, "adjacency", device)
    start = _start_graph(adjacency, tuple(corr.shape), batched)
    _check_start_graph(start)
    adj = torch.from_numpy(start).to(device)
    raw = _gpu.skeleton(which, corr, adj, N, alpha, max_level, float(pivot_tol))
    return raw, adj.cpu().numpy(), batched


def _reference_stack(corr, adj, N, alpha, max_level, sepsets, pivot_tol) -> dict:
    """Runs the NumPy reference graph by graph and lays its output out like the compiled core's."""
    found, tests, singular = {}, [], []
    for b in range(corr.shape[0]):
        a, f, t, s = _reference.skeleton(corr[b], N, alpha, max_level, sepsets, pivot_tol, adjacency=adj[b])
        adj[b] = a
        found.update({(b, i, j): sets for (i, j), sets in f.items()})
        tests.append(t)
        singular.append(s)
    levels = max((len(t) for t in tests), default=0)
    pad = lambda rows: np.array([r + [0] * (levels - len(r)) for r in rows], dtype=np.int64).reshape(len(rows), levels).T
    order = sorted(found, key=lambda k: (len(found[k][0]), k))
    raw = SepSets.from_dict({k: found[k] for k in order}, batched=True).arrays()
    raw.update(num_levels=levels, tests=pad(tests), singular=pad(singular))
    return raw
