"""PC: a CPDAG from one correlation matrix or a stack of them."""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend, _core
from ._checks import alpha_value, corr_stack, level_value, num_samples_value, pivot_tol_value, threads_value
from .ci import PIVOT_TOL
from .errors import ArgumentError
from .graph import Graph
from .skeleton import SEPSET_MODES

UC_PRIORITIES = (0, 1, 2, 3, 4)
#: pc's default cap on conditioning-set sizes: a node with d neighbours costs up to 2^d tests per
#: edge without one (a 28-neighbour hub never finishes); graph.info["level_capped"] counts the
#: edges the cap left untested at the next level. max_level=None lifts it.
PC_MAX_LEVEL = 8


def pc(R, num_samples, alpha: float = 0.01, sepsets: str = "first", uc_priority: int = 2,
       max_level: int | None = PC_MAX_LEVEL, backend: str = "auto", num_threads: int | None = None, *,
       pivot_tol: float = PIVOT_TOL) -> Graph | list[Graph]:
    """PC with Fisher-z CI tests: PC-stable skeleton, unshielded colliders, Meek's rules R1-R3.

    The orientation is causal-learn's (``pc(data, alpha, fisherz, True, 0, uc_priority)``, version
    0.1.4.8) decision for decision, scan orders included, so conflicting colliders and Meek
    conflicts on noisy inputs resolve the way causal-learn resolves them. With ``sepsets="all"``
    the skeleton and its separating sets are causal-learn's too, and the CPDAG equals causal-learn's
    mark for mark on the same correlation matrix.

    A triple x - y - z with x, z non-adjacent is a collider when y is in none of the separating sets
    recorded for (x, z). Conflicts between colliders are resolved by ``uc_priority``:

    - 0: overwrite: every collider is oriented in turn, a later one reversing an earlier one's edge;
    - 1: bi-directed: a collider that meets y --> x makes x <-> y (the only source of <-> edges);
    - 2: prioritize existing colliders: a collider is skipped if it would reverse an oriented edge;
    - 3: as 2, colliders taken by ascending max p(x, z | S) over S holding y, S a subset of adj(x)
      or of adj(z): extra CI tests, 2^|adj| per pair (neighbourhoods over 24 nodes are refused);
    - 4: as 3, by descending max p(x, z | S) over S not holding y.

    Args:
        R: correlation matrix [n, n] or stack [B, n, n] (NumPy or torch).
        num_samples: N of the Fisher z test (for attention: the model's hidden size).
        alpha: significance level; independent iff p > alpha.
        sepsets: "first" keeps each removed edge's first separating set; "all" tests every set of
            the removal level and a triple is a collider only if y is in none of them (causal-learn).
        uc_priority: 0-4, above.
        max_level: largest conditioning-set size of the skeleton search (default 8, so that a
            hub's 2^degree subsets cannot hang the search; ``graph.info["level_capped"]`` counts
            the edges that still had more than ``max_level`` other neighbours, which the search
            would have tested further; None: no limit, causal-learn's depth -1).
        backend: "auto" | "cpu" | "cuda" | "triton": where the skeleton search runs ("auto": on the
            GPU when R is a CUDA tensor, with sepsets="first"); the orientation runs on the CPU.
        num_threads: threads for the skeleton's levels and for the graphs of a stack (None: all).
        pivot_tol: conditioning blocks with a pivot under this are singular, counted as dependent
            (in the collider scores of priorities 3, 4: p = 0).

    Returns:
        A :class:`cleann.Graph` of kind "CPDAG" (a --> b: marks[a, b] = 2, marks[b, a] = 3;
        a --- b: 3 / 3; a <-> b: 2 / 2), or a list of them for a stack. Each records ``params``,
        ``backend`` and ``tests_per_level``: CI tests run per conditioning-set size, the skeleton's
        plus, for priorities 3 and 4, the collider scores'.

    Raises:
        ArgumentError (a ValueError): bad shapes or values, a level reached where num_samples - l - 3 <= 0, or a
            neighbourhood too large for the collider scores of priorities 3, 4.
    """
    N = num_samples_value(num_samples)
    a = alpha_value(alpha)
    if sepsets not in SEPSET_MODES:
        raise ArgumentError(f"sepsets must be 'first' or 'all', got {sepsets!r}")
    if (isinstance(uc_priority, bool) or not isinstance(uc_priority, numbers.Integral)
            or int(uc_priority) not in UC_PRIORITIES):
        raise ArgumentError(f"uc_priority must be 0, 1, 2, 3 or 4, got {uc_priority!r}")
    level = level_value(max_level)
    pivot_tol = pivot_tol_value(pivot_tol)
    nt = threads_value(num_threads)
    if backend == "numpy":
        raise _backend.BackendUnavailableError("pc has no NumPy implementation; use backend='cpu' or 'auto'")
    if sepsets == "all" and backend in _backend.GPU_BACKENDS:
        raise _backend.BackendUnavailableError(
            f"pc on backend {backend!r} keeps the first separating set of each edge; use sepsets='first'")
    which = _backend.resolve(backend, "pc", R, gpu=sepsets == "first")
    _core.core()  # no NumPy fallback for the orientation: a missing core says how to rebuild it
    given = None
    if which in _backend.GPU_BACKENDS:  # the skeleton on the GPU, orientation on the CPU
        from . import _gpu

        corr, given, batched, _ = _gpu.learner_skeleton(which, R, lambda B, n, _: [np.arange(n)] * B, N, a,
                                                        max_level, float(pivot_tol))
    else:
        corr, batched = corr_stack(R, "R")

    B, n = corr.shape[0], corr.shape[1]
    adj = np.ones((B, n, n), dtype=np.uint8)
    adj[:, np.arange(n), np.arange(n)] = 0
    raw = _core.core().pc(corr, adj, N, a, level, sepsets == "all",
                          int(uc_priority), float(pivot_tol), nt, given)
    params = {"num_samples": N, "alpha": a, "sepsets": sepsets, "uc_priority": int(uc_priority),
              "max_level": max_level, "pivot_tol": pivot_tol}
    tests = _tests_per_size(raw["tests"], raw["uc_tests"])
    graphs = [Graph(raw["marks"][b], kind="CPDAG", params=dict(params), tests_per_level=tests[b], backend=which)
              for b in range(B)]
    for g in graphs:
        g.info["level_capped"] = level_capped(g.adjacency, max_level)
    return graphs if batched else graphs[0]


def _tests_per_size(skeleton_tests: np.ndarray, uc_tests: np.ndarray) -> list[np.ndarray]:
    """Per graph: skeleton tests [levels, B] plus collider-score tests [sizes, B], by set size.

    Trailing sizes without tests are cut, so a graph of a stack reports what it would alone.
    """
    levels = max(skeleton_tests.shape[0], uc_tests.shape[0])
    total = np.zeros((levels, skeleton_tests.shape[1]), dtype=np.int64)
    total[:skeleton_tests.shape[0]] += skeleton_tests
    total[:uc_tests.shape[0]] += uc_tests
    out = []
    for b in range(total.shape[1]):
        col = total[:, b]
        used = np.flatnonzero(col)
        out.append(col[:used[-1] + 1].copy() if used.size else col[:0].copy())
    return out


def level_capped(adjacency: np.ndarray, max_level: int | None) -> int:
    """Edges of a final skeleton that a search capped at ``max_level`` left untested at the next
    level: one end has more than ``max_level`` other neighbours."""
    if max_level is None:
        return 0
    deg = adjacency.sum(axis=1) - 1
    i, j = np.nonzero(np.triu(adjacency, 1))
    return int(np.count_nonzero(np.maximum(deg[i], deg[j]) > max_level))
