"""How small are CLEANN's explanations of a sequential recommender, what replaces the recommendation,
and do they find the planted causes?

The paper's second application on data generated here: sessions from
``cleann.hf.recommend.synthetic_sessions`` (items with latent genres; "sequels" that follow their
prequel and never appear without it, so a recommended sequel has a planted cause, its prequel) and
a BERT4Rec-style ``BertForMaskedLM`` trained on them with the cloze objective
(``train_bert4rec``, CPU, seeded). The model is first measured on held-out sessions (HR@10 and
NDCG@10 of the last item from the prefix, against the popularity baseline). Then each of the first
``--sessions`` held-out prefixes is explained: the recommendation is the top-1 item at a [MASK]
slot after the prefix, and a set of past positions explains it when removing those items
(``--removal``: replaced by the padding item, or dropped) changes the top-1. Every method judges
its sets with its own fresh ``MaskedItemTester``, which counts the distinct sets judged
("sequences", the cost).

- CLEANN exact: ``RecommenderExplainer(search="exact")``, the abduction step (the recommendation
  appended, its attention captured), one PAG per head of the last layer, the paper's order, sets
  of at most ``--exact-size`` items.
- CLEANN guided: ``RecommenderExplainer(search="guided")``, the margin-driven beam search, any size.
- attention ranking: past items ordered by the last layer's attention from the slot (mean over
  heads, on the unmodified input), removed cumulatively until the top-1 changes; its sequences are
  the prefixes a sequential procedure judges (up to the first that changes it).
- exhaustive: on prefixes of at most ``--exhaustive-items`` items, every subset by increasing size
  until one changes the top-1: the true minimal size.

Measures: explained %, mean and median size, the replacement item's rank in the original top-10
(the new top-1 after removing the method's first set; 1 is the best possible), sequences per
session, and planted-truth recovery: of the explained sessions whose recommended item is a sequel
with its prequel in the session, the fraction whose explanation contains the prequel. Before the
tables every explanation is re-verified with a fresh tester and no method may beat the exhaustive
minimum.

The trained model is cached under ``~/.cache/cleann/bert4rec-<settings>`` (``--model PATH`` names
another folder: loaded when it holds a model, else trained and saved there; ``--retrain`` trains
anew). Weights are never part of the repository.

Full run (from the repository root; about 5 minutes on 2 cores, 1.5 of them training the model,
which later runs load from the cache):

    python benchmarks/bench_recommendation.py

Quick check on 40 sessions with the full run's model (trained first when not cached):

    python benchmarks/bench_recommendation.py --sessions 40 --csv -

Plumbing only, with a weak model trained in seconds (HR@10 near 0.1):

    python benchmarks/bench_recommendation.py --sessions 40 --train-sessions 1500 --epochs 4 --csv -
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import statistics
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

from cleann.hf import AttentionCapture, MaskedItemTester, RecommenderExplainer  # noqa: E402
from cleann.hf.recommend import evaluate, synthetic_sessions, train_bert4rec  # noqa: E402

METHODS = ("CLEANN exact", "CLEANN guided", "attention ranking", "exhaustive")


def get_model(args, data, train):
    from transformers import BertForMaskedLM

    settings = dict(num_items=args.num_items, genres=args.genres, train_sessions=args.train_sessions, seed=args.seed,
                    hidden=args.hidden, layers=args.layers, heads=args.heads, epochs=args.epochs,
                    lr=args.lr, max_length=args.max_length)
    tag = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = args.model or os.path.join(os.path.expanduser("~"), ".cache", "cleann", f"bert4rec-{tag}")
    stamp = os.path.join(path, "cleann_settings.json")
    if not args.retrain and os.path.isfile(os.path.join(path, "config.json")):
        if os.path.isfile(stamp):
            with open(stamp) as f:
                if json.load(f) != settings:
                    sys.exit(f"{path} holds a model trained with other settings; use --retrain or another --model")
        print(f"model loaded from {path}", flush=True)
        return BertForMaskedLM.from_pretrained(path).eval(), 0.0
    t0 = time.perf_counter()
    model = train_bert4rec(train, data.num_items, hidden=args.hidden, layers=args.layers, heads=args.heads,
                           epochs=args.epochs, seed=args.seed, lr=args.lr, max_length=args.max_length + 1)
    seconds = time.perf_counter() - t0
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    with open(stamp, "w") as f:
        json.dump(settings, f)
    print(f"model trained in {seconds:.0f} s, saved to {path}", flush=True)
    return model, seconds


def fresh(model, data, items, args):
    return MaskedItemTester(model, items, mask_item=data.mask_item, removal=args.removal, top_k=10,
                            batch_size=args.batch_size)


def attention_ranking(model, data, items, args):
    tester = fresh(model, data, items, args)
    ids = torch.as_tensor([items + [data.mask_item]])
    with torch.inference_mode(), AttentionCapture(model, -1) as cap:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    weights = cap.attention[0, :, -1, :len(items)].float().mean(dim=0)
    order = sorted(range(len(items)), key=lambda p: (-float(weights[p]), p))
    prefixes = [tuple(sorted(order[:k])) for k in range(1, len(order) + 1)]
    margins = tester.score_batch([list(s) for s in prefixes])
    hit = next((k for k, m in enumerate(margins) if m <= 0), None)
    out = {"set": None if hit is None else prefixes[hit], "sequences": len(prefixes) if hit is None else hit + 1,
           "recommended": tester.recommended}
    return out, tester


def exhaustive(model, data, items, args):
    tester = fresh(model, data, items, args)
    sequences = 0
    for size in range(1, len(items) + 1):
        sets = list(itertools.combinations(range(len(items)), size))
        margins = tester.score_batch([list(s) for s in sets])
        sequences += len(sets)
        hits = [s for s, m in zip(sets, margins) if m <= 0]
        if hits:
            return {"set": hits[0], "sequences": sequences, "recommended": tester.recommended}, tester
    return {"set": None, "sequences": sequences, "recommended": tester.recommended}, tester


def run(model, data, prefixes, args):
    records = [dict(items=p) for p in prefixes]
    explainers = {"CLEANN exact": RecommenderExplainer(model, mask_item=data.mask_item, search="exact",
                                                       max_size=args.exact_size, removal=args.removal,
                                                       batch_size=args.batch_size),
                  "CLEANN guided": RecommenderExplainer(model, mask_item=data.mask_item, search="guided",
                                                        removal=args.removal, batch_size=args.batch_size)}
    for name, ex in explainers.items():
        t0 = time.perf_counter()
        for start in range(0, len(prefixes), args.chunk):
            for rec, r in zip(records[start:start + args.chunk], ex.explain(prefixes[start:start + args.chunk])):
                rec[name] = {"set": r.sets[0] if r.sets else None, "sequences": r.counts["candidates"],
                             "rank": r.replacement_rank, "replacement": r.replacement, "recommended": r.recommended,
                             "minimal_proven": r.minimal_proven, "abduced": r.abduced}
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    for rec in records:
        out, tester = attention_ranking(model, data, rec["items"], args)
        out["rank"] = tester.replacement(out["set"])[1] if out["set"] else None
        rec["attention ranking"] = out
    print(f"attention ranking: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    for rec in records:
        if len(rec["items"]) <= args.exhaustive_items:
            out, tester = exhaustive(model, data, rec["items"], args)
            out["rank"] = tester.replacement(out["set"])[1] if out["set"] else None
            rec["exhaustive"] = out
    print(f"exhaustive: {time.perf_counter() - t0:.1f} s", flush=True)
    return records


def check(model, data, records, args):
    """Every explanation changes the top-1 on a fresh tester; the target never in a set; the
    abduction input is the prefix and the recommendation; nobody beats the exhaustive minimum."""
    for rec in records:
        items = rec["items"]
        recommended = {rec[m]["recommended"] for m in METHODS if m in rec}
        assert len(recommended) == 1, f"methods disagree on the recommendation for {items}"
        tester = fresh(model, data, items, args)
        sets = [rec[m]["set"] for m in METHODS if m in rec and rec[m]["set"] is not None]
        assert all(tester.test_batch([list(s) for s in sets])), f"an explanation of {items} does not change the top-1"
        assert all(len(items) not in s for s in sets)
        for m in ("CLEANN exact", "CLEANN guided"):
            assert rec[m]["abduced"] == items + [rec[m]["recommended"]]
        if "exhaustive" in rec:
            best = rec["exhaustive"]["set"]
            for m in METHODS[:3]:
                s = rec[m]["set"]
                assert s is None or (best is not None and len(s) >= len(best)), f"{m} beat exhaustive on {items}"


def summarize(data, records, short_only=False):
    rows, csv_rows = [], []
    for m in METHODS:
        rs = [r for r in records if m in r and (not short_only or "exhaustive" in r)]
        if not rs:
            continue
        found = [r[m] for r in rs if r[m]["set"] is not None]
        sizes = [len(x["set"]) for x in found]
        ranks = [x["rank"] for x in found if x["rank"] is not None]
        caused = [(r, r[m]) for r in rs if r[m]["set"] is not None
                  and data.cause_positions(r["items"], r[m]["recommended"])]
        recovered = [bool(set(x["set"]) & set(data.cause_positions(r["items"], x["recommended"]))) for r, x in caused]
        seq = [r[m]["sequences"] for r in rs]
        row = [m, len(rs), 100 * len(found) / len(rs), statistics.mean(sizes) if sizes else None,
               statistics.median(sizes) if sizes else None, statistics.mean(ranks) if ranks else None,
               100 * len(ranks) / len(found) if found else None, statistics.mean(seq), statistics.median(seq),
               len(caused), 100 * sum(recovered) / len(recovered) if recovered else None]
        rows.append(row)
        for metric, v in zip(("explained_pct", "mean_size", "median_size", "mean_replacement_rank", "in_top10_pct",
                              "sequences_per_session", "median_sequences", "caused", "recovery_pct"), row[2:]):
            if v is not None:
                csv_rows.append(dict(bench="recommendation" + (" short" if short_only else ""), n=len(rs),
                                     impl=m, metric=metric, value=v))
    return rows, csv_rows


HEADERS = ["method", "sessions", "explained %", "mean size", "median size", "replacement rank (mean, top-10)",
           "replacement in top-10 %", "sequences / session", "median sequences", "with planted cause",
           "planted cause recovered %"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", "--limit", dest="sessions", type=int, default=500,
                    help="held-out sessions to explain")
    ap.add_argument("--eval-sessions", type=int, default=2000, help="held-out sessions for HR@10 / NDCG@10")
    ap.add_argument("--train-sessions", type=int, default=8000)
    ap.add_argument("--num-items", type=int, default=200)
    ap.add_argument("--genres", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=12, help="longest generated session")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="model folder (default: a cache folder under ~/.cache/cleann/)")
    ap.add_argument("--retrain", action="store_true", help="train even when the model folder holds a model")
    ap.add_argument("--removal", choices=("replace", "drop"), default="replace")
    ap.add_argument("--exact-size", type=int, default=3, help="the largest explanation exact CLEANN tries")
    ap.add_argument("--exhaustive-items", type=int, default=10,
                    help="exhaustive search on prefixes of at most this many items")
    ap.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass")
    ap.add_argument("--chunk", type=int, default=50, help="sessions per explainer call (they share passes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=H.DEFAULT_CSV, help="append rows to this CSV ('-': none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = H.print_machine_info()
    total = args.train_sessions + max(args.eval_sessions, args.sessions)
    data = synthetic_sessions(total, args.num_items, seed=args.seed, num_genres=args.genres,
                              max_length=args.max_length)
    train, held = data.sessions[:args.train_sessions], data.sessions[args.train_sessions:]
    print(f"{len(train)} training and {len(held)} held-out sessions over {args.num_items} items, {args.genres} genres, "
          f"{len(data.sequel_of)} sequels; removal {args.removal}", flush=True)
    model, _ = get_model(args, data, train)
    metrics = evaluate(model, held[:args.eval_sessions], k=10)
    popular = [i for i, _ in Counter(i for s in train for i in s).most_common(10)]
    pop_hr = sum(s[-1] in popular for s in held[:args.eval_sessions]) / len(held[:args.eval_sessions])
    print(f"\nheld-out next item ({metrics['sessions']} sessions): HR@10 {metrics['hr']:.3f}, NDCG@10 "
          f"{metrics['ndcg']:.3f}; popularity HR@10 {pop_hr:.3f}", flush=True)
    prefixes = [s[:-1] for s in held[:args.sessions]]
    records = run(model, data, prefixes, args)
    check(model, data, records, args)
    print("\nchecks passed: every explanation re-verified on a fresh tester, the target never in a set, the abduced "
          "input is the prefix and the recommendation, no method beat the exhaustive minimum")
    rows, csv_rows = summarize(data, records)
    print(f"\nAll {len(records)} sessions (sizes, ranks and recovery of the explained ones; sequences = distinct sets "
          "sent to the model):\n")
    print(H.markdown_table(HEADERS, rows))
    short_rows, short_csv = summarize(data, records, short_only=True)
    print(f"\nSessions of at most {args.exhaustive_items} past items (where exhaustive search ran):\n")
    print(H.markdown_table(HEADERS, short_rows))
    caused = [r for r in records if data.cause_positions(r["items"], r["CLEANN guided"]["recommended"])]
    if caused:
        alone = [fresh(model, data, r["items"], args).test_batch(
            [data.cause_positions(r["items"], r["CLEANN guided"]["recommended"])])[0] for r in caused]
        print(f"\n{len(caused)} sessions recommend a sequel whose prequel is in the session; removing the prequel "
              f"alone changes the recommendation in {100 * sum(alone) / len(alone):.0f}% of them")
    if args.csv != "-":
        extra = [dict(bench="recommendation", n=metrics["sessions"], impl="BERT4Rec", metric=m, value=v)
                 for m, v in (("hr@10", metrics["hr"]), ("ndcg@10", metrics["ndcg"]), ("popularity hr@10", pop_hr))]
        print(f"\nappended rows to {H.append_csv(extra + csv_rows + short_csv, args.csv, info)}")


if __name__ == "__main__":
    main()
