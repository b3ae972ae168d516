"""Command line: ``cleann explain TEXT`` explains a model's output on one text.

Usage errors print one line and exit with code 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


from .batch import DEFAULT_BUDGET
from .errors import CleannError

class UsageError(CleannError):
    pass


def _explainer_options(p: argparse.ArgumentParser) -> None:
    """The model and explanation options that `explain` and `batch` share."""
    p.add_argument("--model", default=None, help="local model folder (default: all-MiniLM-L6-v2, offline)")
    p.add_argument("--task", default="zero-shot",
                   choices=["zero-shot", "sequence-classification", "masked-token", "next-token"])
    p.add_argument("--labels", nargs="+", default=None, help="zero-shot labels (default: positive negative)")
    p.add_argument("--template", default="This review is {label}.", help="how a zero-shot label is described")
    p.add_argument("--heads", nargs="+", type=int, default=None, help="heads to explain (default: all)")
    p.add_argument("--search", default="guided", choices=["guided", "exact"],
                   help="guided: a beam search driven by the model's margins (default); exact: the paper's search "
                        "by size and tree distance, minimality proven")
    p.add_argument("--budget", default=str(DEFAULT_BUDGET), type=_budget,
                   help=f"most model sequences (candidate sets) judged per text, or 'none' (default {DEFAULT_BUDGET})")
    p.add_argument("--max-size", type=int, default=None,
                   help="largest explanation tried (default: every candidate token)")
    p.add_argument("--method", default="icd", choices=["icd", "fci"])
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--label", default=None,
                   help="explain this label (a zero-shot label, a classifier's label, or a token) instead of the "
                        "prediction")
    p.add_argument("--goal", default="auto", choices=["auto", "lose", "win"],
                   help="with --label: lose (the label is the prediction: sets whose removal makes it lose), win "
                        "(another label: sets whose removal makes it win); auto (default) picks the one that fits")
    p.add_argument("--layer", type=int, default=-1, help="attention layer whose heads give the graphs (default -1, "
                                                           "the last)")
    p.add_argument("--replacement", default="pad",
                   help="what replaces a removed token: pad (default), mask, unk, or a token of the vocabulary")
    p.add_argument("--allow-new-head", action="store_true",
                   help="use a checkpoint that lacks the task's head (it gets random weights: predictions change "
                        "from run to run)")


def _budget(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of model sequences or 'none', got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of model sequences or 'none', got {value}")
    return value


def _check_explainer_options(args) -> None:
    if args.labels is not None and len(args.labels) < 2:
        raise UsageError(f"zero-shot classification needs at least two labels, got {args.labels}")
    if args.max_size is not None and args.max_size < 1:
        raise UsageError("--max-size must be at least 1")
    if not 0 < args.alpha < 1:
        raise UsageError("--alpha must be in (0, 1)")
    if args.goal == "win" and args.label is None:
        raise UsageError("--goal win needs --label: the label that should win")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cleann", description="Causal explanations from self-attention (ABCD, CLEANN)")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("explain", help="explain the model's output on one text")
    e.add_argument("text", help="the text to explain")
    _explainer_options(e)
    e.add_argument("--target", type=int, default=None, help="token position to explain (default: per task)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--out", default=None, help="write an HTML report with the graph")
    from .batch import DEFAULT_ROWS_PER_PART

    b = sub.add_parser("batch", help="explain every text of a JSONL, CSV or Parquet file into a folder (resumable)")
    b.add_argument("input", help="JSONL (.jsonl, .jsonl.gz), CSV (.csv, .csv.gz) or Parquet file with an id and a "
                                 "text column; - reads standard input (JSONL unless --input-format says otherwise)")
    b.add_argument("--out", required=True, help="output folder, a Parquet dataset (rerun the same command to resume)")
    _explainer_options(b)
    for action in b._actions:
        if action.dest == "task":
            action.choices = [*action.choices, "recommendation"]
    r = b.add_argument_group("recommendation (--task recommendation: sessions of item ids, a BertForMaskedLM "
                             "over the items)")
    r.add_argument("--mask-item", type=int, default=None, help="the model's [MASK] item id (required)")
    r.add_argument("--pad-item", type=int, default=0, help="the model's padding item id (default 0)")
    r.add_argument("--removal", default="replace", choices=["replace", "drop"],
                   help="replace: a removed item becomes the padding item (default); drop: it is deleted")
    r.add_argument("--top-k", type=int, default=10,
                   help="the original ranking the replacement recommendation is ranked in (default 10)")
    r.add_argument("--items-column", default="items",
                   help="the input column of the sessions: a list of item ids (JSONL, Parquet), item ids "
                        "separated by spaces (CSV) (default items)")
    b.add_argument("--batch-size", type=int, default=32,
                   help="texts per attention pass; their candidate sets share the counterfactual passes (default 32)")
    b.add_argument("--rows-per-part", type=int, default=DEFAULT_ROWS_PER_PART,
                   help=f"records per part file (default {DEFAULT_ROWS_PER_PART:,}); rows not yet in a complete "
                        "part are explained again after a kill")
    b.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="output format")
    b.add_argument("--input-format", default=None, choices=["jsonl", "csv", "parquet"],
                   help="what the input is (default: from its name; standard input: jsonl)")
    b.add_argument("--id-column", default="id")
    b.add_argument("--text-column", default="text")
    b.add_argument("--keep-columns", nargs="+", default=[], metavar="COL",
                   help="input columns copied into every record, with their types")
    b.add_argument("--no-graphs", action="store_true",
                   help="leave the PAGs (the heads column, most of the bytes) out of the records")
    b.add_argument("--limit", type=int, default=None, help="consider only the first N rows of the input")
    b.add_argument("--shard", default=None, metavar="I/N",
                   help="only the rows whose 0-based index modulo N is I (e.g. 0/4), for one of N jobs in N folders")
    b.add_argument("--max-error-rate", type=float, default=0.0, metavar="R",
                   help="exit with code 1 when more than this fraction of the rows attempted failed (default 0)")
    b.add_argument("--dry-run", action="store_true",
                   help="read and tokenize the input, print the rows to do, token lengths (recommendation: items "
                        "per session) and the worst-case cost, write nothing")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--overlap", default="auto", choices=["auto", "on", "off"],
                   help="local engine: learn one batch's graphs on a worker thread while the next batch runs "
                        "its forward pass (auto: when the model is on a GPU)")
    b.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local (this process) or ray (Ray Data, an actor per GPU or CPU slot)")
    b.add_argument("--workers", type=int, default=None,
                   help="ray: number of actors (default: one per GPU with --device cuda, else one per CPU)")
    b.add_argument("--ray-address", default=None,
                   help="ray: an existing cluster, e.g. auto or ray://head:10001 (default: $RAY_ADDRESS, "
                        "else a local Ray)")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _marked(tokens, target, sets) -> str:
    chosen = {p for s in sets for p in s}
    words = []
    for p, t in enumerate(tokens):
        words.append(f"[{t}]*" if p == target else f"[{t}]" if p in chosen else t)
    return " ".join(words)


def _explain(args) -> int:
    if not args.text.strip():
        raise UsageError("the text is empty")
    _check_explainer_options(args)
    from .hf import Explainer, load
    from .hf.capture import CaptureError
    from .hf.explainer import ModelLoadError

    try:
        model, tokenizer = load(args.model, args.task, allow_new_head=args.allow_new_head)
    except (FileNotFoundError, ModelLoadError) as exc:
        raise UsageError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a {args.task} model from {args.model!r}: {exc}") from None
    try:
        explainer = Explainer(model, tokenizer, task=args.task, labels=args.labels, template=args.template,
                              heads=args.heads, method=args.method, alpha=args.alpha, max_size=args.max_size,
                              search=args.search, budget=args.budget, label=args.label, goal=args.goal,
                              layer=args.layer, replacement=args.replacement)
    except ValueError as exc:
        raise UsageError(_option_message(exc)) from None
    try:
        res = explainer.explain(args.text, target=args.target)
    except CaptureError as exc:
        raise UsageError(f"cannot capture this model's attention: {exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if res.truncated:
        print(f"warning: the text is longer than the model's {explainer.max_length} tokens; "
              "explained its first part", file=sys.stderr)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        scores = ", ".join(f"{x['label']} {x['score']:.4g}" for x in res.scores)
        print(f"prediction: {res.prediction} (margin {res.margin:.4g}; {res.score_kind}: {scores})")
        if res.low_margin:
            print("warning: a near tie: the best two scores are closer than the low-margin threshold, so removing "
                  "almost any token may flip the prediction", file=sys.stderr)
        if res.label != res.prediction or args.label is not None:
            print(f"explaining: {res.label} ({'make it lose its lead' if res.goal == 'lose' else 'make it win'})")
        print(f"target: {res.tokens[res.target]} (position {res.target})")
        if res.smallest:
            proof = "proven minimal: every smaller set was judged" if res.minimal_proven else \
                f"not proven minimal ({res.search} search)"
            print(f"explanations (size {len(res.smallest[0])}, {proof}):")
            for s, m in zip(res.smallest, res.margins):
                print("  " + ", ".join(f"{res.tokens[p]} ({p})" for p in s) + ("" if m is None else f"  margin {m:.4g}"))
            print("text: " + _marked(res.tokens, res.target, res.smallest))
            ranked = sorted((p for p, v in enumerate(res.token_scores) if v > 0), key=lambda p: -res.token_scores[p])
            print("token scores (share of the smallest sets holding the token): "
                  + ", ".join(f"{res.tokens[p]} ({p}) {res.token_scores[p]:.2f}" for p in ranked[:10]))
            if res.comprehensiveness is not None:
                print(f"faithfulness of the first: comprehensiveness {res.comprehensiveness:.4g}, sufficiency "
                      f"{res.sufficiency:.4g} ({res.score_kind} of {res.label})")
        else:
            why = (f"the budget of {res.budget} model sequences ran out first" if res.status == "budget" else
                   f"the {res.search} search ended without one")
            print(f"no explanation{'' if args.max_size is None else f' of at most {args.max_size} tokens'} "
                  f"changes the prediction: {why}")
            if res.best is not None:
                print("closest set judged (not an explanation): "
                      + ", ".join(f"{res.tokens[p]} ({p})" for p in res.best) + f"  margin {res.best_margin:.4g}")
        head = next((h for h in res.heads if h.sets and len(h.sets[0]) == len(res.smallest[0])), res.heads[0]) \
            if res.smallest else res.heads[0]
        g = head.graph
        pos_of = {int(t): k for k, t in enumerate(g.nodes.tolist())}
        shown = {res.target} | {p for s in (head.sets or []) for p in s}
        labels = [f"{t}({p})" for p, t in enumerate(res.tokens)]
        g.labels = [labels[t] for t in g.nodes.tolist()]
        lines = [g.edge_string(pos_of[a], pos_of[b]) for a in sorted(shown) for b in g.nodes.tolist()
                 if a in pos_of and b != a and g.adjacency[pos_of[a], pos_of[b]] and (b not in shown or a < b)]
        print(f"graph (head {head.head}): {g.num_nodes} nodes, {len(g.edges())} edges; around the target "
              "and the explanation:")
        for line in lines[:25]:
            print("  " + line)
        if len(lines) > 25:
            print(f"  ... {len(lines) - 25} more")
        c = res.counts
        t = res.seconds
        print(f"cost: {c['candidates']} model sequences in {c['forward_passes']} forward passes "
              f"({t['testing']:.2f} s); discovery {c['ci_tests']} CI tests ({t['discovery']:.2f} s)")
    if args.out:
        _write_report(args.out, res)
    return 0


def _option_message(exc: ValueError) -> str:
    """An explainer's argument error in the CLI's words (--label for label=, and so on)."""
    text = str(exc)
    for word, flag in (("label ", "--label "), ("replacement", "--replacement"), ("layer ", "--layer ")):
        if text.startswith(word):
            return flag + text[len(word):]
    return text


def _write_report(path, res) -> None:
    from .render import explanation_html

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(explanation_html(res))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None


def _batch(args) -> int:
    from .batch import DEFAULT_TEMPLATE, RECOMMENDATION, BatchError, check_options, dry_run, explainer_spec, \
        parse_shard, run

    _check_explainer_options(args)
    recommend = args.task == RECOMMENDATION
    if recommend:
        text_only = [flag for flag, v, default in (
            ("--labels", args.labels, None), ("--template", args.template, DEFAULT_TEMPLATE),
            ("--label", args.label, None), ("--goal", args.goal, "auto"), ("--replacement", args.replacement, "pad"),
            ("--text-column", args.text_column, "text"), ("--allow-new-head", args.allow_new_head, False))
            if v != default]
        if text_only:
            hint = " (name the sessions' column with --items-column)" if text_only[0] == "--text-column" else ""
            raise UsageError(f"{text_only[0]} is an option of the text tasks, not of --task recommendation{hint}")
    else:
        rec_only = [flag for flag, v, default in (
            ("--mask-item", args.mask_item, None), ("--pad-item", args.pad_item, 0),
            ("--removal", args.removal, "replace"), ("--top-k", args.top_k, 10),
            ("--items-column", args.items_column, "items")) if v != default]
        if rec_only:
            raise UsageError(f"{rec_only[0]} is an option of --task recommendation, not of --task {args.task}")
        from .hf.testers import check_template

        try:
            check_template(args.template)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        if recommend:
            spec = explainer_spec(args.model, args.task, heads=args.heads, max_size=args.max_size,
                                  method=args.method, alpha=args.alpha, device=args.device, search=args.search,
                                  budget=args.budget, layer=args.layer, mask_item=args.mask_item,
                                  pad_item=args.pad_item, removal=args.removal, top_k=args.top_k)
        else:
            spec = explainer_spec(args.model, args.task, args.labels, args.template, args.heads, args.max_size,
                                  args.method, args.alpha, args.device, search=args.search, budget=args.budget,
                                  label=args.label, goal=args.goal, layer=args.layer, replacement=args.replacement)
    except BatchError as exc:
        raise UsageError(str(exc)) from None
    if not recommend:
        spec["allow_new_head"] = args.allow_new_head
    text_col = args.items_column if recommend else args.text_column
    overlap = {"auto": "auto", "on": True, "off": False}[args.overlap]
    try:
        shard = None if args.shard is None else parse_shard(args.shard)
        check_options(args.batch_size, args.format, args.engine, overlap, args.workers, args.rows_per_part, args.limit,
                      shard, args.max_error_rate, args.keep_columns, args.task)
        if args.dry_run:
            for line in dry_run(args.input, args.out, spec=spec, id_col=args.id_column, text_col=text_col,
                                keep_columns=args.keep_columns, limit=args.limit, shard=shard,
                                input_format=args.input_format):
                print(line)
            return 0
        summary = run(args.input, args.out, spec=spec, batch_size=args.batch_size, fmt=args.format,
                      id_col=args.id_column, text_col=text_col, progress=not args.quiet, overlap=overlap,
                      engine=args.engine, workers=args.workers, ray_address=args.ray_address,
                      rows_per_part=args.rows_per_part, keep_columns=args.keep_columns, graphs=not args.no_graphs,
                      limit=args.limit, shard=shard, input_format=args.input_format,
                      max_error_rate=args.max_error_rate)
    except BatchError as exc:
        raise UsageError(_option_message(exc)) from None
    for w in summary.warnings():
        print(f"cleann: warning: {w}", file=sys.stderr)
    print(summary.line())
    if summary.done:
        t = summary.stage_seconds
        total = sum(t.values()) or 1.0
        print("time per text: " + ", ".join(f"{k} {v / summary.done:.3f} s ({100 * v / total:.0f}%)"
                                            for k, v in t.items()))
    failure = summary.failure(args.max_error_rate)
    if failure:
        print(f"cleann: {failure}", file=sys.stderr)
        return 1
    return 0


def _quiet_loading() -> None:
    """No weight-loading progress bar from transformers before our own output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    warnings.simplefilter("ignore")
    _quiet_loading()
    try:
        if args.command == "explain":
            return _explain(args)
        if args.command == "batch":
            return _batch(args)
    except UsageError as exc:
        print(f"cleann: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncleann: interrupted" + ("; every complete part is kept: rerun the same command to go on"
                                         if args.command == "batch" else ""), file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
