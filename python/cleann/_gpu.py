"""GPU paths: the CUDA kernels of the compiled core and the Triton kernels, behind one driver.

Both backends provide two operations on torch tensors of one device: a batch of Fisher-z tests
for one conditioning-set size (``ci``) and one level >= 1 of the PC-stable skeleton over a stack
(``level``, see ``kernels/skeleton.py`` for the outputs). The level loop, the bookkeeping of
removed edges and their separating sets, and splitting a stack that does not fit in memory live
here, once.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._checks import check_dof
from .errors import ArgumentError

_INT64_MAX = (1 << 63) - 1
_MAX_SETS = 1 << 62  # per edge and level; ranks stay far from overflow


def _on_device(t):
    """Makes the tensor's GPU the current one for a launch (kernels run on the current device)."""
    import contextlib

    import torch

    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class TritonOps:
    name = "triton"

    def __init__(self):
        from . import kernels  # imports triton

        self._k = kernels

    def ci(self, R, g, i, j, S, threshold2, num_samples, alpha, tol):
        with _on_device(R):
            return self._k.ci_test(R, g.contiguous(), i.contiguous(), j.contiguous(), S.contiguous(), threshold2,
                                   num_samples, alpha, tol)

    def level(self, R, adj, nbr, deg, binom, level, threshold2, num_samples, alpha, tol):
        with _on_device(R):
            return self._k.skeleton_level(R, adj, nbr, deg, binom, level, threshold2, num_samples, alpha, tol)


class CudaOps:
    name = "cuda"

    def __init__(self):
        self._C = _core.core()

    @staticmethod
    def _stream(t) -> int:
        import torch

        return torch.cuda.current_stream(t.device).cuda_stream

    def ci(self, R, g, i, j, S, threshold2, num_samples, alpha, tol):
        import torch

        q, L = S.shape
        g, i, j, S = g.contiguous(), i.contiguous(), j.contiguous(), S.contiguous()  # raw pointers below
        rho = torch.empty(q, dtype=torch.float64, device=R.device)
        p = torch.empty(q, dtype=torch.float64, device=R.device)
        outcome = torch.empty(q, dtype=torch.int8, device=R.device)
        if q:
            with _on_device(R):
                scratch = self._scratch(R, self._C.cuda_ci_scratch_doubles(L))
                self._C.cuda_ci_test(R.data_ptr(), R.shape[0], R.shape[-1], g.data_ptr(), i.data_ptr(), j.data_ptr(),
                                     S.data_ptr(), q, L, num_samples, alpha, tol, rho.data_ptr(),
                                     p.data_ptr(), outcome.data_ptr(), scratch.data_ptr(), scratch.numel(),
                                     self._stream(R))
        return rho, p, outcome

    def level(self, R, adj, nbr, deg, binom, level, threshold2, num_samples, alpha, tol):
        import torch

        B, n, _ = R.shape
        rank = torch.full((B, n, n), -1, dtype=torch.int64, device=R.device)
        tests = torch.zeros((B, n, n), dtype=torch.int64, device=R.device)
        singular = torch.zeros((B, n, n), dtype=torch.int64, device=R.device)
        with _on_device(R):
            scratch = self._scratch(R, self._C.cuda_level_scratch_doubles(level))
            self._C.cuda_skeleton_level(R.data_ptr(), adj.data_ptr(), nbr.data_ptr(), deg.data_ptr(),
                                        binom.data_ptr(), B, n, level, num_samples, alpha, tol, rank.data_ptr(),
                                        tests.data_ptr(), singular.data_ptr(), scratch.data_ptr(), scratch.numel(),
                                        self._stream(R))
        return rank, tests, singular

    @staticmethod
    def _scratch(R, doubles: int):
        """Per-thread working memory for set sizes past the kernels' compiled-in ones (else empty)."""
        import torch

        return torch.empty(doubles, dtype=torch.float64, device=R.device)


def ops(name: str):
    return CudaOps() if name == "cuda" else TritonOps()


def fisher_threshold2(alpha: float, num_samples: float, level: int) -> float:
    t = _core.core().fisher_z_threshold(alpha, num_samples, level)
    return t * t


def binomials(n: int, level: int) -> list[list[int]]:
    """C(a, b) for a <= n, b <= level, saturated at 2^63 - 1."""
    table = [[0] * (level + 1) for _ in range(n + 1)]
    for a in range(n + 1):
        table[a][0] = 1
        for b in range(1, min(a, level) + 1):
            table[a][b] = min(table[a - 1][b - 1] + table[a - 1][b], _INT64_MAX)
    return table


def unrank(nbr, deg, adj, g, u, v, rank, level, binom):
    """Members [E, level] of the sets with lexicographic ``rank`` among the level-subsets of adj(u) \\ {v}."""
    import torch

    E = g.numel()
    out = torch.zeros((E, level), dtype=torch.int64, device=nbr.device)
    if E == 0 or level == 0:
        return out
    n = nbr.shape[-1]
    k = deg[g, u].to(torch.int64) - 1
    vi = adj[g, u].to(torch.int64).cumsum(-1).gather(1, v[:, None])[:, 0] - 1  # position of v in nbr(u)
    r = rank.clone()
    taken = torch.zeros(E, dtype=torch.int64, device=nbr.device)
    rows = torch.arange(E, device=nbr.device)
    for c in range(int(k.max())):
        rem = level - taken
        active = (rem > 0) & (c < k)
        cnt = binom[(k - 1 - c).clamp(min=0), (rem - 1).clamp(min=0)]
        choose = active & (r < cnt)
        r = torch.where(active & ~choose, r - cnt, r)
        pos = (c + (c >= vi).to(torch.int64)).clamp(max=n - 1)
        node = nbr[g, u, pos].to(torch.int64)
        sel = choose.nonzero()[:, 0]
        out[rows[sel], taken[sel]] = node[sel]
        taken = taken + choose.to(torch.int64)
    return out


def skeleton(backend: str, R, adj, num_samples: float, alpha: float, max_level, pivot_tol: float,
             chunk: int | None = None, test_budget: int | None = None) -> dict:
    """PC-stable skeleton ("first" sepsets) of a stack on the GPU, laid out like the CPU core's output.

    R: float64 [B, n, n] and adj: uint8 [B, n, n], contiguous, on one device (adj is updated in
    place). The stack is processed in chunks of graphs; a chunk that runs out of device memory is
    halved and retried, and one graph that does not fit raises MemoryError saying how much it needs.
    ``test_budget``: as the CPU core's (a graph whose next level could pass it runs no further
    levels; the edges left untested are in the result's "capped").
    """
    import torch

    impl = ops(backend)
    B = R.shape[0]
    size = B if chunk is None else max(1, min(chunk, B))
    parts = []
    start = 0
    while start < B:
        stop = min(B, start + size)
        try:
            parts.append((start, _skeleton_chunk(impl, R[start:stop], adj[start:stop], num_samples, alpha,
                                                  max_level, pivot_tol, test_budget)))
            start = stop
        except torch.cuda.OutOfMemoryError as exc:
            if size == 1:
                n = R.shape[-1]
                raise MemoryError(
                    f"one {n}-token graph does not fit in the GPU's free memory (the skeleton needs about "
                    f"{_bytes_per_graph(n) / 2**20:.0f} MiB per graph beyond its inputs): {exc}"
                ) from None
            torch.cuda.empty_cache()
            size = max(1, size // 2)
    return _merge(parts, B)


def _bytes_per_graph(n: int) -> int:
    # rank, tests, singular, two transposed copies and the sort keys: about nine n^2 words
    return 9 * 8 * n * n


def _level_bound(adj, deg, level: int):
    """Per graph: the edges a level tests, and its tests if no edge stopped early (float64)."""
    import torch

    upper = torch.triu(adj.bool(), diagonal=1)
    other = (deg - 1).to(torch.float64)
    tested = upper & ((other[:, :, None] >= level) | (other[:, None, :] >= level))
    if level == 0:
        per_edge = tested.to(torch.float64)
    else:
        def comb(m):
            c = torch.exp(torch.lgamma(m + 1) - math.lgamma(level + 1) - torch.lgamma((m - level).clamp(min=0) + 1))
            return torch.where(m >= level, c, 0.0)

        c = comb(other)
        per_edge = torch.where(tested, c[:, :, None] + c[:, None, :], 0.0)
    return tested.sum((1, 2)), per_edge.sum((1, 2))


def _skeleton_chunk(impl, R, adj, num_samples, alpha, max_level, pivot_tol, test_budget=None) -> dict:
    import torch

    B, n, _ = R.shape
    dev = R.device
    tests, singular, edges = [], [], []
    level = 0
    cols = torch.arange(n, device=dev)
    capped = np.zeros(B, np.int64)
    spent = torch.zeros(B, dtype=torch.float64, device=dev)
    frozen = torch.zeros(B, dtype=torch.bool, device=dev)  # graphs stopped by test_budget
    saved = adj.clone() if test_budget is not None else None
    while max_level is None or level <= max_level:
        if B == 0 or n == 0:
            break
        deg = adj.sum(-1, dtype=torch.int32)
        if test_budget is not None:
            count, bound = _level_bound(adj, deg, level)
            stop = (count > 0) & (spent + bound > float(test_budget))
            if bool(stop.any()):
                capped[stop.cpu().numpy()] = count[stop].cpu().numpy()
                frozen |= stop
                saved[stop] = adj[stop]
                adj[stop] = 0  # takes no further part; restored below
                deg = adj.sum(-1, dtype=torch.int32)
        if int(deg.max()) < level + 1:  # no edge has `level` other neighbours on either side
            break
        check_dof(num_samples, level)
        t2 = fisher_threshold2(alpha, num_samples, level)
        upper = torch.triu(adj.bool(), diagonal=1)
        if level == 0:
            g, i, j = upper.nonzero(as_tuple=True)
            S = torch.empty((g.numel(), 0), dtype=torch.int64, device=dev)
            _, _, outcome = impl.ci(R, g, i, j, S, t2, num_samples, alpha, pivot_tol)
            tests.append(torch.bincount(g, minlength=B))
            singular.append(torch.bincount(g[outcome == 2], minlength=B))
            hit = outcome == 1
            g, i, j = g[hit], i[hit], j[hit]
            members = torch.empty((g.numel(), 0), dtype=torch.int64, device=dev)
        else:
            if binomial_overflow(int(deg.max()) - 1, level):
                raise ArgumentError(f"level {level}: a node with {int(deg.max()) - 1} other neighbours has more than "
                                 f"2^62 conditioning sets; set max_level")
            nbr = torch.where(adj.bool(), cols, n).sort(dim=-1).values.to(torch.int32).contiguous()
            binom = torch.tensor(binomials(n, level), dtype=torch.int64, device=dev)
            rank, t_pair, s_pair = impl.level(R, adj, nbr, deg, binom, level, t2, num_samples, alpha, pivot_tol)
            lo = rank >= 0
            hi = lo.transpose(1, 2)
            # The lower side's walk comes first; the upper side's counts add only when it found nothing.
            t_edge = torch.where(upper, t_pair + torch.where(lo, 0, t_pair.transpose(1, 2)), 0)
            s_edge = torch.where(upper, s_pair + torch.where(lo, 0, s_pair.transpose(1, 2)), 0)
            tests.append(t_edge.sum((1, 2)))
            singular.append(s_edge.sum((1, 2)))
            g, i, j = (upper & (lo | hi)).nonzero(as_tuple=True)
            use_lo = lo[g, i, j]
            u = torch.where(use_lo, i, j)
            v = torch.where(use_lo, j, i)
            members = unrank(nbr, deg, adj, g, u, v, rank[g, u, v], level, binom)
            members = members.sort(dim=1).values
        adj[g, i, j] = 0
        adj[g, j, i] = 0
        edges.append((g, i, j, members))
        spent += tests[-1].to(torch.float64)
        level += 1
    if test_budget is not None and bool(frozen.any()):
        adj[frozen] = saved[frozen]
    return {
        "capped": capped,
        "tests": torch.stack(tests).cpu().numpy() if tests else np.zeros((0, B), np.int64),
        "singular": torch.stack(singular).cpu().numpy() if singular else np.zeros((0, B), np.int64),
        "edges": [tuple(t.cpu().numpy() for t in e) for e in edges],
    }


def binomial_overflow(k: int, level: int) -> bool:
    from math import comb

    return k >= level and comb(k, level) > _MAX_SETS


def _merge(parts, B: int) -> dict:
    """One raw result from per-chunk ones: counts [levels, B]; edges by level, then graph, i, j."""
    levels = max((p["tests"].shape[0] for _, p in parts), default=0)
    tests = np.zeros((levels, B), np.int64)
    singular = np.zeros((levels, B), np.int64)
    cols = {k: [np.zeros(0, np.int64)] for k in ("edge_graph", "edge_i", "edge_j", "edge_level")}
    members = [np.zeros(0, np.int64)]
    for start, p in parts:
        L, b = p["tests"].shape
        tests[:L, start:start + b] = p["tests"]
        singular[:L, start:start + b] = p["singular"]
        for level, (g, i, j, m) in enumerate(p["edges"]):
            cols["edge_graph"].append(g + start)
            cols["edge_i"].append(i)
            cols["edge_j"].append(j)
            cols["edge_level"].append(np.full(len(g), level, np.int64))
            members.append(m.ravel())
    raw = {k: np.concatenate(v).astype(np.int64) for k, v in cols.items()}
    flat = np.concatenate(members)
    size = raw["edge_level"]
    offset = np.cumsum(size) - size  # in the order collected
    order = np.lexsort((raw["edge_j"], raw["edge_i"], raw["edge_graph"], raw["edge_level"]))
    raw = {k: v[order] for k, v in raw.items()}
    size, offset = size[order], offset[order]
    new_offset = np.cumsum(size) - size
    take = np.repeat(offset - new_offset, size) + np.arange(int(size.sum()))
    raw["edge_level"] = raw["edge_level"].astype(np.int32)
    raw["set_members"] = flat[take].astype(np.int32)
    raw["set_offset"] = new_offset.astype(np.int64)
    raw["set_count"] = np.ones(len(size), np.int64)
    raw["num_levels"] = levels
    raw["capped"] = np.zeros(B, np.int64)
    for start, p in parts:
        raw["capped"][start:start + len(p["capped"])] = p["capped"]
    raw["tests"] = tests
    raw["singular"] = singular
    return raw


def learner_skeleton(which: str, R, node_lists, N: float, alpha: float, max_level, pivot_tol: float,
                     test_budget: int | None = None):
    """For a learner on a GPU backend: its correlation blocks (one per node list, padded with the
    identity to the longest) and the skeleton search run on the device from the complete graph
    over each list. ``node_lists(B, n, batched)`` gives the lists. Returns (blocks as float64
    NumPy [B, k, k], raw skeleton for the core, the stack flag, the node lists)."""
    import torch

    from . import _backend
    from ._checks import corr_stack_tensor

    device = _backend.device_for(which, R)
    corr, batched = corr_stack_tensor(R, "R", device)
    B, n = corr.shape[0], corr.shape[1]
    node_lists = node_lists(B, n, batched)
    k = max(len(x) for x in node_lists)
    if k == n and all(len(x) == n for x in node_lists):  # every token: no gather
        sub = corr
    else:
        sub = torch.eye(k, dtype=torch.float64, device=device).repeat(B, 1, 1)
        for b, x in enumerate(node_lists):
            idx = torch.as_tensor(x, device=device)
            sub[b, :len(x), :len(x)] = corr[b].index_select(0, idx).index_select(1, idx)
    adj = torch.zeros((B, k, k), dtype=torch.uint8, device=device)
    for b, x in enumerate(node_lists):
        adj[b, :len(x), :len(x)] = 1
    adj.diagonal(dim1=1, dim2=2).zero_()
    raw = skeleton(which, sub.contiguous(), adj, N, alpha, max_level, pivot_tol, test_budget=test_budget)
    return sub.cpu().numpy(), raw, batched, node_lists
