"""How fast are the PAG learners on attention, and how do they compare with causal-learn?

Part 1, speed: for each n, K real all-MiniLM-L6-v2 last-layer heads (N = 384, alpha = 0.01):
ours ICD (stable) per graph on one thread, ICD on the whole stack with all threads, FCI and PC
(when built) per graph; beside them causal-learn's PC and FCI on one head (on data whose sample
correlation equals R, in a child process with a time cap) and, when the environment variable
CLEANN_REFERENCE_ICD names a checkout of IntelLabs/causality-lab, the reference ICD on one head
(also capped).

Part 2, agreement: FCI (ours, Fisher z) against causal-learn's FCI on random linear-Gaussian data
sets with latent confounders: the share of identical PAGs, and for the others whether the
skeletons already differ (the possible-d-sep stages differ: causal-learn's searches a smaller
set) or only marks do (orientation rules: see tests/test_learners.py for the kinds).

Full run (from the repository root):

    python benchmarks/bench_discovery.py --sizes 16 32 64 128 256 512 --peer-timeout 300

Quick check:

    python benchmarks/bench_discovery.py --quick --csv -
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

import cleann  # noqa: E402

N, ALPHA = H.MINILM_HIDDEN, 0.01


def causallearn_pc(data, alpha):
    from causallearn.search.ConstraintBased.PC import pc

    cg = pc(data, alpha, "fisherz", True, 0, 2, show_progress=False)
    return cg.G.graph


def causallearn_fci(data, alpha):
    import contextlib
    import io

    from causallearn.search.ConstraintBased.FCI import fci

    with contextlib.redirect_stdout(io.StringIO()):  # it prints every edge it finds
        G, _ = fci(data, "fisherz", alpha, show_progress=False, verbose=False)
    return G.graph


def reference_icd(checkout, R, num_samples, alpha):
    sys.path.insert(0, checkout)
    from causal_discovery_algs import LearnStructICD
    from causal_discovery_utils.cond_indep_tests import CondIndepParCorr

    n = R.shape[0]
    ci = CondIndepParCorr(threshold=alpha, dataset=None, num_records=num_samples, num_vars=n, count_tests=True,
                          use_cache=True)
    ci.correlation_matrix = R
    learner = LearnStructICD(nodes_set=set(range(n)), ci_test=ci)
    learner.learn_structure()
    return learner.graph.get_adj_mat()


def speed(args, rows, info):
    table = []
    checkout = os.environ.get("CLEANN_REFERENCE_ICD")
    for n in args.sizes:
        attn, source = H.minilm_attention(n, args.heads, seed=0)
        R = cleann.attention_to_correlation(attn)
        print(f"n={n}: {source}", flush=True)
        icd_t = H.timeit(lambda: [cleann.icd(R[h], N, ALPHA, num_threads=1) for h in range(len(R))],
                         repeat=args.repeat, warmup=1)
        icd_ms = H.median(icd_t) / len(R) * 1e3
        stack_t = H.timeit(lambda: cleann.icd(R, N, ALPHA), repeat=args.repeat, warmup=0)
        stack_gps = len(R) / H.median(stack_t)
        g0 = cleann.icd(R[0], N, ALPHA, num_threads=1)
        fci_ms = pc_ms = None
        if n <= args.fci_max_n:
            fci_t = H.timeit(lambda: cleann.fci(R[0], N, ALPHA, num_threads=1, max_pds_size=None, pds_budget=None),
                             repeat=1, warmup=0)
            fci_ms = H.median(fci_t) * 1e3
        if hasattr(cleann, "pc"):
            pc_t = H.timeit(lambda: cleann.pc(R[0], N, ALPHA, num_threads=1, max_level=None), repeat=args.repeat,
                            warmup=1)
            pc_ms = H.median(pc_t) * 1e3
        cl_pc = cl_fci = ref = None
        if n <= args.peer_max_n:
            data, err = H.data_with_correlation(R[0], N)
            _, cl_pc = H.run_with_timeout(causallearn_pc, (data, ALPHA), args.peer_timeout)
            _, cl_fci = H.run_with_timeout(causallearn_fci, (data, ALPHA), args.peer_timeout)
            if checkout and n <= args.ref_max_n:
                out, ref = H.run_with_timeout(reference_icd, (checkout, R[0], N, ALPHA), args.peer_timeout)
                if out is not None:
                    same = np.array_equal(out, cleann.icd(R[0], N, ALPHA, mode="sequential").marks)
                    print(f"  reference ICD: {ref:.2f} s; sequential ICD identical: {same}")
        fmt_peer = lambda s: "-" if n > args.peer_max_n else (f"> {args.peer_timeout:g} s" if s is None else f"{s:.2f}")
        ref_cell = "-" if not checkout or n > args.ref_max_n or n > args.peer_max_n else fmt_peer(ref)
        table.append([n, icd_ms, stack_gps, fci_ms if fci_ms is not None else "-",
                      pc_ms if pc_ms is not None else "-", fmt_peer(cl_pc), fmt_peer(cl_fci), ref_cell,
                      int(g0.tests_per_level.sum()), int(g0.adjacency.sum() // 2)])
        for impl, metric, value in (("cleann-icd", "ms/graph", icd_ms), ("cleann-icd-stack", "graphs/s", stack_gps),
                                    ("cleann-fci", "ms/graph", fci_ms), ("cleann-pc", "ms/graph", pc_ms),
                                    ("causal-learn-pc", "s/graph", cl_pc), ("causal-learn-fci", "s/graph", cl_fci),
                                    ("reference-icd", "s/graph", ref)):
            if value is not None:
                rows.append({"bench": "discovery", "n": n, "level": "", "impl": impl, "metric": metric,
                             "value": value})
    print()
    print(H.markdown_table(["n", "ours ICD ms/graph (1 thread)", "ours ICD graphs/s (stack, all threads)",
                            "ours FCI ms", "ours PC ms", "causal-learn PC s", "causal-learn FCI s",
                            "reference ICD s", "ICD CI tests", "ICD edges"], table))


def agreement(args, rows):
    from cleann.graph import from_causallearn

    rng = np.random.default_rng(args.seed)
    same = skel = marks_only = fewer = more = 0
    for _ in range(args.datasets):
        n_obs = int(rng.integers(10, 16))
        data, _ = H.linear_gaussian_sem(rng, n_obs, int(rng.integers(1, 4)), args.rows)
        ours = cleann.fci(np.corrcoef(data.T), data.shape[0], 0.05, max_pds_size=None, pds_budget=None)  # no caps
        theirs = from_causallearn(causallearn_fci(data, 0.05))
        if np.array_equal(ours.marks, theirs.marks):
            same += 1
        elif not np.array_equal(ours.adjacency, theirs.adjacency):
            skel += 1
            fewer += int((theirs.adjacency & ~ours.adjacency).sum() // 2)  # removed only by ours
            more += int((ours.adjacency & ~theirs.adjacency).sum() // 2)   # removed only by causal-learn
        else:
            marks_only += 1
    k = args.datasets
    print()
    print(H.markdown_table(["data sets", "identical PAGs", "skeleton differs", "marks differ only",
                            "edges removed only by ours", "edges removed only by causal-learn"],
                           [[k, f"{same} ({100 * same / k:.0f}%)", skel, marks_only, fewer, more]]))
    rows.append({"bench": "discovery-agreement", "n": "", "level": "", "impl": "cleann-fci-vs-causal-learn",
                 "metric": "identical share", "value": same / k})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fci-max-n", type=int, default=128)
    ap.add_argument("--peer-max-n", type=int, default=64)
    ap.add_argument("--ref-max-n", type=int, default=32)
    ap.add_argument("--peer-timeout", type=float, default=300.0)
    ap.add_argument("--datasets", type=int, default=40)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv", default=H.DEFAULT_CSV)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.heads, args.repeat, args.peer_timeout, args.datasets = [16, 32], 3, 1, 30.0, 5
    info = H.print_machine_info()
    rows: list[dict] = []
    speed(args, rows, info)
    agreement(args, rows)
    if args.csv != "-":
        print(f"\nappended {len(rows)} rows to {H.append_csv(rows, args.csv, info)}")


if __name__ == "__main__":
    main()
