"""How fast is the PC-stable skeleton on attention matrices?

For each n: K real all-MiniLM-L6-v2 last-layer attention heads of one n-token text (K = 12 by
default), R = cleann.attention_to_correlation per head, N = 384 (the hidden size), alpha = 0.01:

- ours: ``cleann.skeleton(R_k, 384, 0.01, num_threads=1)`` graph by graph (median ms per graph,
  graphs/s), the whole stack [K, n, n] in one call with num_threads=1, and with all threads; also
  ``sepsets="all"`` on the head given to causal-learn (the same semantics as its stable PC: every
  conditioning set of a level is tested);
- the NumPy reference (``backend="numpy"``) for n <= 32 on 1-2 graphs, in a child process capped
  at ``--ref-timeout`` seconds (one run: it is slow);
- causal-learn's PC skeleton, ``skeleton_discovery(data, 0.01, CIT(data, "fisherz"), stable=True)``,
  on data whose np.corrcoef equals R for one head per n, in a child process capped at
  ``--peer-timeout`` seconds (one run; repeated for a median when a run takes under 2 s).

Correctness first: the stack call must equal the graph-by-graph calls, all threads must equal one
thread, and the NumPy reference must give the same adjacency, separating sets and tests per level
(the script aborts otherwise). Against causal-learn the adjacency is compared and the number of
differing edges reported (its correlation comes from synthesized data and it has no singular
path), and its number of distinct CI tests is set beside ours with ``sepsets="all"``.
Speed-ups against causal-learn are on the same head; ours (default "first") and ours
(``sepsets="all"``) are both shown.

Full run (on a quiet machine; from the repository root; the causal-learn run at n = 128 may hit
the 400 s cap):

    python benchmarks/bench_skeleton.py --sizes 16 32 64 128 --heads 12 --peer-timeout 400

Quick check that it runs (small sizes, 3 heads, short caps, results to a scratch CSV):

    python benchmarks/bench_skeleton.py --quick --csv /tmp/cleann_bench_quick.csv
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h  # noqa: E402
import cleann  # noqa: E402

ALPHA = 0.01
N_SAMPLES = h.MINILM_HIDDEN


# ---- run in child processes (top level, picklable) ---------------------------------------------


def numpy_skeleton(R, alpha):
    """The NumPy reference on a stack; returns what the parent compares."""
    sk = cleann.skeleton(R, N_SAMPLES, alpha, backend="numpy")
    return sk.adjacency, sk.tests_per_level, _sepset_dict(sk)


def causallearn_skeleton(data, alpha):
    """causal-learn's stable PC skeleton; returns (adjacency bool [n, n], distinct CI tests)."""
    from causallearn.utils.cit import CIT
    from causallearn.utils.PCUtils.SkeletonDiscovery import skeleton_discovery

    cit = CIT(data, "fisherz")
    cg = skeleton_discovery(data, alpha, cit, stable=True, show_progress=False)
    tests = sum(1 for k in cit.pvalue_cache if ";" in k)  # its cache keys queries "x;y|S"
    return cg.G.graph != 0, tests


# ---- helpers -----------------------------------------------------------------------------------


def _sepset_dict(sk) -> dict:
    return {k: sk.sepsets.all(k) for k in sk.sepsets.keys()}


def _pad(tests, levels):
    t = np.atleast_2d(tests)
    return np.pad(t, ((0, 0), (0, levels - t.shape[1])))


def _same_tests(a, b) -> bool:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    L = max(a.shape[1], b.shape[1])
    return np.array_equal(_pad(a, L), _pad(b, L))


def _abort(msg: str):
    sys.exit(f"ABORT: {msg}")


def _seconds(x, timeout):
    return f"> {timeout:g} s" if x is None else x


def bench_one(n: int, args, info_rows: list) -> dict:
    K = args.heads
    attn, src = h.minilm_attention(n, K, args.seed)
    R = cleann.attention_to_correlation(attn)
    ph = args.peer_head
    print(f"n={n}: {src}, {K} heads")

    # --- correctness: stack == graph by graph, all threads == one thread ------------------------
    per = [cleann.skeleton(R[k], N_SAMPLES, ALPHA, num_threads=1) for k in range(K)]
    stack1 = cleann.skeleton(R, N_SAMPLES, ALPHA, num_threads=1)
    stackN = cleann.skeleton(R, N_SAMPLES, ALPHA)
    for k, s in enumerate(per):
        if not np.array_equal(stack1.adjacency[k], s.adjacency) or not _same_tests(stack1.tests_per_level[k],
                                                                                   s.tests_per_level):
            _abort(f"n={n} head {k}: the stack call differs from the single-graph call")
    if not (np.array_equal(stack1.adjacency, stackN.adjacency)
            and _same_tests(stack1.tests_per_level, stackN.tests_per_level)
            and _sepset_dict(stack1) == _sepset_dict(stackN)):
        _abort(f"n={n}: all threads differ from one thread")

    # --- NumPy reference (correctness and its time) ---------------------------------------------
    ref_s, ref_note = None, "not run (n > --ref-max-n)"
    if n <= args.ref_max_n:
        G = min(args.ref_graphs, K)
        out, secs = h.run_with_timeout(numpy_skeleton, (R[:G], ALPHA), args.ref_timeout)
        if out is None:
            ref_s, ref_note = f"> {args.ref_timeout:g}", f"timed out after {args.ref_timeout:g} s on {G} graph(s)"
        else:
            adj, tests, seps = out
            ours = cleann.skeleton(R[:G], N_SAMPLES, ALPHA, num_threads=1)
            if not np.array_equal(adj, ours.adjacency):
                _abort(f"n={n}: NumPy reference adjacency differs from ours")
            if not _same_tests(tests, ours.tests_per_level):
                _abort(f"n={n}: NumPy reference tests per level {tests.tolist()} != ours "
                       f"{ours.tests_per_level.tolist()}")
            if seps != _sepset_dict(ours):
                _abort(f"n={n}: NumPy reference separating sets differ from ours")
            ref_s = secs / G
            ref_note = f"identical adjacency, sepsets and tests on {G} graph(s)"
    print(f"  NumPy reference: {ref_note}")

    # --- timing ours ----------------------------------------------------------------------------
    per_graph = []
    for k in range(K):
        t = h.timeit(lambda: cleann.skeleton(R[k], N_SAMPLES, ALPHA, num_threads=1), args.repeat, args.warmup)
        per_graph.append(h.median(t))
    per_graph = np.array(per_graph)
    t_stack1 = h.median(h.timeit(lambda: cleann.skeleton(R, N_SAMPLES, ALPHA, num_threads=1),
                                 args.repeat, args.warmup))
    t_stackN = h.median(h.timeit(lambda: cleann.skeleton(R, N_SAMPLES, ALPHA), args.repeat, args.warmup))
    all_ph = cleann.skeleton(R[ph], N_SAMPLES, ALPHA, sepsets="all", num_threads=1)
    if not np.array_equal(all_ph.adjacency, per[ph].adjacency):
        _abort(f"n={n} head {ph}: sepsets='all' gives another adjacency than 'first'")
    t_all_ph = h.median(h.timeit(lambda: cleann.skeleton(R[ph], N_SAMPLES, ALPHA, sepsets="all", num_threads=1),
                                 args.repeat, args.warmup))

    # --- causal-learn -----------------------------------------------------------------------------
    data, err = h.data_with_correlation(R[ph], N_SAMPLES, args.seed)
    cl_s, cl_same, cl_diff, cl_tests, cl_note = None, None, None, None, ""
    try:
        out, secs = h.run_with_timeout(causallearn_skeleton, (data, ALPHA), args.peer_timeout)
    except RuntimeError as exc:
        out, secs, cl_note = None, None, f"failed: {str(exc).splitlines()[0]}"
    if out is not None:
        times = [secs]
        while secs < 2.0 and len(times) < args.repeat:  # fast enough to repeat for a median
            _, secs = h.run_with_timeout(causallearn_skeleton, (data, ALPHA), args.peer_timeout)
            times.append(secs)
        cl_s = h.median(times)
        cl_adj, cl_tests = out
        iu = np.triu_indices(n, 1)
        cl_diff = int(np.sum(cl_adj[iu] != per[ph].adjacency[iu]))
        cl_same = cl_diff == 0
        cl_note = (f"{len(times)} run(s); adjacency identical: {'yes' if cl_same else 'no'} "
                   f"({cl_diff} differing edges); distinct CI tests {cl_tests:,} vs ours (sepsets='all') "
                   f"{all_ph.num_tests:,}")
    elif not cl_note:
        cl_note = f"timed out after {args.peer_timeout:g} s"
    print(f"  causal-learn on head {ph} (data max |corrcoef - R| = {err:.2g}): {cl_note}")

    tests = stack1.tests_per_level  # [K, levels]
    sing = stack1.singular_per_level
    for lvl in range(tests.shape[1]):
        info_rows.append([n, lvl, tests[:, lvl].mean(), int(sing[:, lvl].sum())])
    return {
        "n": n, "K": K,
        "ms_graph": 1e3 * float(np.median(per_graph)), "gps_1": K / float(per_graph.sum()),
        "gps_stack1": K / t_stack1, "gps_stackN": K / t_stackN,
        "ph": ph, "ms_ph": 1e3 * per_graph[ph], "ms_all_ph": 1e3 * t_all_ph,
        "ref_s": ref_s, "cl_s": cl_s, "cl_same": cl_same, "cl_diff": cl_diff, "cl_tests": cl_tests,
        "tests_graph": float(tests.sum(axis=1).mean()), "singular": int(sing.sum()),
        "tests_all_ph": all_ph.num_tests, "tests_ph": per[ph].num_tests,
        "tests_level": tests.mean(axis=0),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="n (tokens); default 16 32 64 128")
    ap.add_argument("--heads", type=int, default=None, help="K heads per n (default 12)")
    ap.add_argument("--peer-head", type=int, default=0, help="head given to causal-learn")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs, median reported (default 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ref-max-n", type=int, default=32, help="largest n for the NumPy reference")
    ap.add_argument("--ref-graphs", type=int, default=None, help="graphs for the NumPy reference (default 2)")
    ap.add_argument("--ref-timeout", type=float, default=None, help="cap on the NumPy reference, s (default 120)")
    ap.add_argument("--peer-timeout", type=float, default=None, help="cap on causal-learn, s (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, few heads, short caps: checks it runs")
    ap.add_argument("--csv", default=h.DEFAULT_CSV, help="CSV to append to ('-' for none)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([16, 32] if quick else [16, 32, 64, 128])
    args.heads = args.heads or (3 if quick else 12)
    args.repeat = args.repeat or (3 if quick else 5)
    args.ref_graphs = args.ref_graphs or (1 if quick else 2)
    args.ref_timeout = args.ref_timeout or (60.0 if quick else 120.0)
    args.peer_timeout = args.peer_timeout or (60.0 if quick else 400.0)
    if not 0 <= args.peer_head < args.heads:
        ap.error("--peer-head must be in [0, --heads)")

    info = h.print_machine_info()
    print(f"# PC-stable skeleton: N = {N_SAMPLES}, alpha = {ALPHA}, sepsets='first' unless said; "
          f"median of {args.repeat} after {args.warmup} warm-up; NumPy reference <= {args.ref_timeout:g} s, "
          f"causal-learn <= {args.peer_timeout:g} s\n")

    results, level_rows, csv_rows = [], [], []
    for n in args.sizes:
        r = bench_one(n, args, level_rows)
        results.append(r)
        base = {"bench": "skeleton", "n": n}
        csv_rows += [
            {**base, "impl": "cleann-1t", "metric": "ms_per_graph", "value": r["ms_graph"]},
            {**base, "impl": "cleann-1t", "metric": "graphs_per_s", "value": r["gps_1"]},
            {**base, "impl": "cleann-stack-1t", "metric": "graphs_per_s", "value": r["gps_stack1"]},
            {**base, "impl": "cleann-stack-allthreads", "metric": "graphs_per_s", "value": r["gps_stackN"]},
            {**base, "impl": "cleann-allsets-1t", "metric": "ms_per_graph", "value": r["ms_all_ph"]},
            {**base, "impl": "cleann", "metric": "ci_tests_per_graph", "value": r["tests_graph"]},
            {**base, "impl": "cleann", "metric": "singular_blocks", "value": r["singular"]},
        ]
        csv_rows += [{**base, "level": lvl, "impl": "cleann", "metric": "ci_tests_per_graph", "value": float(t)}
                     for lvl, t in enumerate(r["tests_level"])]
        if isinstance(r["ref_s"], float):
            csv_rows.append({**base, "impl": "numpy-ref", "metric": "s_per_graph", "value": r["ref_s"]})
        elif r["ref_s"] is not None:
            csv_rows.append({**base, "impl": "numpy-ref", "metric": "timeout_s", "value": args.ref_timeout})
        if r["cl_s"] is not None:
            csv_rows += [
                {**base, "impl": "causal-learn", "metric": "s_per_graph", "value": r["cl_s"]},
                {**base, "impl": "causal-learn", "metric": "differing_edges", "value": r["cl_diff"]},
                {**base, "impl": "cleann-1t", "metric": "speedup_vs_causal_learn",
                 "value": r["cl_s"] / (r["ms_ph"] / 1e3)},
            ]
        else:
            csv_rows.append({**base, "impl": "causal-learn", "metric": "timeout_s", "value": args.peer_timeout})

    print("\nTests per level (ours, sepsets='first'; mean per graph over the heads) and singular blocks (total):\n")
    print(h.markdown_table(["n", "level", "CI tests/graph", "singular blocks"], level_rows))

    print(f"\ncausal-learn beside ours on head {args.peer_head} (one thread; causal-learn tests every set of a level, "
          f"like ours with sepsets='all'):\n")
    peer_rows = []
    for r in results:
        cl = r["cl_s"]
        peer_rows.append([
            r["n"], r["ms_ph"], r["ms_all_ph"], _seconds(cl, args.peer_timeout),
            (cl / (r["ms_ph"] / 1e3)) if cl is not None else f"> {args.peer_timeout / (r['ms_ph'] / 1e3):,.0f}",
            (cl / (r["ms_all_ph"] / 1e3)) if cl is not None else f"> {args.peer_timeout / (r['ms_all_ph'] / 1e3):,.0f}",
            r["cl_same"], r["cl_diff"], r["tests_ph"], r["tests_all_ph"], r["cl_tests"],
        ])
    print(h.markdown_table(["n", "ours ms", "ours ms (sepsets=all)", "causal-learn s", "speed-up",
                            "speed-up (sepsets=all)", "adjacency identical", "differing edges",
                            "ours tests", "ours tests (all)", "causal-learn tests"], peer_rows))

    print(f"\nSummary ({args.heads} heads per n):\n")
    rows = []
    for r in results:
        cl = r["cl_s"]
        rows.append([
            r["n"], r["ms_graph"], r["gps_stack1"], r["gps_stackN"],
            r["ref_s"] if r["ref_s"] is not None else "-", _seconds(cl, args.peer_timeout),
            (cl / (r["ms_ph"] / 1e3)) if cl is not None else f"> {args.peer_timeout / (r['ms_ph'] / 1e3):,.0f}",
            r["tests_graph"],
        ])
    print(h.markdown_table(["n", "ours ms/graph (1 thread)", "ours graphs/s (stack, 1 thread)",
                            "ours graphs/s (stack, all threads)", "NumPy ref s/graph", "causal-learn s/graph",
                            "speed-up vs causal-learn (same head)", "CI tests/graph"], rows))
    if args.csv != "-":
        print(f"\nappended {len(csv_rows)} rows to {h.append_csv(csv_rows, args.csv, info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
