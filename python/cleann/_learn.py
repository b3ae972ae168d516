"""PAG learners over attention correlation matrices: FCI, ICD, and ABCD over batches of heads."""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend, _core
from ._checks import (alpha_value, budget_value, corr_stack, is_torch, level_value, num_samples_value, pivot_tol_value,
                      threads_value, to_numpy)
from .ci import PIVOT_TOL
from .errors import ArgumentError
from .graph import Graph, SepsetMap
from .oracle import DSeparation

ICD_MODES = ("stable", "sequential")
#: fci's default caps on possible-d-sep subsets and on that stage's CI tests per graph (see fci)
FCI_MAX_PDS_SIZE = 3
FCI_PDS_BUDGET = 2_000_000
#: fci's default cap on the CI tests of its skeleton stage per graph (see fci)
FCI_SKELETON_BUDGET = 1_000_000_000
_RULES = [f"R{k}" for k in range(11)]


def _node_lists(nodes, batched: bool, B: int, n: int) -> list[np.ndarray]:
    """One ascending array of token indices per graph."""
    if nodes is None:
        return [np.arange(n, dtype=np.int64) for _ in range(B)]
    per_graph = batched and len(nodes) == B and all(np.ndim(x) == 1 for x in nodes) and len(nodes) > 0 \
        and not isinstance(nodes[0], numbers.Integral)
    lists = list(nodes) if per_graph else [nodes] * B
    out = []
    for b, x in enumerate(lists):
        a = to_numpy(x, "nodes")
        if a.ndim != 1 or a.size == 0:
            raise ArgumentError(f"nodes must be a non-empty list of token indices, got shape {list(a.shape)}"
                                + (f" for graph {b}" if per_graph else ""))
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise ArgumentError(f"nodes must hold integers, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= n:
            bad = int(a[(a < 0) | (a >= n)][0])
            raise ArgumentError(f"node {bad} out of range [0, {n})" + (f" in graph {b}" if per_graph else ""))
        if len(np.unique(a)) != len(a):
            raise ArgumentError("nodes must be distinct")
        out.append(np.sort(a.astype(np.int64)))
    return out


def _learn(method: str, R, num_samples, alpha, nodes, *, max_level, sepsets, possible_dsep, max_pds_size, mode,
           backend, pivot_tol, num_threads, path_budget, pds_budget=None, skeleton_budget=None):
    level = level_value(max_level)
    if sepsets not in ("first", "all"):
        raise ArgumentError(f"sepsets must be 'first' or 'all', got {sepsets!r}")
    pds_cap = level_value(max_pds_size, "max_pds_size")
    pds_tests = -1 if pds_budget is None else budget_value(pds_budget, "pds_budget")
    sk_tests = -1 if skeleton_budget is None else budget_value(skeleton_budget, "skeleton_budget")
    pivot_tol = pivot_tol_value(pivot_tol)
    path_budget = budget_value(path_budget, "path_budget")
    nt = threads_value(num_threads)
    # The GPU runs the skeleton stage ("first" sepsets): FCI's, and ICD's iterations r = 0, 1 (stable).
    gpu = sepsets == "first" and not isinstance(R, DSeparation) and (method == "fci" or mode == "stable")
    what = method if method == "fci" or mode == "stable" else f"{method} (mode={mode!r})"
    which = _backend.resolve(backend, what, R, gpu=gpu)
    if which == "numpy":
        raise _backend.BackendUnavailableError(f"{method} has no NumPy implementation; use backend='cpu'")
    C = _core.core()
    params = {"method": method, "alpha": None, "num_samples": None, "max_level": max_level, "sepsets": sepsets}
    if method == "fci":
        params.update(possible_dsep=possible_dsep, max_pds_size=max_pds_size, pds_budget=pds_budget,
                      skeleton_budget=skeleton_budget)
    else:
        params.update(mode=mode)
    if isinstance(R, DSeparation):
        node_lists = _node_lists(nodes, False, 1, R.n)
        k = len(node_lists[0])
        if k != R.n:
            raise ArgumentError("nodes cannot select a subset of a d-separation oracle's observed nodes; "
                                "pass observed= to DSeparation instead")
        adj = np.ones((1, k, k), np.uint8)
        adj[0, np.arange(k), np.arange(k)] = 0
        raw = C.learn(method, None, R._dag, adj, 1.0, 0.5, 0.0, level, sepsets == "all", bool(possible_dsep),
                      pds_cap, mode == "stable", path_budget, nt, pds_budget=pds_tests, skeleton_budget=sk_tests)
        params["ci_test"] = "d-separation"
        return _graphs(raw, node_lists, params, which)[0]
    params["num_samples"] = N = num_samples_value(num_samples) if num_samples is not None else None
    if N is None:
        raise ArgumentError("num_samples is required (for attention: the model's hidden size)")
    params["alpha"] = a = alpha_value(alpha)
    params["ci_test"] = "fisher-z"
    given = None
    if which in _backend.GPU_BACKENDS:
        from . import _gpu

        gpu_level = max_level if method == "fci" else (1 if max_level is None else min(1, max_level))
        sub, given, batched, node_lists = _gpu.learner_skeleton(
            which, R, lambda B, n, batched: _node_lists(nodes, batched, B, n), N, a, gpu_level, float(pivot_tol),
            test_budget=skeleton_budget if method == "fci" else None)
        B, k = sub.shape[0], sub.shape[1]
    else:
        corr, batched = corr_stack(R, "R")
        B, n = corr.shape[0], corr.shape[1]
        node_lists = _node_lists(nodes, batched, B, n)
        k = max(len(x) for x in node_lists)
        sub = np.zeros((B, k, k))
        for b, x in enumerate(node_lists):
            sub[b] = np.eye(k)
            sub[b, :len(x), :len(x)] = corr[b][np.ix_(x, x)]
    adj = np.zeros((B, k, k), np.uint8)
    for b, x in enumerate(node_lists):
        m = len(x)
        adj[b, :m, :m] = 1
        adj[b, np.arange(m), np.arange(m)] = 0
    raw = C.learn(method, np.ascontiguousarray(sub), None, adj, N, a, pivot_tol, level, sepsets == "all",
                  bool(possible_dsep), pds_cap, mode == "stable", path_budget, nt, given, pds_budget=pds_tests,
                  skeleton_budget=sk_tests)
    graphs = _graphs(raw, node_lists, params, which)
    return graphs if batched else graphs[0]


def _graphs(raw, node_lists, params, backend) -> list[Graph]:
    out = []
    tests = raw["tests"].T
    singular = raw["singular"].T
    seps = _sepset_maps(raw, len(node_lists))
    for b, x in enumerate(node_lists):
        m = len(x)
        levels = tests[b]
        last = int(np.flatnonzero(levels)[-1]) + 1 if levels.any() else 0
        g = Graph(raw["marks"][b, :m, :m].copy(), nodes=x, kind="PAG", params=dict(params),
                  tests_per_level=levels[:last].copy(), backend=backend)
        g.info = {
            "singular_per_level": singular[b, :last].copy(),
            "rules_fired": dict(zip(_RULES, raw["rules_fired"][b].tolist())),
            "path_budget_exhausted": int(raw["budget_exhausted"][b]),
        }
        if params.get("method") == "fci":
            g.info["skeleton_capped"] = int(raw["skeleton_capped"][b])
        if params.get("method") == "fci" and params.get("possible_dsep"):
            g.info["pds_capped"] = int(raw["pds_capped"][b])
        g.sepsets = seps[b]  # pairs among padding nodes never occur: they have no edges
        out.append(g)
    return out


def _sepset_maps(raw, B: int) -> list[SepsetMap]:
    """One SepsetMap per graph, sorted by (i, j), from the core's flat separating-set arrays."""
    g = np.asarray(raw["sep_graph"], dtype=np.int64)
    i = np.asarray(raw["sep_i"], dtype=np.int64)
    j = np.asarray(raw["sep_j"], dtype=np.int64)
    offset = np.asarray(raw["sep_offset"], dtype=np.int64)
    members = np.asarray(raw["sep_members"], dtype=np.int32)
    order = np.lexsort((j, i, g))
    lens = (offset[1:] - offset[:-1])[order]
    starts = offset[:-1][order]
    new_offset = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_offset[1:])
    gather = np.repeat(starts - new_offset[:-1], lens) + np.arange(int(new_offset[-1]), dtype=np.int64)
    members, g, i, j = members[gather], g[order], i[order], j[order]
    bounds = np.searchsorted(g, np.arange(B + 1))
    out = []
    for b in range(B):
        lo, hi = bounds[b], bounds[b + 1]
        out.append(SepsetMap(i[lo:hi], j[lo:hi], new_offset[lo:hi + 1] - new_offset[lo],
                             members[new_offset[lo]:new_offset[hi]]))
    return out


def fci(R, num_samples=None, alpha: float = 0.01, *, nodes=None, max_level: int | None = None,
        sepsets: str = "first", possible_dsep: bool = True, max_pds_size: int | None = FCI_MAX_PDS_SIZE,
        backend: str = "auto", pivot_tol: float = PIVOT_TOL, num_threads: int | None = None,
        path_budget: int = 1 << 20, pds_budget: int | None = FCI_PDS_BUDGET,
        skeleton_budget: int | None = FCI_SKELETON_BUDGET) -> Graph | list[Graph]:
    """FCI: PC-stable skeleton, R0, the possible-d-sep stage, R0 again, then Zhang's R1-R10.

    Args:
        R: correlation matrix [n, n] or stack [B, n, n] (NumPy or torch), or a
            :class:`cleann.oracle.DSeparation` oracle (then num_samples and alpha are unused).
        num_samples: N of the Fisher z test (for attention: the model's hidden size).
        alpha: significance level.
        nodes: token indices that are graph nodes (the others are latent: never nodes nor
            conditioning variables); for a stack, one list for all graphs or one list per graph.
        max_level: largest conditioning set in the skeleton stage.
        skeleton_budget: most CI tests of the skeleton stage per graph (default 1,000,000,000,
            seconds on a CPU core). Levels run whole: a level whose tests could take the stage
            past the budget (every remaining edge counted at all its conditioning sets) does not
            run, and ``graph.info["skeleton_capped"]`` counts the edges it would have tested
            (0: the budget changed nothing). On a dense 1,000-node graph this stops the search
            before level 2, which would take hours. None: no cap.
        sepsets: "first" or "all" (skeleton stage; see :func:`cleann.skeleton`).
        possible_dsep: run the possible-d-sep stage.
        max_pds_size: largest possible-d-sep subset tested. The default, 3, makes the stage
            finish on any graph (its subsets grow exponentially with the possible-d-sep set:
            without a cap, 128 tokens of attention take minutes, 1,000 nodes hours); the
            searches it cut short are counted in ``graph.info["pds_capped"]``. None: every
            subset (FCI as Spirtes et al. and causal-learn define it).
        pds_budget: most CI tests of the possible-d-sep stage per graph (default 2,000,000, about
            0.1 s): once spent, the remaining edges keep their adjacency and are counted in
            ``pds_capped``. None: no cap.
        path_budget: cap on the partial paths one orientation path search may extend; a search
            that reaches it leaves the mark a circle and is counted in ``graph.info``.

    Returns:
        a :class:`cleann.Graph` (kind "PAG"; ``marks`` over ``nodes`` in ascending order), or a
        list of them for a stack. ``tests_per_level`` counts every CI test, ``sepsets`` maps
        removed node-position pairs to their separating sets, ``info`` holds rule counts.
    """
    return _learn("fci", R, num_samples, alpha, nodes, max_level=max_level, sepsets=sepsets,
                  possible_dsep=possible_dsep, max_pds_size=max_pds_size, mode="stable", backend=backend,
                  pivot_tol=pivot_tol, num_threads=num_threads, path_budget=path_budget, pds_budget=pds_budget,
                  skeleton_budget=skeleton_budget)


def icd(R, num_samples=None, alpha: float = 0.01, nodes=None, mode: str = "stable", *,
        max_level: int | None = None, backend: str = "auto", pivot_tol: float = PIVOT_TOL,
        num_threads: int | None = None, path_budget: int = 1 << 20) -> Graph | list[Graph]:
    """ICD (iterative causal discovery): a PAG, refined by conditioning-set size.

    Iteration r tests each remaining edge with sets of size r (r = 0: none; r = 1: single
    neighbours; r >= 2: sets from the PDS-trees of its end points whose members are possible
    ancestors of either end), then re-orients the graph. ``mode="stable"`` draws every edge's
    candidates from the graph at the start of the iteration; ``"sequential"`` deletes edges as it
    goes, as the reference implementation does (iterating in ascending node order).

    Arguments and result as in :func:`fci`; ``max_level`` caps r.
    """
    if mode not in ICD_MODES:
        raise ArgumentError(f"mode must be 'stable' or 'sequential', got {mode!r}")
    return _learn("icd", R, num_samples, alpha, nodes, max_level=max_level, sepsets="first",
                  possible_dsep=False, max_pds_size=None, mode=mode, backend=backend, pivot_tol=pivot_tol,
                  num_threads=num_threads, path_budget=path_budget)


def abcd(attn, num_samples, alpha: float = 0.01, nodes=None, method: str = "icd", *, lengths=None,
         mode: str = "stable", max_level: int | None = None, num_threads: int | None = None,
         pivot_tol: float = PIVOT_TOL, **kwargs) -> list[Graph] | list[list[Graph]]:
    """Attention-based causal discovery: one PAG per (input, head).

    Args:
        attn: attention probabilities [H, n, n] or [B, H, n, n] (NumPy or torch) of one layer.
        num_samples: N of the Fisher z test: the model's hidden size.
        nodes: token indices that are graph nodes (e.g. without special tokens), one list for all
            inputs or one per input; tokens outside are latent. Default: every valid token.
        method: "icd" (default, the paper's choice) or "fci".
        lengths: valid tokens per input [B] (or an int for [H, n, n]); padding rows and columns
            beyond are dropped before discovery.
        mode: ICD's mode ("stable" or "sequential").

    Returns:
        for [H, n, n]: a list of H graphs; for [B, H, n, n]: a list of B such lists. The graphs of
        the whole batch are learned in one call, spread over threads.
    """
    if method not in ("icd", "fci"):
        raise ArgumentError(f"method must be 'icd' or 'fci', got {method!r}")
    backend = kwargs.get("backend", "auto")
    on_device = _backend.is_cuda_tensor(attn) or (backend == "triton" and _backend.triton_interpreted())
    corr, node_lists, B, H, single = _abcd_stack(attn, nodes, lengths, on_device)
    fn = icd if method == "icd" else fci
    extra = {"mode": mode} if method == "icd" else {}
    graphs = fn(corr, num_samples, alpha, nodes=node_lists, max_level=max_level, num_threads=num_threads,
                pivot_tol=pivot_tol, **extra, **kwargs)
    for k, g in enumerate(graphs):
        g.params.update(input=k // H, head=k % H)
    out = [graphs[b * H:(b + 1) * H] for b in range(B)]
    return out[0] if single else out


def _abcd_stack(attn, nodes, lengths, on_device: bool):
    """Correlation stack [B * H, n, n] (padding rows and columns identity) and node lists for ABCD;
    ``on_device`` keeps a torch input on its device (the fused Triton kernel where it can run)."""
    from .correlation import correlation_of_rows, correlation_of_rows_tensor

    if on_device:
        import torch

        a = attn.detach() if is_torch(attn) else torch.from_numpy(np.asarray(attn))
        if a.is_complex() or not a.is_floating_point():
            raise ArgumentError(f"attn must hold floating-point values, got dtype {a.dtype}")
    else:
        a = to_numpy(attn, "attn")
        if a.dtype == bool or not np.issubdtype(a.dtype, np.floating):
            raise ArgumentError(f"attn must hold floating-point values, got dtype {a.dtype}")
    if a.ndim not in (3, 4) or a.shape[-1] != a.shape[-2]:
        raise ArgumentError(f"attn must have shape [H, n, n] or [B, H, n, n], got {list(a.shape)}")
    single = a.ndim == 3
    if single:
        a = a[None]
    B, H, n = a.shape[0], a.shape[1], a.shape[-1]
    if B == 0 or H == 0 or n == 0:
        raise ArgumentError(f"attn is empty (shape {list(a.shape)[1:] if single else list(a.shape)}): "
                            "it needs at least one input, one head and one token")
    if lengths is None:
        lens = [n] * B
    else:
        lens = np.atleast_1d(to_numpy(lengths, "lengths"))
        if lens.dtype == bool or not np.issubdtype(lens.dtype, np.integer) or lens.shape != (B,):
            raise ArgumentError(f"lengths must hold {B} integers, got {lens!r}")
        if lens.min() < 1 or lens.max() > n:
            raise ArgumentError(f"lengths must be in [1, {n}], got {lens.tolist()}")
        lens = [int(v) for v in lens]
    per_input = nodes is not None and len(nodes) == B and len(nodes) > 0 and np.ndim(nodes[0]) == 1 and not single
    if on_device:
        fused = _backend.triton_error("abcd", a) is None
        corr = torch.eye(n, dtype=torch.float64, device=a.device).repeat(B * H, 1, 1)
    else:
        corr = np.zeros((B * H, n, n))
    node_lists = []
    for b in range(B):
        L = lens[b]
        if on_device:
            rows = a[b, :, :L, :].to(torch.float64)
            bad = ~torch.isfinite(rows)
            if bool(bad.any()):
                idx = tuple(int(v) for v in bad.nonzero()[0])
                raise ArgumentError(f"attention of input {b} holds a non-finite value at (head, row, column) {idx}")
            corr[b * H:(b + 1) * H, :L, :L] = correlation_of_rows_tensor(rows, fused)
        else:
            rows = a[b, :, :L, :].astype(np.float64)
            if not np.isfinite(rows).all():
                idx = tuple(int(v) for v in np.argwhere(~np.isfinite(rows))[0])
                raise ArgumentError(f"attention of input {b} holds a non-finite value at (head, row, column) {idx}")
            r = correlation_of_rows(rows)
            for h in range(H):
                corr[b * H + h] = np.eye(n)
                corr[b * H + h, :L, :L] = r[h]
        chosen = nodes[b] if per_input else nodes
        if chosen is None:
            keep = np.arange(L, dtype=np.int64)
        else:
            keep = _node_lists(chosen, False, 1, n)[0]
            if keep.max() >= L:
                raise ArgumentError(f"node {int(keep.max())} is beyond the {L} valid tokens of input {b}")
        node_lists.extend([keep] * H)
    return corr, node_lists, B, H, single
