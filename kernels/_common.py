"""Triton device functions shared by the partial-correlation kernels.

The math is that of ``csrc/pcorr.h``: for nodes (i, j) and a conditioning set S of size L, the block
of R over [i, j] + S is reduced by symmetric Gaussian elimination of the members of S in order.
The pivot of member t is its Schur complement given the members before it (pcorr.h's D[t]); after
all L steps the top-left 2 x 2 block is the partial covariance of (i, j) given S, whose entries are
pcorr.h's d_i, d_j and the numerator. A pivot or residual variance under ``tol`` (or NaN) marks the
query singular, which the caller counts as "dependent"; so does a block that is not positive
semi-definite (num^2 > d_i d_j beyond a relative 1e-9, pcorr.h's kPsdSlack).
"""

import torch
import triton
import triton.language as tl

#: relative half-width of the band around the threshold where the p-value decides (pcorr.h)
THRESHOLD_BAND = 1e-10


def fisher_params(tol, threshold2, num_samples, alpha, device) -> torch.Tensor:
    """The float64 constants of a level, as the tensor the kernels read them from."""
    return torch.tensor([tol, threshold2, num_samples, alpha], dtype=torch.float64, device=device)


@triton.jit
def _load_params(params_ptr):
    return (tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2), tl.load(params_ptr + 3))


@triton.jit
def _schur_terms(R_ptr, base, idx, valid, n, tol, L: tl.constexpr, MP: tl.constexpr):
    """Numerator, d_i, d_j and a singular flag for a block of queries.

    R_ptr: float64 stack; base: int64 [BLOCK] offset of each query's matrix; idx: int64 [BLOCK, MP]
    with column 0 = i, 1 = j, 2 .. L+1 = the members of S (columns past L+1 are ignored);
    valid: bool [BLOCK]. MP is a power of two >= L + 2.
    """
    cols = tl.arange(0, MP)
    used = cols < L + 2
    rows3 = cols[None, :, None]
    cols3 = cols[None, None, :]
    mask = valid[:, None, None] & used[None, :, None] & used[None, None, :]
    X = tl.load(R_ptr + base[:, None, None] + idx[:, :, None] * n + idx[:, None, :], mask=mask, other=0.0)
    singular = valid != valid
    for t in tl.static_range(L):
        p = t + 2
        col = tl.sum(tl.where(cols3 == p, X, 0.0), axis=2)           # [BLOCK, MP]
        d = tl.sum(tl.where(cols[None, :] == p, col, 0.0), axis=1)    # [BLOCK]
        ok = d >= tol
        singular = singular | ~ok
        d = tl.where(ok, d, 1.0)
        X = X - col[:, :, None] * col[:, None, :] / d[:, None, None]
    num = tl.sum(tl.sum(tl.where((rows3 == 0) & (cols3 == 1), X, 0.0), axis=2), axis=1)
    di = tl.sum(tl.sum(tl.where((rows3 == 0) & (cols3 == 0), X, 0.0), axis=2), axis=1)
    dj = tl.sum(tl.sum(tl.where((rows3 == 1) & (cols3 == 1), X, 0.0), axis=2), axis=1)
    singular = singular | ~(di >= tol) | ~(dj >= tol)
    singular = singular | (num * num > di * dj * (1.0 + 1e-9))  # not PSD: |rho| > 1 (pcorr.h kPsdSlack)
    return num, di, dj, singular


@triton.jit
def _fisher_z(num, di, dj, singular, threshold2, num_samples, alpha, L: tl.constexpr, BAND: tl.constexpr):
    """(rho, p-value, independent) of the Fisher-z test; rho is NaN and p 0 where singular.

    Independent iff num^2 < threshold^2 d_i d_j, except within the rounding band of the threshold,
    where the p-value itself (p > alpha) decides, as in pcorr.h.
    """
    di = tl.where(singular, 1.0, di)
    dj = tl.where(singular, 1.0, dj)
    lhs = num * num
    rhs = threshold2 * di * dj
    rho = num / tl.sqrt(di * dj)
    a = tl.minimum(tl.abs(rho), 1.0)
    inside = a < 1.0
    a_safe = tl.where(inside, a, 0.0)
    stat = tl.sqrt(num_samples - L - 3.0) * 0.5 * tl.log((1.0 + a_safe) / (1.0 - a_safe))
    p = tl.where(inside, 1.0 - tl.erf(stat * 0.70710678118654752440), 0.0)
    below = lhs < rhs * (1.0 - 2.0 * BAND)
    above = lhs > rhs * (1.0 + 2.0 * BAND)
    independent = (below | (~above & (p > alpha))) & ~singular
    rho = tl.where(singular, float("nan"), rho)
    p = tl.where(singular, 0.0, p)
    return rho, p, independent
