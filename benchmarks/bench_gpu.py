"""GPU backends beside the CPU core: skeleton graphs/s on attention stacks, CI tests/s per level.

Inputs: last-layer all-MiniLM-L6-v2 attention heads of n-token texts (``--heads`` distinct ones,
tiled to a stack of ``--stack`` graphs), R = cleann.attention_to_correlation, N = 384, alpha 0.01,
float64 throughout (no float32 mode exists).

- skeleton: ``cleann.skeleton(stack, 384, 0.01, backend=b)`` for b in cuda, triton (what this
  machine has) and cpu (all threads; on the first ``--cpu-graphs`` graphs of the stack, scaled
  to graphs/s). Every backend must give the CPU's adjacency and test counts on the graphs they
  share (the script aborts otherwise).
- CI tests per level l = 0..3: ``--queries`` random (graph, i, j, S) over the stack through each
  backend's batched kernel (device-resident indices; the CPU core on ``--cpu-queries`` of them);
  decisions must agree with the CPU's.

Run on a GPU machine, from the repository root, with the CUDA build installed
(``CLEANN_CUDA=ON pip install --no-build-isolation --no-deps .``):

    python benchmarks/bench_gpu.py --sizes 128 512 --stack 4096 1024

Without a GPU the script runs the CPU column only (a check that it works):

    python benchmarks/bench_gpu.py --quick --csv /tmp/cleann_bench_quick.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h  # noqa: E402
import cleann  # noqa: E402
from cleann import _backend, _gpu  # noqa: E402

ALPHA = 0.01
N_SAMPLES = h.MINILM_HIDDEN


def gpu_backends() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    if _backend.cuda_built():
        out.append("cuda")
    try:
        import triton  # noqa: F401

        out.append("triton")
    except ImportError:
        pass
    return out


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def skeleton_rows(n, R, backends, cpu_graphs, repeat):
    import torch

    rows, table = [], []
    B = R.shape[0]
    cpu_R = R[:cpu_graphs]
    t = h.timeit(lambda: cleann.skeleton(cpu_R, N_SAMPLES, ALPHA, backend="cpu"), repeat=repeat, warmup=0)
    ref = cleann.skeleton(cpu_R, N_SAMPLES, ALPHA, backend="cpu")
    cpu_rate = cpu_graphs / h.median(t)
    table.append([n, "cpu (all threads)", cpu_graphs, h.fmt(h.median(t) / cpu_graphs * 1e3), h.fmt(cpu_rate)])
    rows.append(dict(bench="gpu_skeleton", n=n, impl="cpu", metric="graphs_per_s", value=cpu_rate))
    for b in backends:
        dev = torch.from_numpy(R).cuda()
        sk = cleann.skeleton(dev, N_SAMPLES, ALPHA, backend=b)
        if not (np.array_equal(sk.adjacency[:cpu_graphs], ref.adjacency)
                and np.array_equal(sk.tests_per_level[:cpu_graphs, :ref.tests_per_level.shape[1]],
                                   ref.tests_per_level)):
            raise SystemExit(f"{b} skeleton differs from the CPU core at n = {n}")

        def run():
            cleann.skeleton(dev, N_SAMPLES, ALPHA, backend=b)
            sync()

        t = h.timeit(run, repeat=repeat, warmup=1)
        rate = B / h.median(t)
        table.append([n, b, B, h.fmt(h.median(t) / B * 1e3), h.fmt(rate)])
        rows.append(dict(bench="gpu_skeleton", n=n, impl=b, metric="graphs_per_s", value=rate))
    return rows, table


def ci_rows(n, R, backends, queries, cpu_queries, repeat, rng):
    import torch

    rows, table = [], []
    B = R.shape[0]
    for level in range(4):
        picks = np.argsort(rng.random((queries, n)), axis=1)[:, :level + 2]
        g = rng.integers(0, B, size=queries)
        i, j, S = picks[:, 0], picks[:, 1], np.ascontiguousarray(picks[:, 2:])
        cq = min(cpu_queries, queries)
        t = h.timeit(lambda: cleann.ci_test(R, i[:cq], j[:cq], S[:cq], N_SAMPLES, ALPHA, graph=g[:cq],
                                            backend="cpu", pvalues=False), repeat=repeat, warmup=1)
        want = cleann.ci_test(R, i[:cq], j[:cq], S[:cq], N_SAMPLES, ALPHA, graph=g[:cq], backend="cpu").independent
        rate = cq / h.median(t)
        table.append([n, level, "cpu (all threads)", cq, h.fmt(rate / 1e6)])
        rows.append(dict(bench="gpu_ci", n=n, impl="cpu", metric="tests_per_s", value=rate, level=level))
        for b in backends:
            dev = torch.from_numpy(R).cuda()
            on = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()
            args = (dev, on(g), on(i), on(j), on(S), _gpu.fisher_threshold2(ALPHA, N_SAMPLES, level), N_SAMPLES,
                    ALPHA, cleann.ci.PIVOT_TOL)
            ops = _gpu.ops(b)
            _, _, outcome = ops.ci(*args)
            differ = int(np.sum((outcome[:cq].cpu().numpy() == 1) != want))
            if differ:
                raise SystemExit(f"{b}: {differ} CI decisions differ from the CPU core at n = {n}, level {level}")

            def run():
                ops.ci(*args)
                sync()

            t = h.timeit(run, repeat=repeat, warmup=1)
            rate = queries / h.median(t)
            table.append([n, level, b, queries, h.fmt(rate / 1e6)])
            rows.append(dict(bench="gpu_ci", n=n, impl=b, metric="tests_per_s", value=rate, level=level))
    return rows, table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--stack", type=int, nargs="+", default=[4096, 1024], help="graphs per stack, one per size")
    ap.add_argument("--heads", type=int, default=96, help="distinct attention heads per size")
    ap.add_argument("--cpu-graphs", type=int, default=64)
    ap.add_argument("--queries", type=int, default=20_000_000)
    ap.add_argument("--cpu-queries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes: a check that the script runs")
    ap.add_argument("--csv", default=h.DEFAULT_CSV)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.stack, args.heads = [16, 32], [24, 12], 12
        args.cpu_graphs, args.queries, args.cpu_queries, args.repeat = 8, 20_000, 20_000, 1
    if len(args.stack) != len(args.sizes):
        ap.error("--stack needs one value per --sizes value")
    info = h.print_machine_info()
    backends = gpu_backends()
    if backends:
        import torch

        print(f"GPU: {torch.cuda.get_device_name()}; backends: {', '.join(backends)}")
    else:
        print("No CUDA device: only the CPU column runs (GPU numbers need a GPU machine).")
    rng = np.random.default_rng(0)
    rows, sk_table, ci_table = [], [], []
    for n, B in zip(args.sizes, args.stack):
        attn, src = h.minilm_attention(n, min(args.heads, B))
        print(f"n = {n}: {src}")
        R = cleann.attention_to_correlation(attn)
        R = np.ascontiguousarray(np.resize(R, (B, n, n)))
        r, t = skeleton_rows(n, R, backends, min(args.cpu_graphs, B), args.repeat)
        rows += r
        sk_table += t
        r, t = ci_rows(n, R, backends, args.queries, args.cpu_queries, args.repeat, rng)
        rows += r
        ci_table += t
    print("\nSkeleton (PC-stable, sepsets='first', float64):")
    print(h.markdown_table(["n", "backend", "graphs", "ms/graph", "graphs/s"], sk_table))
    print("\nBatched CI tests (Fisher z, decisions only):")
    print(h.markdown_table(["n", "level", "backend", "queries", "M tests/s"], ci_table))
    print(f"\nappended to {h.append_csv(rows, args.csv, info)}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
