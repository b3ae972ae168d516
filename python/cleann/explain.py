"""CLEANN: the smallest sets of input tokens that explain the output at a target token.

Candidates come from the PDS-tree rooted at the target on the learned PAG: subsets of its nodes,
tried by size, then by the sum of their minimal tree distances to the target, then in
lexicographic order of their token indices. A candidate is an explanation when the tester says
so (for a model: replacing those tokens changes its output at the target).
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .graph import Graph, PdsTree, pds_tree


class TesterError(RuntimeError):
    """The explanation tester failed or answered something other than True/False."""


@dataclass
class Explanation:
    """Result of :func:`explain`.

    Attributes:
        target: the explained token index.
        sets: explanations found, each a tuple of token indices (ascending), in the order tried.
        distances: the sum of minimal tree distances of each set.
        tree: the PDS-tree rooted at the target (node positions of the graph).
        candidates: token indices of the tree's nodes (the full candidate pool).
        candidates_tried: how many sets the tester judged.
        model_calls: forward passes, when the tester counts them in a ``forward_passes``
            attribute (the cleann.hf testers do); otherwise how often the tester was called.
    """

    target: int
    sets: list[tuple[int, ...]] = field(default_factory=list)
    distances: list[int] = field(default_factory=list)
    tree: PdsTree | None = None
    candidates: tuple[int, ...] = ()
    candidates_tried: int = 0
    model_calls: int = 0

    @property
    def size(self) -> int | None:
        """Size of the smallest explanation (None when none was found)."""
        return min((len(s) for s in self.sets), default=None)


def _ordered_sets(pool: Sequence[int], dist: dict, size: int) -> Iterable[tuple[tuple[int, ...], int]]:
    """Subsets of `pool` of one size by increasing distance sum, ties in lexicographic order,
    generated one distance sum at a time (never all subsets of a size at once)."""
    by_dist: dict[int, list[int]] = {}
    for v in sorted(pool):
        by_dist.setdefault(dist[v], []).append(v)
    levels = sorted(by_dist)

    def compositions(k, i):  # counts per distance level from level i on, summing to k
        if i == len(levels):
            if k == 0:
                yield ()
            return
        for c in range(min(k, len(by_dist[levels[i]])), -1, -1):
            for rest in compositions(k - c, i + 1):
                yield (c,) + rest

    groups: dict[int, list[tuple[int, ...]]] = {}
    for comp in compositions(size, 0):
        total = sum(c * d for c, d in zip(comp, levels))
        groups.setdefault(total, []).append(comp)
    for total in sorted(groups):
        sets = []
        for comp in groups[total]:
            parts = [itertools.combinations(by_dist[d], c) for c, d in zip(comp, levels) if c]
            for chosen in itertools.product(*parts):
                sets.append(tuple(sorted(v for part in chosen for v in part)))
        for s in sorted(sets):
            yield s, total


def _connected(tree: PdsTree, members: set) -> bool:
    """Every member is reachable from the root through tree occurrences of members only."""
    reached, stack = set(), [0]
    while stack:
        occ = stack.pop()
        for c in np.flatnonzero(tree.parent == occ):
            v = int(tree.node[c])
            if v in members:  # every occurrence is walked: each has its own children
                reached.add(v)
                stack.append(int(c))
    return reached >= members


def _judge(tester, batch: list[tuple[int, ...]], target: int, batched: bool) -> list[bool]:
    try:
        answers = tester.test_batch([list(s) for s in batch], target) if batched else \
            [tester(list(batch[0]), target)]
    except Exception as exc:
        raise TesterError(f"the explanation tester failed on candidate {list(batch[0])}"
                          + (f" (and {len(batch) - 1} more in the batch)" if len(batch) > 1 else "")
                          + f": {type(exc).__name__}: {exc}") from exc
    answers = list(answers)
    if len(answers) != len(batch):
        raise TesterError(f"the explanation tester answered {len(answers)} results for {len(batch)} candidates")
    for s, a in zip(batch, answers):
        if not isinstance(a, (bool, np.bool_)):
            raise TesterError(f"the explanation tester must answer True or False, got {a!r} "
                              f"({type(a).__name__}) for candidate {list(s)}")
    return [bool(a) for a in answers]


def explain(graph: Graph, target: int, tester: Callable | None, max_size: int | None = None,
            max_radius: int | None = None, minimal: bool = True, *, first: bool = False,
            connected: bool = False, batch_size: int | None = None) -> Explanation:
    """Smallest explanations of the output at ``target`` (CLEANN).

    Args:
        graph: a PAG (from :func:`cleann.icd`, :func:`cleann.fci` or :func:`cleann.abcd`).
        target: token index of the target node (one of ``graph.nodes``).
        tester: says whether a set of token indices explains the target. Either a callable
            ``tester(tokens, target) -> bool``, or an object with
            ``test_batch(list_of_token_lists, target) -> sequence of bool`` (asked with up to
            ``batch_size`` candidates at once; default: the tester's own ``batch_size``, else 64).
            None: the whole candidate pool is returned as the explanation, untested.
        max_size: largest set tried (default: all of the tree's nodes).
        max_radius: depth limit of the PDS-tree (default: none).
        minimal: stop after the first size that has an explanation (all explanations of that
            size are returned); False: go on through every size up to ``max_size``.
        first: stop at the first explanation found.
        connected: only try sets whose members are reachable from the target through tree
            paths of members (the reference implementation's restriction); default: any subset
            of the tree's nodes.

    Raises:
        ValueError: target not a node, bad sizes. TesterError: the tester raised or answered
            something other than True/False.
    """
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a cleann.Graph, got {type(graph).__name__}")
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise ValueError(f"target must be a token index, got {target!r}")
    pos = np.flatnonzero(graph.nodes == int(target))
    if len(pos) == 0:
        raise ValueError(f"target {target} is not a node of the graph (nodes: {graph.nodes.tolist()})")
    for name, v in (("max_size", max_size), ("max_radius", max_radius)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
    if batch_size is None:
        batch_size = getattr(tester, "batch_size", 64)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batched = tester is not None and callable(getattr(tester, "test_batch", None))
    if tester is not None and not batched and not callable(tester):
        raise ValueError("tester must be callable or have a test_batch method")
    root = int(pos[0])
    tree = pds_tree(graph, root, max_radius)
    dist = {int(graph.nodes[p]): d for p, d in tree.distance.items() if p != root}
    pool = tuple(sorted(dist))
    result = Explanation(target=int(target), tree=tree, candidates=pool)
    top = len(pool) if max_size is None else min(max_size, len(pool))
    if tester is None:
        if pool and len(pool) <= top:
            result.sets.append(pool)
            result.distances.append(sum(dist.values()))
        return result
    token_to_pos = {int(t): p for p, t in enumerate(graph.nodes)}
    passes_before = getattr(tester, "forward_passes", None)
    try:
        _search(result, tester, pool, dist, top, batched, batch_size, minimal, first, connected, tree, token_to_pos,
                int(target))
    finally:
        if isinstance(passes_before, int):
            result.model_calls = tester.forward_passes - passes_before
    return result


def _search(result, tester, pool, dist, top, batched, batch_size, minimal, first, connected, tree, token_to_pos,
            target) -> None:
    for size in range(1, top + 1):
        pending: list[tuple[tuple[int, ...], int]] = []

        def flush():
            if not pending:
                return False
            batch = [s for s, _ in pending]
            answers = _judge(tester, batch, target, batched) if batched else \
                [_judge(tester, [s], target, False)[0] for s in batch]
            result.model_calls += 1 if batched else len(batch)
            result.candidates_tried += len(batch)
            hit = False
            for (s, d), ok in zip(pending, answers):
                if ok:
                    result.sets.append(s)
                    result.distances.append(d)
                    hit = True
                    if first:
                        break
            pending.clear()
            return hit

        for s, d in _ordered_sets(pool, dist, size):
            if connected and not _connected(tree, {token_to_pos[t] for t in s}):
                continue
            pending.append((s, d))
            if len(pending) >= (batch_size if batched else 1):
                if flush() and first:
                    return
        if flush() and first:
            return
        if result.sets and minimal:
            break
