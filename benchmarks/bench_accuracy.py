"""How accurate are the learners on data with latent confounders?

Random linear-Gaussian SEMs: a random DAG over the observed nodes (expected degree 2), plus latent
confounders each pointing into two observed nodes; data sampled, the latents dropped. The truth:
the true PAG, from FCI run with a d-separation oracle on the DAG (tests/test_learners.py checks that
oracle FCI, oracle ICD and independently computed true PAGs agree), and for PC the true skeleton.
Scores against the truth: skeleton precision, recall and F1, and the share of the true PAG's edge
marks reproduced exactly (over the true edges; a missing edge scores its two marks as wrong).
Ours: ICD, FCI and PC (Fisher z on the sample correlation); beside them causal-learn's FCI and PC
on the same data, in one run.

Full run (from the repository root):

    python benchmarks/bench_accuracy.py --nodes 10 20 50 100 --samples 384 1000 10000 --graphs 5

Quick check:

    python benchmarks/bench_accuracy.py --quick --csv -
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

import cleann  # noqa: E402
from cleann.graph import from_causallearn  # noqa: E402
from cleann.oracle import DSeparation  # noqa: E402


def scores(marks, truth):
    est, tru = marks != 0, truth != 0
    iu = np.triu_indices(len(truth), 1)
    tp = int((est[iu] & tru[iu]).sum())
    p = tp / max(int(est[iu].sum()), 1)
    r = tp / max(int(tru[iu].sum()), 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    marks_ok = float((marks[tru] == truth[tru]).mean()) if tru.any() else 1.0
    return p, r, f1, marks_ok


def causallearn_fci(data, alpha):
    from causallearn.search.ConstraintBased.FCI import fci

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G, _ = fci(data, "fisherz", alpha, show_progress=False, verbose=False)
    return from_causallearn(G.graph).marks


def causallearn_pc(data, alpha):
    from causallearn.search.ConstraintBased.PC import pc

    cg = pc(data, alpha, "fisherz", True, 0, 2, show_progress=False)
    return from_causallearn(cg.G.graph).marks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--samples", type=int, nargs="+", default=[384, 1000, 10000])
    ap.add_argument("--graphs", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--peer-timeout", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv", default=H.DEFAULT_CSV)
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.samples, args.graphs = [10], [1000], 2
    info = H.print_machine_info()
    rng = np.random.default_rng(args.seed)
    rows, table = [], []
    for n in args.nodes:
        for N in args.samples:
            acc: dict[str, list] = {}
            for _ in range(args.graphs):
                data, dag = H.linear_gaussian_sem(rng, n, max(1, n // 10), N)
                oracle = DSeparation(dag, observed=list(range(n)))
                truth = cleann.fci(oracle, max_pds_size=None, pds_budget=None).marks
                skel = truth != 0
                R = np.corrcoef(data.T)
                runs = {
                    "ours ICD": cleann.icd(R, N, args.alpha).marks,
                    "ours FCI": cleann.fci(R, N, args.alpha, max_pds_size=3).marks,
                    "ours PC": cleann.pc(R, N, args.alpha, max_level=None).marks,
                }
                for name, fn in (("causal-learn FCI", causallearn_fci), ("causal-learn PC", causallearn_pc)):
                    out, _ = H.run_with_timeout(fn, (data, args.alpha), args.peer_timeout)
                    if out is not None:
                        runs[name] = out
                for name, marks in runs.items():
                    # PC is scored on the skeleton only (it assumes no latents)
                    s = scores(marks, truth) if "PC" not in name else scores(marks != 0, skel)[:3] + (None,)
                    acc.setdefault(name, []).append(s)
            for name, vals in acc.items():
                p, r, f1 = (float(np.mean([v[k] for v in vals])) for k in range(3))
                m = [v[3] for v in vals if v[3] is not None]
                mk = float(np.mean(m)) if m else None
                table.append([n, N, name, len(vals), p, r, f1, "-" if mk is None else mk])
                for metric, value in (("precision", p), ("recall", r), ("f1", f1), ("mark accuracy", mk)):
                    if value is not None:
                        rows.append({"bench": "accuracy", "n": n, "level": N, "impl": name, "metric": metric,
                                     "value": value})
            print(f"n={n} N={N} done", flush=True)
    print()
    print(H.markdown_table(["nodes", "samples", "learner", "graphs", "skeleton precision", "recall", "F1",
                            "PAG mark accuracy"], table))
    if args.csv != "-":
        print(f"\nappended {len(rows)} rows to {H.append_csv(rows, args.csv, info)}")


if __name__ == "__main__":
    main()
