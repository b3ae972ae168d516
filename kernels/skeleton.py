"""One level of the PC-stable skeleton search over a stack of graphs."""

import torch
import triton
import triton.language as tl

from ._common import THRESHOLD_BAND, _fisher_z, _load_params, _schur_terms, fisher_params
from .ci import pow2_at_least


@triton.jit
def _skeleton_level_kernel(R_ptr, adj_ptr, nbr_ptr, deg_ptr, binom_ptr, rank_ptr, tests_ptr, singular_ptr,
                           params_ptr, n, L: tl.constexpr, MP: tl.constexpr, BLOCK: tl.constexpr,
                           BAND: tl.constexpr):
    """Level L >= 1 for every ordered pair (u, v) of adjacent nodes; one program per (graph, u).

    The program walks the neighbours v of u; for each, lane t of a round tests the conditioning set
    of lexicographic rank start + t among the L-subsets of adj(u) \\ {v} (taken from the level's
    snapshot: nbr [B, n, n] ascending neighbour lists padded past deg [B, n]). Rounds go in rank
    order and stop after the first round with an independence, so the lowest-ranked separating set
    is found whatever the block size. For u > v, sets lying wholly inside adj(v) are not tested:
    the lower side tries them first and its result takes precedence.

    Outputs per ordered pair (g, u, v), read by the host only for adjacent pairs: rank (-1 when no
    set separated them), and the tests and singular blocks a lexicographic walk would have counted
    up to and including that set (all of them when none separated).
    binom [(n + 1), L + 1] int64 holds C(a, b); params as in ``_ci_kernel``.
    """
    tol, threshold2, num_samples, alpha = _load_params(params_ptr)
    pid = tl.program_id(0).to(tl.int64)
    g = pid // n
    u = pid % n
    deg_u = tl.load(deg_ptr + pid)
    k = deg_u - 1
    base = g * n * n
    row = pid * n  # offset of (g, u, :) in the [B, n, n] arrays
    cols = tl.arange(0, MP)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    for vi in range(0, deg_u):
        v = tl.load(nbr_ptr + row + vi).to(tl.int64)
        total = tl.load(binom_ptr + k * (L + 1) + L)
        found = tl.full((), -1, tl.int64)
        tests = tl.full((), 0, tl.int64)
        sing = tl.full((), 0, tl.int64)
        start = tl.full((), 0, tl.int64)
        while (start < total) & (found < 0):
            ranks = start + lanes
            valid = ranks < total
            # Lexicographic unranking: position c of adj(u) \ {v} opens
            # C(k - 1 - c, remaining - 1) sets; take it when the rank falls among them.
            r = ranks
            taken = tl.zeros((BLOCK,), dtype=tl.int32)
            members = tl.zeros((BLOCK, MP), dtype=tl.int64)
            for c in range(0, k):
                rem = L - taken
                cnt = tl.load(binom_ptr + (k - 1 - c) * (L + 1) + tl.maximum(rem - 1, 0), mask=rem > 0, other=0)
                choose = (rem > 0) & (r < cnt)
                r = tl.where((rem > 0) & ~choose, r - cnt, r)
                node = tl.load(nbr_ptr + row + tl.where(c >= vi, c + 1, c)).to(tl.int64)
                members = tl.where(choose[:, None] & (cols[None, :] == taken[:, None] + 2), node, members)
                taken = taken + choose.to(tl.int32)
            in_set = (cols >= 2) & (cols < L + 2)
            # For u > v: a set inside adj(v) belongs to the lower side's walk.
            adj_v = tl.load(adj_ptr + base + v * n + members, mask=valid[:, None] & in_set[None, :], other=1)
            inside_v = tl.sum(tl.where(in_set[None, :], (adj_v == 0).to(tl.int32), 0), axis=1) == 0
            run = valid & (((lanes * 0 + u) < v) | ~inside_v)
            idx = tl.where(cols[None, :] == 0, u, tl.where(cols[None, :] == 1, v, members))
            num, di, dj, singular = _schur_terms(R_ptr, base + lanes * 0, idx, run, n, tol, L, MP)
            rho, p, independent = _fisher_z(num, di, dj, singular, threshold2, num_samples, alpha, L, BAND)
            hit = run & independent
            first = tl.min(tl.where(hit, ranks, total), axis=0)
            counted = run & (ranks <= first)
            tests += tl.sum(counted.to(tl.int64), axis=0)
            sing += tl.sum((counted & singular).to(tl.int64), axis=0)
            found = tl.where(first < total, first, found)
            start += BLOCK
        tl.store(rank_ptr + row + v, found)
        tl.store(tests_ptr + row + v, tests)
        tl.store(singular_ptr + row + v, sing)


def skeleton_level(R, adj, nbr, deg, binom, level, threshold2, num_samples, alpha, tol):
    """Runs level ``level`` >= 1 (see ``_skeleton_level_kernel``); returns (rank, tests, singular) [B, n, n].

    R: float64 [B, n, n]; adj: uint8 [B, n, n] (the level's snapshot); nbr: int32 [B, n, n];
    deg: int32 [B, n]; binom: int64 [n + 1, level + 1]. All contiguous, on one device.
    """
    B, n, _ = R.shape
    rank = torch.full((B, n, n), -1, dtype=torch.int64, device=R.device)
    tests = torch.zeros((B, n, n), dtype=torch.int64, device=R.device)
    singular = torch.zeros((B, n, n), dtype=torch.int64, device=R.device)
    MP = pow2_at_least(level + 2)
    block = 32 if MP <= 8 else 16
    params = fisher_params(tol, threshold2, num_samples, alpha, R.device)
    _skeleton_level_kernel[(B * n,)](R, adj, nbr, deg, binom, rank, tests, singular, params, n, L=level, MP=MP,
                                     BLOCK=block, BAND=THRESHOLD_BAND, enable_fp_fusion=False)
    return rank, tests, singular
