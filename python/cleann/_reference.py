"""Slow, obviously correct float64 NumPy versions of the compiled ops.

These are the specification and the test oracle, not the product path: one query at a time,
textbook formulas, no reuse between queries.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .errors import ArgumentError

#: relative slack of C_ij^2 <= C_ii C_jj before a block counts as not PSD (pcorr.h kPsdSlack)
PSD_SLACK = 1e-9


def attention_to_correlation(attn: np.ndarray) -> np.ndarray:
    """corr(A A^T) over the last two axes, in float64."""
    a = np.asarray(attn, dtype=np.float64)
    c = np.einsum("...ik,...jk->...ij", a, a)
    d = np.sqrt(np.einsum("...ii->...i", c))
    return c / np.einsum("...i,...j->...ij", d, d)


def check_queries(num_graphs, n, graph, i, j, S) -> None:
    """The same index checks the compiled path makes, as ArgumentErrors."""
    for q in range(len(i)):
        g = 0 if graph is None else int(graph[q])
        if not 0 <= g < num_graphs:
            raise ArgumentError(f"graph index {g} out of range [0, {num_graphs}) (query {q})")
        if not 0 <= i[q] < n:
            raise ArgumentError(f"i = {i[q]} out of range [0, {n}) (query {q})")
        if not 0 <= j[q] < n:
            raise ArgumentError(f"j = {j[q]} out of range [0, {n}) (query {q})")
        if i[q] == j[q]:
            raise ArgumentError(f"i == j == {i[q]} (query {q})")
        for s in S[q]:
            if not 0 <= s < n:
                raise ArgumentError(f"S contains {s}, out of range [0, {n}) (query {q})")
            if s in (i[q], j[q]):
                raise ArgumentError(f"S contains i or j ({s}) (query {q})")
        if len(set(S[q].tolist())) != len(S[q]):
            raise ArgumentError(f"S contains a node twice (query {q})")


def is_singular(R: np.ndarray, i: int, j: int, S, pivot_tol: float) -> bool:
    """True when a Schur complement of the conditioning block falls under ``pivot_tol``.

    Checked: each pivot of R_SS in the order of S (R_kk minus its regression on the members
    before it), the residual variances of i and of j given S, and that the partial covariance of
    (i, j) is positive semi-definite (|rho| <= 1 within ``PSD_SLACK``): a block of a matrix that
    is not a correlation matrix can fail only that.
    """
    S = list(S)
    for k in range(len(S)):
        prev = S[:k]
        d = R[S[k], S[k]]
        if prev:
            d -= R[S[k], prev] @ np.linalg.solve(R[np.ix_(prev, prev)], R[prev, S[k]])
        if not d >= pivot_tol:
            return True
    for v in (i, j):
        d = R[v, v]
        if S:
            d -= R[v, S] @ np.linalg.solve(R[np.ix_(S, S)], R[S, v])
        if not d >= pivot_tol:
            return True
    C = R[np.ix_([i, j], [i, j])].copy()
    if S:
        C -= R[np.ix_([i, j], S)] @ np.linalg.solve(R[np.ix_(S, S)], R[np.ix_(S, [i, j])])
    return bool(C[0, 1] ** 2 > C[0, 0] * C[1, 1] * (1.0 + PSD_SLACK))  # not PSD: |rho| > 1


def partial_correlation_one(R: np.ndarray, i: int, j: int, S, pivot_tol: float = 1e-10) -> float:
    """Partial correlation from the partial covariance of (i, j) given S; NaN when singular.

    C = R[ij, ij] - R[ij, S] R[S, S]^-1 R[S, ij], rho = C_01 / sqrt(C_00 C_11). Where the block over
    [i, j] + S is invertible this equals -P_01 / sqrt(P_00 P_11) with P its inverse; unlike the
    inverse it stays defined when i and j are perfectly correlated given S (rho = +-1).
    """
    if is_singular(R, i, j, S, pivot_tol):
        return math.nan
    S = list(S)
    C = R[np.ix_([i, j], [i, j])].copy()
    if S:
        C -= R[np.ix_([i, j], S)] @ np.linalg.solve(R[np.ix_(S, S)], R[np.ix_(S, [i, j])])
    return float(C[0, 1] / math.sqrt(C[0, 0] * C[1, 1]))


def partial_correlation(corr, i, j, S, graph=None, pivot_tol: float = 1e-10) -> np.ndarray:
    corr = np.asarray(corr, dtype=np.float64)
    if corr.ndim == 2:
        corr = corr[None]
    out = np.empty(len(i))
    for q in range(len(i)):
        g = 0 if graph is None else int(graph[q])
        out[q] = partial_correlation_one(corr[g], int(i[q]), int(j[q]), [int(s) for s in S[q]], pivot_tol)
    return out


def fisher_z_pvalue(r, num_samples, cond_size) -> np.ndarray:
    """erfc(sqrt(N - l - 3) |atanh r| / sqrt 2); 0 for |r| >= 1 or NaN."""
    r = np.asarray(r, dtype=np.float64)
    l = np.broadcast_to(np.asarray(cond_size), r.shape)
    out = np.empty(r.shape)
    for k in np.ndindex(r.shape):
        a = abs(float(r[k]))
        if not a < 1.0:
            out[k] = 0.0
            continue
        stat = math.sqrt(num_samples - int(l[k]) - 3) * math.atanh(a)
        out[k] = math.erfc(stat / math.sqrt(2.0))
    return out


def ci_independent(R, i, j, S, num_samples, alpha, pivot_tol=1e-10) -> tuple[bool, bool]:
    """(independent, singular) for one query: independent iff p > alpha and not singular."""
    r = partial_correlation_one(R, i, j, S, pivot_tol)
    if math.isnan(r):
        return False, True
    p = fisher_z_pvalue(r, num_samples, len(S))
    return bool(p > alpha), False


def skeleton(R, num_samples, alpha=0.01, max_level=None, sepsets="first", pivot_tol=1e-10, adjacency=None):
    """PC-stable skeleton of one correlation matrix.

    Returns (adjacency bool [n, n], sepsets {(i, j): [sets in the order found]} for i < j,
    tests per level list, singular per level list).
    """
    R = np.asarray(R, dtype=np.float64)
    n = R.shape[0]
    adj = ~np.eye(n, dtype=bool) if adjacency is None else np.array(adjacency, dtype=bool)
    found: dict[tuple[int, int], list[tuple[int, ...]]] = {}
    tests, singular = [], []
    level = 0
    while max_level is None or level <= max_level:
        snap = adj.copy()
        nbrs = [sorted(np.flatnonzero(snap[v]).tolist()) for v in range(n)]
        edges = [(i, j) for i in range(n) for j in range(i + 1, n)
                 if snap[i, j] and (len(nbrs[i]) - 1 >= level or len(nbrs[j]) - 1 >= level)]
        if not edges:
            break
        if not num_samples - level - 3 > 0:
            raise ArgumentError(f"num_samples too small for conditioning sets of size {level}")
        t = s = 0
        for i, j in edges:
            tried = set()
            seps = []
            for side, other in ((i, j), (j, i)):
                for combo in itertools.combinations([v for v in nbrs[side] if v != other], level):
                    if combo in tried:
                        continue
                    tried.add(combo)
                    indep, sing = ci_independent(R, i, j, combo, num_samples, alpha, pivot_tol)
                    t += 1
                    s += sing
                    if indep:
                        seps.append(combo)
                        if sepsets == "first":
                            break
                if seps and sepsets == "first":
                    break
            if seps:
                adj[i, j] = adj[j, i] = False
                found[(i, j)] = seps
        tests.append(t)
        singular.append(s)
        level += 1
    return adj, found, tests, singular


def possible_ancestors(marks) -> np.ndarray:
    """[x, y] true when a potentially directed path runs from x to y (x -> ... -> y with no
    arrowhead at the near end and no tail at the far end of every edge); x is its own."""
    m = np.asarray(marks)
    k = m.shape[0]
    out = np.eye(k, dtype=bool)
    for x in range(k):
        stack, seen = [x], {x}
        while stack:
            u = stack.pop()
            for v in range(k):
                if v not in seen and m[u, v] != 0 and m[v, u] != 2 and m[u, v] != 3:
                    seen.add(v)
                    out[x, v] = True
                    stack.append(v)
    return out


def pds_tree(marks, root: int, max_depth=None):
    """PDS-tree as (node, parent, depth) per occurrence, explored breadth-first over skeleton edges,
    each used once; the path ... a, b extends over b-c when b is a possible collider there
    (a *-> b <-* c, or a and c adjacent)."""
    m = np.asarray(marks)
    k = m.shape[0]
    open_edges = {(a, b) for a in range(k) for b in range(k) if m[a, b] != 0}
    occ = [(root, -1, 0)]
    queue = []
    for v in range(k):
        if m[root, v] != 0:
            occ.append((v, 0, 1))
            queue.append((root, len(occ) - 1))
            open_edges.discard((root, v))
            open_edges.discard((v, root))
    while queue:
        a, o = queue.pop(0)
        b, _, d = occ[o]
        if max_depth is not None and d >= max_depth:
            continue
        for c in range(k):
            if (b, c) not in open_edges or c == a:
                continue
            if m[a, c] != 0 or (m[a, b] == 2 and m[c, b] == 2):
                open_edges.discard((b, c))
                open_edges.discard((c, b))
                occ.append((c, o, d + 1))
                queue.append((b, len(occ) - 1))
    return occ
