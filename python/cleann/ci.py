"""Batched conditional-independence tests: partial correlations and the Fisher z test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _backend, _core, _reference
from ._checks import (
    alpha_value,
    check_dof,
    corr_stack,
    index_array,
    num_samples_value,
    pivot_tol_value,
    threads_value,
    to_numpy,
)
from .errors import ArgumentError

#: A conditioning block whose Cholesky pivot or residual variance falls under this counts as
#: singular: the test answers "dependent" and the result counts it.
PIVOT_TOL = 1e-10


@dataclass(frozen=True)
class CIResult:
    """Outcome of a batch of CI tests.

    Attributes:
        rho: partial correlations [q] (NaN where the conditioning block is singular).
        pvalue: Fisher-z p-values [q] (0 where singular or |rho| >= 1); None if not asked for.
        independent: bool [q], p > alpha.
        singular: bool [q], the block was singular (counted as dependent).
        backend: which implementation ran.
    """

    rho: np.ndarray
    pvalue: np.ndarray
    independent: np.ndarray
    singular: np.ndarray
    backend: str


def _queries(R, i, j, S, graph):
    corr, batched = corr_stack(R, "R")
    return (corr,) + _query_arrays(i, j, S, graph, corr.shape[0], batched)


def _query_arrays(i, j, S, graph, num_graphs: int, batched: bool):
    scalar = np.ndim(to_numpy(i, "i")) == 0
    if scalar:
        i_arr = index_array(np.atleast_1d(to_numpy(i, "i")), "i", 1)
        j_arr = index_array(np.atleast_1d(to_numpy(j, "j")), "j", 1)
        s = to_numpy([] if S is None else S, "S")
        S_arr = index_array(s.reshape(1, -1), "S", 2)
    else:
        i_arr = index_array(i, "i", 1)
        j_arr = index_array(j, "j", 1)
        S_arr = (
            np.zeros((len(i_arr), 0), np.int64) if S is None else index_array(S, "S", 2)
        )
    if len(j_arr) != len(i_arr):
        raise ArgumentError(f"i and j must have the same length, got {len(i_arr)} and {len(j_arr)}")
    if S_arr.shape[0] != len(i_arr):
        raise ArgumentError(f"S must have shape [q, l] with q = {len(i_arr)}, got {list(S_arr.shape)}")
    g_arr = None
    if batched:
        if graph is None:
            raise ArgumentError(f"graph (one index per query) is needed with a stack of {num_graphs} matrices")
        g_arr = index_array(np.atleast_1d(to_numpy(graph, "graph")), "graph", 1)
        if len(g_arr) != len(i_arr):
            raise ArgumentError(f"graph must have shape [{len(i_arr)}], got {list(g_arr.shape)}")
    elif graph is not None:
        g = index_array(np.atleast_1d(to_numpy(graph, "graph")), "graph", 1)
        if np.any(g != 0):
            raise ArgumentError("graph indices other than 0 given for a single [n, n] matrix")
    return g_arr, i_arr, j_arr, S_arr, scalar


def _gpu_queries(which, R, i, j, S, graph, num_samples, alpha, pivot_tol):
    """Runs the queries on the GPU backend ``which``; returns torch (rho, p, outcome) and the scalar flag."""
    import torch

    from . import _gpu
    from ._checks import check_query_arrays, corr_stack_tensor, same_device

    device = _backend.device_for(which, R)
    corr, batched = corr_stack_tensor(R, "R", device)
    for name, x in (("i", i), ("j", j), ("S", S), ("graph", graph)):
        same_device(x, name, device)
    g, i_arr, j_arr, S_arr, scalar = _query_arrays(i, j, S, graph, corr.shape[0], batched)
    check_query_arrays(corr.shape[0], corr.shape[1], g, i_arr, j_arr, S_arr)
    if g is None:
        g = np.zeros(len(i_arr), np.int64)
    on = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)
    l = S_arr.shape[1]
    if num_samples is not None:
        check_dof(num_samples, l)
    N = float(l + 4) if num_samples is None else num_samples  # rho alone does not depend on N
    t2 = _gpu.fisher_threshold2(alpha, N, l)
    rho, p, outcome = _gpu.ops(which).ci(corr, on(g), on(i_arr), on(j_arr), on(S_arr), t2, N, alpha, pivot_tol)
    return rho, p, outcome, scalar


def partial_correlation(R, i, j, S=None, graph=None, backend: str = "auto", *, pivot_tol: float = PIVOT_TOL,
                        num_threads: int | None = None) -> Any:
    """Partial correlations rho(i, j | S) for a batch of queries.

    Args:
        R: correlation matrix [n, n] or stack [B, n, n].
        i, j: node indices [q] (or scalars for one query).
        S: conditioning sets [q, l] (l may be 0; None means l = 0); [l] for one scalar query.
        graph: [q] index into the stack; needed when R is a stack.
        backend: "auto" | "cpu" | "numpy" | "cuda" | "triton"; "auto" runs on the GPU when R is a
            CUDA tensor.
        pivot_tol: pivots and residual variances under this make a query singular (NaN).
        num_threads: threads for the compiled path (None: all).

    Returns:
        float64 [q] (a float for a scalar query); NaN where the conditioning block is singular.
        A NumPy array, or a torch tensor on R's device when a GPU backend ran.
    """
    nt = threads_value(num_threads)
    pivot_tol = pivot_tol_value(pivot_tol)
    which = _backend.resolve(backend, "partial_correlation", R, gpu=True)
    if which in _backend.GPU_BACKENDS:
        rho, _, _, scalar = _gpu_queries(which, R, i, j, S, graph, None, 0.5, pivot_tol)
        return float(rho[0]) if scalar else rho
    corr, g, i_arr, j_arr, S_arr, scalar = _queries(R, i, j, S, graph)
    if which == "numpy":
        _reference.check_queries(corr.shape[0], corr.shape[1], g, i_arr, j_arr, S_arr)
        rho = _reference.partial_correlation(corr, i_arr, j_arr, S_arr, g, pivot_tol=pivot_tol)
    else:
        rho = _core.core().partial_correlation(corr, g, i_arr, j_arr, S_arr, float(pivot_tol), nt)
    return float(rho[0]) if scalar else rho


def fisher_z_pvalue(r: Any, num_samples: float, cond_size: Any) -> float | np.ndarray:
    """Two-sided Fisher-z p-value: ``erfc(sqrt(N - |S| - 3) |atanh r| / sqrt 2)``.

    ``|r| >= 1`` gives 0 (dependent), and so does NaN, which marks a singular conditioning block in
    :func:`partial_correlation`'s output.

    Args:
        r: partial correlation(s), any shape.
        num_samples: N, the number of samples behind the correlations.
        cond_size: |S|, an int or an array broadcastable to ``r``.

    Raises:
        ArgumentError (a ValueError): N - |S| - 3 <= 0, a negative cond_size, or non-numeric input.
    """
    N = num_samples_value(num_samples)
    r_arr = to_numpy(r, "r")
    if r_arr.dtype == bool or not (np.issubdtype(r_arr.dtype, np.floating) or np.issubdtype(r_arr.dtype, np.integer)):
        raise ArgumentError(f"r must be numeric, got dtype {r_arr.dtype}")
    l_arr = to_numpy(cond_size, "cond_size")
    if l_arr.dtype == bool or not np.issubdtype(l_arr.dtype, np.integer):
        raise ArgumentError(f"cond_size must be an integer or integer array, got dtype {l_arr.dtype}")
    if np.any(l_arr < 0):
        raise ArgumentError("cond_size must be >= 0")
    check_dof(N, int(l_arr.max()) if l_arr.size else 0)
    r_b, l_b = np.broadcast_arrays(r_arr.astype(np.float64), l_arr.astype(np.int64))
    flat_r = np.ascontiguousarray(r_b.ravel())
    if _core.have_core():
        uniform = l_b.size == 0 or bool(np.all(l_b == l_b.flat[0]))
        l_flat = np.ascontiguousarray(l_b.ravel()[:1] if uniform and l_b.size else l_b.ravel())
        if l_flat.size == 0:
            l_flat = np.zeros(1, np.int64)
        p = _core.core().fisher_z_pvalue(flat_r, N, l_flat)
    else:
        p = _reference.fisher_z_pvalue(flat_r, N, l_b.ravel())
    p = p.reshape(r_b.shape)
    return float(p) if p.ndim == 0 else p


def ci_test(R, i, j, S=None, num_samples=None, alpha: float = 0.01, graph=None, backend: str = "auto", *,
            pivot_tol: float = PIVOT_TOL, num_threads: int | None = None, pvalues: bool = True) -> CIResult:
    """Fisher-z CI tests for a batch of queries: partial correlation, p-value and decision.

    Arguments as in :func:`partial_correlation`, plus ``num_samples`` (N) and ``alpha``; a query is
    independent iff p > alpha. Singular blocks are dependent and flagged in ``singular``.
    ``pvalues=False`` skips the p-values (``pvalue`` is then None): the decisions do not need them.
    On a GPU backend the fields are torch tensors on R's device.
    """
    if num_samples is None:
        raise ArgumentError("num_samples is required")
    N = num_samples_value(num_samples)
    a = alpha_value(alpha)
    nt = threads_value(num_threads)
    pivot_tol = pivot_tol_value(pivot_tol)
    which = _backend.resolve(backend, "ci_test", R, gpu=True)
    if which in _backend.GPU_BACKENDS:
        rho, p, outcome, _ = _gpu_queries(which, R, i, j, S, graph, N, a, pivot_tol)
        return CIResult(rho=rho, pvalue=p if pvalues else None, independent=outcome == 1, singular=outcome == 2,
                        backend=which)
    corr, g, i_arr, j_arr, S_arr, _ = _queries(R, i, j, S, graph)
    check_dof(N, S_arr.shape[1])
    if which == "numpy":
        _reference.check_queries(corr.shape[0], corr.shape[1], g, i_arr, j_arr, S_arr)
        rho = _reference.partial_correlation(corr, i_arr, j_arr, S_arr, g, pivot_tol=pivot_tol)
        p = _reference.fisher_z_pvalue(rho, N, np.full(len(rho), S_arr.shape[1]))
        singular = np.isnan(rho)
        indep = (p > a) & ~singular
        p = p if pvalues else None
    else:
        rho, p, outcome = _core.core().ci_test(corr, g, i_arr, j_arr, S_arr, N, a, float(pivot_tol), bool(pvalues),
                                               nt)
        p = p if pvalues else None
        singular = outcome == 2
        indep = outcome == 1
    return CIResult(rho=rho, pvalue=p, independent=indep, singular=singular, backend=which)
