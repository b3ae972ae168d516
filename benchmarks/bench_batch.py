"""End to end: texts per second of a `cleann batch` job, and where its time goes.

Runs the batch job (``cleann.batch.run``, the code behind ``cleann batch``) on the benchmark
sentences with all-MiniLM-L6-v2 zero-shot sentiment, once per engine, into fresh folders: the
local engine with its stages in turn ("serial", ``--overlap off``, its default on the CPU) and
overlapped ("overlap": discovery on a worker thread during the next forward pass, ``--overlap
on``) and, when Ray is installed and asked for, "ray" (Ray Data, local
mode; its time includes starting Ray and the actors). Engines run in turn, ``--repeat`` times; the run with the median wall time is shown. Prints
texts/s and the time per text spent
in the model's forward pass, in discovery (ABCD) and in counterfactual testing (CLEANN's forward
passes), summed over texts; with overlap the stages add up to more than the wall time. The model
is loaded once, outside the timings (except in the Ray workers). Every engine must write the same
records; the script aborts otherwise.

Full run (from the repository root):

    python benchmarks/bench_batch.py --limit 48 --engines serial overlap ray

Quick check:

    python benchmarks/bench_batch.py --limit 16 --heads 0 1 --csv -
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

from cleann import batch  # noqa: E402

DATA = os.path.join(H.HERE, "data", "sentences.jsonl")


def records(out_dir: str) -> dict:
    out = {}
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("part-"):
            for line in open(os.path.join(out_dir, name), encoding="utf-8"):
                r = json.loads(line)
                r.pop("seconds")
                out[r["id"]] = r
    return out


def run_engine(engine: str, src: str, spec: dict, explainer, args) -> tuple[batch.Summary, dict]:
    with tempfile.TemporaryDirectory() as out:
        summary = batch.run(src, out, spec=spec, batch_size=args.batch_size, fmt="jsonl", progress=False,
                            overlap=engine != "serial", engine="ray" if engine == "ray" else "local",
                            workers=args.workers, explainer=None if engine == "ray" else explainer)
        return summary, records(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=DATA, help="JSONL with id and text (default: the benchmark sentences)")
    ap.add_argument("--limit", type=int, default=None, help="first N texts only")
    ap.add_argument("--join", type=int, default=1,
                    help="join every K consecutive sentences into one text (longer inputs: discovery grows "
                         "faster with length than testing)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine, interleaved; the median is shown")
    ap.add_argument("--engines", nargs="+", default=["serial", "overlap"], choices=["serial", "overlap", "ray"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--heads", nargs="+", type=int, default=None, help="default: all 12")
    ap.add_argument("--max-size", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for the forward passes (default: torch's choice); discovery keeps "
                         "all cores")
    ap.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU)")
    ap.add_argument("--csv", default=H.DEFAULT_CSV, help="append rows here ('-' to skip)")
    args = ap.parse_args()

    info = H.print_machine_info()
    rows_in = [json.loads(line) for line in open(args.input, encoding="utf-8") if line.strip()]
    if args.join > 1:
        rows_in = [{"id": f"j{k}", "text": " ".join(r["text"] for r in rows_in[k:k + args.join])}
                   for k in range(0, len(rows_in) - args.join + 1, args.join)]
    rows_in = rows_in[:args.limit] if args.limit else rows_in
    spec = batch.explainer_spec(heads=args.heads, max_size=args.max_size, device=args.device)
    t0 = time.perf_counter()
    explainer = batch.build_explainer(spec, args.threads)
    print(f"{len(rows_in)} texts, batch size {args.batch_size}, heads {args.heads or 'all'}, max size "
          f"{args.max_size}, device {args.device}, {torch.get_num_threads()} torch threads; model loaded in "
          f"{time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows_in)
        explainer.explain([r["text"] for r in rows_in[:args.batch_size]])  # warm-up outside the timings
        runs = {e: [] for e in args.engines}
        reference = None
        for _ in range(args.repeat):
            for engine in args.engines:
                summary, recs = run_engine(engine, src, spec, explainer, args)
                if reference is None:
                    reference = recs
                elif recs != reference:
                    raise SystemExit(f"engine {engine} wrote different records from {args.engines[0]}")
                runs[engine].append(summary)
        table, csv_rows = [], []
        for engine, summaries in runs.items():
            summary = sorted(summaries, key=lambda s: s.seconds)[len(summaries) // 2]
            n = summary.done
            st = summary.stage_seconds
            busy = sum(st.values())
            rate = n / summary.seconds
            table.append([engine, n, H.fmt(summary.seconds), H.fmt(rate)]
                         + [f"{H.fmt(st[k] / n)} ({100 * st[k] / busy:.0f}%)" for k in ("forward", "discovery", "testing")])
            csv_rows.append(dict(bench="batch", n=n, impl=engine, metric="texts_per_s", value=rate))
            csv_rows += [dict(bench="batch", n=n, impl=engine, metric=f"{k}_s_per_text", value=st[k] / n) for k in st]
    print(H.markdown_table(["engine", "texts", "wall s", "texts/s", "forward s/text", "discovery s/text",
                            "testing s/text"], table))
    if args.csv != "-":
        print("appended to", H.append_csv(csv_rows, args.csv, info))


if __name__ == "__main__":
    main()
