"""The two searches over margins: exact and guided, budgets, proofs of minimality, heads sharing one
search, and margin-giving testers that agree with their answers."""

import itertools
import math

import numpy as np
import pytest

import cleann
from conftest import random_attention


def _graphs(rng, n, heads=3):
    return cleann.abcd(random_attention(n, rng, heads=heads), 384)


class Additive:
    """Margins of a linear model: base - the weights of the removed tokens; test_batch agrees."""

    def __init__(self, rng, tokens, base=1.0, spread=0.6):
        self.w = {t: float(rng.normal(0.3, spread)) for t in tokens}
        self.base_margin = base
        self.batches = 0
        self.sent = []

    def margin(self, s):
        return self.base_margin - sum(self.w[t] for t in s)

    def score_batch(self, sets, target=None):
        self.batches += 1
        self.sent += [tuple(sorted(s)) for s in sets]
        return [self.margin(s) for s in sets]

    def test_batch(self, sets, target=None):
        return [self.margin(s) <= 0 for s in sets]


def _exhaustive(pool, explains, top=None):
    for k in range(1, (top or len(pool)) + 1):
        hits = [c for c in itertools.combinations(pool, k) if explains(c)]
        if hits:
            return k, hits
    return None, []


@pytest.mark.parametrize("seed", range(10))
def test_guided_finds_the_minimum_of_additive_margins(seed):
    rng = np.random.default_rng(seed)
    g = _graphs(rng, int(rng.integers(6, 11)), heads=1)[0]
    target = int(g.nodes[0])
    pool = cleann.explain(g, target, None).candidates
    tester = Additive(rng, pool, base=float(rng.uniform(0.3, 1.5)))
    ex = cleann.explain(g, target, tester, search="guided")
    size, hits = _exhaustive(pool, lambda c: tester.margin(c) <= 0)
    assert ex.size == size
    assert ex.status == ("explained" if size else "none")
    assert set(ex.sets) <= set(hits)
    assert ex.margins == sorted(ex.margins) and all(m <= 0 for m in ex.margins)
    assert ex.margins == [tester.margin(s) for s in ex.sets]
    assert ex.candidates_tried == len(set(tester.sent))  # every set sent once
    assert ex.minimal_proven == (size is not None and ex.candidates_tried >= sum(
        math.comb(len(pool), k) for k in range(1, size)))
    if size == 1:
        assert ex.minimal_proven


def test_guided_costs_less_than_exact_and_exact_proves_minimality(rng):
    g = _graphs(rng, 12, heads=1)[0]
    target = int(g.nodes[0])
    pool = cleann.explain(g, target, None).candidates
    assert len(pool) >= 6

    def tester():
        t = Additive(rng, pool, base=0.85)
        t.w = {v: 0.3 + 0.01 * k for k, v in enumerate(pool)}  # three tokens are needed
        return t

    exact = cleann.explain(g, target, tester(), connected=False)
    guided = cleann.explain(g, target, tester(), search="guided")
    assert exact.size == guided.size == 3
    assert exact.minimal_proven and not guided.minimal_proven
    assert guided.candidates_tried < exact.candidates_tried
    assert guided.sets[0] == tuple(sorted(pool[-3:]))  # the three heaviest, lowest margin first


def test_budget_caps_the_sets_and_reports_the_best(rng):
    g = _graphs(rng, 12, heads=1)[0]
    target = int(g.nodes[0])
    pool = cleann.explain(g, target, None).candidates
    for search in ("exact", "guided"):
        tester = Additive(rng, pool, base=50.0)  # nothing small flips it
        ex = cleann.explain(g, target, tester, search=search, budget=17, max_size=4)
        assert len(set(tester.sent)) == ex.candidates_tried == 17
        assert ex.status == "budget" and ex.sets == [] and ex.budget == 17
        assert ex.best_margin == min(tester.margin(s) for s in tester.sent) == tester.margin(ex.best)
    for bad in (0, -3, True, 2.5, "10"):
        with pytest.raises(ValueError, match="budget"):
            cleann.explain(g, target, tester, budget=bad)


def test_exact_search_without_a_budget_judges_its_whole_space(rng):
    g = _graphs(rng, 8, heads=1)[0]
    target = int(g.nodes[0])
    pool = cleann.explain(g, target, None).candidates
    tester = Additive(rng, pool, base=50.0)
    ex = cleann.explain(g, target, tester, max_size=3, connected=False)
    assert ex.status == "none" and ex.best is not None
    assert ex.candidates_tried == sum(math.comb(len(pool), k) for k in (1, 2, 3))


def test_exact_default_is_the_reference_legality(rng):
    g = _graphs(rng, 9, heads=1)[0]
    target = int(g.nodes[0])
    seen_default, seen_legal = [], []
    cleann.explain(g, target, lambda s, t: seen_default.append(tuple(s)) or False, max_size=3)
    cleann.explain(g, target, lambda s, t: seen_legal.append(tuple(s)) or False, max_size=3, connected=True)
    seen_any = []
    cleann.explain(g, target, lambda s, t: seen_any.append(tuple(s)) or False, max_size=3, connected=False)
    assert seen_default == seen_legal
    assert set(seen_default) <= set(seen_any)


def test_heads_share_one_search(rng):
    graphs = _graphs(rng, 10, heads=4)
    target = int(graphs[0].nodes[0])
    pools = [cleann.explain(g, target, None).candidates for g in graphs]
    union = sorted(set().union(*pools))
    for search in ("exact", "guided"):
        tester = Additive(rng, union, base=0.9)
        shared = cleann.explain_heads(graphs, target, tester, search=search, connected=False)
        k = shared.size
        assert k is not None and len(shared.heads) == 4
        # no head tried a set larger than the smallest explanation found for the target
        assert max(len(s) for s in tester.sent) <= k + (1 if search == "guided" else 0)
        for pool, head in zip(pools, shared.heads):
            assert all(set(s) <= set(pool) for s in head.sets)
            assert head.status in ("explained", "none", "bound")
            if head.sets:
                assert head.size == k
        assert shared.candidates_tried == len(set(tester.sent))
    # every head to its own minimum: the same as explaining each head alone
    tester = Additive(rng, union, base=0.9)
    own = cleann.explain_heads(graphs, target, tester, per_head_minimum=True, connected=False)
    for g, head in zip(graphs, own.heads):
        alone = cleann.explain(g, target, lambda s, t: tester.margin(s) <= 0, connected=False)
        assert head.sets == alone.sets


def test_explain_tokens_searches_without_a_graph(rng):
    tokens = list(range(1, 10))
    tester = Additive(rng, tokens, base=0.8)
    ex = cleann.explain_tokens(tokens + [0], 0, tester)
    size, _ = _exhaustive(tokens, lambda c: tester.margin(c) <= 0)
    assert ex.size == size and 0 not in ex.candidates


def test_testers_without_margins_and_margins_that_disagree(rng):
    g = _graphs(rng, 7, heads=1)[0]
    target = int(g.nodes[0])
    with pytest.raises(ValueError, match="needs margins"):
        cleann.explain(g, target, lambda s, t: True, search="guided")

    class OnlyBooleans:
        def test_batch(self, sets, target):
            return [len(s) > 1 for s in sets]

    with pytest.raises(ValueError, match="needs margins"):
        cleann.explain(g, target, OnlyBooleans(), search="guided")
    assert cleann.explain(g, target, OnlyBooleans(), connected=False).size == 2  # exact works without

    class Liar(Additive):
        def test_batch(self, sets, target=None):
            return [not a for a in super().test_batch(sets, target)]

    pool = cleann.explain(g, target, None).candidates
    for search in ("exact", "guided"):
        with pytest.raises(cleann.TesterError, match="margins and answers disagree"):
            cleann.explain(g, target, Liar(rng, pool), search=search)

    class NotANumber(Additive):
        def score_batch(self, sets, target=None):
            return ["low"] * len(sets)

    with pytest.raises(cleann.TesterError, match="must answer a margin"):
        cleann.explain(g, target, NotANumber(rng, pool), search="guided")

    class ReturnsNone(Additive):
        def score_batch(self, sets, target=None):
            return None

    with pytest.raises(cleann.TesterError, match="one answer per candidate"):
        cleann.explain(g, target, ReturnsNone(rng, pool), search="guided")
    with pytest.raises(ValueError, match="search must be one of"):
        cleann.explain(g, target, Additive(rng, pool), search="beam")
