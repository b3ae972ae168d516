"""How small and how frequent are CLEANN's explanations, and how many model sequences do they cost?

MiniLM zero-shot sentiment (all-MiniLM-L6-v2, the label whose description "This review is
{label}." is closest to the text) on the fixed review-like sentences of
benchmarks/data/sentences.jsonl. The target is [CLS] (position 0); the candidate tokens are the
non-special ones; removing a token replaces it by [PAD]. Every method judges its candidate sets
with its own fresh ZeroShotTester per sentence (the explainer's tester: same removal, same
prediction, sets sent in passes of ``--batch-size``), which counts the distinct sets judged
("sequences": the cost) and the batched forward passes, the first pass (the unmodified input)
included.

- CLEANN exact: ``cleann.hf.Explainer(search="exact")`` over the last layer's 12 heads sharing one
  search, the paper's order and legality, explanations of at most ``--exact-size`` tokens.
- CLEANN guided: ``Explainer(search="guided")``, the default: the margin-driven beam search over
  the heads' PDS-tree pools, any size.
- CLEANN guided, N = 32: the same with ``num_samples`` = the head dimension instead of the hidden
  size (sparser graphs, smaller pools).
- guided, no graph: the same beam search over all candidate tokens (``cleann.explain_tokens``).
- attention ranking: tokens ordered by the last layer's attention from [CLS] to them (mean over
  the heads), removed cumulatively until the prediction flips.
- gradient x input: tokens ordered by gradient times input embedding (summed over the hidden
  size) of the predicted label's margin (its cosine minus the best other label's), largest support
  first, removed cumulatively until the prediction flips.
- exhaustive: on sentences of at most ``--exhaustive-tokens`` candidate tokens, all subsets by
  increasing size until one flips the prediction: the true minimal size.

The ranking pass of the baselines (attention capture, gradient) and CLEANN's attention pass are
one extra forward pass each, not in the tester's count. ERASER's comprehensiveness and
sufficiency of every method's explanation are measured afterwards with one fresh tester (two
sequences per set, not in any method's count). Before the tables, the differentiable
margin is checked against the tester (same prediction, same cosines), every method's explanation
is re-verified by a fresh tester, and no method may beat the exhaustive minimum.

Full run (from the repository root):

    python benchmarks/bench_explanations.py

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

import cleann  # noqa: E402
from cleann.hf import AttentionCapture, Explainer, ZeroShotTester, load  # noqa: E402

DATA = os.path.join(H.HERE, "data", "sentences.jsonl")
LABELS = ["positive", "negative"]
TEMPLATE = "This review is {label}."
CLEANN_METHODS = ("CLEANN exact", "CLEANN guided", "CLEANN guided, N = 32")
METHODS = CLEANN_METHODS + ("guided, no graph", "attention ranking", "gradient x input", "exhaustive")


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


def removal(tester: ZeroShotTester, order: list[int]) -> list[int] | None:
    """Tokens of ``order`` removed cumulatively: the shortest prefix that flips the prediction."""
    hit = first_hit(tester, [order[:k] for k in range(1, len(order) + 1)])
    return None if hit is None else order[:hit + 1]


def exhaustive(tester: ZeroShotTester, positions: list[int]) -> list[int] | None:
    """The first smallest subset of ``positions`` that flips the prediction (None: no subset does)."""
    for k in range(1, len(positions) + 1):
        sets = [list(s) for s in itertools.combinations(positions, k)]
        hit = first_hit(tester, sets)
        if hit is not None:
            return sets[hit]
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


def run_sentence(row: dict, model, tok, explainers: dict, args) -> dict:
    """All methods on one sentence: per method size, the set, counts and seconds; plus the checks'
    values."""
    ids = tok(row["text"], return_tensors="pt")["input_ids"][0]
    special = set(tok.all_special_ids)
    positions = [p for p, i in enumerate(ids.tolist()) if i not in special]

    def tester():
        return ZeroShotTester(model, tok, ids, LABELS, TEMPLATE, protected=[0], batch_size=args.batch_size)

    out: dict = {"id": row["id"], "tokens": len(positions), "intended": row.get("sentiment")}

    def record(method, t0, chosen, t, **extra):
        out[method] = dict({"size": None if chosen is None else len(chosen),
                            "set": None if chosen is None else sorted(int(p) for p in chosen),
                            "candidates": t.candidates, "forward_passes": t.forward_passes,
                            "seconds": time.perf_counter() - t0}, **extra)

    for method, explainer in explainers.items():
        t0 = time.perf_counter()
        res = explainer.explain([row["text"]])[0]
        pools = [set(g.nodes.tolist()) for g in (h.graph for h in res.heads)]
        union = set().union(*[set(cleann.explain(h.graph, 0, None).candidates) for h in res.heads])
        out[method] = {"size": len(res.smallest[0]) if res.smallest else None,
                       "set": list(res.smallest[0]) if res.smallest else None,
                       "candidates": res.counts["candidates"], "forward_passes": res.counts["forward_passes"],
                       "seconds": time.perf_counter() - t0, "minimal_proven": res.minimal_proven,
                       "status": res.status, "pool": len(union),
                       "edges": statistics.fmean(len(h.graph.edges()) for h in res.heads), "nodes": len(pools[0])}
        out.setdefault("prediction", res.prediction)

    t0 = time.perf_counter()
    t = tester()
    ex = cleann.explain_tokens(positions, 0, t, search="guided")
    record("guided, no graph", t0, ex.sets[0] if ex.sets else None, t, minimal_proven=ex.minimal_proven,
           status=ex.status)

    t0 = time.perf_counter()
    t = tester()
    record("attention ranking", t0, removal(t, attention_order(model, t.input_ids, positions)), t)
    out["tester prediction"] = LABELS[int(t.prediction)]

    t0 = time.perf_counter()
    t = tester()
    order, cos = gradient_order(model, t, positions)
    record("gradient x input", t0, removal(t, order), t)
    out["gradient prediction"] = LABELS[cos.index(max(cos))]
    out["cosine diff"] = max(abs(a - b) for a, b in zip(cos, t.scores()))

    if len(positions) <= args.exhaustive_tokens:
        t0 = time.perf_counter()
        t = tester()
        record("exhaustive", t0, exhaustive(t, positions), t)
    verify(out, tester(), positions)
    return out


def verify(out: dict, t: ZeroShotTester, positions: list[int]) -> None:
    """Every method's explanation flips the prediction of a fresh tester; with that tester, each
    explanation's ERASER comprehensiveness and sufficiency (the predicted label's cosine, the
    sufficiency input keeping [CLS], [SEP] and the set), outside the methods' counts."""
    sets = [(m, out[m]["set"]) for m in METHODS if m in out and out[m]["set"] is not None]
    for (m, s), ok in zip(sets, t.test_batch([s for _, s in sets])):
        if not ok:
            raise RuntimeError(f"{out['id']}: {m}'s explanation {s} does not flip the prediction")
    t.keep_always = frozenset(range(t.input_ids.numel())) - set(positions) - t.protected
    for m, s in sets:
        out[m]["comprehensiveness"], out[m]["sufficiency"] = t.faithfulness(s)


def _pct(part: int, whole: int):
    return 100.0 * part / whole if whole else None


def _mean(xs):
    return statistics.fmean(xs) if xs else None


def _median(xs):
    return float(statistics.median(xs)) if xs else None


def faithfulness_rows(results: list[dict]) -> tuple[list, list]:
    """Per method, over the sentences it explained: size, comprehensiveness and sufficiency (means
    and medians), and sequences; and over the sentences every method but exhaustive explained,
    the same three means (like against like)."""
    rows, common_rows = [], []
    methods = [m for m in METHODS if m != "exhaustive"]
    common = [r for r in results if all(m in r and r[m]["set"] is not None for m in methods)]
    for method in methods:
        got = [r[method] for r in results if method in r and r[method]["set"] is not None]
        comp = [x["comprehensiveness"] for x in got]
        suff = [x["sufficiency"] for x in got]
        rows.append([method, len(got), _mean([x["size"] for x in got]), _mean(comp), _median(comp), _mean(suff),
                     _median(suff), _median([x["candidates"] for x in got])])
        mine = [r[method] for r in common]
        common_rows.append([method, len(common), _mean([x["size"] for x in mine]),
                            _mean([x["comprehensiveness"] for x in mine]), _mean([x["sufficiency"] for x in mine])])
    return rows, common_rows


def summarize(results: list[dict], max_tokens: int) -> tuple[list, list, list, list]:
    """(rows of the all-sentences table, of the short-sentences table, of the graph table, CSV rows)."""
    all_rows, short_rows, graph_rows, csv_rows = [], [], [], []
    short = [r for r in results if "exhaustive" in r]
    ref = [r for r in short if r["exhaustive"]["size"] is not None]
    anyone = [r for r in results if any(m in r and r[m]["size"] is not None and r[m]["size"] <= 10
                                        for m in METHODS)]
    for method in METHODS:
        rs = [r for r in results if method in r]
        if not rs:
            continue
        sizes = [r[method]["size"] for r in rs if r[method]["size"] is not None]
        cands = [r[method]["candidates"] for r in rs]
        within = {k: _pct(sum(s <= k for s in sizes), len(rs)) for k in (3, 10)}
        covered = _pct(sum(r[method]["size"] is not None and r[method]["size"] <= 10 for r in anyone if method in r),
                       sum(method in r for r in anyone))
        proven = [r[method].get("minimal_proven") for r in rs if r[method]["size"] is not None]
        proven = _pct(sum(bool(p) for p in proven), len(proven)) if method in CLEANN_METHODS + \
            ("guided, no graph",) else None
        passes = _mean([r[method]["forward_passes"] for r in rs])
        seconds = _mean([r[method]["seconds"] for r in rs])
        if method != "exhaustive":
            all_rows.append([method, len(rs), within[3], within[10], _pct(len(sizes), len(rs)), covered,
                             _mean(sizes), _median(sizes), "-" if proven is None else proven, _mean(cands),
                             _median(cands), passes, seconds])
        found = [(r[method]["size"], r["exhaustive"]["size"]) for r in ref if r[method]["size"] is not None]
        minimal = sum(s == m for s, m in found)
        s_cands = [r[method]["candidates"] for r in short]
        short_rows.append([method, len(short), len(ref), _pct(len(found), len(ref)), _pct(minimal, len(ref)),
                           _pct(minimal, len(found)), _mean([s - m for s, m in found]), _mean(s_cands),
                           _median(s_cands), _mean([r[method]["forward_passes"] for r in short]),
                           _mean([r[method]["seconds"] for r in short])])
        if method in CLEANN_METHODS:
            graph_rows.append([method, _mean([r[method]["edges"] for r in rs]),
                               _mean([r[method]["pool"] for r in rs]), _mean([r[method]["nodes"] for r in rs]),
                               within[10], _mean(sizes), _median(cands)])
        metrics = {"explained within 3 %": within[3], "explained within 10 %": within[10],
                   "explained any size %": _pct(len(sizes), len(rs)),
                   "explained of those any method explains within 10 %": covered,
                   "mean size": _mean(sizes), "median size": _median(sizes), "mean sequences": _mean(cands),
                   "median sequences": _median(cands), "mean forward passes": passes,
                   "seconds per sentence": seconds, f"minimal % (<= {max_tokens} tokens)": _pct(minimal, len(ref)),
                   f"mean size gap (<= {max_tokens} tokens)": _mean([s - m for s, m in found]),
                   "mean comprehensiveness": _mean([r[method]["comprehensiveness"] for r in rs
                                                    if r[method]["set"] is not None]),
                   "mean sufficiency": _mean([r[method]["sufficiency"] for r in rs if r[method]["set"] is not None])}
        csv_rows += [{"bench": "explanations", "n": len(rs), "level": 10, "impl": method, "metric": k, "value": v}
                     for k, v in metrics.items() if v is not None]
    return all_rows, short_rows, graph_rows, csv_rows


def by_label(results: list[dict]) -> list:
    """Rows: per method, explained within 10 tokens among the sentences predicted with each label."""
    groups = {x: [r for r in results if r["prediction"] == x] for x in LABELS}
    return [[method] + [_pct(sum(r[method]["size"] is not None and r[method]["size"] <= 10 for r in rs), len(rs))
                        for rs in groups.values()] for method in METHODS[:-1]]


def check(r: dict) -> None:
    """Every method saw the same prediction, and none beat the exhaustive minimum."""
    if not r["prediction"] == r["tester prediction"] == r["gradient prediction"]:
        raise RuntimeError(f"{r['id']}: predictions differ: explainer {r['prediction']}, tester "
                           f"{r['tester prediction']}, differentiable margin {r['gradient prediction']}")
    if "exhaustive" in r:
        best = r["exhaustive"]["size"]
        for method in METHODS[:-1]:
            size = r[method]["size"]
            if size is not None and (best is None or size < best):
                raise RuntimeError(f"{r['id']}: {method} found a {size}-token explanation, exhaustive "
                                   f"search's minimum is {best}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--exact-size", type=int, default=3, help="the largest explanation exact CLEANN tries")
    ap.add_argument("--exhaustive-tokens", type=int, default=12,
                    help="exhaustive search on sentences with at most this many candidate tokens")
    ap.add_argument("--heads", type=int, nargs="+", default=None, help="CLEANN's heads (default: all)")
    ap.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--records", default=None, help="write each sentence's results to this JSONL file")
    ap.add_argument("--csv", default=H.DEFAULT_CSV)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = H.print_machine_info()
    model, tok = load()
    common = dict(task="zero-shot", labels=LABELS, template=TEMPLATE, heads=args.heads, batch_size=args.batch_size,
                  faithfulness=False)  # measured below for every method alike, outside their counts
    explainers = {"CLEANN exact": Explainer(model, tok, search="exact", max_size=args.exact_size, **common),
                  "CLEANN guided": Explainer(model, tok, search="guided", **common),
                  "CLEANN guided, N = 32": Explainer(model, tok, search="guided", num_samples=32, **common)}
    sentences = read_sentences(args.data, args.limit)
    print(f"{len(sentences)} sentences from {os.path.relpath(args.data)}; exact CLEANN up to {args.exact_size} "
          f"tokens; CLEANN heads: {'all' if args.heads is None else args.heads}; {args.threads} thread(s)", flush=True)
    results = []
    for k, row in enumerate(sentences, 1):
        results.append(run_sentence(row, model, tok, explainers, args))
        check(results[-1])
        if k % 25 == 0 or k == len(sentences):
            print(f"{k}/{len(sentences)} sentences done", flush=True)
    if args.records:
        with open(args.records, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    T = args.exhaustive_tokens
    diff = max(r["cosine diff"] for r in results)
    print(f"\nchecks passed: explainer, tester and differentiable margin predict the same label on all "
          f"{len(results)} sentences (largest cosine difference {diff:.1e}); every explanation re-verified; no "
          "method beat the exhaustive minimum")
    all_rows, short_rows, graph_rows, csv_rows = summarize(results, T)
    counts = {x: sum(r["prediction"] == x for r in results) for x in LABELS}
    labelled = [r for r in results if r["intended"] in LABELS]
    print("\npredicted: " + ", ".join(f"{n} {x}" for x, n in counts.items()) + "; the intended sentiment, where "
          f"{' or '.join(LABELS)}, matched on {sum(r['prediction'] == r['intended'] for r in labelled)} of "
          f"{len(labelled)}")
    print("\nAll sentences (sizes of the explained ones; sequences = distinct sets sent to the model):\n")
    print(H.markdown_table(["method", "sentences", "explained <= 3 %", "explained <= 10 %", "explained, any size %",
                            "of those any method explains <= 10 %", "mean size", "median size",
                            "minimal proven %", "sequences / sentence", "median sequences", "passes / sentence",
                            "seconds / sentence"], all_rows))
    print(f"\nSentences of at most {T} candidate tokens, against exhaustive search (minimal %: size equal to the "
          "exhaustive minimum, of the explainable sentences and of those the method explained):\n")
    print(H.markdown_table(["method", "sentences", "explainable", "found %", "minimal %", "minimal, of found %",
                            "mean size gap", "sequences / sentence", "median sequences", "passes / sentence",
                            "seconds / sentence"], short_rows))
    print("\nThe graphs: mean PAG edges per head, the candidate pool (the union of the heads' PDS-tree nodes, "
          "target excluded) and nodes per graph:\n")
    print(H.markdown_table(["method", "edges / graph", "pool tokens", "graph nodes", "explained <= 10 %",
                            "mean size", "median sequences"], graph_rows))
    faith, faith_common = faithfulness_rows(results)
    print("\nFaithfulness (ERASER, DeYoung et al. 2020) of each method's explanation, on the sentences it explained: "
          "comprehensiveness = cos(text, label) - cos(text without the set, label), higher is better; sufficiency = "
          "cos(text, label) - cos(only the set, label), lower is better; label = the predicted one:\n")
    print(H.markdown_table(["method", "explained", "mean size", "comprehensiveness mean", "comprehensiveness median",
                            "sufficiency mean", "sufficiency median", "median sequences"], faith))
    print(f"\nThe same on the {faith_common[0][1] if faith_common else 0} sentences every method explained:\n")
    print(H.markdown_table(["method", "sentences", "mean size", "comprehensiveness mean", "sufficiency mean"],
                           faith_common))
    print("\nExplained within 10 tokens by predicted label:\n")
    print(H.markdown_table(["method"] + [f"{x} ({n}) %" for x, n in counts.items()], by_label(results)))
    print("\nrun time per method:")
    for method in METHODS:
        total = sum(r[method]["seconds"] for r in results if method in r)
        print(f"  {method}: {total:.1f} s")
    if args.csv != "-":
        print(f"\nappended {len(csv_rows)} rows to {H.append_csv(csv_rows, args.csv, info)}")


if __name__ == "__main__":
    main()
