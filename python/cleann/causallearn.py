"""A drop-in for causal-learn's PC and FCI: change one import, get the same objects and graphs.

``from cleann.causallearn import pc, fci`` in place of ``from causallearn.search.ConstraintBased.PC
import pc`` and ``...FCI import fci``: the same arguments, the same result types (causal-learn's
``CausalGraph`` and ``(GeneralGraph, edges)``, built with causal-learn's own classes), the same
graphs mark for mark as causal-learn 0.1.4.8, with the expensive part run by cleann's compiled core.

What runs where:

- Fisher z (``"fisherz"``) and d-separation (``"d_separation"`` with ``true_dag=``): the skeleton
  search (causal-learn's stable adjacency search, every separating set of the removal level kept)
  runs in the compiled core, on ``np.corrcoef(data.T)`` with N = the number of rows, or on a
  :class:`cleann.oracle.DSeparation` oracle.
- PC with ``uc_rule=0`` and Fisher z: the orientation runs in the core too (:func:`cleann.pc`,
  ``sepsets="all"``), which follows causal-learn's decisions and scan orders.
- FCI (``semantics="causal-learn"``, the default) runs whole in the core
  (``cleann._C.fci_causallearn``): causal-learn's adjacency search, R0, its possible-d-sep stage,
  R0 again and its rules R1-R10, function by function in its scan orders and with its quirks, then
  the edge properties of its ``get_color_edges`` and the ancestor cache its GeneralGraph would
  hold. With ``verbose=True`` causal-learn's own functions run the stages after the skeleton
  instead, so that they print what they orient.
- Every other orientation (PC's ``uc_rule`` 1 and 2, d-separation's PC) runs causal-learn's own
  orientation functions on the skeleton the core found, with a Fisher z test whose p-values are
  computed as causal-learn computes them (the same correlation matrix, the same arithmetic), so
  every comparison of p-values it makes comes out the same, or with a d-separation test that
  answers as causal-learn's does without networkx's cycle check on every query.
- The core's searches run on one thread below 150 variables, on all cores above (:func:`_threads`).
- Anything else is handed to causal-learn itself with a warning: other CI tests (chisq, gsq, kci,
  mv_fisherz, registered custom tests), ``mvpc=True``, ``stable=False``, and background knowledge
  (its forbidden and required edges change the adjacency search, which the core does not
  reproduce), so such calls still return causal-learn's own graph.
- causal-learn's FCI iterates Python sets of nodes in two places (the first steps of its
  possible-d-sep search, and R10's pairs of possible children), whose order follows the string
  hashes of the node names, which change from process to process (PYTHONHASHSEED): its own PAG
  can differ between two runs in two processes. The core follows CPython's set order under the
  caller's hashes, so the drop-in equals causal-learn's fci run in the same process (or under the
  same PYTHONHASHSEED); an interpreter whose set order the core's model does not match (checked
  once per process) runs causal-learn's own functions instead.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import math
import numbers
import time
import warnings

import numpy as np

from .errors import ArgumentError, CleannError

__all__ = ["CausalLearnMissingError", "fci", "pc"]

#: the CI tests causal-learn 0.1.4.8 knows by name
CAUSALLEARN_TESTS = ("fisherz", "mv_fisherz", "mc_fisherz", "kci", "fastkci", "rcit", "chisq", "gsq",
                     "d_separation")
#: the ones cleann runs itself
OWN_TESTS = ("fisherz", "d_separation")
FCI_SEMANTICS = ("causal-learn", "zhang")
BACKGROUND_KNOWLEDGE = "background_knowledge (forbidden or required edges, tiers) is not in cleann"


class CausalLearnMissingError(CleannError, ImportError):
    """causal-learn is not installed; the drop-in builds causal-learn's own result objects."""


def _causallearn():
    try:
        import causallearn  # noqa: F401
        from causallearn.graph.GraphClass import CausalGraph  # noqa: F401
    except ImportError as exc:
        raise CausalLearnMissingError(
            "cleann.causallearn returns causal-learn's own graph objects and needs causal-learn: "
            "pip install causal-learn") from exc


# ---------------------------------------------------------------------------------------------
# Argument checks


def _alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < float(alpha) < 1:
        raise ArgumentError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _data(data, name: str, fisher_z: bool) -> np.ndarray:
    try:
        x = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"{name} must be a numeric array [n_samples, n_features], got {type(data).__name__}") \
            from exc
    if x.ndim != 2:
        raise ArgumentError(f"{name} must have shape [n_samples, n_features], got {list(x.shape)}")
    if x.shape[1] == 0:
        raise ArgumentError(f"{name} has no columns (shape {list(x.shape)})")
    if fisher_z and x.shape[0] < 4:
        raise ArgumentError(f"{name} needs at least 4 rows for a Fisher z test, got {x.shape[0]}")
    return x


def _correlation(x: np.ndarray, name: str) -> np.ndarray:
    """``np.corrcoef(x.T)`` bit for bit ([1, 1] ones for one column), with one pass over the data
    fewer: the same column means, centring into a fresh buffer of x's layout (corrcoef copies the
    data, then centres the copy), the same ``dot`` of the centred data with its own transpose
    (one BLAS syrk call on the same memory layout), the same scaling and clipping. Bit-equal
    matters: causal-learn's orientation rules compare p-values computed from this matrix.

    Checks what the Fisher z test needs, on the small results rather than in passes over the
    data: a non-finite value in x makes its column's mean non-finite (only then is x searched
    for its place); a constant column has a variance within rounding of 0 (only such columns
    are compared value by value)."""
    rows, n = x.shape
    with np.errstate(all="ignore"):
        mean = x.mean(axis=0)
        if not np.isfinite(mean).all():
            _not_finite(x, name)
        if n == 1:
            return np.ones((1, 1))
        centred = np.empty_like(x)
        np.subtract(x, mean, out=centred)
        c = np.dot(centred.T, centred)
        c *= np.true_divide(1, rows - 1)
        var = c.diagonal().copy()
        stddev = np.sqrt(var)
        c /= stddev[:, None]
        c /= stddev[None, :]
        np.clip(c, -1, 1, out=c)
        # a constant column's centred values are all its mean's rounding error, under rows * eps * mean
        suspect = np.flatnonzero(var <= np.square(2 * rows * np.finfo(float).eps * mean))
    for col in suspect.tolist():
        if np.all(x[:, col] == x[0, col]):
            raise ArgumentError(f"{name} column {col} is constant: a Fisher z test needs every column to vary")
    if not np.isfinite(c).all():
        col = int(np.flatnonzero(~np.isfinite(c).all(axis=0))[0])
        raise ArgumentError(f"{name} is too large for float64 arithmetic: the correlations of column {col} "
                            f"overflow (scale the data down)")
    return c


def _not_finite(x: np.ndarray, name: str):
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise ArgumentError(f"{name} holds a non-finite value at row {r}, column {c}")
    col = int(np.flatnonzero(~np.isfinite(x.mean(axis=0)))[0])
    raise ArgumentError(f"{name} is too large for float64 arithmetic: the sum of column {col} overflows "
                        f"(scale the data down)")


def _names(node_names, n: int) -> list[str]:
    if node_names is None:
        return [f"X{i + 1}" for i in range(n)]
    names = list(node_names)
    if len(names) != n or len(set(names)) != n:
        raise ArgumentError(f"node_names must be {n} distinct names, one per column, got {names!r}")
    return names


def _depth(value, name: str) -> int | None:
    """causal-learn's depth conventions: None or -1 unlimited, else a level >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < -1:
        raise ArgumentError(f"{name} must be an int >= -1 (-1: unlimited), got {value!r}")
    return None if int(value) == -1 else int(value)


def _test_name(test, argument: str) -> str:
    if not isinstance(test, str):
        raise ArgumentError(f"{argument} must be the name of a CI test (causal-learn's constants such as "
                            f"causallearn.utils.cit.fisherz are these names), got {type(test).__name__}")
    from causallearn.utils import cit

    if test not in CAUSALLEARN_TESTS and test not in cit._custom_ci_tests:
        raise ArgumentError(f"{argument} {test!r} is not a CI test causal-learn knows: one of "
                            f"{', '.join(CAUSALLEARN_TESTS)} or a test registered with register_ci_test")
    return test


def _ours(test: str) -> bool:
    from causallearn.utils import cit

    return test in OWN_TESTS and test not in cit._custom_ci_tests


def _oracle(kwargs: dict, n: int, argument: str):
    from .oracle import DSeparation

    dag = kwargs.get("true_dag")
    if dag is None:
        raise ArgumentError(f"{argument}='d_separation' needs the true DAG: pass true_dag=<networkx.DiGraph>")
    import networkx as nx

    if not isinstance(dag, nx.DiGraph):
        raise ArgumentError(f"true_dag must be a networkx.DiGraph, got {type(dag).__name__}")
    missing = [v for v in range(n) if v not in dag]
    if missing:
        raise ArgumentError(f"true_dag must have the nodes 0..{n - 1} (one per data column), lacks {missing[:5]}")
    return DSeparation(dag, observed=list(range(n)))


def _hand_over(fn: str, why: str, stacklevel: int = 3) -> None:
    """The warning for a call handed to causal-learn, attributed to the caller's line (``stacklevel``
    counts this function, the drop-in's and any wrapper around it)."""
    warnings.warn(f"cleann.causallearn.{fn}: {why}; running causal-learn's own {fn}", stacklevel=stacklevel)


# ---------------------------------------------------------------------------------------------
# The CI tests the orientation stages call


@functools.lru_cache(maxsize=None)
def _test_classes():
    """The drop-in's causal-learn CI test objects (CIT_Base subclasses, made when causal-learn is
    first needed): (CorrelationFisherZ, DSeparationTest)."""
    from causallearn.utils.cit import CIT_Base
    from scipy.special import ndtr

    class CachedTest(CIT_Base):
        """CIT_Base's attributes and p-value cache, keyed by (smaller, larger, sorted set)."""

        def __init__(self, data, method: str):
            # CIT_Base.__init__'s attributes, but data_hash only when read: it formats the data
            # as a string, which takes longer than a small search. causal-learn's PC code reads
            # only ``method``; ``__call__`` reads the rest.
            self.data = data
            self.sample_size, self.num_features = data.shape
            self.cache_path = None
            self.SAVE_CACHE_CYCLE_SECONDS = 30
            self.last_time_cache_saved = time.time()
            self.pvalue_cache = {}
            self.method = method

        @functools.cached_property
        def data_hash(self):
            return hashlib.md5(str(self.data).encode("utf-8")).hexdigest()

        def __deepcopy__(self, memo):
            # causal-learn's orientation steps deep-copy the CausalGraph, test included; this
            # object never changes but for its cache of deterministic p-values, so the copies
            # share it rather than copy the data
            return self

        def save_to_local_cache(self):  # no cache file: nothing to save
            pass

        def __call__(self, X, Y, condition_set=None):
            S = tuple(sorted(set(map(int, condition_set or ()))))
            a, b = (int(X), int(Y)) if X < Y else (int(Y), int(X))
            key = (a, b, S)
            p = self.pvalue_cache.get(key)
            if p is None:
                p = self.pvalue_cache[key] = self._pvalue(a, b, S)
            return p

    class CorrelationFisherZ(CachedTest):
        """causal-learn's Fisher z p-values on a given correlation matrix: the same variable
        order, inverse and normal tail, so equal bit for bit, which the orientation rules
        comparing p-values (maxP, priorities 3, 4) need."""

        def __init__(self, data, correlation_matrix):
            super().__init__(data, "fisherz")
            self.correlation_matrix = correlation_matrix

        def _pvalue(self, a: int, b: int, S: tuple) -> float:
            var = [a, b, *S]
            try:
                inv = np.linalg.inv(self.correlation_matrix[np.ix_(var, var)])
            except np.linalg.LinAlgError as exc:
                raise ArgumentError(f"the correlation matrix of data is singular on columns {var}") from exc
            r = -inv[0, 1] / math.sqrt(abs(inv[0, 0] * inv[1, 1]))
            if abs(r) >= 1:
                r = (1.0 - np.finfo(float).eps) * np.sign(r)
            z = math.sqrt(self.sample_size - len(S) - 3) * abs(0.5 * math.log((1 + r) / (1 - r)))
            return 2 * (1 - ndtr(abs(z)))

    class DSeparationTest(CachedTest):
        """causal-learn's ``d_separation`` answers (p = 1.0 if X and Y are d-separated by the
        condition set in ``true_dag``, else 0.0) by one reachability search over the DAG per
        query. causal-learn's asks networkx, which checks the whole DAG for cycles on every
        query; its collider-ordering priorities (3, 4) ask once per subset of a node's
        neighbours, which on the larger bnlearn graphs is hours."""

        def __init__(self, data, true_dag):
            super().__init__(data, "d_separation")
            self.true_dag = true_dag
            self._parents = {v: list(true_dag.predecessors(v)) for v in true_dag}
            self._children = {v: list(true_dag.successors(v)) for v in true_dag}

        def _pvalue(self, x: int, y: int, S: tuple) -> float:
            given = set(S)
            # the nodes that are in `given` or have a descendant there: where a collider is open
            opened, stack = set(), list(given)
            while stack:
                v = stack.pop()
                if v not in opened:
                    opened.add(v)
                    stack.extend(self._parents[v])
            # active trails from x: (node, True) entered from a child, (node, False) from a parent
            seen, trail = set(), [(x, True)]
            while trail:
                v, up = trail.pop()
                if (v, up) in seen:
                    continue
                seen.add((v, up))
                if v == y:
                    return 0.0
                if up and v not in given:
                    trail.extend((p, True) for p in self._parents[v])
                    trail.extend((c, False) for c in self._children[v])
                elif not up:
                    if v not in given:
                        trail.extend((c, False) for c in self._children[v])
                    if v in opened:
                        trail.extend((p, True) for p in self._parents[v])
            return 1.0

    return CorrelationFisherZ, DSeparationTest


def _fisher_z(x: np.ndarray, R: np.ndarray):
    """The Fisher z test object on data x [N, n] with its correlation matrix R."""
    return _test_classes()[0](x, R)


def _d_separation(x: np.ndarray, true_dag):
    """The d-separation test object for ``true_dag`` (a networkx DiGraph over the columns)."""
    return _test_classes()[1](x, true_dag)


# ---------------------------------------------------------------------------------------------
# Skeletons


def _skeleton(test: str, x: np.ndarray, R, oracle, alpha: float, level: int | None):
    """(adjacency bool [n, n], CausalGraph.sepset for it: each removed pair's union of the
    separating sets of its removal level)."""
    import cleann

    n = x.shape[1]
    if test == "fisherz":
        sk = cleann.skeleton(R, x.shape[0], alpha, max_level=level, sepsets="all", num_threads=_threads(n) or None)
        s = sk.sepsets
        return sk.adjacency.astype(bool), _core_sepset(n, {"edge_i": s._i, "edge_j": s._j, "edge_level": s._level,
                                                           "set_offset": s._offset, "set_count": s._count,
                                                           "set_members": s._members})
    g = cleann.fci(oracle, max_level=level, sepsets="all", possible_dsep=False)
    seps = {key: tuple(sorted(g.sepsets[key])) for key in _removed(g.adjacency)}
    ij = np.array(list(seps), dtype=np.intp).reshape(-1, 2)
    return g.adjacency, _sepset_matrix(n, ij[:, 0], ij[:, 1], list(seps.values()))


def _threads(n: int) -> int:
    """Threads for the core's search over ``n`` variables: one below 150 (below that a search
    takes a few milliseconds and a second thread costs more than it saves; on a busy machine
    many times more), else all."""
    return 1 if n < 150 else 0


def _core_sepset(n: int, raw: dict) -> np.ndarray:
    """CausalGraph.sepset from the core's separating-set arrays (one graph), built in the core:
    20,000 lists at 200 variables."""
    from . import _core

    return _core.core().causallearn_sepset(n, raw["edge_i"], raw["edge_j"], raw["edge_level"], raw["set_offset"],
                                           raw["set_count"], raw["set_members"])


def _removed(adjacency: np.ndarray) -> list[tuple[int, int]]:
    i, j = np.nonzero(np.triu(~adjacency.astype(bool), 1))
    return list(zip(i.tolist(), j.tolist()))


# ---------------------------------------------------------------------------------------------
# causal-learn's result objects, built without their constructors' O(n^2) Python loops


def _undirected(adjacency: np.ndarray) -> np.ndarray:
    """causal-learn's graph matrix of the skeleton ``adjacency``: every edge i --- j."""
    graph = np.where(adjacency, -1, 0)
    np.fill_diagonal(graph, 0)
    return graph


def _general_graph(names: list[str], graph: np.ndarray, dpath: np.ndarray | None = None):
    """causal-learn's GeneralGraph over ``GraphNode(name)`` for each name, every attribute as its
    constructor and then writing ``graph`` and ``dpath`` into it leave them, without the
    constructor's ancestor-cache loop (n^2 Python steps: 17 ms at 200 nodes).

    Args:
        names: the node names, in column order.
        graph: int [n, n] in causal-learn's encoding (``graph[i, j]`` the mark at i), kept as
            the object's own (not copied).
        dpath: the ancestor cache, int [n, n], kept; default the constructor's (the identity),
            right for graphs without directed edges.
    """
    from causallearn.graph.GeneralGraph import GeneralGraph
    from causallearn.graph.GraphNode import GraphNode

    nodes = [GraphNode(name) for name in names]
    n = len(nodes)
    G = GeneralGraph([])  # every attribute the constructor sets, for no nodes
    G.nodes = nodes
    G.num_vars = n
    G.node_map = {node: k for k, node in enumerate(nodes)}
    G.graph = np.asarray(graph, dtype=int)
    G.dpath = np.eye(n, dtype=int) if dpath is None else np.asarray(dpath, dtype=int)
    return G


def _sepset_matrix(n: int, i: np.ndarray, j: np.ndarray, unions: list[tuple]) -> np.ndarray:
    """CausalGraph.sepset: object [n, n], for each removed pair at [i, j] and at [j, i] a list of
    its own holding the union (causal-learn appends to one list per side), None elsewhere."""
    sepset = np.empty((n, n), object)
    k = len(unions)
    if k:  # fromiter: a list per entry, not a nested sequence for NumPy to unpack
        sepset[i, j] = np.fromiter([[s] for s in unions], object, k)
        sepset[j, i] = np.fromiter([[s] for s in unions], object, k)
    return sepset


def _causal_graph(names: list[str], graph: np.ndarray, sepset: np.ndarray, dpath: np.ndarray | None = None):
    """causal-learn's CausalGraph as its constructor over ``names`` and then the writes of
    ``graph``, ``sepset`` and ``dpath`` leave it, without the constructor's loops (the complete
    graph added edge by edge, 19,900 edge objects at 200 nodes, and GeneralGraph's). ``graph``,
    ``dpath`` as for :func:`_general_graph`."""
    from causallearn.graph.GraphClass import CausalGraph

    cg = CausalGraph(0)  # every attribute the constructor sets, for no variables
    cg.G = _general_graph(names, graph, dpath)
    cg.sepset = sepset
    return cg


# ---------------------------------------------------------------------------------------------
# PC


def _without_gc(fn):
    """Runs ``fn`` with the cyclic garbage collector paused: building causal-learn's result (a list
    per separated pair, 20,000 at 200 variables) otherwise triggers full collections that cost
    more than the search itself. Nothing it allocates is cyclic garbage for long."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return run


def pc(data, alpha=0.05, indep_test="fisherz", stable: bool = True, uc_rule: int = 0, uc_priority: int = 2,
       mvpc: bool = False, correction_name: str = "MV_Crtn_Fisher_Z", background_knowledge=None,
       verbose: bool = False, show_progress: bool = True, node_names=None, max_k: int | None = None, **kwargs):
    """causal-learn's ``pc`` (``causallearn.search.ConstraintBased.PC.pc``, 0.1.4.8), same arguments.

    Args:
        data: [n_samples, n_features] (for ``"d_separation"`` a placeholder: only its columns count).
        alpha: significance level in (0, 1); independent iff p > alpha.
        indep_test: a CI test name. ``"fisherz"`` and ``"d_separation"`` (kwargs ``true_dag``, a
            networkx DiGraph whose nodes 0..n_features-1 are the columns) run in cleann; any other
            is handed to causal-learn with a warning.
        stable: True (the default) runs in cleann; False is handed to causal-learn.
        uc_rule: 0 (separating sets), 1 (maxP), 2 (definite maxP).
        uc_priority: -1 (the rule's default: 3 for uc_rule 0 and 1, 4 for 2), 0-4, as in
            causal-learn (uc_rule 2 takes only -1, 2, 3, 4).
        mvpc, correction_name: ``mvpc=True`` is handed to causal-learn.
        background_knowledge: a causal-learn ``BackgroundKnowledge``: the call is handed to
            causal-learn with a warning.
        verbose: True lets causal-learn's orientation functions print what they orient.
        show_progress: accepted; no progress bar is shown.
        node_names: names of the columns (default X1, X2, ...).
        max_k: largest conditioning set of the adjacency search (None: unlimited).
        **kwargs: ``true_dag`` for d-separation; for a handed-over test, its own arguments.

    Returns:
        causal-learn's ``CausalGraph``: ``G`` its GeneralGraph (``G.graph[j, i] = 1`` and
        ``G.graph[i, j] = -1``: i --> j), ``sepset[i, j]`` for a removed pair a list holding one
        tuple, the union of the separating sets found, ``test`` the CI test and ``PC_elapsed``.
    """
    _causallearn()
    a = _alpha(alpha)
    test = _test_name(indep_test, "indep_test")
    if isinstance(uc_rule, bool) or uc_rule not in (0, 1, 2):
        raise ArgumentError(f"uc_rule must be 0, 1 or 2, got {uc_rule!r}")
    if isinstance(uc_priority, bool) or uc_priority not in (-1, 0, 1, 2, 3, 4):
        raise ArgumentError(f"uc_priority must be -1, 0, 1, 2, 3 or 4, got {uc_priority!r}")
    if uc_rule == 2 and uc_priority in (0, 1):
        raise ArgumentError(f"uc_priority must be -1, 2, 3 or 4 with uc_rule=2 (definite maxP), got {uc_priority}")
    reason = None
    if background_knowledge is not None:
        reason = BACKGROUND_KNOWLEDGE
    elif mvpc:
        reason = "mvpc=True (missing-value PC) is not in cleann"
    elif not _ours(test):
        reason = f"the CI test {test!r} is not in cleann"
    elif not stable:
        reason = "stable=False (order-dependent skeleton) is not in cleann"
    if reason is not None:
        from causallearn.search.ConstraintBased.PC import pc as cl_pc

        _hand_over("pc", reason)
        return cl_pc(data, alpha, indep_test, stable, uc_rule, uc_priority, mvpc, correction_name,
                     background_knowledge, verbose, show_progress, node_names, max_k, **kwargs)
    return _pc_ours(data, a, test, uc_rule, uc_priority, verbose, node_names, max_k, kwargs)


@_without_gc
def _pc_ours(data, a: float, test: str, uc_rule: int, uc_priority: int, verbose: bool, node_names, max_k, kwargs):
    """pc with the checked arguments, in cleann."""
    start = time.time()
    x = _data(data, "data", fisher_z=test == "fisherz")
    n = x.shape[1]
    names = _names(node_names, n)
    if max_k is not None and (isinstance(max_k, bool) or not isinstance(max_k, numbers.Integral) or max_k < 0):
        raise ArgumentError(f"max_k must be None (unlimited) or an int >= 0, got {max_k!r}")
    level = None if max_k is None else int(max_k)
    if test == "fisherz":
        R, oracle = _correlation(x, "data"), None
    else:
        R, oracle = None, _oracle(kwargs, n, "indep_test")
    if test == "fisherz" and uc_rule == 0:  # one search gives the CPDAG and the separating sets
        from . import _core
        from .ci import PIVOT_TOL
        from .graph import _TO_CL

        adjacency = np.ones((1, n, n), dtype=np.uint8)
        adjacency[0, np.arange(n), np.arange(n)] = 0
        raw = _core.core().pc(R[None], adjacency, float(x.shape[0]), a, -1 if level is None else level, True,
                              3 if uc_priority == -1 else uc_priority, PIVOT_TOL, _threads(n))
        graph = _TO_CL[raw["marks"][0].T.astype(np.intp)].astype(int)
        cg = _causal_graph(names, graph, _core_sepset(n, raw), _dpath(graph))
        cg.set_ind_test(_fisher_z(x, R))
    else:
        adjacency, sepset = _skeleton(test, x, R, oracle, a, level)
        cg = _causal_graph(names, _undirected(adjacency), sepset)
        cg.set_ind_test(_fisher_z(x, R) if test == "fisherz" else _d_separation(x, kwargs["true_dag"]))
        with _quiet(verbose):
            cg = _orient_pc(cg, a, uc_rule, uc_priority)
    cg.PC_elapsed = time.time() - start
    return cg


def _dpath(graph: np.ndarray) -> np.ndarray:
    """GeneralGraph's ancestor cache as ``reconstitute_dpath(get_graph_edges())`` leaves it for a
    graph of single edges (``graph`` in causal-learn's encoding), built in the core: the diagonal,
    then each directed edge parent --> child, pairs (i < j) in reverse order, closing the cache as
    ``adjust_dpath`` does."""
    from . import _core

    return _core.core().causallearn_dpath(np.ascontiguousarray(graph, dtype=np.int64))


def _orient_pc(cg, alpha: float, uc_rule: int, uc_priority: int):
    """causal-learn's collider step for ``uc_rule`` and its Meek step, run on ``cg``."""
    from causallearn.utils.PCUtils import Meek, UCSepset

    extra = () if uc_priority == -1 else (uc_priority,)
    if uc_rule == 0:
        return Meek.meek(UCSepset.uc_sepset(cg, *extra))
    if uc_rule == 1:
        return Meek.meek(UCSepset.maxp(cg, *extra))
    return Meek.meek(Meek.definite_meek(UCSepset.definite_maxp(cg, alpha, *extra)))


# ---------------------------------------------------------------------------------------------
# FCI


def fci(dataset, independence_test_method="fisherz", alpha: float = 0.05, depth: int = -1,
        max_path_length: int = -1, verbose: bool = False, background_knowledge=None, show_progress: bool = True,
        node_names=None, *, semantics: str = "causal-learn", **kwargs):
    """causal-learn's ``fci`` (``causallearn.search.ConstraintBased.FCI.fci``, 0.1.4.8), same arguments.

    Args:
        dataset: [n_samples, n_features] (for ``"d_separation"`` a placeholder).
        independence_test_method: ``"fisherz"`` or ``"d_separation"`` (kwargs ``true_dag``) run
            in cleann; any other CI test is handed to causal-learn with a warning.
        alpha: significance level in (0, 1).
        depth: largest conditioning set of the adjacency search, -1 unlimited.
        max_path_length: longest discriminating path of R4, -1 unlimited (causal-learn semantics).
        background_knowledge: a causal-learn ``BackgroundKnowledge``: the call is handed to
            causal-learn with a warning (whatever ``semantics``).
        verbose: True lets causal-learn's orientation functions print what they orient.
        show_progress: accepted; no progress bar is shown.
        node_names: names of the columns (default X1, X2, ...).
        semantics: ``"causal-learn"`` (default): causal-learn's PAG, mark for mark, all in the
            core: its adjacency search, possible-d-sep stage (its reduced search, every subset
            but the first of each size) and rules R0-R10 (R4 by fresh tests, its R5-R10), and
            the edge properties of its ``get_color_edges``. A possible-d-sep set of more than
            ``MAX_PDS_NODES`` (28) nodes, whose 2^size subsets causal-learn would test without
            finishing, raises :class:`cleann.ArgumentError`. ``"zhang"``: :func:`cleann.fci`
            without caps (possible-d-sep as Spirtes et al., Zhang's R1-R10), all in the core;
            the PAG can differ from causal-learn's where causal-learn deviates from Zhang (2008);
            ``max_path_length`` is then unused.

    Returns:
        ``(G, edges)`` as causal-learn: ``G`` a GeneralGraph (``G.graph[i, j]`` the mark at i:
        -1 tail, 1 arrowhead, 2 circle), ``edges`` its edges with causal-learn's properties.
    """
    _causallearn()
    a = _alpha(alpha)
    test = _test_name(independence_test_method, "independence_test_method")
    if semantics not in FCI_SEMANTICS:
        raise ArgumentError(f"semantics must be 'causal-learn' or 'zhang', got {semantics!r}")
    level = _depth(depth, "depth")
    if isinstance(max_path_length, bool) or not isinstance(max_path_length, numbers.Integral):
        raise ArgumentError(f"max_path_length must be an int (-1: unlimited), got {max_path_length!r}")
    if background_knowledge is not None or not _ours(test):
        from causallearn.search.ConstraintBased.FCI import fci as cl_fci

        _hand_over("fci", BACKGROUND_KNOWLEDGE if background_knowledge is not None
                   else f"the CI test {test!r} is not in cleann")
        return cl_fci(dataset, test, alpha, depth, max_path_length, verbose, background_knowledge, show_progress,
                      node_names, **kwargs)
    return _fci_ours(dataset, a, test, level, int(max_path_length), verbose, node_names, semantics, kwargs)


@_without_gc
def _fci_ours(dataset, a: float, test: str, level: int | None, max_path_length: int, verbose: bool, node_names,
              semantics: str, kwargs):
    """fci with the checked arguments, in cleann."""
    from causallearn.search.ConstraintBased import FCI as F

    x = _data(dataset, "dataset", fisher_z=test == "fisherz")
    n = x.shape[1]
    names = _names(node_names, n)
    if test == "fisherz":
        R, oracle = _correlation(x, "dataset"), None
    else:
        R, oracle = None, _oracle(kwargs, n, "independence_test_method")

    if semantics == "zhang":
        import cleann
        from .graph import to_causallearn

        source = R if oracle is None else oracle
        g = cleann.fci(source, x.shape[0] if oracle is None else None, a, max_level=level, sepsets="all",
                       max_pds_size=None, pds_budget=None, skeleton_budget=None)
        G = to_causallearn(g, names=names)
        for node in G.get_nodes():
            node.attributes.clear()
        G.set_pag(True)
        return G, F.get_color_edges(G)

    if verbose or not _set_order_is_cpythons():
        # causal-learn's own orientation functions, which print what they orient, or which follow
        # this interpreter's set order where the core's model of it does not hold
        return _fci_python(F, test, x, R, oracle, a, level, int(max_path_length), names, kwargs, bool(verbose))
    from . import _core
    from .ci import PIVOT_TOL

    hashes = np.fromiter((hash(name) for name in names), np.int64, n)
    rank = np.empty(n, np.int32)
    rank[sorted(range(n), key=names.__getitem__)] = np.arange(n, dtype=np.int32)
    try:
        raw = _core.core().fci_causallearn(
            R, None if oracle is None else oracle._dag, n, float(x.shape[0]), a, PIVOT_TOL,
            -1 if level is None else level, int(max_path_length), MAX_PDS_NODES, hashes, rank, _threads(n))
    except ValueError as exc:
        raise ArgumentError(str(exc)) from exc
    G = _general_graph(names, raw["graph"].astype(int), raw["dpath"])
    G.set_pag(True)
    return G, _color_edges(G, raw["property_a"], raw["property_b"])


#: causal-learn's FCI tests every subset of a possible-d-sep set: 2^28 subsets is where it stops
#: finishing (days in causal-learn, minutes in the core); larger sets are refused
MAX_PDS_NODES = 28


@functools.lru_cache(maxsize=None)
def _set_order_is_cpythons() -> bool:
    """Whether the core's model of CPython's set order holds in this interpreter: causal-learn
    iterates two sets of nodes whose order shapes its PAG."""
    from . import _core

    names = [f"X{k}" for k in range(1, 300)] + [f"node {k}" for k in range(57)]
    for size in (0, 1, 5, 6, 20, 57, 250, len(names)):
        part = names[:size]
        got = _core.core().python_set_order(np.array([hash(v) for v in part], dtype=np.int64)).tolist()
        if got != [part.index(v) for v in set(part)]:
            return False
    return True


def _color_edges(G, property_a: np.ndarray, property_b: np.ndarray) -> list:
    """get_color_edges' list: GeneralGraph.get_graph_edges() with the properties the core found
    for the directed edges (1 dd / 3 pd, then 2 nl / 4 pl)."""
    from causallearn.graph.Edge import Edge
    from causallearn.graph.Endpoint import Endpoint

    g = G.graph
    i, j = np.nonzero(np.triu(g.T != 0, 1))
    ends = {-1: Endpoint.TAIL, 1: Endpoint.ARROW, 2: Endpoint.CIRCLE}
    nodes = G.nodes
    kinds = {v.value: v for v in Edge.Property}
    edges = []
    new = Edge.__new__
    for a, b, ea, eb, pa, pb in zip(i.tolist(), j.tolist(), g[i, j].tolist(), g[j, i].tolist(),
                                    property_a[i, j].tolist(), property_b[i, j].tolist()):
        # Edge(nodes[a], nodes[b], ends[ea], ends[eb]) as its constructor leaves it (it flips an
        # edge whose first end is an arrowhead and second a tail or circle), without its enum
        # comparisons: 13 us an edge, most of building the result at 200 variables
        edge = new(Edge)
        edge.properties = [kinds[pa], kinds[pb]] if pa else []
        if ea == 1 and eb != 1:
            a, b, ea, eb = b, a, eb, ea
        edge.node1, edge.node2, edge.endpoint1, edge.endpoint2 = nodes[a], nodes[b], ends[ea], ends[eb]
        edge.numerical_endpoint_1, edge.numerical_endpoint_2 = ea, eb
        edges.append(edge)
    return edges


def _fci_python(F, test, x, R, oracle, alpha, level, max_path_length, names, kwargs, verbose):
    """The core's adjacency search, then causal-learn's own FCI functions on it."""
    adjacency, sepset = _skeleton(test, x, R, oracle, alpha, level)
    G = _general_graph(names, _undirected(adjacency))
    removed = np.not_equal(sepset, None)
    sep_sets = {(i, j): set(sepset[i, j][0]) for i, j in zip(*(k.tolist() for k in np.nonzero(removed)))}
    ci = _fisher_z(x, R) if test == "fisherz" else _d_separation(x, kwargs["true_dag"])
    with _quiet(verbose):
        _orient_fci(F, G, sep_sets, ci, alpha, max_path_length, x, verbose)
        return G, F.get_color_edges(G)


def _quiet(verbose: bool):
    """causal-learn's rules print some edges even when not verbose: silenced unless verbose."""
    import contextlib
    import io

    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _orient_fci(F, G, sep_sets: dict, ci, alpha: float, max_path_length: int, x: np.ndarray, verbose: bool) -> None:
    """causal-learn's stages after its adjacency search, in its order, on G (in place)."""
    from causallearn.graph.Endpoint import Endpoint

    nodes = G.get_nodes()
    F.reorientAllWith(G, Endpoint.CIRCLE)
    F.rule0(G, nodes, sep_sets, None, verbose)
    F.removeByPossibleDsep(G, ci, alpha, sep_sets)
    F.reorientAllWith(G, Endpoint.CIRCLE)
    F.rule0(G, nodes, sep_sets, None, verbose)
    changed = True
    while changed:
        changed = F.rulesR1R2cycle(G, None, False, verbose)
        changed = F.ruleR3(G, sep_sets, None, changed, verbose)
        if changed:  # causal-learn runs R4 only in passes where R1-R3 changed a mark
            changed = F.ruleR4B(G, max_path_length, x, ci, alpha, sep_sets, changed, None, verbose)
        changed = F.ruleR5(G, changed, verbose)
        changed = F.ruleR6(G, changed, verbose)
        changed = F.ruleR7(G, changed, verbose)
        changed = F.rule8(G, nodes, changed)
        changed = F.rule9(G, nodes, changed)
        changed = F.rule10(G, changed)
    G.set_pag(True)

