"""Attention to correlation: the covariance of the attention layer's outputs under the linear SEM reading."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import first_index, is_torch
from .errors import ArgumentError


def attention_to_correlation(attn: Any, backend: str = "auto") -> Any:
    """Correlation matrix of ``C = A A^T`` for attention ``A`` (rows are probabilities).

    Reading z_i = sum_j A_ij v_j with independent, equal-variance exogenous v_j gives
    cov(Z) = A A^T; this returns its correlation ``C_ij / sqrt(C_ii C_jj)`` with an exact unit
    diagonal. Each row is divided by its largest entry first (the correlation does not depend on
    a row's scale), so rows of any magnitude, subnormal ones included, give the same matrix.

    Args:
        attn: attention [..., n, n], NumPy array or torch tensor (any float dtype; computed in
            float64). A torch tensor stays on its device.
        backend: "auto" runs the fused Triton kernel on CUDA tensors when Triton is installed
            (torch's float64 GEMM otherwise); "triton" forces the kernel (on CPU tensors only under
            TRITON_INTERPRET=1); "cpu" | "cuda" | "numpy" use the array library's GEMM.

    Returns:
        float64 correlation [..., n, n] of the same kind (NumPy in, NumPy out; torch in, torch out).

    Raises:
        ArgumentError (a ValueError): non-square or fewer than 2 dimensions, non-floating dtype, NaN/Inf, or a token
            whose attention row is all zero (the message names the offending index).
    """
    from . import _backend

    if backend not in _backend.BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(map(repr, _backend.BACKENDS))}, got {backend!r}")
    use_triton = backend == "triton" or (backend == "auto" and _backend.is_cuda_tensor(attn)
                                          and _backend.triton_error("attention_to_correlation", attn) is None)
    if use_triton:
        err = _backend.triton_error("attention_to_correlation", attn)
        if err:
            raise _backend.BackendUnavailableError(err)
        import torch

        if not is_torch(attn):
            attn = torch.from_numpy(np.asarray(attn))
        return _torch_correlation(attn, fused=True)
    if is_torch(attn):
        return _torch_correlation(attn)
    a = np.asarray(attn)
    _check_shape_dtype(a.shape, a.dtype, np.issubdtype(a.dtype, np.floating) and a.dtype != bool)
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = first_index(bad)
        raise ArgumentError(f"attention holds a non-finite value ({a[idx]}) at index {idx}")
    return correlation_of_rows(a)


def correlation_of_rows(a: np.ndarray) -> np.ndarray:
    """corr(A A^T) for attention rows A [..., L, m] (L query tokens over m keys), float64, checked."""
    zero = ~np.any(a != 0, axis=-1)
    if zero.any():
        idx = first_index(zero)
        raise ArgumentError(f"attention row {idx} is all zero: that token attends to nothing, "
                            "its correlation is undefined")
    # corr(A A^T) does not depend on the scale of a row: dividing each row by its largest entry
    # first keeps A A^T clear of overflow (rows scaled by 1e160) and underflow (1e-170, subnormals).
    a = a / np.max(np.abs(a), axis=-1, keepdims=True)
    c = a @ np.swapaxes(a, -1, -2)
    d = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
    r = c / d[..., :, None] / d[..., None, :]
    r = 0.5 * (r + np.swapaxes(r, -1, -2))  # exact symmetry whatever order the GEMM summed in
    n = r.shape[-1]
    r[..., np.arange(n), np.arange(n)] = 1.0
    np.clip(r, -1.0, 1.0, out=r)
    return r


def correlation_of_rows_tensor(a, fused: bool):
    """:func:`correlation_of_rows` for a float64 torch tensor [..., L, m], on its device; ``fused``
    runs the Triton kernel."""
    import torch

    zero = ~(a != 0).any(dim=-1)
    if bool(zero.any()):
        idx = tuple(int(v) for v in zero.nonzero()[0])
        raise ArgumentError(f"attention row {idx} is all zero: that token attends to nothing, "
                            "its correlation is undefined")
    a = a / a.abs().amax(dim=-1, keepdim=True)  # row scale cannot overflow or underflow A A^T
    if fused:
        from .kernels import attention_correlation

        L, m = a.shape[-2], a.shape[-1]
        return attention_correlation(a.reshape(-1, L, m).contiguous()).reshape(a.shape[:-1] + (L,))
    c = a @ a.transpose(-1, -2)
    d = torch.sqrt(torch.diagonal(c, dim1=-2, dim2=-1))
    r = c / d[..., :, None] / d[..., None, :]
    r = 0.5 * (r + r.transpose(-1, -2))
    r.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    return r.clamp_(-1.0, 1.0)


def _check_shape_dtype(shape, dtype, is_float: bool) -> None:
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ArgumentError(f"attention must have shape [..., n, n], got {list(shape)}")
    if not is_float:
        raise ArgumentError(f"attention must hold floating-point values, got dtype {dtype}")


def _torch_correlation(attn, fused: bool = False):
    import torch

    _check_shape_dtype(tuple(attn.shape), attn.dtype, attn.is_floating_point())
    a = attn.detach().to(torch.float64)
    bad = ~torch.isfinite(a)
    if bool(bad.any()):
        idx = tuple(int(v) for v in bad.nonzero()[0])
        raise ArgumentError(f"attention holds a non-finite value ({float(a[idx])}) at index {idx}")
    return correlation_of_rows_tensor(a, fused)
