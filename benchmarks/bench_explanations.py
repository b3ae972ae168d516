"""How small and how frequent are CLEANN's explanations, and how many forward passes do they cost?

MiniLM zero-shot sentiment (all-MiniLM-L6-v2, the label whose description "This review is
{label}." is closest to the text) on the fixed review-like sentences of
benchmarks/data/sentences.jsonl. The target is [CLS] (position 0); the candidate tokens are the
non-special ones; removing a token replaces it by [PAD]. Every method judges its candidate sets
with its own fresh ZeroShotTester (the explainer's tester: same removal, same prediction, sets
sent in batches of ``--batch-size``), which counts the distinct sets judged and the batched
forward passes, the first pass (the unmodified input) included.

- CLEANN: ``cleann.hf.Explainer`` over the last layer's heads, explanations of at most
  ``--max-size`` (K) tokens; size = the smallest found over all heads.
- attention ranking: tokens ordered by the last layer's attention from [CLS] to them (mean over
  the heads), removed cumulatively until the prediction flips.
- gradient x input: tokens ordered by gradient times input embedding (summed over the hidden
  size) of the predicted label's margin (its cosine minus the best other label's), largest support
  first, removed cumulatively until the prediction flips.
- exhaustive: on sentences of at most ``--exhaustive-tokens`` candidate tokens, all subsets by
  increasing size until one flips the prediction: the true minimal size.

The baselines are reported within the same budget of K tokens and without one. Their ranking
pass (attention capture, gradient) and CLEANN's attention pass are one extra forward pass each,
not in the tester's count. Before the tables, the differentiable margin is checked against the
tester (same prediction, same cosines), and no method may beat the exhaustive minimum.

Full run (from the repository root):

    python benchmarks/bench_explanations.py --max-size 3

Quick check:

    python benchmarks/bench_explanations.py --limit 20 --csv -
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

from cleann.hf import AttentionCapture, Explainer, ZeroShotTester, load  # noqa: E402

DATA = os.path.join(H.HERE, "data", "sentences.jsonl")
LABELS = ["positive", "negative"]
TEMPLATE = "This review is {label}."
METHODS = ("CLEANN", "attention ranking", "gradient x input", "exhaustive")


def read_sentences(path: str, limit: int | None) -> list[dict]:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


def first_hit(tester: ZeroShotTester, sets: list[list[int]]) -> int | None:
    """Index of the first set that flips the prediction, judging the sets in the tester's batches."""
    for start in range(0, len(sets), tester.batch_size):
        answers = tester.test_batch(sets[start:start + tester.batch_size])
        if any(answers):
            return start + answers.index(True)
    return None


def removal_size(tester: ZeroShotTester, order: list[int]) -> int | None:
    """Tokens of ``order`` removed cumulatively: how many until the prediction flips (None: never)."""
    hit = first_hit(tester, [order[:k] for k in range(1, len(order) + 1)])
    return None if hit is None else hit + 1


def exhaustive_size(tester: ZeroShotTester, positions: list[int]) -> int | None:
    """Size of the smallest subset of ``positions`` that flips the prediction (None: no subset does)."""
    for k in range(1, len(positions) + 1):
        if first_hit(tester, [list(s) for s in itertools.combinations(positions, k)]) is not None:
            return k
    return None


def attention_order(model, ids: torch.Tensor, positions: list[int]) -> list[int]:
    """Positions by decreasing last-layer attention from [CLS], averaged over the heads."""
    with torch.no_grad(), AttentionCapture(model, -1) as cap:
        model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None])
    row = cap.attention[0, :, 0, :].float().mean(0)
    return sorted(positions, key=lambda p: -float(row[p]))


def label_cosines(model, tester: ZeroShotTester, embeds: torch.Tensor) -> torch.Tensor:
    """The tester's zero-shot scores, differentiably: cosine of the mean-pooled output to each label."""
    mask = tester.attention_mask[None]
    hidden = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)[0] @ tester.label_embeddings.T


def gradient_order(model, tester: ZeroShotTester, positions: list[int]) -> tuple[list[int], list[float]]:
    """Positions by decreasing gradient x input of the predicted label's margin, and the cosines."""
    embeds = model.get_input_embeddings()(tester.input_ids[None]).detach().requires_grad_(True)
    with torch.enable_grad():
        cos = label_cosines(model, tester, embeds)
        pred = int(cos.argmax())
        margin = cos[pred] - torch.cat([cos[:pred], cos[pred + 1:]]).max()
        (grad,) = torch.autograd.grad(margin, embeds)
    contribution = (grad * embeds.detach()).sum(-1)[0]
    return sorted(positions, key=lambda p: -float(contribution[p])), cos.tolist()


def run_sentence(row: dict, model, tok, explainer: Explainer, args) -> dict:
    """All methods on one sentence: per method size, counts and seconds; plus the checks' values."""
    ids = tok(row["text"], return_tensors="pt")["input_ids"][0]
    special = set(tok.all_special_ids)
    positions = [p for p, i in enumerate(ids.tolist()) if i not in special]

    def tester():
        return ZeroShotTester(model, tok, ids, LABELS, TEMPLATE, protected=[0], batch_size=args.batch_size)

    out: dict = {"id": row["id"], "tokens": len(positions), "intended": row.get("sentiment")}

    def record(method, t0, size, t):
        out[method] = {"size": size, "candidates": t.candidates, "forward_passes": t.forward_passes,
                       "seconds": time.perf_counter() - t0}

    t0 = time.perf_counter()
    res = explainer.explain([row["text"]])[0]
    out["CLEANN"] = {"size": len(res.smallest[0]) if res.smallest else None,
                     "tokens": [res.tokens[p] for p in res.smallest[0]] if res.smallest else None,
                     "candidates": res.counts["candidates"], "forward_passes": res.counts["forward_passes"],
                     "seconds": time.perf_counter() - t0}
    out["prediction"] = res.prediction

    t0 = time.perf_counter()
    t = tester()
    record("attention ranking", t0, removal_size(t, attention_order(model, t.input_ids, positions)), t)
    out["tester prediction"] = LABELS[int(t.prediction)]

    t0 = time.perf_counter()
    t = tester()
    order, cos = gradient_order(model, t, positions)
    record("gradient x input", t0, removal_size(t, order), t)
    out["gradient prediction"] = LABELS[cos.index(max(cos))]
    out["cosine diff"] = max(abs(a - b) for a, b in zip(cos, t.scores()))

    if len(positions) <= args.exhaustive_tokens:
        t0 = time.perf_counter()
        t = tester()
        record("exhaustive", t0, exhaustive_size(t, positions), t)
    return out


def _pct(part: int, whole: int):
    return 100.0 * part / whole if whole else None


def _mean(xs):
    return statistics.fmean(xs) if xs else None


def _median(xs):
    return float(statistics.median(xs)) if xs else None


def summarize(results: list[dict], K: int, max_tokens: int) -> tuple[list, list, list]:
    """(rows of the all-sentences table, rows of the short-sentences table, CSV rows)."""
    all_rows, short_rows, csv_rows = [], [], []
    short = [r for r in results if "exhaustive" in r]
    for method in METHODS:
        rs = [r for r in results if method in r]
        if not rs:
            continue
        sizes = [r[method]["size"] for r in rs if r[method]["size"] is not None]
        within = [s for s in sizes if s <= K]
        budgeted = method == "CLEANN"
        cands = _mean([r[method]["candidates"] for r in rs])
        passes = _mean([r[method]["forward_passes"] for r in rs])
        seconds = _mean([r[method]["seconds"] for r in rs])
        if method != "exhaustive":
            all_rows.append([method, len(rs), _pct(len(within), len(rs)),
                             "-" if budgeted else _pct(len(sizes), len(rs)),
                             _mean(within), _median(within), "-" if budgeted else _mean(sizes),
                             cands, passes, seconds])
        # against the exhaustive minimum, on the short sentences where some subset flips the label
        ref = [r for r in short if r["exhaustive"]["size"] is not None]
        found = [(r[method]["size"], r["exhaustive"]["size"]) for r in ref if r[method]["size"] is not None]
        minimal = sum(s == m for s, m in found)
        reachable = [r for r in ref if r["exhaustive"]["size"] <= K]
        minimal_reachable = sum(r[method]["size"] == r["exhaustive"]["size"] for r in reachable)
        s_cands = _mean([r[method]["candidates"] for r in short])
        s_passes = _mean([r[method]["forward_passes"] for r in short])
        s_seconds = _mean([r[method]["seconds"] for r in short])
        s_within = sum(r[method]["size"] is not None and r[method]["size"] <= K for r in short)
        short_rows.append([method, len(short), _pct(s_within, len(short)), len(ref), _pct(len(found), len(ref)),
                           _pct(minimal, len(ref)), _pct(minimal_reachable, len(reachable)),
                           _mean([s - m for s, m in found]), s_cands, s_passes, s_seconds])
        metrics = {"success within K %": _pct(len(within), len(rs)),
                   "success any size %": None if budgeted else _pct(len(sizes), len(rs)),
                   "mean size within K": _mean(within), "mean candidates": cands, "mean forward passes": passes,
                   "seconds per sentence": seconds, f"minimal % (<= {max_tokens} tokens)": _pct(minimal, len(ref)),
                   f"mean size gap (<= {max_tokens} tokens)": _mean([s - m for s, m in found])}
        csv_rows += [{"bench": "explanations", "n": len(rs), "level": K, "impl": method, "metric": k, "value": v}
                     for k, v in metrics.items() if v is not None]
    return all_rows, short_rows, csv_rows


def by_label(results: list[dict], K: int) -> list:
    """Rows: per method, success within K among the sentences predicted with each label."""
    groups = {x: [r for r in results if r["prediction"] == x] for x in LABELS}
    return [[method] + [_pct(sum(r[method]["size"] is not None and r[method]["size"] <= K for r in rs), len(rs))
                        for rs in groups.values()] for method in METHODS[:3]]


def check(r: dict) -> None:
    """Every method saw the same prediction, and none beat the exhaustive minimum."""
    if not r["prediction"] == r["tester prediction"] == r["gradient prediction"]:
        raise RuntimeError(f"{r['id']}: predictions differ: explainer {r['prediction']}, tester "
                           f"{r['tester prediction']}, differentiable margin {r['gradient prediction']}")
    if "exhaustive" in r:
        best = r["exhaustive"]["size"]
        for method in METHODS[:3]:
            size = r[method]["size"]
            if size is not None and (best is None or size < best):
                raise RuntimeError(f"{r['id']}: {method} found a {size}-token explanation, exhaustive "
                                   f"search's minimum is {best}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--max-size", type=int, default=3, help="K: the largest explanation CLEANN tries")
    ap.add_argument("--exhaustive-tokens", type=int, default=12,
                    help="exhaustive search on sentences with at most this many candidate tokens")
    ap.add_argument("--heads", type=int, nargs="+", default=None, help="CLEANN's heads (default: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--records", default=None, help="write each sentence's results to this JSONL file")
    ap.add_argument("--csv", default=H.DEFAULT_CSV)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = H.print_machine_info()
    model, tok = load()
    explainer = Explainer(model, tok, task="zero-shot", labels=LABELS, template=TEMPLATE, heads=args.heads,
                          max_size=args.max_size, batch_size=args.batch_size)
    sentences = read_sentences(args.data, args.limit)
    print(f"{len(sentences)} sentences from {os.path.relpath(args.data)}; K = {args.max_size}; CLEANN heads: "
          f"{'all' if args.heads is None else args.heads}; {args.threads} thread(s)", flush=True)
    results = []
    for k, row in enumerate(sentences, 1):
        results.append(run_sentence(row, model, tok, explainer, args))
        check(results[-1])
        if k % 25 == 0 or k == len(sentences):
            print(f"{k}/{len(sentences)} sentences done", flush=True)
    if args.records:
        with open(args.records, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    K, T = args.max_size, args.exhaustive_tokens
    diff = max(r["cosine diff"] for r in results)
    print(f"\nchecks passed: explainer, tester and differentiable margin predict the same label on all "
          f"{len(results)} sentences (largest cosine difference {diff:.1e}); no method beat the exhaustive minimum")
    all_rows, short_rows, csv_rows = summarize(results, K, T)
    counts = {x: sum(r["prediction"] == x for r in results) for x in LABELS}
    labelled = [r for r in results if r["intended"] in LABELS]
    print("\npredicted: " + ", ".join(f"{n} {x}" for x, n in counts.items()) + "; the intended sentiment, where "
          f"{' or '.join(LABELS)}, matched on {sum(r['prediction'] == r['intended'] for r in labelled)} of "
          f"{len(labelled)}")
    print(f"\nAll sentences (K = {K}):\n")
    print(H.markdown_table(["method", "sentences", f"success <= {K} %", "success, any size %",
                            f"mean size (<= {K})", f"median size (<= {K})", "mean size (any)",
                            "candidates / sentence", "forward passes / sentence", "seconds / sentence"], all_rows))
    print(f"\nSentences of at most {T} candidate tokens, against exhaustive search:\n")
    print(H.markdown_table(["method", "sentences", f"success <= {K} %", "explainable", "found %", "minimal %",
                            f"minimal where min <= {K} %", "mean size gap", "candidates / sentence",
                            "forward passes / sentence", "seconds / sentence"], short_rows))
    print(f"\nSuccess within K = {K} by predicted label:\n")
    print(H.markdown_table(["method"] + [f"{x} ({n}) %" for x, n in counts.items()], by_label(results, K)))
    print("\nrun time per method:")
    for method in METHODS:
        total = sum(r[method]["seconds"] for r in results if method in r)
        print(f"  {method}: {total:.1f} s")
    if args.csv != "-":
        print(f"\nappended {len(csv_rows)} rows to {H.append_csv(csv_rows, args.csv, info)}")


if __name__ == "__main__":
    main()
