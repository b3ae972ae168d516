"""How many Fisher-z CI tests per second at each conditioning level?

On the correlation matrix of one real all-MiniLM-L6-v2 last-layer attention head (n tokens;
R = cleann.attention_to_correlation(attn), N = 384 = the hidden size, alpha = 0.01), for levels
l = 0..3 and random queries (i, j, S distinct), single thread:

- ours: ``cleann.ci_test(..., pvalues=False, num_threads=1)`` (decisions only) and with p-values,
  on q = 1,000,000 queries per call;
- the per-test NumPy loop: ``cleann._reference.ci_independent`` over 2,000 queries;
- causal-learn's Fisher z CIT, called per query over the same 2,000 queries (a fresh CIT object
  for every timed run, since it caches by query; the queries are distinct as its cache keys), on
  data whose np.corrcoef equals R (``_harness.data_with_correlation``).

Correctness first, on the 2,000 queries: ours must give exactly the NumPy loop's decisions and
singular flags (the script aborts otherwise); the agreement with causal-learn is reported (its
correlation comes from synthesized data and it has no singular path, so on ill-conditioned
matrices rare borderline differences are possible). For n = 16 there are fewer than 2,000
distinct queries at levels 0 and 1: all distinct ones are used.

Full run (on a quiet machine; from the repository root):

    python benchmarks/bench_ci.py --sizes 16 32 64 128

Quick check that it runs (small sizes, few queries and repeats, results to a scratch CSV):

    python benchmarks/bench_ci.py --quick --csv /tmp/cleann_bench_quick.csv
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h  # noqa: E402
import cleann  # noqa: E402
from cleann import _reference  # noqa: E402

ALPHA = 0.01
N_SAMPLES = h.MINILM_HIDDEN


def random_queries(rng, n: int, level: int, q: int):
    """q random queries (i [q], j [q], S [q, level]) with i, j and the members of S all distinct."""
    k = level + 2
    if k > n:
        raise ValueError(f"level {level} needs n >= {k}, got n = {n}")
    idx = rng.integers(0, n, size=(q, k))
    bad = np.ones(q, dtype=bool)
    while True:
        sub = np.sort(idx[bad], axis=1)
        dup = (np.diff(sub, axis=1) == 0).any(axis=1)
        rows = np.flatnonzero(bad)[dup]
        if rows.size == 0:
            break
        idx[rows] = rng.integers(0, n, size=(rows.size, k))
        bad[:] = False
        bad[rows] = True
    return (np.ascontiguousarray(idx[:, 0]), np.ascontiguousarray(idx[:, 1]),
            np.ascontiguousarray(idx[:, 2:]))


def distinct_queries(rng, n: int, level: int, count: int):
    """Up to ``count`` random queries, distinct as unordered {i, j} with a set S (causal-learn's cache key)."""
    i, j, S = random_queries(rng, n, level, max(4 * count, 1000))
    key = np.concatenate([np.minimum(i, j)[:, None], np.maximum(i, j)[:, None], np.sort(S, axis=1)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)[:count]
    return i[keep], j[keep], np.ascontiguousarray(S[keep])


def numpy_loop(R, qi, qj, qS):
    """Decisions and singular flags of the NumPy reference, one query at a time."""
    return [_reference.ci_independent(R, a, b, s, N_SAMPLES, ALPHA) for a, b, s in zip(qi, qj, qS)]


def causallearn_loop(cit, qi, qj, qS):
    return [cit(a, b, s) for a, b, s in zip(qi, qj, qS)]


def bench_one(n: int, level: int, R, data, args, rng) -> dict:
    from causallearn.utils.cit import CIT

    # --- correctness on the check set ------------------------------------------------------------
    ci, cj, cS = distinct_queries(rng, n, level, args.peer_queries)
    li, lj, lS = ci.tolist(), cj.tolist(), [list(s) for s in cS.tolist()]
    ours = cleann.ci_test(R, ci, cj, cS, N_SAMPLES, ALPHA, num_threads=1)
    ours_dec = cleann.ci_test(R, ci, cj, cS, N_SAMPLES, ALPHA, num_threads=1, pvalues=False)
    ref = numpy_loop(R, li, lj, lS)
    ref_indep = np.array([r[0] for r in ref])
    ref_sing = np.array([r[1] for r in ref])
    if not (np.array_equal(ours.independent, ref_indep) and np.array_equal(ours.singular, ref_sing)
            and np.array_equal(ours_dec.independent, ours.independent)):
        bad = np.flatnonzero((ours.independent != ref_indep) | (ours.singular != ref_sing)
                             | (ours_dec.independent != ours.independent))
        k = bad[0]
        sys.exit(f"ABORT n={n} level={level}: ours and the NumPy loop disagree on {bad.size} of {len(ci)} "
                 f"queries; first: i={ci[k]} j={cj[k]} S={cS[k].tolist()} ours indep={ours.independent[k]} "
                 f"sing={ours.singular[k]} p={ours.pvalue[k]!r} (decisions-only indep={ours_dec.independent[k]}), "
                 f"numpy indep={ref_indep[k]} sing={ref_sing[k]}")

    cit = CIT(data, "fisherz")
    cl_p = np.full(len(ci), np.nan)
    cl_err = np.zeros(len(ci), dtype=bool)
    for k, (a, b, s) in enumerate(zip(li, lj, lS)):
        try:
            cl_p[k] = cit(a, b, s)
        except ValueError:  # causal-learn raises on an exactly singular block
            cl_err[k] = True
    cl_indep = cl_p > ALPHA
    ok = ~cl_err
    agree = 100.0 * float(np.mean(cl_indep[ok] == ours.independent[ok])) if ok.any() else float("nan")
    differ = ok & (cl_indep != ours.independent)

    # --- timing ----------------------------------------------------------------------------------
    qi, qj, qS = random_queries(rng, n, level, args.queries)
    last = {}

    def run_ours(pv):
        def f():
            last["res"] = cleann.ci_test(R, qi, qj, qS, N_SAMPLES, ALPHA, pvalues=pv, num_threads=1)
        return f

    t_dec = h.median(h.timeit(run_ours(False), args.repeat, args.warmup))
    singular_big = int(last["res"].singular.sum())
    t_pv = h.median(h.timeit(run_ours(True), args.repeat, args.warmup))
    t_np = h.median(h.timeit(lambda: numpy_loop(R, li, lj, lS), args.repeat, args.warmup))

    pi, pj, pS = ([x for x, e in zip(v, cl_err) if not e] for v in (li, lj, lS))
    holder = {}

    def fresh_cit():  # its p-value cache would otherwise answer repeated runs
        holder["cit"] = CIT(data, "fisherz")

    t_cl = h.median(h.timeit(lambda: causallearn_loop(holder["cit"], pi, pj, pS), args.repeat, args.warmup,
                             setup=fresh_cit))
    return {
        "n": n, "level": level, "q": len(qi), "check_q": len(ci),
        "ours_dec": len(qi) / t_dec, "ours_pv": len(qi) / t_pv,
        "numpy": len(li) / t_np, "causallearn": len(pi) / t_cl,
        "singular": singular_big, "singular_check": int(ours.singular.sum()),
        "agree": agree, "differ": int(differ.sum()), "differ_singular": int((differ & ours.singular).sum()),
        "cl_errors": int(cl_err.sum()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="n (tokens); default 16 32 64 128")
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--queries", type=int, default=None, help="queries per call of ours (default 1,000,000)")
    ap.add_argument("--peer-queries", type=int, default=None,
                    help="queries for the correctness check, the NumPy loop and causal-learn (default 2,000)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs, median reported (default 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", type=int, default=0, help="which of the 12 last-layer heads gives R")
    ap.add_argument("--quick", action="store_true", help="small sizes, few queries and repeats: checks it runs")
    ap.add_argument("--csv", default=h.DEFAULT_CSV, help="CSV to append to ('-' for none)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([16, 32] if quick else [16, 32, 64, 128])
    args.queries = args.queries or (100_000 if quick else 1_000_000)
    args.peer_queries = args.peer_queries or (300 if quick else 2_000)
    args.repeat = args.repeat or (3 if quick else 5)

    info = h.print_machine_info()
    print(f"# CI tests: N = {N_SAMPLES}, alpha = {ALPHA}, single thread; ours on {args.queries:,} queries/call, "
          f"NumPy loop and causal-learn on up to {args.peer_queries:,} distinct queries; "
          f"median of {args.repeat} after {args.warmup} warm-up\n")

    results, csv_rows = [], []
    for n in args.sizes:
        attn, src = h.minilm_attention(n, args.head + 1, args.seed)
        R = cleann.attention_to_correlation(attn[args.head])
        data, err = h.data_with_correlation(R, N_SAMPLES, args.seed)
        w = np.linalg.eigvalsh(R)
        print(f"n={n}: {src}, head {args.head}; R eigenvalues [{w.min():.3g}, {w.max():.3g}]; "
              f"causal-learn data: max |corrcoef - R| = {err:.2g}")
        rng = np.random.default_rng([args.seed, n])
        for level in args.levels:
            r = bench_one(n, level, R, data, args, rng)
            results.append(r)
            print(f"  level {level}: check on {r['check_q']} queries passed (ours == NumPy loop); "
                  f"causal-learn agrees on {r['agree']:.2f}% ({r['differ']} differ, {r['differ_singular']} of them "
                  f"singular in ours; {r['cl_errors']} raised in causal-learn); singular path fired "
                  f"{r['singular']:,} times in {r['q']:,} queries ({100.0 * r['singular'] / r['q']:.3f}%)")
            base = {"bench": "ci", "n": n, "level": level}
            csv_rows += [
                {**base, "impl": "cleann-decisions", "metric": "tests_per_s", "value": r["ours_dec"]},
                {**base, "impl": "cleann-pvalues", "metric": "tests_per_s", "value": r["ours_pv"]},
                {**base, "impl": "numpy-loop", "metric": "tests_per_s", "value": r["numpy"]},
                {**base, "impl": "causal-learn", "metric": "tests_per_s", "value": r["causallearn"]},
                {**base, "impl": "causal-learn", "metric": "agreement_pct", "value": r["agree"]},
                {**base, "impl": "cleann-decisions", "metric": "speedup_vs_causal_learn",
                 "value": r["ours_dec"] / r["causallearn"]},
                {**base, "impl": "cleann", "metric": "singular_frac", "value": r["singular"] / r["q"]},
            ]

    print()
    headers = ["n", "level", "ours (M tests/s, decisions)", "ours with p-values (M tests/s)",
               "NumPy loop (tests/s)", "causal-learn (tests/s)", "speed-up vs causal-learn",
               "singular in ours", "causal-learn agreement %"]
    rows = [[r["n"], r["level"], r["ours_dec"] / 1e6, r["ours_pv"] / 1e6, r["numpy"], r["causallearn"],
             r["ours_dec"] / r["causallearn"], f"{r['singular']:,} / {r['q']:,}", f"{r['agree']:.2f}"]
            for r in results]
    print(h.markdown_table(headers, rows))
    if args.csv != "-":
        print(f"\nappended {len(csv_rows)} rows to {h.append_csv(csv_rows, args.csv, info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
