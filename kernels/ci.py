"""Batched partial correlations with the Fisher-z decision, for one conditioning-set size."""

import torch
import triton
import triton.language as tl

from ._common import THRESHOLD_BAND, _fisher_z, _load_params, _schur_terms, fisher_params


@triton.jit
def _ci_kernel(R_ptr, graph_ptr, i_ptr, j_ptr, S_ptr, rho_ptr, p_ptr, outcome_ptr, params_ptr, q, n,
               L: tl.constexpr, MP: tl.constexpr, BLOCK: tl.constexpr, BAND: tl.constexpr):
    """Programs over blocks of BLOCK queries; lane t of program k decides query k * BLOCK + t.

    Inputs: R [B, n, n] float64; graph, i, j [q] int64; S [q, L] int64. Outputs: rho [q] float64
    (NaN when singular), p [q] float64 (0 when singular), outcome [q] int8 (0 dependent,
    1 independent, 2 singular). params: float64 [tol, threshold^2, N, alpha] (a tensor, because
    Triton passes Python floats as float32).
    """
    tol, threshold2, num_samples, alpha = _load_params(params_ptr)
    pid = tl.program_id(0)
    qs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = qs < q
    g = tl.load(graph_ptr + qs, mask=valid, other=0)
    i = tl.load(i_ptr + qs, mask=valid, other=0)
    j = tl.load(j_ptr + qs, mask=valid, other=0)
    cols = tl.arange(0, MP)
    member = (cols >= 2) & (cols < L + 2)
    s = tl.load(S_ptr + qs[:, None] * L + (cols[None, :] - 2), mask=valid[:, None] & member[None, :], other=0)
    idx = tl.where(cols[None, :] == 0, i[:, None], tl.where(cols[None, :] == 1, j[:, None], s))
    base = g * n * n
    num, di, dj, singular = _schur_terms(R_ptr, base, idx, valid, n, tol, L, MP)
    rho, p, independent = _fisher_z(num, di, dj, singular, threshold2, num_samples, alpha, L, BAND)
    outcome = tl.where(singular, 2, tl.where(independent, 1, 0)).to(tl.int8)
    tl.store(rho_ptr + qs, rho, mask=valid)
    tl.store(p_ptr + qs, p, mask=valid)
    tl.store(outcome_ptr + qs, outcome, mask=valid)


def pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def ci_test(R: torch.Tensor, graph: torch.Tensor, i: torch.Tensor, j: torch.Tensor, S: torch.Tensor,
            threshold2: float, num_samples: float, alpha: float, tol: float):
    """Fisher-z tests of (i, j | S) over a stack R [B, n, n] (float64, contiguous).

    graph, i, j: int64 [q]; S: int64 [q, l] (all on R's device). Returns (rho, p, outcome) as in
    ``_ci_kernel``; ``threshold2`` is the squared |rho| threshold for size l.
    """
    q, L = S.shape
    n = R.shape[-1]
    rho = torch.empty(q, dtype=torch.float64, device=R.device)
    p = torch.empty(q, dtype=torch.float64, device=R.device)
    outcome = torch.empty(q, dtype=torch.int8, device=R.device)
    if q == 0:
        return rho, p, outcome
    MP = pow2_at_least(L + 2)
    block = max(16, min(128, 1024 // (MP * MP) * 4))
    grid = (triton.cdiv(q, block),)
    params = fisher_params(tol, threshold2, num_samples, alpha, R.device)
    _ci_kernel[grid](R, graph, i, j, S if L else i, rho, p, outcome, params, q, n, L=L, MP=MP, BLOCK=block,
                     BAND=THRESHOLD_BAND, enable_fp_fusion=False)
    return rho, p, outcome
