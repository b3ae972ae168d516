"""Argument checks shared by the public functions: every message names the argument and what came."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ArgumentError


def to_numpy(x, name: str) -> np.ndarray:
    """NumPy view of an array-like or a torch tensor (copied to host memory if needed)."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ArgumentError(f"{name} must be an array, could not convert it: {exc}") from None


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def first_index(mask: np.ndarray) -> tuple:
    return tuple(int(v) for v in np.argwhere(mask)[0])


def check_float(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == bool or not np.issubdtype(a.dtype, np.floating):
        raise ArgumentError(f"{name} must hold floating-point values, got dtype {a.dtype}")
    return a


def corr_stack(R, name: str = "R", atol: float = 1e-8) -> tuple[np.ndarray, bool]:
    """``R`` as a C-contiguous float64 [B, n, n] stack of correlation matrices; flag: was it a stack."""
    a = check_float(to_numpy(R, name), name)
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise ArgumentError(f"{name} must have shape [n, n] or [B, n, n], got {list(a.shape)}")
    if a.size == 0:
        raise ArgumentError(f"{name} is empty (shape {list(a.shape)}): it needs at least one variable"
                            + (" and one matrix" if a.ndim == 3 else ""))
    batched = a.ndim == 3
    a = np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]), dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = first_index(bad)
        raise ArgumentError(f"{name} holds a non-finite value ({a[idx]}) at index {idx if batched else idx[1:]}")
    n = a.shape[-1]
    if n:
        diag = np.diagonal(a, axis1=1, axis2=2)
        off = np.abs(diag - 1.0) > atol
        if off.any():
            b, k = first_index(off)
            where = f"[{b}, {k}, {k}]" if batched else f"[{k}, {k}]"
            raise ArgumentError(f"{name} must be a correlation matrix (unit diagonal), got {diag[b, k]!r} at {where}")
        asym = np.abs(a - a.transpose(0, 2, 1)) > atol
        if asym.any():
            idx = first_index(asym)
            raise ArgumentError(f"{name} must be symmetric, differs at index {idx if batched else idx[1:]}")
        big = np.abs(a) > 1.0 + atol
        if big.any():
            idx = first_index(big)
            raise ArgumentError(f"{name} has a correlation outside [-1, 1] at index {idx if batched else idx[1:]}")
        if not np.array_equal(a, a.transpose(0, 2, 1)):
            # Symmetric within atol: make it exact, so R_ij and R_ji can never disagree in a test.
            a = 0.5 * (a + a.transpose(0, 2, 1))
    return a, batched


def index_array(x, name: str, ndim: int) -> np.ndarray:
    a = to_numpy(x, name)
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ArgumentError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ArgumentError(f"{name} must be {ndim}-D, got shape {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


def alpha_value(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ArgumentError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def num_samples_value(num_samples) -> float:
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Real):
        raise ArgumentError(f"num_samples must be a positive number, got {num_samples!r}")
    v = float(num_samples)
    if not np.isfinite(v) or v <= 0:
        raise ArgumentError(f"num_samples must be a positive number, got {num_samples!r}")
    return v


def check_dof(num_samples: float, cond_size: int) -> None:
    if not num_samples - cond_size - 3 > 0:
        raise ArgumentError(
            f"num_samples too small for conditioning sets of size {cond_size}: the Fisher z test needs "
            f"num_samples - |S| - 3 > 0, got num_samples = {num_samples:g}"
        )


MAX_THREADS = 4096
_INT_MAX = 2**31 - 1  # the compiled core's int arguments


def threads_value(num_threads) -> int:
    if num_threads is None:
        return 0
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or not \
            1 <= num_threads <= MAX_THREADS:
        raise ArgumentError(f"num_threads must be an integer from 1 to {MAX_THREADS} or None, got {num_threads!r}")
    return int(num_threads)


def pivot_tol_value(pivot_tol) -> float:
    """The singular-block tolerance: a finite number >= 0 (every function that takes it)."""
    if isinstance(pivot_tol, bool) or not isinstance(pivot_tol, numbers.Real) or not math.isfinite(pivot_tol) \
            or pivot_tol < 0:
        raise ArgumentError(f"pivot_tol must be a finite number >= 0, got {pivot_tol!r}")
    return float(pivot_tol)


def level_value(max_level, name: str = "max_level") -> int:
    """A cap on conditioning-set sizes for the compiled core: None (-1) or an integer >= 0; caps
    beyond what any graph can reach are the same as none."""
    if max_level is None:
        return -1
    if isinstance(max_level, bool) or not isinstance(max_level, numbers.Integral) or max_level < 0:
        raise ArgumentError(f"{name} must be a non-negative integer or None, got {max_level!r}")
    return int(min(max_level, _INT_MAX))


def budget_value(value, name: str) -> int:
    """A positive work cap (int64 in the compiled core); larger ones saturate."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(min(value, 2**62))


def corr_stack_tensor(R, name: str, device, atol: float = 1e-8):
    """``R`` as a contiguous float64 [B, n, n] torch tensor on ``device``, checked there like
    :func:`corr_stack` (one synchronisation per check); flag: was it a stack."""
    import torch

    if is_torch(R):
        if R.is_complex() or not R.is_floating_point():
            raise ArgumentError(f"{name} must hold floating-point values, got dtype {R.dtype}")
        if R.device != device:
            raise ArgumentError(f"{name} is on {R.device} but the backend runs on {device}")
        t = R.detach()
    else:
        t = torch.from_numpy(check_float(to_numpy(R, name), name))
    if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2]:
        raise ArgumentError(f"{name} must have shape [n, n] or [B, n, n], got {list(t.shape)}")
    if t.numel() == 0:
        raise ArgumentError(f"{name} is empty (shape {list(t.shape)}): it needs at least one variable"
                            + (" and one matrix" if t.ndim == 3 else ""))
    batched = t.ndim == 3
    t = t.reshape((-1,) + tuple(t.shape[-2:])).to(device=device, dtype=torch.float64).contiguous()

    def where(mask) -> str:
        idx = tuple(int(v) for v in mask.nonzero()[0])
        return str(idx if batched else idx[1:])

    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ArgumentError(f"{name} holds a non-finite value at index {where(bad)}")
    if t.shape[-1]:
        diag = torch.diagonal(t, dim1=1, dim2=2)
        off = (diag - 1.0).abs() > atol
        if bool(off.any()):
            b, k = (int(v) for v in off.nonzero()[0])
            at = f"[{b}, {k}, {k}]" if batched else f"[{k}, {k}]"
            raise ArgumentError(f"{name} must be a correlation matrix (unit diagonal), "
                                f"got {float(diag[b, k])!r} at {at}")
        tt = t.transpose(1, 2)
        asym = (t - tt).abs() > atol
        if bool(asym.any()):
            raise ArgumentError(f"{name} must be symmetric, differs at index {where(asym)}")
        big = t.abs() > 1.0 + atol
        if bool(big.any()):
            raise ArgumentError(f"{name} has a correlation outside [-1, 1] at index {where(big)}")
        if not bool(torch.equal(t, tt)):
            t = (0.5 * (t + tt)).contiguous()
    return t, batched


def same_device(x, name: str, device) -> None:
    """A torch tensor argument must already be on the backend's device."""
    if is_torch(x) and x.device != device:
        raise ArgumentError(f"{name} is on {x.device} but R is on {device}; put them on one device")


def check_query_arrays(num_graphs: int, n: int, graph, i, j, S) -> None:
    """The compiled core's index checks, vectorised, as ArgumentErrors naming the first bad query."""
    q = len(i)
    g = np.zeros(q, np.int64) if graph is None else graph
    checks = [
        ((g < 0) | (g >= num_graphs), lambda k: f"graph index {g[k]} out of range [0, {num_graphs})"),
        ((i < 0) | (i >= n), lambda k: f"i = {i[k]} out of range [0, {n})"),
        ((j < 0) | (j >= n), lambda k: f"j = {j[k]} out of range [0, {n})"),
        (i == j, lambda k: f"i == j == {i[k]}"),
    ]
    if S.shape[1]:
        checks += [
            (((S < 0) | (S >= n)).any(axis=1), lambda k: f"S contains a node out of range [0, {n})"),
            (((S == i[:, None]) | (S == j[:, None])).any(axis=1), lambda k: "S contains i or j"),
        ]
        srt = np.sort(S, axis=1)
        checks.append(((srt[:, 1:] == srt[:, :-1]).any(axis=1), lambda k: "S contains a node twice"))
    for bad, message in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ArgumentError(f"{message(k)} (query {k})")
