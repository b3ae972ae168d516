"""CLEANN explanations: exhaustive-search oracle, tester protocol, bad input; ABCD over batches."""

import itertools
import zlib

import numpy as np
import pytest

import cleann
from conftest import random_attention


def _graph(rng, n):
    return cleann.icd(cleann.attention_to_correlation(random_attention(n, rng)), 384)


class FamilyTester:
    """A set explains the target iff it contains one of a few random "reason" sets (monotone)."""

    def __init__(self, rng, pool, k):
        self.reasons = [set(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False).tolist())
                        for _ in range(k)] if len(pool) >= 3 else [set(pool)]
        self.calls = 0

    def __call__(self, tokens, target=None):
        self.calls += 1
        return any(r <= set(tokens) for r in self.reasons)


class HashTester:
    """An arbitrary (non-monotone) yes/no per set, fixed by a hash; answers in batches."""

    def __init__(self, salt, rate):
        self.salt, self.rate, self.batches = salt, rate, 0

    def one(self, tokens):
        return zlib.crc32(f"{self.salt}:{sorted(tokens)}".encode()) % 1000 < self.rate * 1000

    def test_batch(self, sets, target):
        self.batches += 1
        return [self.one(s) for s in sets]


def _exhaustive_min(pool, judge):
    for k in range(1, len(pool) + 1):
        found = [c for c in itertools.combinations(pool, k) if judge(list(c))]
        if found:
            return k, found
    return None, []


@pytest.mark.parametrize("seed", range(12))
def test_matches_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    g = _graph(rng, int(rng.integers(4, 9)))
    target = int(rng.choice(g.nodes))
    pool = cleann.explain(g, target, None).candidates
    tester = FamilyTester(rng, list(pool), 3) if seed % 2 else HashTester(seed, 0.15)
    judge = tester if seed % 2 else tester.one
    ex = cleann.explain(g, target, (lambda s, t: judge(s)) if seed % 2 else tester, connected=False)
    size, want = _exhaustive_min(pool, judge)
    assert ex.size == size
    assert sorted(ex.sets) == sorted(want)  # all explanations of the smallest size, nothing else
    assert all(judge(list(s)) for s in ex.sets)  # re-verified by the tester
    assert ex.distances == sorted(ex.distances)
    assert all(set(s) <= set(pool) and target not in s for s in ex.sets)


def test_order_size_then_distance_then_lexicographic(rng):
    g = _graph(rng, 8)
    target = int(g.nodes[0])
    seen = []
    cleann.explain(g, target, lambda s, t: seen.append(tuple(s)) or False, max_size=2, connected=False)
    dist = {int(g.nodes[p]): d for p, d in cleann.graph.pds_tree(g, 0).distance.items()}
    keys = [(len(s), sum(dist[v] for v in s), s) for s in seen]
    assert keys == sorted(keys) and len(set(seen)) == len(seen)
    pool = [v for v in dist if v != target]
    assert len(seen) == len(pool) + len(pool) * (len(pool) - 1) // 2


def test_batches_match_single_calls(rng):
    g = _graph(rng, 9)
    target = int(g.nodes[4])
    batched = HashTester(7, 0.1)
    a = cleann.explain(g, target, batched, batch_size=5, minimal=False, max_size=3)
    b = cleann.explain(g, target, lambda s, t: batched.one(s), minimal=False, max_size=3)
    assert a.sets == b.sets and a.candidates_tried == b.candidates_tried
    assert a.model_calls < b.model_calls == b.candidates_tried


def test_first_and_connected(rng):
    g = _graph(rng, 9)
    target = int(g.nodes[2])
    ex = cleann.explain(g, target, lambda s, t: len(s) >= 2, first=True)
    assert len(ex.sets) == 1 and len(ex.sets[0]) == 2
    tree = cleann.graph.pds_tree(g, 2)
    con = cleann.explain(g, target, lambda s, t: True, connected=True, minimal=False, max_size=3)
    for s in con.sets:
        members = {int(np.flatnonzero(g.nodes == v)[0]) for v in s}
        reached, stack = set(), [0]
        while stack:
            occ = stack.pop()
            for c in tree.children(occ):
                if int(tree.node[c]) in members:
                    reached.add(int(tree.node[c]))
                    stack.append(c)
        assert reached == members


def test_no_tester_returns_the_pool(rng):
    g = _graph(rng, 6)
    ex = cleann.explain(g, int(g.nodes[0]), None)
    assert ex.sets == [ex.candidates] and ex.candidates_tried == 0


def test_max_radius_limits_the_tree(rng):
    g = _graph(rng, 9)
    near = cleann.explain(g, int(g.nodes[0]), None, max_radius=1).candidates
    assert set(near) == {int(g.nodes[p]) for p in np.flatnonzero(g.adjacency[0])}


def test_bad_input(rng):
    g = _graph(rng, 6)
    with pytest.raises(ValueError, match="not a node"):
        cleann.explain(g, 99, lambda s, t: True)
    with pytest.raises(ValueError, match="max_size"):
        cleann.explain(g, 0, lambda s, t: True, max_size=0)
    with pytest.raises(ValueError, match="target"):
        cleann.explain(g, "0", lambda s, t: True)
    with pytest.raises(cleann.TesterError, match="True or False, got 1"):
        cleann.explain(g, 0, lambda s, t: 1)
    with pytest.raises(cleann.TesterError, match="ZeroDivisionError"):
        cleann.explain(g, 0, lambda s, t: 1 / 0)

    class Short:
        def test_batch(self, sets, target):
            return [False]

    with pytest.raises(cleann.TesterError, match="answered 1 results"):
        cleann.explain(g, 0, Short(), batch_size=4)


def test_abcd_batches_lengths_and_nodes(rng):
    a = random_attention(10, rng, heads=6).reshape(2, 3, 10, 10)
    graphs = cleann.abcd(a, 384, lengths=[10, 7])
    assert [len(row) for row in graphs] == [3, 3]
    assert graphs[1][2].params["input"] == 1 and graphs[1][2].params["head"] == 2
    assert graphs[1][0].nodes.tolist() == list(range(7))
    want = cleann.icd(cleann.attention_to_correlation(a[0, 1]), 384)
    assert np.array_equal(graphs[0][1].marks, want.marks)
    sub = cleann.abcd(a[0], 384, nodes=[1, 2, 3, 5, 8])
    assert all(g.nodes.tolist() == [1, 2, 3, 5, 8] for g in sub)
    fci_graphs = cleann.abcd(a[0], 384, method="fci")
    assert fci_graphs[0].params["method"] == "fci"
    with pytest.raises(ValueError, match="beyond the 7 valid tokens"):
        cleann.abcd(a, 384, lengths=[10, 7], nodes=[1, 8])
    with pytest.raises(ValueError, match="lengths must be in"):
        cleann.abcd(a, 384, lengths=[10, 0])
    with pytest.raises(ValueError, match="method must be"):
        cleann.abcd(a, 384, method="ges")
    with pytest.raises(ValueError, match=r"shape \[H, n, n\]"):
        cleann.abcd(a[0, 0], 384)
