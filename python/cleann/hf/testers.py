"""Explanation testers: does replacing a set of tokens change the model's output at the target?

Each tester holds one tokenized input and the model's prediction on it, and answers lists of
candidate token sets with batched forward passes: ``score_batch`` gives each set's *margin*, the
score of the predicted label (or token) minus the best other one's after the set's tokens are
replaced; the prediction is kept while the margin is > 0, and the set explains the target when it
is <= 0 (``test_batch``). Margins are cached per set, so the heads of one text share them, and the
testers count the distinct sets they sent to the model (``candidates``) and the forward passes
their sets took part in (``forward_passes``).

A tester may explain a chosen ``label`` instead of the prediction (a label index, or a token id
for the token tasks), with a ``goal``: "lose" (the label is the prediction; a set explains when
removing it makes the label lose its lead) or "win" (another label; a set explains when removing
it makes that label win). The margin is then the label's score minus the best other's ("lose") or
the best other's minus the label's ("win"); "auto" picks "lose" for the prediction, else "win".

``score_many`` answers the sets of many testers (many texts) with one model in shared, full
forward passes: their inputs are padded to the longest in a pass, so each pass holds up to
``batch_size`` sequences however few sets one text needs.
"""

from __future__ import annotations

import numbers
import time
from abc import ABC, abstractmethod
from typing import Sequence

import torch

from ..errors import ArgumentError

# The most output scores one pass may materialise (rows x positions x width), so that testers
# whose head is a vocabulary (masked-token, next-token) split large passes: 2^27 floats = 512 MiB.
_MAX_OUTPUT_FLOATS = 1 << 27
# A pass of at least _SPLIT_ROWS sequences ends where the next text's sequences are shorter than
# _SPLIT_LENGTH times its longest: padding short sequences to a long one costs more than a pass.
_SPLIT_ROWS = 16
_SPLIT_LENGTH = 0.8
GOALS = ("auto", "lose", "win")
#: how many of the best scores a result keeps for the token tasks (their scores are a vocabulary)
TOP_SCORES = 5


def _position(t, n: int) -> int:
    """A token position: a Python or NumPy integer (not a bool, not a float) inside the input."""
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise ArgumentError(f"token positions must be integers, got {t!r} ({type(t).__name__})")
    t = int(t)
    if not 0 <= t < n:
        raise ArgumentError(f"token position {t} is outside the input (length {n})")
    return t


class _Tester(ABC):
    """Shared machinery: the input, token replacement, margins, batched passes and counts."""

    #: how many scores the head gives per position (a vocabulary for token predictions)
    output_width: int = 1
    #: what ``scores`` reports: "probability" (softmax of the logits) or "cosine"
    score_kind: str = "probability"

    def __init__(self, model, input_ids, attention_mask=None, replacement_id: int | None = None,
                 batch_size: int = 32, protected: Sequence[int] = (), lazy: bool = False,
                 label: int | None = None, goal: str = "auto"):
        ids = torch.as_tensor(input_ids)
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ArgumentError(f"a tester holds one input, got a batch of {ids.shape[0]}")
            ids = ids[0]
        if ids.dim() != 1 or ids.numel() == 0:
            raise ArgumentError(f"input_ids must be one non-empty sequence, got shape {list(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ArgumentError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
        vocab = getattr(model.config, "vocab_size", None)
        if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            bad = int(ids[(ids < 0) | (ids >= vocab)][0])
            raise ArgumentError(f"input_ids holds token id {bad}, outside the model's vocabulary [0, {vocab})")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.input_ids = ids.to(self.device)
        mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).reshape(-1)
        if mask.numel() != ids.numel():
            raise ArgumentError(f"attention_mask has {mask.numel()} entries for {ids.numel()} tokens")
        self.attention_mask = mask.to(self.device)
        if replacement_id is None:
            replacement_id = getattr(model.config, "pad_token_id", None)
            if replacement_id is None:
                raise ArgumentError("the model has no pad token: give replacement_id")
        self.replacement_id = int(replacement_id)
        self.batch_size = int(batch_size)
        self.protected = {_position(p, ids.numel()) for p in protected}
        if goal not in GOALS:
            raise ArgumentError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
        if label is not None and (isinstance(label, bool) or not isinstance(label, numbers.Integral) or label < 0):
            raise ArgumentError(f"label must be a label index (or token id) >= 0, got {label!r}")
        if label is None and goal == "win":
            raise ArgumentError("goal 'win' needs a label (the one that should win)")
        self.label = None if label is None else int(label)
        self.goal = goal
        #: positions sufficiency keeps besides the set and the protected ones (e.g. special tokens)
        self.keep_always: frozenset = frozenset()
        self.extra_sequences = 0  # faithfulness sequences (not candidates)
        self.name_of = str  # how messages name a label index (the explainer gives label names)
        self.forward_passes = 0
        self.candidates = 0  # distinct sets sent to the model (the unmodified input not included)
        self._margins: dict[frozenset, float] = {}
        self._label_scores: dict[frozenset, float] = {}  # the explained label's score (score_kind) per set
        self._prediction: int | None = None
        self._explained: int | None = None  # the label whose lead the margins measure
        self._goal: str | None = None  # "lose" or "win", once resolved against the prediction
        self.base_scores: list[float] | None = None  # the unmodified input's scores (labels or tokens)
        self.top_scores: list[tuple[int, float]] = []  # the best TOP_SCORES (index, score) in score_kind
        if not lazy:
            score_many([(self, [])], self.batch_size)

    # -- what a subclass defines ------------------------------------------------------------------

    def _base_ids(self) -> torch.Tensor:
        return self.input_ids

    @abstractmethod
    def _scores(self, outputs, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per row of the pass that belongs to this tester (``rows``; ``mask`` their attention
        masks, padded): the scores whose argmax is the prediction, [len(rows), C]."""

    # -- the prediction and margins ---------------------------------------------------------------

    @property
    def prediction(self) -> int:
        """The predicted label (or token id) on the unmodified input."""
        if self._prediction is None:
            score_many([(self, [])], self.batch_size)
        return self._prediction

    @property
    def base_margin(self) -> float:
        """The margin of the unmodified input (the prediction's lead)."""
        self.prediction  # noqa: B018 (computes it)
        return self._margins[frozenset()]

    @property
    def explained(self) -> int:
        """The label (or token id) whose lead the margins measure: ``label``, else the prediction."""
        self.prediction  # noqa: B018 (computes it)
        return self._explained

    @property
    def resolved_goal(self) -> str:
        """"lose" or "win" (``goal`` "auto" resolved against the prediction)."""
        self.prediction  # noqa: B018 (computes it)
        return self._goal

    def _set_base(self, scores: torch.Tensor) -> None:
        scores = scores.double()
        if scores.numel() < 2:
            raise ArgumentError("a prediction needs at least two scores")
        prediction = int(scores.argmax())
        if self.label is not None and self.label >= scores.numel():
            raise ArgumentError(f"label {self.label} is out of range: the model gives {scores.numel()} scores")
        explained = prediction if self.label is None else self.label
        predicted = explained == prediction
        goal = ("lose" if predicted else "win") if self.goal == "auto" else self.goal
        if goal == "lose" and not predicted:
            raise ArgumentError(f"label {self.name_of(explained)!r} is not the prediction "
                             f"({self.name_of(prediction)!r}): it has no lead to lose; use goal 'win' (the smallest "
                             "set whose removal makes it win)")
        if goal == "win" and predicted:
            raise ArgumentError(f"label {self.name_of(explained)!r} is already the prediction: use goal 'lose' (or "
                             "name another label to win)")
        self._prediction, self._explained, self._goal = prediction, explained, goal
        self.base_scores = scores.tolist() if scores.numel() <= 4096 else None
        shown = self._in_kind(scores[None])[0]
        k = min(TOP_SCORES if self.output_width > 1 else scores.numel(), scores.numel())
        top = torch.topk(shown, k)
        self.top_scores = list(zip(top.indices.tolist(), top.values.tolist()))
        self.base_label_score = float(shown[self._explained])
        self._label_scores[frozenset()] = self.base_label_score
        self._margins[frozenset()] = self._margin(scores[None])[0]

    def _label_score(self, scores: torch.Tensor) -> list[float]:
        """The explained label's score per row, as ``score_kind`` reports it, without building
        every row's probabilities (a vocabulary wide for the token tasks)."""
        scores = scores.double()
        own = scores[:, self._explained]
        if self.score_kind == "probability":
            own = torch.exp(own - torch.logsumexp(scores, dim=-1))
        return own.tolist()

    def _in_kind(self, scores: torch.Tensor) -> torch.Tensor:
        """Raw scores [rows, C] as ``score_kind`` reports them."""
        scores = scores.double()
        return torch.softmax(scores, dim=-1) if self.score_kind == "probability" else scores

    def _margin(self, scores: torch.Tensor) -> list[float]:
        scores = scores.double()
        p = self._explained
        if scores.shape[1] == 1:
            raise ArgumentError("a prediction needs at least two scores")
        others = scores.clone()
        others[:, p] = -torch.inf
        lead = scores[:, p] - others.max(dim=1).values
        return (lead if self._goal == "lose" else -lead).tolist()

    def label_scores(self, sets: Sequence[Sequence[int]], keep: bool = False) -> list[float]:
        """The explained label's score (``score_kind``) with each set's tokens replaced, or with
        ``keep=True`` every token replaced except the set's, the protected ones and those in
        ``keep_always`` (e.g. special tokens). Sets judged before come from the cache; the others
        are counted in ``extra_sequences``, not in ``candidates``."""
        keyed = [self.complement(s) if keep else list(s) for s in sets]
        score_many([(self, keyed)], self.batch_size, extra=True)
        return [self._label_scores[self.key(s)] for s in keyed]

    def complement(self, tokens: Sequence[int]) -> list[int]:
        """The positions sufficiency replaces: all but the set's, the protected ones and
        ``keep_always``."""
        keep = self.key(tokens) | self.protected | self.keep_always
        return [p for p in range(self.input_ids.numel()) if p not in keep]

    def faithfulness(self, tokens: Sequence[int]) -> tuple[float, float]:
        """ERASER's comprehensiveness and sufficiency (DeYoung et al., 2020) of one set, with the
        model's own score s of the explained label: s(x) - s(x without the set), and
        s(x) - s(only the set, the protected tokens and ``keep_always``). At most two sequences
        (none for a set the search judged already and whose complement it judged too)."""
        without, only = self.label_scores([tokens, self.complement(tokens)])
        return self.base_label_score - without, self.base_label_score - only

    def key(self, tokens) -> frozenset:
        """The checked set of positions of one candidate (the cache key)."""
        if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
            raise ArgumentError(f"a candidate must be a sequence of token positions, got {tokens!r}")
        n = self.input_ids.numel()
        out = set()
        for t in tokens:
            t = _position(t, n)
            if t in self.protected:
                raise ArgumentError(f"token position {t} cannot be replaced (it is the target or a protected token)")
            out.add(t)
        return frozenset(out)

    def score_batch(self, sets: Sequence[Sequence[int]], target: int | None = None) -> list[float]:
        """For each set of token positions: the prediction's margin with those tokens replaced
        (> 0: the prediction is kept; <= 0: it changes, the set explains the output).

        Cached per set: only sets not judged before reach the model.
        """
        return score_many([(self, sets)], self.batch_size)[0]

    def test_batch(self, sets: Sequence[Sequence[int]], target: int | None = None) -> list[bool]:
        """For each set of token positions: does replacing them change the prediction?"""
        return [m <= 0 for m in self.score_batch(sets, target)]

    def __call__(self, tokens, target=None) -> bool:
        return self.test_batch([tokens], target)[0]

    def _row(self, key: frozenset, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._base_ids().clone()
        if key:
            ids[sorted(key)] = self.replacement_id
        n = ids.numel()
        if length == n:
            return ids, self.attention_mask
        pad = torch.full((length - n,), self.replacement_id, dtype=ids.dtype, device=ids.device)
        return torch.cat([ids, pad]), torch.cat([self.attention_mask, torch.zeros_like(pad)])


def score_many(requests, batch_size: int = 256, extra: bool = False) -> list[list[float]]:
    """Margins for the candidate sets of many testers of one model, in shared forward passes.

    Args:
        requests: ``(tester, sets)`` pairs; every tester must use the same model.
        batch_size: sequences per forward pass (fewer for testers whose scores are a vocabulary,
            so that one pass's output stays under 512 MiB).
        extra: count the sets sent in ``extra_sequences`` (measurements such as faithfulness)
            instead of ``candidates`` (the search's cost).

    Sets each tester answered before come from its cache. The unmodified inputs of testers that
    have no prediction yet are run first (one pass for all of them). Sequences are grouped by
    length, longest first, and padded to the longest of their pass; a pass of 16 or more ends
    where the next text's sequences are shorter than 0.8 times its longest, so that short texts are
    not padded to long ones. Returns one list of margins per request.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    requests = [(t, list(s)) for t, s in requests]
    if not requests:
        return []
    model = requests[0][0].model
    if any(t.model is not model for t, _ in requests):
        raise ArgumentError("score_many: every tester must use the same model")
    keys = [[t.key(s) for s in sets] for t, sets in requests]
    fresh = list({id(t): t for t, _ in requests if t._prediction is None}.values())
    if fresh:
        _run(model, [(t, None) for t in fresh], batch_size)
    todo, seen = [], set()
    for (t, _), ks in zip(requests, keys):
        for k in ks:
            if k not in t._margins and (id(t), k) not in seen:
                seen.add((id(t), k))
                todo.append((t, k))
    if todo:
        _run(model, todo, batch_size, extra)
    return [[t._margins[k] for k in ks] for (t, _), ks in zip(requests, keys)]


def drive_searches(gens: list, testers: list, batch_size: int, seconds: list[float]) -> dict[int, tuple]:
    """Runs the search generators of many testers of one model together: each round, every
    search's requested sets go into shared forward passes (``score_many``) and each gets its
    answers. ``seconds[k]`` gains search k's share of each round, in proportion to the sets it
    sent. Returns each search's return value by index."""
    done: dict[int, tuple] = {}
    pending: dict[int, list] = {}

    def advance(k, answers):
        try:
            pending[k] = next(gens[k]) if answers is None else gens[k].send(answers)
        except StopIteration as stop:
            pending.pop(k, None)
            done[k] = stop.value

    for k in range(len(gens)):
        advance(k, None)
    while pending:
        order = sorted(pending)
        before = [testers[k].candidates for k in order]
        t1 = time.perf_counter()
        answers = score_many([(testers[k], [list(s) for s in pending[k]]) for k in order], batch_size)
        spent = time.perf_counter() - t1
        sent = [testers[k].candidates - b for k, b in zip(order, before)]
        total = sum(sent)
        for k, a, n_k in zip(order, answers, sent):
            seconds[k] += spent * (n_k / total if total else 1 / len(order))
            advance(k, a)
    return done


@torch.inference_mode()
def _run(model, rows, batch_size: int, extra: bool = False) -> None:
    """Forward passes over (tester, key) rows, key None for a tester's unmodified input; stores
    the margins (or the base prediction) in each tester and counts passes and candidates."""
    rows = sorted(rows, key=lambda r: -r[0].input_ids.numel())  # stable: each tester's order is kept
    start = 0
    while start < len(rows):
        length = rows[start][0].input_ids.numel()
        width = max(t.output_width for t, _ in rows[start:start + batch_size])
        cap = max(1, min(batch_size, _MAX_OUTPUT_FLOATS // max(1, length * width)))
        end = start + 1
        while end < min(len(rows), start + cap) and not (
                end - start >= _SPLIT_ROWS and rows[end][0] is not rows[end - 1][0]
                and rows[end][0].input_ids.numel() < _SPLIT_LENGTH * length):
            end += 1
        chunk = rows[start:end]
        start = end
        built = [t._row(frozenset() if k is None else k, length) for t, k in chunk]
        ids = torch.stack([b[0] for b in built])
        mask = torch.stack([b[1] for b in built])
        outputs = model(input_ids=ids, attention_mask=mask)
        groups: dict[int, list[int]] = {}
        for r, (t, _) in enumerate(chunk):
            groups.setdefault(id(t), []).append(r)
        for members in groups.values():
            t = chunk[members[0]][0]
            idx = torch.as_tensor(members, device=ids.device)
            scores = t._scores(outputs, idx, mask[idx]).detach().float().cpu()
            t.forward_passes += 1
            if chunk[members[0]][1] is None:
                t._set_base(scores[0])
                continue
            label = t._label_score(scores)
            for r, m, v in zip(members, t._margin(scores), label):
                t._margins[chunk[r][1]] = m
                t._label_scores[chunk[r][1]] = v
            if extra:
                t.extra_sequences += len(members)
            else:
                t.candidates += len(members)


class MaskedTokenTester(_Tester):
    """Masked-token prediction: the target token is replaced by [MASK]; a set explains it when
    replacing the set's tokens (by [PAD], or ``replacement_id``) changes the predicted token there.
    The margin is the predicted token's logit minus the best other token's.

    Args:
        model: a masked-LM model (``...ForMaskedLM``).
        input_ids: one tokenized input [n] or [1, n].
        target: position of the token to predict.
        mask_token_id: the tokenizer's [MASK] id.
    """

    def __init__(self, model, input_ids, target: int, mask_token_id: int, attention_mask=None,
                 replacement_id: int | None = None, batch_size: int = 32, lazy: bool = False,
                 label: int | None = None, goal: str = "auto"):
        ids = torch.as_tensor(input_ids).reshape(-1)
        self.target = _position(target, ids.numel())
        self.mask_token_id = int(mask_token_id)
        self.output_width = int(model.config.vocab_size)
        super().__init__(model, ids, attention_mask, replacement_id, batch_size, protected=[self.target], lazy=lazy,
                         label=label, goal=goal)

    def _base_ids(self) -> torch.Tensor:
        ids = self.input_ids.clone()
        ids[self.target] = self.mask_token_id
        return ids

    def _scores(self, outputs, rows, mask):
        return outputs.logits[rows, self.target]


class SequenceClassificationTester(_Tester):
    """Sequence classification: a set explains the output when replacing it changes the label.
    The margin is the predicted label's logit minus the best other label's.

    Args:
        model: a ``...ForSequenceClassification`` model. ``protected``: positions never replaced
            (e.g. the [CLS] target).
    """

    def __init__(self, model, input_ids, attention_mask=None, replacement_id: int | None = None,
                 batch_size: int = 32, protected: Sequence[int] = (), lazy: bool = False,
                 label: int | None = None, goal: str = "auto"):
        super().__init__(model, input_ids, attention_mask, replacement_id, batch_size, protected, lazy, label, goal)

    def _scores(self, outputs, rows, mask):
        return outputs.logits[rows]


class NextTokenTester(_Tester):
    """Next-token prediction for causal LMs: a set explains the output when replacing it changes
    the top-1 next token after the input. The margin is that token's logit minus the best other's."""

    def __init__(self, model, input_ids, attention_mask=None, replacement_id: int | None = None,
                 batch_size: int = 32, protected: Sequence[int] = (), lazy: bool = False,
                 label: int | None = None, goal: str = "auto"):
        self.output_width = int(model.config.vocab_size)
        super().__init__(model, input_ids, attention_mask, replacement_id, batch_size, protected, lazy, label, goal)

    def _scores(self, outputs, rows, mask):
        last = int(self.attention_mask.nonzero().max())
        return outputs.logits[rows, last]


class ZeroShotTester(_Tester):
    """Zero-shot classification with a sentence-embedding model: the label whose description's
    mean-pooled embedding is closest (cosine) to the input's. A set explains the output when
    replacing it changes that label. The margin is the predicted label's cosine minus the best
    other label's.

    Args:
        model: an encoder (e.g. all-MiniLM-L6-v2's ``AutoModel``).
        tokenizer: its tokenizer (for the label descriptions).
        labels: at least two label names.
        template: how a label is described, e.g. "This review is {label}.".
        label_embeddings: the labels' normalised embeddings [L, d], when already computed (the
            explainer shares them between texts).
    """

    score_kind = "cosine"

    def __init__(self, model, tokenizer, input_ids, labels: Sequence[str], template: str = "This review is {label}.",
                 attention_mask=None, replacement_id: int | None = None, batch_size: int = 32,
                 protected: Sequence[int] = (), lazy: bool = False, label_embeddings: torch.Tensor | None = None,
                 label: int | None = None, goal: str = "auto"):
        if isinstance(labels, str):
            raise ArgumentError(f"labels must be a list of label names, got the string {labels!r}")
        labels = [str(x) for x in labels]
        if len(labels) < 2:
            raise ArgumentError(f"zero-shot classification needs at least two labels, got {labels}")
        if len(set(labels)) != len(labels):
            raise ArgumentError(f"labels must be distinct, got {labels}")
        check_template(template)
        self.labels = labels
        self.template = template
        if label_embeddings is None:
            label_embeddings = embed_labels(model, tokenizer, labels, template)
        self.label_embeddings = label_embeddings
        if replacement_id is None:
            replacement_id = tokenizer.pad_token_id
        super().__init__(model, input_ids, attention_mask, replacement_id, batch_size, protected, lazy, label, goal)

    def _scores(self, outputs, rows, mask):
        emb = torch.nn.functional.normalize(_mean_pool(outputs.last_hidden_state[rows], mask), dim=-1)
        return emb @ self.label_embeddings.T

    def scores(self) -> list[float]:
        """Cosine similarity of the unmodified input to each label description."""
        self.prediction  # noqa: B018 (computes it)
        return list(self.base_scores)


def check_template(template) -> None:
    """A zero-shot label description: a string with ``{label}`` and no other field."""
    if not isinstance(template, str):
        raise ArgumentError(f"template must be a string with {{label}}, got {template!r}")
    if "{label}" not in template:
        raise ArgumentError(f"template must contain {{label}}, got {template!r}")
    try:
        template.format(label="x")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ArgumentError(f"template may hold no field but {{label}} (write {{{{ and }}}} for braces), got "
                         f"{template!r}: {type(exc).__name__}: {exc}") from None


def embed_labels(model, tokenizer, labels: Sequence[str], template: str) -> torch.Tensor:
    """Normalised mean-pooled embeddings of the label descriptions [L, d]."""
    device = next(model.parameters()).device
    enc = tokenizer([template.format(label=x) for x in labels], padding=True, return_tensors="pt").to(device)
    with torch.no_grad():
        out = model(**enc)
    return torch.nn.functional.normalize(_mean_pool(out.last_hidden_state, enc["attention_mask"]), dim=-1)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
