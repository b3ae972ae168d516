"""Attention to correlation, fused: corr(A A^T) over a batch of attention matrices."""

import torch
import triton
import triton.language as tl


@triton.jit
def _attention_correlation_kernel(A_ptr, out_ptr, n, m, stride_ab, stride_ai, stride_ak,
                                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One [BLOCK_N, BLOCK_N] tile of one matrix: the Gram tile and both row norms in one k loop.

    Programs: (graph, tile row, tile column). Products are summed in the same order for tile (I, J)
    and (J, I), so the output is exactly symmetric.
    """
    b = tl.program_id(0)
    ti = tl.program_id(1)
    tj = tl.program_id(2)
    rows = ti * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tj * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    base = A_ptr + b.to(tl.int64) * stride_ab
    acc = tl.zeros((BLOCK_N, BLOCK_N), dtype=tl.float64)
    sq_i = tl.zeros((BLOCK_N,), dtype=tl.float64)
    sq_j = tl.zeros((BLOCK_N,), dtype=tl.float64)
    for k0 in range(0, m, BLOCK_K):
        kk = k0 + ks
        a_i = tl.load(base + rows[:, None] * stride_ai + kk[None, :] * stride_ak,
                      mask=(rows[:, None] < n) & (kk[None, :] < m), other=0.0).to(tl.float64)
        a_j = tl.load(base + cols[:, None] * stride_ai + kk[None, :] * stride_ak,
                      mask=(cols[:, None] < n) & (kk[None, :] < m), other=0.0).to(tl.float64)
        acc += tl.sum(a_i[:, None, :] * a_j[None, :, :], axis=2)
        sq_i += tl.sum(a_i * a_i, axis=1)
        sq_j += tl.sum(a_j * a_j, axis=1)
    d_i = tl.sqrt(tl.where(rows < n, sq_i, 1.0))
    d_j = tl.sqrt(tl.where(cols < n, sq_j, 1.0))
    r = acc / (d_i[:, None] * d_j[None, :])
    r = tl.minimum(tl.maximum(r, -1.0), 1.0)
    r = tl.where(rows[:, None] == cols[None, :], 1.0, r)
    out = out_ptr + b.to(tl.int64) * n * n + rows[:, None] * n + cols[None, :]
    tl.store(out, r, mask=(rows[:, None] < n) & (cols[None, :] < n))


def attention_correlation(attn: torch.Tensor) -> torch.Tensor:
    """corr(A A^T) for attention ``attn`` [B, n, m] (any float dtype), as float64 [B, n, n].

    C = A A^T is computed in float64 and normalised by sqrt(C_ii C_jj) in the same pass; the
    diagonal is exactly 1 and entries are clipped to [-1, 1]. Rows must not be all zero (the caller
    checks).
    """
    B, n, m = attn.shape
    out = torch.empty((B, n, n), dtype=torch.float64, device=attn.device)
    if B == 0 or n == 0:
        return out
    block_n = 16 if n > 8 else 8
    block_k = 16
    grid = (B, triton.cdiv(n, block_n), triton.cdiv(n, block_n))
    _attention_correlation_kernel[grid](attn, out, n, m, attn.stride(0), attn.stride(1), attn.stride(2),
                                        BLOCK_N=block_n, BLOCK_K=block_k)
    return out
