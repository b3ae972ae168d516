import math

import numpy as np
import pytest
import torch

import cleann
from cleann import _reference
from cleann._backend import BackendUnavailableError
from conftest import (
    PVALUE_ATOL,
    RHO_ATOL,
    assert_close,
    near_singular_corr,
    random_attention,
    random_corr,
    random_queries,
)

N = 384


def _inputs(kind, n, rng):
    if kind == "attention":
        return cleann.attention_to_correlation(random_attention(n, rng))
    return random_corr(n, rng)


@pytest.mark.parametrize("kind", ["attention", "spd"])
@pytest.mark.parametrize("n,l", [(2, 0), (7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (7, 5), (64, 2), (64, 6),
                                 (257, 1), (257, 3), (257, 9)])
def test_against_reference(kind, n, l, rng):
    R = _inputs(kind, n, rng)
    i, j, S = random_queries(n, 300, l, rng)
    res = cleann.ci_test(R, i, j, S, num_samples=N, alpha=0.05)
    rho_ref = _reference.partial_correlation(R, i, j, S)
    if kind == "spd":  # well-conditioned: strict agreement
        assert not np.isnan(rho_ref).any()
        assert_close(res.rho, rho_ref, atol=RHO_ATOL, what="rho")
    else:  # attention-derived blocks can be badly conditioned: compare where they are not
        ok = ~np.isnan(rho_ref)
        assert_close(res.rho[ok], rho_ref[ok], atol=1e-8, rtol=1e-6, what="rho")
    p_ref = _reference.fisher_z_pvalue(rho_ref, N, np.full(len(i), l))
    decided = [_reference.ci_independent(R, a, b, s, N, 0.05) for a, b, s in zip(i, j, S.tolist())]
    assert np.array_equal(res.independent, [d[0] for d in decided])
    assert np.array_equal(res.singular, [d[1] for d in decided])
    well = kind == "spd"
    if well:
        assert_close(res.pvalue, p_ref, atol=PVALUE_ATOL, what="p-value")
    assert np.array_equal(cleann.partial_correlation(R, i, j, S), res.rho, equal_nan=True)


def test_stack_with_graph_indices(rng):
    Rs = np.stack([random_corr(10, rng) for _ in range(5)])
    i, j, S = random_queries(10, 400, 3, rng)
    g = rng.integers(0, 5, size=400)
    rho = cleann.partial_correlation(Rs, i, j, S, graph=g)
    want = np.array([_reference.partial_correlation_one(Rs[b], a, c, s) for b, a, c, s in zip(g, i, j, S.tolist())])
    assert_close(rho, want, atol=RHO_ATOL, what="stacked rho")


def test_numpy_backend_and_threads_agree(rng):
    R = random_corr(30, rng)
    i, j, S = random_queries(30, 200, 3, rng)
    a = cleann.ci_test(R, i, j, S, N, backend="cpu", num_threads=1)
    b = cleann.ci_test(R, i, j, S, N, backend="cpu", num_threads=2)
    c = cleann.ci_test(R, i, j, S, N, backend="numpy")
    assert a.backend == "cpu" and c.backend == "numpy"
    assert np.array_equal(a.rho, b.rho) and np.array_equal(a.independent, b.independent)
    assert np.array_equal(a.independent, c.independent)
    assert_close(a.pvalue, c.pvalue, atol=PVALUE_ATOL, what="cpu vs numpy p-values")


def test_decisions_without_pvalues(rng):
    R = random_corr(20, rng)
    i, j, S = random_queries(20, 500, 2, rng)
    a = cleann.ci_test(R, i, j, S, N)
    b = cleann.ci_test(R, i, j, S, N, pvalues=False)
    assert b.pvalue is None
    assert np.array_equal(a.independent, b.independent)
    assert np.array_equal(a.independent, a.pvalue > 0.01)


def test_torch_input(rng):
    R = random_corr(12, rng)
    i, j, S = random_queries(12, 50, 2, rng)
    want = cleann.partial_correlation(R, i, j, S)
    got = cleann.partial_correlation(torch.tensor(R), torch.tensor(i), torch.tensor(j), torch.tensor(S))
    assert np.array_equal(got, want)


def test_scalar_query(rng):
    R = random_corr(6, rng)
    r = cleann.partial_correlation(R, 0, 3, [1, 5])
    assert isinstance(r, float)
    assert abs(r - _reference.partial_correlation_one(R, 0, 3, [1, 5])) < RHO_ATOL
    assert cleann.partial_correlation(R, 0, 3) == pytest.approx(R[0, 3], abs=1e-15)


# --- near-singular blocks ------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 1e-7])
def test_singular_blocks_are_dependent_and_flagged(eps, rng):
    R, (a, b) = near_singular_corr(12, rng, eps)
    others = [v for v in range(12) if v not in (a, b)]
    # a and b both in S: R_SS singular. b == i with a in S: residual variance of i ~ 0.
    i = np.array([others[0], b, others[1]])
    j = np.array([others[2], others[3], a])
    S = np.array([[a, b, others[4]], [a, others[5], others[6]], [b, others[7], others[8]]])
    res = cleann.ci_test(R, i, j, S, N)
    assert res.singular.tolist() == [True, True, True]
    assert not res.independent.any()
    assert np.isnan(res.rho).all()
    assert np.all(res.pvalue == 0.0)
    for q in range(3):
        assert _reference.ci_independent(R, int(i[q]), int(j[q]), S[q].tolist(), N, 0.01) == (False, True)


def test_moderately_conditioned_block_is_not_singular(rng):
    R, (a, b) = near_singular_corr(12, rng, 1e-3)  # pivot about 1e-6: well above the tolerance
    others = [v for v in range(12) if v not in (a, b)]
    i, j, S = np.array([others[0]]), np.array([others[1]]), np.array([[a, b]])
    res = cleann.ci_test(R, i, j, S, N)
    assert not res.singular[0]
    assert_close(res.rho, _reference.partial_correlation(R, i, j, S), atol=1e-8, what="rho")


def test_perfect_correlation_is_dependent_not_singular(rng):
    R, (a, b) = near_singular_corr(6, rng, 0.0)
    res = cleann.ci_test(R, [a], [b], None, N)
    assert not res.singular[0] and not res.independent[0]
    assert res.pvalue[0] == 0.0


def test_decision_at_the_threshold_matches_pvalue():
    # |rho| just either side of the threshold: the band must fall back to p > alpha exactly.
    alpha, l = 0.05, 0
    thr = math.tanh(cleann._core.core().fisher_z_critical(alpha) / math.sqrt(N - l - 3))
    for rel in (-1e-6, -1e-12, -1e-15, 0.0, 1e-15, 1e-12, 1e-6):
        r = thr * (1 + rel)
        R = np.array([[1.0, r], [r, 1.0]])
        res = cleann.ci_test(R, [0], [1], None, N, alpha=alpha)
        p = _reference.fisher_z_pvalue(np.array([r]), N, np.array([0]))[0]
        assert bool(res.independent[0]) == bool(p > alpha), (rel, p)


# --- Fisher z ------------------------------------------------------------------------------------

def test_fisher_z_pvalue_formula(rng):
    r = rng.uniform(-0.999, 0.999, size=1000)
    l = rng.integers(0, 20, size=1000)
    p = cleann.fisher_z_pvalue(r, 100, l)
    want = np.array([math.erfc(math.sqrt(100 - b - 3) * abs(math.atanh(a)) / math.sqrt(2)) for a, b in zip(r, l)])
    assert_close(p, want, atol=1e-15, rtol=1e-13, what="p-values")


def test_fisher_z_pvalue_edges():
    p = cleann.fisher_z_pvalue(np.array([1.0, -1.0, 1.5, np.nan, 0.0]), 50, 2)
    assert p.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert isinstance(cleann.fisher_z_pvalue(0.3, 50, 0), float)
    assert cleann.fisher_z_pvalue(np.zeros((2, 3)), 50, np.array([0, 1, 2])).shape == (2, 3)


@pytest.mark.parametrize("N_,l", [(5, 2), (3, 0), (10, 7)])
def test_fisher_z_too_few_samples(N_, l):
    with pytest.raises(ValueError, match="num_samples too small"):
        cleann.fisher_z_pvalue(0.1, N_, l)


def test_fisher_z_bad_args():
    with pytest.raises(ValueError, match="num_samples"):
        cleann.fisher_z_pvalue(0.1, -4, 0)
    with pytest.raises(ValueError, match="cond_size"):
        cleann.fisher_z_pvalue(0.1, 40, -1)
    with pytest.raises(ValueError, match="cond_size"):
        cleann.fisher_z_pvalue(0.1, 40, 1.5)


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("i,j,S,msg", [
    ([0], [0], [[1]], "i == j"),
    ([0], [1], [[0]], "S contains i or j"),
    ([0], [1], [[1]], "S contains i or j"),
    ([0], [9], [[1]], "j = 9 out of range"),
    ([-1], [2], [[1]], "i = -1 out of range"),
    ([0], [2], [[7]], "S contains 7, out of range"),
    ([0], [2], [[3, 3]], "twice"),
    ([0, 1], [2], [[3]], "same length"),
    ([0], [2], [[3], [4]], r"S must have shape \[q, l\]"),
])
def test_bad_queries(backend, i, j, S, msg, rng):
    R = random_corr(5, rng)
    with pytest.raises(ValueError, match=msg):
        cleann.ci_test(R, i, j, S, N, backend=backend)


def test_bad_matrices(rng):
    R = random_corr(5, rng)
    with pytest.raises(ValueError, match=r"shape \[n, n\] or \[B, n, n\]"):
        cleann.partial_correlation(R[:, :4], [0], [1])
    bad = R.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2\)"):
        cleann.partial_correlation(bad, [0], [1])
    asym = R.copy()
    asym[0, 4] += 0.1
    with pytest.raises(ValueError, match="symmetric"):
        cleann.partial_correlation(asym, [0], [1])
    diag = R.copy()
    diag[3, 3] = 2.0
    with pytest.raises(ValueError, match="unit diagonal"):
        cleann.partial_correlation(diag, [0], [1])
    with pytest.raises(ValueError, match="floating-point"):
        cleann.partial_correlation(np.eye(3, dtype=int), [0], [1])
    with pytest.raises(ValueError, match="integers"):
        cleann.partial_correlation(R, [0.0], [1.0])


def test_stack_needs_graph_indices(rng):
    Rs = np.stack([random_corr(4, rng), random_corr(4, rng)])
    with pytest.raises(ValueError, match="graph"):
        cleann.partial_correlation(Rs, [0], [1])
    with pytest.raises(ValueError, match="graph index 2 out of range"):
        cleann.partial_correlation(Rs, [0], [1], graph=[2])


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, True, "0.05", float("nan")])
def test_bad_alpha(alpha, rng):
    with pytest.raises(ValueError, match="alpha"):
        cleann.ci_test(random_corr(4, rng), [0], [1], None, N, alpha=alpha)


def test_num_samples_too_small_for_level(rng):
    with pytest.raises(ValueError, match="num_samples too small for conditioning sets of size 2"):
        cleann.ci_test(random_corr(6, rng), [0], [1], [[2, 3]], num_samples=5)


def test_backends():
    R = np.eye(3)
    with pytest.raises(ValueError, match="backend must be one of"):
        cleann.partial_correlation(R, [0], [1], backend="gpu")
    with pytest.raises(BackendUnavailableError, match="'cuda'"):
        cleann.partial_correlation(R, [0], [1], backend="cuda")
