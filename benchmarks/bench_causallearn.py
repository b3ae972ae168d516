"""How much faster is the drop-in cleann.causallearn than causal-learn itself, on the same calls?

For causal-learn's data set data_linear_10 (20 variables, 10,000 rows, from the fixtures folder)
and random sparse linear-Gaussian data (20, 50, 100, 200 variables, 10,000 rows): causal-learn's
``pc(data, 0.05, "fisherz")`` (uc_rule 0, uc_priority 2) and ``fci(data, "fisherz", 0.05)`` beside
``cleann.causallearn.pc`` / ``fci`` with the same arguments, in the same run. Both sides get the
data array already in memory (loading it is not timed for either); both compute the correlation
matrix inside the call, and ours includes building causal-learn's result objects. causal-learn
runs in a child process per call (one thread) with a time cap (``--peer-timeout``; a capped run says so in
the table), up to ``--peer-repeat`` times while its runs total under 30 s, and its median counts;
ours is the median of ``--repeat`` runs (one BLAS thread; the core's search on one thread below
150 variables, on all cores above). Every case where causal-learn finished must
give the identical ``G.graph``, or the script stops.

Full run (from the repository root):

    python benchmarks/bench_causallearn.py --peer-timeout 300

Quick check (data_linear_10 and 20, 50 variables):

    python benchmarks/bench_causallearn.py --quick --csv -
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

# One BLAS thread on both sides (the peer's child process gets the same): on a small machine BLAS
# threads and the core's OpenMP threads contend, and np.corrcoef alone can take 100x longer.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

from cleann import causallearn as ccl  # noqa: E402

ALPHA = 0.05
ROWS = 10_000
SIZES = (20, 50, 100, 200)
PEER_REPEAT_S = 30.0  # causal-learn runs again while its runs of a case total less than this
FIXTURES = Path(os.environ.get("CLEANN_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def causallearn_pc(data):
    from causallearn.search.ConstraintBased.PC import pc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pc(data, ALPHA, "fisherz", show_progress=False).G.graph


def causallearn_fci(data):
    from causallearn.search.ConstraintBased.FCI import fci

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints edges it orients
        warnings.simplefilter("ignore")
        return fci(data, "fisherz", ALPHA, show_progress=False)[0].graph


def ours_pc(data):
    return ccl.pc(data, ALPHA, "fisherz", show_progress=False).G.graph


def ours_fci(data):
    return ccl.fci(data, "fisherz", ALPHA, show_progress=False)[0].graph


def random_data(n: int, seed: int) -> np.ndarray:
    """A sparse linear-Gaussian model (about 2 neighbours per variable), 10,000 rows."""
    rng = np.random.default_rng(seed)
    W = np.triu(rng.uniform(0.5, 1.5, (n, n)) * rng.choice([-1.0, 1.0], (n, n)), 1)
    W *= rng.random((n, n)) < 2.0 / (n - 1)
    perm = rng.permutation(n)
    W = W[np.ix_(perm, perm)]
    e = rng.normal(size=(ROWS, n))
    return np.linalg.solve(np.eye(n) - W.T, e.T).T


def cases(args):
    path = FIXTURES / "causal-learn" / "data_linear_10.txt"
    if path.exists():
        yield "data_linear_10", np.loadtxt(path, skiprows=1)
    else:
        print(f"data_linear_10 not found at {path} (set CLEANN_FIXTURES); skipped", flush=True)
    for n in args.sizes:
        if n <= args.max_vars:
            yield f"random {n}", random_data(n, seed=n)


def main():
    if os.environ.get("PYTHONHASHSEED") is None:
        # causal-learn's FCI orders its possible-d-sep sets by Python's string hashes of the node
        # names, which differ from process to process: the peer's child process and this one must
        # share the seed, or causal-learn's own PAGs differ between runs. Restart with one fixed.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--max-vars", type=int, default=max(SIZES), help="skip random data sets over this many variables")
    ap.add_argument("--quick", action="store_true", help="data_linear_10 and 20, 50 variables, one timed run")
    ap.add_argument("--algorithms", nargs="+", default=["pc", "fci"], choices=["pc", "fci"])
    ap.add_argument("--repeat", type=int, default=15, help="timed runs of ours (the median counts)")
    ap.add_argument("--peer-repeat", type=int, default=3,
                    help=f"runs of causal-learn (the median counts) while they total under {PEER_REPEAT_S:g} s")
    ap.add_argument("--peer-timeout", type=float, default=300.0, help="seconds causal-learn may take per call")
    ap.add_argument("--csv", default=H.DEFAULT_CSV, help="append rows here ('-': no CSV)")
    args = ap.parse_args()
    if args.quick:
        args.max_vars = min(args.max_vars, 50)
        args.repeat = 1
        args.peer_repeat = 1
    info = H.print_machine_info()
    fns = {"pc": (ours_pc, causallearn_pc), "fci": (ours_fci, causallearn_fci)}
    table, rows = [], []
    for name, data in cases(args):
        for algo in args.algorithms:
            ours_fn, peer_fn = fns[algo]
            graph = ours_fn(data)
            ours_s = H.median(H.timeit(lambda: ours_fn(data), repeat=args.repeat, warmup=0))
            theirs, peer_s = H.run_with_timeout(peer_fn, (data,), args.peer_timeout)
            if theirs is not None:  # more runs where they are cheap: a single run's noise is the ratio's
                peer_times = [peer_s]
                while len(peer_times) < args.peer_repeat and sum(peer_times) < PEER_REPEAT_S:
                    peer_times.append(H.run_with_timeout(peer_fn, (data,), args.peer_timeout)[1])
                peer_s = H.median(peer_times)
            if theirs is None:
                same, peer_cell, speedup = "-", f"> {args.peer_timeout:g} (capped)", f"> {args.peer_timeout / ours_s:,.0f}"
            else:
                if not np.array_equal(graph, theirs):
                    raise SystemExit(f"{name}, {algo}: the graphs differ in {int((graph != theirs).sum())} marks")
                same, peer_cell, speedup = "yes", peer_s, peer_s / ours_s
            edges = int(np.count_nonzero(np.triu(graph != 0, 1)))
            table.append([name, data.shape[1], algo, edges, peer_cell, ours_s * 1e3, speedup, same])
            print(f"{name} {algo}: causal-learn {H.fmt(peer_s)} s, ours {ours_s * 1e3:.2f} ms", flush=True)
            for impl, value in (("causal-learn", peer_s), ("cleann.causallearn", ours_s)):
                rows.append({"bench": f"causallearn-{algo}", "n": data.shape[1], "level": name, "impl": impl,
                             "metric": "seconds", "value": "" if value is None else value})
    print()
    print(H.markdown_table(["data", "variables", "algorithm", "edges", "causal-learn s", "ours ms", "speed-up",
                            "identical G.graph"], table))
    if args.csv != "-":
        print(f"\nappended {len(rows)} rows to {H.append_csv(rows, args.csv, info)}")


if __name__ == "__main__":
    main()
