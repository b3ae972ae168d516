import numpy as np
import pytest

import cleann
from cleann import _reference
from conftest import random_attention, random_corr, sem_corr

N = 384


def _assert_same_as_reference(R, num_samples, alpha, sepsets="first", max_level=None, adjacency=None):
    sk = cleann.skeleton(R, num_samples, alpha, max_level=max_level, sepsets=sepsets, adjacency=adjacency)
    adj, found, tests, singular = _reference.skeleton(R, num_samples, alpha, max_level, sepsets, adjacency=adjacency)
    assert np.array_equal(sk.adjacency, adj)
    assert sk.tests_per_level.tolist() == tests
    assert sk.singular_per_level.tolist() == singular
    assert set(sk.sepsets) == set(found)
    for key, sets in found.items():
        assert sk.sepsets.all(key) == sets, key
        assert sk.sepsets.level(key) == len(sets[0])
    return sk


@pytest.mark.parametrize("n", [1, 2, 7, 13])
@pytest.mark.parametrize("sepsets", ["first", "all"])
def test_attention_matrices_against_reference(n, sepsets, rng):
    R = cleann.attention_to_correlation(random_attention(n, rng))
    _assert_same_as_reference(R, N, 0.01, sepsets)


@pytest.mark.parametrize("sepsets", ["first", "all"])
def test_sparse_sem_against_reference(sepsets, rng):
    # Correlations of a sparse DAG model with 64 nodes; the sample size sets how much is found.
    _assert_same_as_reference(sem_corr(64, rng, density=0.06), 60, 0.05, sepsets)


def test_random_spd_against_reference(rng):
    _assert_same_as_reference(random_corr(12, rng, samples=30), 30, 0.05)


def test_max_level_and_initial_adjacency(rng):
    R = cleann.attention_to_correlation(random_attention(10, rng))
    sk = _assert_same_as_reference(R, N, 0.01, max_level=1)
    assert sk.num_levels <= 2
    start = rng.random((10, 10)) < 0.6
    start = np.triu(start, 1)
    start = start | start.T
    sk = _assert_same_as_reference(R, N, 0.01, adjacency=start)
    assert not np.any(sk.adjacency & ~start)


def test_stack_equals_graph_by_graph(rng):
    Rs = np.stack([cleann.attention_to_correlation(random_attention(12, rng)) for _ in range(6)])
    sk = cleann.skeleton(Rs, N)
    assert sk.adjacency.shape == (6, 12, 12) and sk.tests_per_level.shape[0] == 6
    for b in range(6):
        one = cleann.skeleton(Rs[b], N)
        assert np.array_equal(sk.adjacency[b], one.adjacency)
        levels = one.num_levels
        assert sk.tests_per_level[b, :levels].tolist() == one.tests_per_level.tolist()
        assert not sk.tests_per_level[b, levels:].any()
        for (i, j) in one.sepsets:
            assert sk.sepsets[b, i, j] == one.sepsets[i, j]
        assert sum(1 for k in sk.sepsets if k[0] == b) == len(one.sepsets)


def test_threads_do_not_change_the_result(rng):
    Rs = np.stack([cleann.attention_to_correlation(random_attention(24, rng)) for _ in range(3)])
    a = cleann.skeleton(Rs, N, num_threads=1)
    b = cleann.skeleton(Rs, N, num_threads=2)
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.tests_per_level, b.tests_per_level)
    assert list(a.sepsets.items()) == list(b.sepsets.items())


def test_singular_blocks_counted_and_kept(rng):
    # Token b attends exactly like token a: every block holding both is singular.
    A = random_attention(9, rng)
    a, b = 2, 6
    A[b] = A[a]
    R = cleann.attention_to_correlation(A)
    sk = _assert_same_as_reference(R, N, 0.01)
    assert sk.adjacency[a, b]  # a copy stays dependent on its original
    assert sk.singular_per_level.sum() > 0


def test_numpy_backend(rng):
    Rs = np.stack([cleann.attention_to_correlation(random_attention(8, rng)) for _ in range(2)])
    a = cleann.skeleton(Rs, N, backend="cpu")
    b = cleann.skeleton(Rs, N, backend="numpy")
    assert b.backend == "numpy" and a.backend == "cpu"
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.tests_per_level, b.tests_per_level)
    assert list(a.sepsets.items()) == list(b.sepsets.items())


def test_too_few_samples_for_a_level_reached(rng):
    # Nodes 0-2 are near copies of one factor: their edges survive level 0 even with N = 4, so
    # level 1 is reached, where N - 1 - 3 = 0.
    x = rng.normal(size=(200, 6))
    x[:, 1] = x[:, 0] + 1e-3 * rng.normal(size=200)
    x[:, 2] = x[:, 0] + 1e-3 * rng.normal(size=200)
    R = np.corrcoef(x.T)
    with pytest.raises(ValueError, match="num_samples too small for conditioning sets of size 1"):
        cleann.skeleton(R, 4)
    sk = cleann.skeleton(R, 4, max_level=0)
    assert sk.num_levels == 1 and sk.adjacency[0, 1] and sk.adjacency[0, 2]


def test_sepsets_mapping(rng):
    R = sem_corr(15, rng, density=0.1)
    sk = cleann.skeleton(R, 100, 0.05)
    assert len(sk.sepsets) == int((~sk.adjacency).sum() - 15) // 2
    for (i, j), s in sk.sepsets.items():
        assert i < j and not sk.adjacency[i, j]
        assert sk.sepsets[j, i] == s
        assert (j, i) in sk.sepsets and i not in s and j not in s
        assert sk.sepsets.union((i, j)) == frozenset(s)
    present = np.argwhere(np.triu(sk.adjacency, 1))
    if len(present):
        i, j = present[0]
        assert (i, j) not in sk.sepsets and sk.sepsets.get((i, j)) is None
        with pytest.raises(KeyError, match="not removed"):
            sk.sepsets[i, j]
    with pytest.raises(KeyError):
        sk.sepsets[0, 1, 2]


def test_reproduces_causal_learn_published_skeletons(cl_fixtures):
    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)
    R, n_rows = np.corrcoef(data.T), data.shape[0]
    for mode in ("first", "all"):
        sk = cleann.skeleton(R, n_rows, 0.05, sepsets=mode)
        for path in sorted(cl_fixtures.glob("linear_10_*.txt")):
            published = np.loadtxt(path) != 0
            assert np.array_equal(sk.adjacency, published), (mode, path.name)


def test_all_mode_matches_causal_learn_sepsets(cl_fixtures):
    pytest.importorskip("causallearn")
    from causallearn.utils.cit import CIT
    from causallearn.utils.PCUtils.SkeletonDiscovery import skeleton_discovery

    data = np.loadtxt(cl_fixtures / "data_linear_10.txt", skiprows=1)
    cg = skeleton_discovery(data, 0.05, CIT(data, "fisherz"), stable=True, show_progress=False)
    sk = cleann.skeleton(np.corrcoef(data.T), data.shape[0], 0.05, sepsets="all")
    assert np.array_equal(sk.adjacency, cg.G.graph != 0)
    n = data.shape[1]
    for i in range(n):
        for j in range(i + 1, n):
            theirs = cg.sepset[i, j]
            if theirs is None:
                assert (i, j) not in sk.sepsets
                continue
            assert sk.sepsets.union((i, j)) == frozenset(v for t in theirs for v in t), (i, j)


@pytest.mark.parametrize("kwargs,msg", [
    ({"sepsets": "some"}, "sepsets must be"),
    ({"max_level": -1}, "max_level"),
    ({"max_level": 1.5}, "max_level"),
    ({"alpha": 0.0}, "alpha"),
    ({"num_samples": 0}, "num_samples"),
    ({"adjacency": np.ones((3, 3), bool)}, "adjacency must have the shape"),
    ({"num_threads": 0}, "num_threads"),
])
def test_bad_arguments(kwargs, msg, rng):
    R = random_corr(5, rng)
    args = {"num_samples": N, **kwargs}
    with pytest.raises(ValueError, match=msg):
        cleann.skeleton(R, **args)


def test_bad_initial_adjacency(rng):
    R = random_corr(4, rng)
    loop = np.zeros((4, 4), bool)
    loop[2, 2] = True
    with pytest.raises(ValueError, match="self-loop"):
        cleann.skeleton(R, N, adjacency=loop)
    half = np.zeros((4, 4), bool)
    half[0, 3] = True
    with pytest.raises(ValueError, match="not symmetric"):
        cleann.skeleton(R, N, adjacency=half)
