"""End to end: texts per second of a `cleann batch` job, and where its time goes.

Runs the batch job (``cleann.batch.run``, the code behind ``cleann batch``) on the benchmark
sentences with all-MiniLM-L6-v2 zero-shot sentiment, once per search and engine, into fresh
folders. Searches: "guided" (the default: margin-driven, any size, ``--budget`` sequences per
text) and "exact" (the paper's search up to ``--exact-size`` tokens, no budget: the default before
the guided search). Engines: the local engine with its stages in turn ("serial", ``--overlap
off``, its default on the CPU) and overlapped ("overlap": discovery on a worker thread during the
next forward pass, ``--overlap on``) and, when Ray is installed and asked for, "ray" (Ray Data,
local mode; its time includes starting Ray and the actors). Runs are interleaved, ``--repeat``
times; the run with the median wall time is shown. Prints texts/s and the time per text spent in
the model's forward pass, in discovery (ABCD) and in counterfactual testing, summed over texts;
with overlap the stages add up to more than the wall time. The model is loaded once, outside the
timings (except in the Ray workers). Every engine must write the same records for a search; the
script aborts otherwise.

The tester's throughput: every counterfactual pass of the serial runs is recorded (sequences and
length) by a forward pre-hook; the model alone is then timed on inputs of exactly those shapes,
and the table gives the testing stage's sequences/s beside the model's raw sequences/s (the
limit: what is left is the search's and the testers' own work).

Full run (from the repository root):

    python benchmarks/bench_batch.py --limit 48 --searches exact guided --engines serial overlap ray

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
                            overlap=engine == "overlap", engine="ray" if engine == "ray" else "local",
                            workers=args.workers, explainer=None if engine == "ray" else explainer)
        return summary, records(out)


class PassRecorder:
    """Records (sequences, length) of the model's forward passes while ``on``; observes only."""

    def __init__(self, model):
        self.on, self.shapes = False, []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.on and ids is not None:
            self.shapes.append(tuple(ids.shape))


def raw_seconds(model, shapes, repeat: int = 1) -> float:
    """The model alone on inputs of the recorded shapes (all ones mask), warm: the median of
    ``repeat`` replays."""
    inputs = [(torch.randint(1000, 2000, s), torch.ones(s, dtype=torch.long)) for s in shapes]

    def once():
        with torch.no_grad():
            for ids, mask in inputs:
                model(input_ids=ids, attention_mask=mask)

    return H.median(H.timeit(once, repeat=repeat, warmup=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=DATA, help="JSONL with id and text (default: the benchmark sentences)")
    ap.add_argument("--limit", type=int, default=None, help="first N texts only")
    ap.add_argument("--join", type=int, default=1,
                    help="join every K consecutive sentences into one text (longer inputs: discovery grows "
                         "faster with length than testing)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine, interleaved; the median is shown")
    ap.add_argument("--searches", nargs="+", default=["guided"], choices=["guided", "exact"])
    ap.add_argument("--engines", nargs="+", default=["serial", "overlap"], choices=["serial", "overlap", "ray"])
    ap.add_argument("--batch-size", type=int, default=32, help="texts per batch (the job's --batch-size)")
    ap.add_argument("--heads", nargs="+", type=int, default=None, help="default: all 12")
    ap.add_argument("--exact-size", type=int, default=3, help="the exact search's largest explanation")
    ap.add_argument("--budget", type=int, default=batch.DEFAULT_BUDGET, help="the guided search's budget per text")
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
    specs = {"guided": batch.explainer_spec(heads=args.heads, device=args.device, search="guided",
                                            budget=args.budget),
             "exact": batch.explainer_spec(heads=args.heads, device=args.device, search="exact",
                                           max_size=args.exact_size, budget=None)}
    t0 = time.perf_counter()
    explainers = {name: batch.build_explainer(specs[name], args.threads) for name in args.searches}
    print(f"{len(rows_in)} texts, batch size {args.batch_size}, heads {args.heads or 'all'}, searches "
          f"{args.searches} (exact up to {args.exact_size} tokens, guided with a budget of {args.budget}), device "
          f"{args.device}, {torch.get_num_threads()} torch threads; models loaded in {time.perf_counter() - t0:.1f} s")
    table, tput, csv_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows_in)
        for explainer in explainers.values():
            explainer.explain([r["text"] for r in rows_in[:8]])  # warm-up outside the timings
        runs = {(s, e): [] for s in args.searches for e in args.engines}
        reference: dict = {}
        recorders = {s: PassRecorder(explainers[s].model) for s in args.searches}
        testing = {s: [] for s in args.searches}
        for _ in range(args.repeat):
            for search in args.searches:
                for engine in args.engines:
                    explainer, rec = explainers[search], recorders[search]
                    plain_test = explainer.test
                    if engine == "serial":
                        rec.shapes = []

                        def test(*a, _f=plain_test, _r=rec):
                            _r.on = True
                            try:
                                return _f(*a)
                            finally:
                                _r.on = False

                        explainer.test = test
                    try:
                        summary, recs = run_engine(engine, src, specs[search], explainer, args)
                    finally:
                        explainer.test = plain_test
                    if engine == "serial":
                        testing[search].append((summary.stage_seconds["testing"], list(rec.shapes)))
                    if search not in reference:
                        reference[search] = recs
                    elif not H.same_records(recs, reference[search]):
                        raise SystemExit(f"{search} search, engine {engine}: records differ from the first run")
                    runs[(search, engine)].append(summary)
        for (search, engine), summaries in runs.items():
            summary = sorted(summaries, key=lambda s: s.seconds)[len(summaries) // 2]
            n = summary.done
            st = summary.stage_seconds
            busy = sum(st.values())
            rate = n / summary.seconds
            seqs = [sum(r["counts"]["candidates"] for r in reference[search].values()) / max(n, 1)]
            table.append([search, engine, n, H.fmt(summary.seconds), H.fmt(rate), H.fmt(seqs[0])]
                         + [f"{H.fmt(st[k] / n)} ({100 * st[k] / busy:.0f}%)" for k in ("forward", "discovery", "testing")])
            csv_rows.append(dict(bench="batch", n=n, impl=f"{search} {engine}", metric="texts_per_s", value=rate))
            csv_rows += [dict(bench="batch", n=n, impl=f"{search} {engine}", metric=f"{k}_s_per_text",
                              value=st[k] / n) for k in st]
        for search in args.searches:
            if not testing[search]:
                continue
            seconds, shapes = sorted(testing[search])[len(testing[search]) // 2]
            sequences = sum(b for b, _ in shapes)
            raw = raw_seconds(explainers[search].model, shapes)
            ratio = raw / seconds
            tput.append([search, len(shapes), sequences, H.fmt(sequences / len(shapes)), H.fmt(sequences / seconds),
                         H.fmt(sequences / raw), f"{ratio:.2f}"])
            csv_rows.append(dict(bench="batch", n=sequences, impl=f"{search} tester", metric="raw_forward_fraction",
                                 value=ratio))
    print(H.markdown_table(["search", "engine", "texts", "wall s", "texts/s", "sequences / text", "forward s/text",
                            "discovery s/text", "testing s/text"], table))
    print("\nThe testing stage (serial runs, median) against the model alone on the same shapes:\n")
    print(H.markdown_table(["search", "passes", "sequences", "sequences / pass", "tester sequences/s",
                            "model alone sequences/s", "ratio"], tput))
    if args.csv != "-":
        print("appended to", H.append_csv(csv_rows, args.csv, info))


if __name__ == "__main__":
    main()
