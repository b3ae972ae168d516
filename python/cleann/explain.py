"""CLEANN: the smallest sets of input tokens that explain the output at a target token.

Candidates come from the PDS-tree rooted at the target on the learned PAG: subsets of its nodes.
A candidate is an explanation when the tester says so (for a model: replacing those tokens
changes its output at the target). Two searches share that machinery:

- ``"exact"``, the paper's: sets by size, then by the sum of their minimal tree distances to the
  target, then in lexicographic order of their token indices; by default only the reference
  implementation's legal sets (every member reachable from the target through tree occurrences
  of members). Every set of a size is judged before the next size, so the explanations it
  returns are the smallest of its search space.
- ``"guided"``: a beam search driven by the tester's margins (``score_batch``; > 0: the
  prediction is kept, <= 0: it changes). It judges every single token of the pool, then grows the
  ``beam_width`` sets with the lowest margins one token at a time, judging at each size the
  ``expand`` extensions whose margin the single-token drops predict lowest (tree distance breaks
  ties), until a set flips the prediction; the subsets of an explanation one token smaller are
  then judged too. Explanations of any size up to ``max_size`` (default: the whole pool).

``budget`` caps the sets sent to the tester for one target. Each result says whether its
minimality is proven (every smaller subset of the pool was judged), what the search cost, and
each explanation's margin.

A search is a generator that yields lists of candidate sets and is sent their answers; the
drivers here ask one tester, and :class:`cleann.hf.Explainer` packs the requests of many texts
into shared forward passes.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterable, Iterator, Sequence

import numpy as np

from .errors import ArgumentError, CleannError
from .graph import Graph, PdsTree, pds_tree

SEARCHES = ("exact", "guided")
# How a search ended: it found explanations; it judged its whole space (exact) or its beam ran out
# (guided) without one; the budget of sets ran out first; or it stopped at a size where another
# head of the same text had already found a smaller explanation.
STATUSES = ("explained", "none", "budget", "bound")


class TesterError(CleannError, RuntimeError):
    """The explanation tester failed or answered something other than True/False (or a margin)."""


@dataclass
class Explanation:
    """Result of :func:`explain` (one target, one graph) or :func:`explain_heads` (one target, the
    graphs of several heads sharing one search; ``heads`` then holds each head's own result).

    Attributes:
        target: the explained token index.
        sets: explanations found, each a tuple of token indices (ascending): for the exact search in
            the order tried, for the guided one by increasing margin.
        distances: the sum of minimal tree distances of each set.
        margins: the tester's margin after removing each set (<= 0); None for a tester that only
            answers True/False.
        tree: the PDS-tree rooted at the target (node positions of the graph).
        candidates: token indices of the tree's nodes (the full candidate pool).
        candidates_tried: distinct sets this search sent to the tester (the cost in model sequences).
        model_calls: forward passes, when the tester counts them in a ``forward_passes``
            attribute (the cleann.hf testers do); otherwise how often the tester was called.
        minimal_proven: every subset of the pool smaller than the explanations was judged and none
            explains, so no smaller explanation exists in the pool.
        status: "explained", "none" (the search ended without an explanation; for the exact search
            that means none exists in its space up to ``max_size``), "budget" (the budget ran out
            first) or "bound" (stopped at the size of another head's smaller explanation).
        best, best_margin: when nothing was found, the judged set with the lowest margin (it is
            not an explanation) and that margin; None with a True/False tester.
        search: "exact" or "guided"; ``budget``: the cap on sets it ran under (None: none).
        heads: for :func:`explain_heads`, one Explanation per graph; the counts there are of the
            shared search.
    """

    target: int
    sets: list[tuple[int, ...]] = field(default_factory=list)
    distances: list[int] = field(default_factory=list)
    margins: list[float | None] = field(default_factory=list)
    tree: PdsTree | None = None
    candidates: tuple[int, ...] = ()
    candidates_tried: int = 0
    model_calls: int = 0
    minimal_proven: bool = False
    status: str = "none"
    best: tuple[int, ...] | None = None
    best_margin: float | None = None
    search: str = "exact"
    budget: int | None = None
    heads: list["Explanation"] | None = None

    @property
    def size(self) -> int | None:
        """Size of the smallest explanation (None when none was found)."""
        return min((len(s) for s in self.sets), default=None)


# ---------------------------------------------------------------------------------------------
# Search spaces: one per graph (its PDS-tree's nodes and distances), or a plain list of tokens


@dataclass
class _Space:
    pool: tuple[int, ...]  # token indices, ascending
    dist: dict  # token -> minimal tree distance to the target
    tree: PdsTree | None = None
    token_to_pos: dict | None = None

    def legal(self, tokens) -> bool:
        """The reference's condition: every member reachable from the root through members."""
        if self.tree is None:
            return True
        if self.token_to_pos is not None and not hasattr(self, "_children"):
            kids: list[list[tuple[int, int]]] = [[] for _ in range(len(self.tree.node))]
            for c, p in enumerate(self.tree.parent.tolist()):
                if p >= 0:
                    kids[p].append((c, int(self.tree.node[c])))
            self._children = kids
        members = {self.token_to_pos[t] for t in tokens}
        reached, stack = set(), [0]
        while stack:
            for c, v in self._children[stack.pop()]:
                if v in members:  # every occurrence is walked: each has its own children
                    reached.add(v)
                    stack.append(c)
        return reached >= members


def _space(graph: Graph, target, max_radius) -> _Space:
    if not isinstance(graph, Graph):
        raise ArgumentError(f"graph must be a cleann.Graph, got {type(graph).__name__}")
    pos = np.flatnonzero(graph.nodes == int(target))
    if len(pos) == 0:
        raise ArgumentError(f"target {target} is not a node of the graph (nodes: {graph.nodes.tolist()})")
    root = int(pos[0])
    tree = pds_tree(graph, root, max_radius)
    dist = {int(graph.nodes[p]): d for p, d in tree.distance.items() if p != root}
    return _Space(tuple(sorted(dist)), dist, tree, {int(t): p for p, t in enumerate(graph.nodes)})


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


# ---------------------------------------------------------------------------------------------
# The searches: generators that yield lists of sets and are sent their answers


def _explains(value) -> bool:
    return value is True or (not isinstance(value, bool) and value <= 0)


class _Ledger:
    """What one search judged (set -> True/False or margin), by size, and its budget."""

    def __init__(self, budget: int | None):
        self.values: dict[tuple[int, ...], object] = {}
        self.by_size: dict[int, list[tuple[int, ...]]] = {}
        self.budget = budget
        self.exhausted = False

    def ask(self, sets: Iterable[tuple[int, ...]], chunk: int):
        """Judges the sets not judged yet, ``chunk`` at a time (``yield from``); returns False
        when the budget ran out before all were judged."""
        todo = list(dict.fromkeys(s for s in sets if s not in self.values))
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            if self.budget is not None:
                room = self.budget - len(self.values)
                if room < len(part):
                    part = part[:room]
                    self.exhausted = True
            if part:
                values = yield part
                for s, v in zip(part, values):
                    self.values[s] = v
                    self.by_size.setdefault(len(s), []).append(s)
            if self.exhausted:
                return False
        return True

    def proven_below(self, pool: Sequence[int], size: int) -> bool:
        """Every subset of ``pool`` of 1 .. size-1 tokens was judged (none explains: they came
        first)."""
        pool = set(pool)
        for k in range(1, size):
            judged = sum(1 for s in self.by_size.get(k, ()) if pool.issuperset(s))
            if judged < math.comb(len(pool), k):
                return False
        return True

    def best(self, pool: Sequence[int]):
        pool = set(pool)
        scored = [(v, s) for s, v in self.values.items()
                  if not isinstance(v, bool) and s and pool.issuperset(s)]
        return min(scored, key=lambda x: (x[0], len(x[1]), x[1]), default=(None, None))


def _exact(spaces: list[_Space], tops: list[int], ledger: _Ledger, chunk: int, minimal: bool, first: bool,
           connected: bool, shared: bool):
    """The exact search over the spaces of several heads in lockstep, one size at a time (the
    heads' sets of a size share the tester's batches); returns per head (found sets, status)."""
    found: list[list[tuple[int, ...]]] = [[] for _ in spaces]
    status = ["none"] * len(spaces)
    for size in range(1, max(tops, default=0) + 1):
        active = [h for h, sp in enumerate(spaces) if size <= tops[h] and not (minimal and found[h])]
        if not active:
            break
        stream = ((h, s) for h in active for s, _ in _ordered_sets(spaces[h].pool, spaces[h].dist, size)
                  if not connected or spaces[h].legal(s))
        batch: list[tuple[int, tuple[int, ...]]] = []
        new: set = set()
        stop = False
        for item in itertools.chain(stream, [None]):
            if item is not None:
                batch.append(item)
                if item[1] not in ledger.values:
                    new.add(item[1])
                if len(new) < chunk:
                    continue
            ok = yield from ledger.ask((s for _, s in batch), chunk)
            for h, s in batch:
                if s in ledger.values and _explains(ledger.values[s]):
                    found[h].append(s)
                    if first:
                        stop = True
                        break
            batch, new = [], set()
            if not ok:
                for h in range(len(spaces)):
                    if not found[h]:
                        status[h] = "budget"
                stop = True
            if stop:
                break
        if stop or (shared and minimal and any(found)):
            break
    smallest = min((len(s) for f in found for s in f), default=None)
    for h in range(len(spaces)):
        if found[h]:
            status[h] = "explained"
        elif shared and smallest is not None and status[h] == "none" and tops[h] > smallest:
            status[h] = "bound"
    return found, status


def _guided(space: _Space, top: int, ledger: _Ledger, chunk: int, base: float, beam_width: int, expand: int,
            connected: bool):
    """The margin-driven beam search over one space; returns (found sets, status)."""
    pool, dist = space.pool, space.dist
    members = set(pool)
    if top < 1 or not pool:
        return [], "none"
    singles = [(t,) for t in sorted(pool, key=lambda t: (dist[t], t))]
    if connected:
        singles = [s for s in singles if space.legal(s)]
    ok = yield from ledger.ask(singles, chunk)
    value = ledger.values
    drop = {t: base - value[(t,)] for (t,) in singles if (t,) in value}
    level = [s for s in singles if s in value]
    for size in range(1, top + 1):
        hits = [s for s in level if _explains(value[s])]
        if hits:
            return (yield from _shrink(hits, ledger, chunk, pool, connected, space, beam_width))
        if not ok:
            return [], "budget"
        if size == top:
            return [], "none"
        beam = sorted(level, key=lambda s: (value[s], sum(dist[t] for t in s), s))[:beam_width]
        estimate: dict[tuple[int, ...], float] = {}
        for S in beam:
            for t in pool:
                if t in S or t not in drop:
                    continue
                T = tuple(sorted(S + (t,)))
                if T in value or (connected and not space.legal(T)):
                    continue
                e = value[S] - drop[t]
                if e < estimate.get(T, math.inf):
                    estimate[T] = e
        ranked = sorted(estimate, key=lambda T: (estimate[T], sum(dist[t] for t in T), T))[:expand]
        if not ranked and not [s for s in ledger.by_size.get(size + 1, ()) if members.issuperset(s)]:
            return [], "none"
        ok = yield from ledger.ask(ranked, chunk)
        level = [s for s in ledger.by_size.get(size + 1, ()) if members.issuperset(s)]
    return [], "none"


def _shrink(hits, ledger: _Ledger, chunk: int, pool, connected: bool, space: _Space, width: int):
    """Explanations of one size: judge the subsets one token smaller of the ``width`` with the
    lowest margins; while one of those flips the prediction too, go down a size. Returns (the
    smallest explanations judged, status)."""
    value = ledger.values
    while len(hits[0]) > 1:
        hits = sorted(hits, key=lambda s: (value[s], s))[:width]
        subs = list(dict.fromkeys(tuple(x for x in s if x != t) for s in hits for t in s))
        if connected:
            subs = [s for s in subs if space.legal(s)]
        yield from ledger.ask(subs, chunk)
        smaller = [s for s in subs if s in value and _explains(value[s])]
        if not smaller:
            break
        hits = smaller
    k = len(hits[0])
    members = set(pool)
    hits = [s for s in ledger.by_size.get(k, ()) if _explains(value[s]) and members.issuperset(s)]
    return sorted(hits, key=lambda s: (value[s], s)), "explained"


# ---------------------------------------------------------------------------------------------
# Drivers


def _check_count(name, v, allow_none=True, minimum=1):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ArgumentError(f"{name} must be {'a positive' if minimum == 1 else 'a non-negative'} integer"
                         f"{' or None' if allow_none else ''}, got {v!r}")


def _check_options(search, budget, max_size, max_radius, beam_width, expand):
    if search not in SEARCHES:
        raise ArgumentError(f"search must be one of {', '.join(repr(s) for s in SEARCHES)}, got {search!r}")
    _check_count("budget (model sequences)", budget)
    _check_count("max_size", max_size)
    _check_count("max_radius", max_radius)
    _check_count("beam_width", beam_width, allow_none=False)
    _check_count("expand", expand, allow_none=False)


def _check_target(target):
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise ArgumentError(f"target must be a token index (an integer), got {target!r}")


class _Judge:
    """Asks one tester: margins through ``score_batch`` where the search needs or can use them,
    else True/False through ``test_batch`` or a call. Checks what comes back."""

    def __init__(self, tester, target: int, search: str):
        self.tester, self.target = tester, target
        self.scored = callable(getattr(tester, "score_batch", None))
        self.batched = callable(getattr(tester, "test_batch", None))
        if not (self.scored or self.batched or callable(tester)):
            raise ArgumentError("tester must be callable or have a test_batch (or score_batch) method")
        if search == "guided" and not self.scored:
            raise ArgumentError("search='guided' needs margins: the tester has no score_batch(sets, target) method "
                             "(margins > 0 keep the prediction); use search='exact' with a True/False tester")
        self.calls = 0
        self.checked = False

    def base(self) -> float | None:
        if not self.scored:
            return None
        base = getattr(self.tester, "base_margin", None)
        if isinstance(base, numbers.Real) and not isinstance(base, bool):
            return float(base)
        return self(([()]))[0]

    def __call__(self, sets: list[tuple[int, ...]]) -> list:
        lists = [list(s) for s in sets]
        what = "score_batch" if self.scored else "test_batch" if self.batched else "call"
        try:
            if self.scored:
                answers = self.tester.score_batch(lists, self.target)
            elif self.batched:
                answers = self.tester.test_batch(lists, self.target)
            else:
                answers = [self.tester(s, self.target) for s in lists]
        except TesterError:
            raise
        except Exception as exc:
            raise TesterError(f"the explanation tester failed on candidate {lists[0]}"
                              + (f" (and {len(lists) - 1} more in the batch)" if len(lists) > 1 else "")
                              + f": {type(exc).__name__}: {exc}") from exc
        self.calls += 1 if (self.scored or self.batched) else len(lists)
        try:
            answers = list(answers)
        except TypeError:
            raise TesterError(f"the explanation tester's {what} must return a sequence with one answer per "
                              f"candidate, got {answers!r} ({type(answers).__name__})") from None
        if len(answers) != len(sets):
            raise TesterError(f"the explanation tester answered {len(answers)} results for {len(sets)} candidates")
        out = []
        for s, a in zip(lists, answers):
            if self.scored:
                if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Real) or math.isnan(float(a)):
                    raise TesterError(f"the explanation tester's score_batch must answer a margin (a real number, "
                                      f"> 0: prediction kept), got {a!r} ({type(a).__name__}) for candidate {s}")
                out.append(float(a))
            else:
                if not isinstance(a, (bool, np.bool_)):
                    raise TesterError(f"the explanation tester must answer True or False, got {a!r} "
                                      f"({type(a).__name__}) for candidate {s}")
                out.append(bool(a))
        if self.scored and self.batched and not self.checked:
            self.checked = True
            self.agree(sets, out)
        return out

    def agree(self, sets, margins) -> None:
        """A tester with both methods: its answers must be its margins' signs."""
        if not (self.scored and self.batched) or not sets:
            return
        try:
            answers = list(self.tester.test_batch([list(s) for s in sets], self.target))
        except Exception as exc:
            raise TesterError(f"the explanation tester's test_batch failed: {type(exc).__name__}: {exc}") from exc
        for s, m, a in zip(sets, margins, answers):
            if bool(a) != (m <= 0):
                raise TesterError(f"the explanation tester's margins and answers disagree on candidate {list(s)}: "
                                  f"score_batch gives {m!r} ({'> 0: kept' if m > 0 else '<= 0: changed'}) but "
                                  f"test_batch says {bool(a)}")


def _drive(gen: Iterator, judge: Callable):
    """Runs a search generator against a judge; returns the generator's value."""
    try:
        request = next(gen)
        while True:
            request = gen.send(judge(request))
    except StopIteration as stop:
        return stop.value


def explain(graph: Graph, target: int, tester: Callable | None, max_size: int | None = None,
            max_radius: int | None = None, minimal: bool = True, *, first: bool = False,
            connected: bool | None = None, batch_size: int | None = None, search: str = "exact",
            budget: int | None = None, beam_width: int = 3, expand: int = 4) -> Explanation:
    """Smallest explanations of the output at ``target`` (CLEANN).

    Args:
        graph: a PAG (from :func:`cleann.icd`, :func:`cleann.fci` or :func:`cleann.abcd`).
        target: token index of the target node (one of ``graph.nodes``).
        tester: says whether a set of token indices explains the target. Either a callable
            ``tester(tokens, target) -> bool``; or an object with
            ``test_batch(list_of_token_lists, target) -> sequence of bool`` and/or
            ``score_batch(list_of_token_lists, target) -> sequence of margins`` (> 0: the
            prediction is kept, <= 0: it changes), asked with up to ``batch_size`` candidates at
            once (default: the tester's own ``batch_size``, else 64). A tester with both must
            answer True exactly where its margin is <= 0. None: the whole candidate pool is
            returned as the explanation, untested.
        max_size: largest set tried (default: all of the tree's nodes).
        max_radius: depth limit of the PDS-tree (default: none).
        minimal: stop after the first size that has an explanation (all explanations of that
            size are returned); False: go on through every size up to ``max_size`` (exact only).
        first: stop at the first explanation found (exact only).
        connected: only try sets whose members are reachable from the target through tree
            paths of members (the reference implementation's legality condition). Default: on
            for the exact search, as in the reference; off for the guided one.
        search: "exact" (the paper's order; any tester) or "guided" (margins; see the module).
        budget: the most sets sent to the tester for this target (None: no cap).
        beam_width, expand: the guided search's beam and how many extensions it judges per size.

    Raises:
        ValueError: target not a node, bad sizes or options, a guided search with a tester
            without margins. TesterError: the tester raised or answered something else.
    """
    _check_target(target)
    _check_options(search, budget, max_size, max_radius, beam_width, expand)
    space = _space(graph, target, max_radius)
    result = explain_space([space], target, tester, max_size, minimal, first=first, connected=connected,
                           batch_size=batch_size, search=search, budget=budget, beam_width=beam_width,
                           expand=expand, per_head_minimum=True)
    return result.heads[0]


def explain_heads(graphs: Sequence[Graph], target: int, tester, max_size: int | None = None,
                  max_radius: int | None = None, *, connected: bool | None = None, batch_size: int | None = None,
                  search: str = "exact", budget: int | None = None, beam_width: int = 3, expand: int = 4,
                  per_head_minimum: bool = False) -> Explanation:
    """One search for the explanations of ``target`` over the graphs of several heads.

    The exact search runs the heads in lockstep, one size at a time, and no head tries sets larger
    than the smallest explanation found so far for the target; the guided search runs once over
    the union of the heads' pools (tree distance: the smallest over the heads) and each head's
    result holds the explanations inside its own pool. ``per_head_minimum=True`` lets every head
    search to its own minimum (the tester's cache still answers the sets heads share). ``budget``
    caps the sets of the whole search. Returns an Explanation whose ``heads`` are per graph.
    """
    _check_target(target)
    _check_options(search, budget, max_size, max_radius, beam_width, expand)
    graphs = list(graphs)
    if not graphs:
        raise ArgumentError("graphs must hold at least one graph")
    spaces = [_space(g, target, max_radius) for g in graphs]
    return explain_space(spaces, target, tester, max_size, True, connected=connected, batch_size=batch_size,
                         search=search, budget=budget, beam_width=beam_width, expand=expand,
                         per_head_minimum=per_head_minimum)


def explain_tokens(tokens: Sequence[int], target: int, tester, max_size: int | None = None, *,
                   batch_size: int | None = None, search: str = "guided", budget: int | None = None,
                   beam_width: int = 3, expand: int = 4) -> Explanation:
    """The same searches over a plain pool of token indices, without a graph (every token at
    distance 1): the baseline that shows what the graph adds."""
    _check_target(target)
    _check_options(search, budget, max_size, None, beam_width, expand)
    pool = []
    for t in tokens:
        _check_target(t)
        if int(t) != int(target):
            pool.append(int(t))
    pool = tuple(sorted(set(pool)))
    space = _Space(pool, {t: 1 for t in pool})
    return explain_space([space], target, tester, max_size, True, connected=False, batch_size=batch_size,
                         search=search, budget=budget, beam_width=beam_width, expand=expand,
                         per_head_minimum=True).heads[0]


def search_steps(spaces: list[_Space], max_size: int | None, *, search: str, base: float | None, chunk: int,
                 budget: int | None, minimal: bool = True, first: bool = False, connected: bool | None = None,
                 beam_width: int = 3, expand: int = 4,
                 per_head_minimum: bool = False) -> Generator[list, list, tuple]:
    """The search as a generator (yields lists of sets, is sent their answers, returns
    ``(per-head found sets, per-head statuses, ledger)``): what :class:`cleann.hf.Explainer`
    drives for many texts at once."""
    connected = (search == "exact") if connected is None else bool(connected)
    ledger = _Ledger(budget)
    tops = [len(sp.pool) if max_size is None else min(max_size, len(sp.pool)) for sp in spaces]
    if search == "exact":
        found, status = yield from _exact(spaces, tops, ledger, chunk, minimal, first, connected,
                                          shared=not per_head_minimum)
        return found, status, ledger
    if base is None:
        raise ArgumentError("the guided search needs the unmodified input's margin")
    if per_head_minimum:
        found, status = [], []
        for sp, top in zip(spaces, tops):
            f, st = yield from _guided(sp, top, ledger, chunk, base, beam_width, expand, connected)
            found.append(f)
            status.append(st)
        return found, status, ledger
    union = _union(spaces)
    top = len(union.pool) if max_size is None else min(max_size, len(union.pool))
    f, st = yield from _guided(union, top, ledger, chunk, base, beam_width, expand, connected)
    found = [[s for s in f if set(s) <= set(sp.pool)] for sp in spaces]
    status = ["explained" if fh else ("none" if st == "explained" else st) for fh in found]
    return found, status, ledger


@dataclass
class _UnionSpace(_Space):
    """The union of several heads' pools (each token at its smallest tree distance); a set is
    legal when it is legal in some head's tree."""

    heads: list = field(default_factory=list)

    def legal(self, tokens) -> bool:
        return any(set(tokens) <= set(sp.pool) and sp.legal(tokens) for sp in self.heads)


def _union(spaces: list[_Space]) -> _Space:
    if len(spaces) == 1:
        return spaces[0]
    dist: dict = {}
    for sp in spaces:
        for t, d in sp.dist.items():
            dist[t] = min(d, dist.get(t, d))
    return _UnionSpace(tuple(sorted(dist)), dist, heads=spaces)


def assemble(spaces: list[_Space], target: int, found, status, ledger: _Ledger, *, search: str,
             budget: int | None, model_calls: int) -> Explanation:
    """The Explanation (with one per head) from a finished search."""
    heads = []
    for sp, f, st in zip(spaces, found, status):
        heads.append(_result(sp, target, f, st, ledger, search, budget, model_calls))
    union = _union(spaces)
    sizes = [len(s) for f in found for s in f]
    k = min(sizes, default=None)
    best_sets = list(dict.fromkeys(s for f in found for s in f if len(s) == k)) if k else []
    if search == "guided":
        best_sets.sort(key=lambda s: (ledger.values[s], s))
    overall = "explained" if best_sets else ("budget" if ledger.exhausted else "none")
    out = _result(union, target, best_sets, overall, ledger, search, budget, model_calls)
    out.tree = spaces[0].tree if len(spaces) == 1 else None
    out.heads = heads
    return out


def _result(sp: _Space, target, found, status, ledger: _Ledger, search, budget, model_calls) -> Explanation:
    ex = Explanation(target=int(target), tree=sp.tree, candidates=sp.pool, search=search, budget=budget,
                     candidates_tried=len(ledger.values), model_calls=model_calls, status=status)
    for s in found:
        ex.sets.append(s)
        ex.distances.append(sum(sp.dist.get(t, 0) for t in s))
        v = ledger.values[s]
        ex.margins.append(None if isinstance(v, bool) else v)
    if found:
        ex.minimal_proven = ledger.proven_below(sp.pool, min(len(s) for s in found))
    else:
        ex.best_margin, ex.best = ledger.best(sp.pool)
    return ex


def explain_space(spaces: list[_Space], target, tester, max_size, minimal, *, first=False, connected=None,
                  batch_size=None, search="exact", budget=None, beam_width=3, expand=8,
                  per_head_minimum=False) -> Explanation:
    """The driver of :func:`explain`, :func:`explain_heads` and :func:`explain_tokens`."""
    if batch_size is None:
        batch_size = getattr(tester, "batch_size", 64)
    _check_count("batch_size", batch_size, allow_none=False)
    if tester is None:
        sp = spaces[0]
        top = len(sp.pool) if max_size is None else min(max_size, len(sp.pool))
        found = [sp.pool] if sp.pool and len(sp.pool) <= top else []
        ex = Explanation(target=int(target), tree=sp.tree, candidates=sp.pool, search=search, budget=budget,
                         status="explained" if found else "none")
        ex.sets, ex.distances, ex.margins = found, [sum(sp.dist.values())] if found else [], [None] * len(found)
        ex.heads = [ex]
        return ex
    judge = _Judge(tester, int(target), search)
    if not (judge.scored or judge.batched):
        batch_size = 1  # a plain callable answers one set per call: judge no set beyond a stop
    passes_before = getattr(tester, "forward_passes", None)
    base = judge.base() if search == "guided" else None
    calls_before = judge.calls
    gen = search_steps(spaces, max_size, search=search, base=base, chunk=int(batch_size), budget=budget,
                       minimal=minimal, first=first, connected=connected, beam_width=beam_width, expand=expand,
                       per_head_minimum=per_head_minimum)
    found, status, ledger = _drive(gen, judge)
    explained = list(dict.fromkeys(s for f in found for s in f))
    if judge.scored and explained:
        judge.agree(explained, [ledger.values[s] for s in explained])
    calls = judge.calls - calls_before
    if isinstance(passes_before, int) and isinstance(getattr(tester, "forward_passes", None), int):
        calls = tester.forward_passes - passes_before
    return assemble(spaces, target, found, status, ledger, search=search, budget=budget, model_calls=calls)
