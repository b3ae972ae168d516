"""Explaining a sequential recommender: BERT4Rec-style masked-item models over item-id sessions.

A session is a list of item ids; the model (a ``BertForMaskedLM`` whose vocabulary is the items,
a padding item and a [MASK] item) ranks the next item at a masked slot after the session. The
recommendation is the top-1 item there, the padding, [MASK] and any other excluded ids left out of
the ranking.

:class:`MaskedItemTester` judges sets of session positions: a set explains the recommendation
when removing its items changes the top-1 (``removal="replace"``: they become the padding item;
``"drop"``: they are deleted and the slot moves left). :class:`RecommenderExplainer` runs the
paper's flow per session: the model recommends s~, s~ is appended to the session (abduction), the
attention of [s1..sn, s~] gives one PAG per head with s~ as the target node, and CLEANN's search
finds the smallest sets of past items whose removal changes the recommendation.

:func:`synthetic_sessions` generates sessions with planted causes (sequels caused by their
prequels), :func:`train_bert4rec` trains a small recommender on them with the cloze objective,
and :func:`evaluate` measures HR@k and NDCG@k on held-out sessions.
"""

from __future__ import annotations

import math
import numbers
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from .. import _learn
from ..errors import ArgumentError
from ..explain import _check_options, _space, assemble, search_steps
from .capture import AttentionCapture
from .testers import _Tester, drive_searches, score_many

if TYPE_CHECKING:
    from transformers import BertForMaskedLM

REMOVALS = ("replace", "drop")


def _int_arg(name, v, minimum=1, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_session(items, vocab: int, pad_item: int, mask_item: int, max_len: int | None, name="items") -> list[int]:
    """A session: a non-empty list of item ids inside the vocabulary, without the pad or mask item."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ArgumentError(f"{name} must be a list of item ids, got {type(items).__name__} {items!r}")
    items = list(items.tolist() if hasattr(items, "tolist") else items)
    if not items:
        raise ArgumentError(f"{name} is empty: a session needs at least one item")
    for k, i in enumerate(items):
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ArgumentError(f"{name} must hold integer item ids, got {i!r} ({type(i).__name__}) at index {k}")
        if not 0 <= int(i) < vocab:
            raise ArgumentError(f"{name} holds item id {int(i)} at index {k}, outside the model's item vocabulary "
                                f"[0, {vocab})")
        if int(i) == mask_item:
            raise ArgumentError(f"{name} holds the mask item {mask_item} at index {k}: the slot to predict is added "
                                "after the session, the session itself holds past items only")
        if int(i) == pad_item:
            raise ArgumentError(f"{name} holds the padding item {pad_item} at index {k}: a session holds real items")
    if max_len is not None and len(items) + 1 > max_len:
        raise ArgumentError(f"{name} has {len(items)} items: with the slot it exceeds the model's "
                            f"{max_len} positions (max_position_embeddings); keep the last {max_len - 1} items")
    return [int(i) for i in items]


class MaskedItemTester(_Tester):
    """Next-item recommendation with a masked-item model: the input is ``items`` followed by the
    [MASK] slot; the prediction is the top-1 item there (the padding item, the mask item and
    ``exclude`` never ranked). A set of session positions explains the recommendation when
    removing those items changes the top-1. The margin is the top-1 item's logit minus the best
    other item's.

    Args:
        model: a ``BertForMaskedLM`` (or another ``...ForMaskedLM``) over the item vocabulary.
        items: the session, item ids (not the pad or mask item).
        pad_item, mask_item: the padding and [MASK] item ids.
        removal: "replace" (removed items become ``pad_item``, positions kept) or "drop" (removed
            items are deleted, the slot moves left; shorter rows are padded with attention mask 0).
        top_k: how many of the original ranking :meth:`replacement` ranks the new top-1 against.
        exclude: further item ids never recommended (e.g. other special ids).
    """

    def __init__(self, model, items: Sequence[int], *, pad_item: int = 0, mask_item: int, removal: str = "replace",
                 top_k: int = 10, batch_size: int = 256, lazy: bool = False, exclude: Sequence[int] = ()):
        if removal not in REMOVALS:
            raise ArgumentError(f"removal must be one of {', '.join(REMOVALS)}, got {removal!r}")
        vocab = int(model.config.vocab_size)
        for name, v in (("pad_item", pad_item), ("mask_item", mask_item)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < vocab:
                raise ArgumentError(f"{name} must be an item id in [0, {vocab}), got {v!r}")
        if pad_item == mask_item:
            raise ArgumentError(f"pad_item and mask_item must differ, both are {pad_item}")
        self.top_k = _int_arg("top_k", top_k)
        items = _check_session(items, vocab, int(pad_item), int(mask_item),
                               getattr(model.config, "max_position_embeddings", None))
        self.items = items
        self.pad_item, self.mask_item, self.removal = int(pad_item), int(mask_item), removal
        self.slot = len(items)
        self.excluded = sorted({self.pad_item, self.mask_item} | {int(e) for e in exclude})
        self.output_width = vocab
        self.top_items: list[int] = []
        self._replacements: dict[frozenset, int] = {}
        super().__init__(model, items + [self.mask_item], replacement_id=self.pad_item, batch_size=batch_size,
                         protected=[self.slot], lazy=lazy)

    def _row(self, key, length):
        if self.removal == "replace" or not key:
            return super()._row(key, length)
        kept = [i for p, i in enumerate(self.items) if p not in key] + [self.mask_item]
        ids = torch.full((length,), self.pad_item, dtype=self.input_ids.dtype, device=self.device)
        ids[:len(kept)] = torch.as_tensor(kept, dtype=ids.dtype)
        mask = torch.zeros(length, dtype=self.attention_mask.dtype, device=self.device)
        mask[:len(kept)] = 1
        return ids, mask

    def _scores(self, outputs, rows, mask):
        slots = mask.long().sum(dim=1) - 1  # every row is right-padded and ends in the slot
        logits = outputs.logits[rows, slots].clone()
        logits[:, self.excluded] = -torch.inf
        return logits

    def _set_base(self, scores):
        super()._set_base(scores)
        k = min(self.top_k, scores.numel() - len(self.excluded))
        self.top_items = torch.topk(scores.double(), k).indices.tolist()

    @property
    def recommended(self) -> int:
        """The top-1 item on the unmodified session."""
        return self.prediction

    def replacement(self, tokens) -> tuple[int, int | None]:
        """The new top-1 item with the set's items removed, and its rank (1 = best) in the
        original top ``top_k`` (None when outside). One extra sequence, counted in
        ``forward_passes`` and ``extra_sequences`` (not in ``candidates``); cached per set."""
        return self.replacements([tokens])[0]

    def replacements(self, sets) -> list[tuple[int, int | None]]:
        """:meth:`replacement` of several sets in one forward pass."""
        self.prediction  # noqa: B018 (computes it)
        keys = [self.key(s) for s in sets]
        todo = list(dict.fromkeys(k for k in keys if k not in self._replacements))
        if todo:
            n = self.input_ids.numel()
            with torch.inference_mode():
                built = [self._row(k, n) for k in todo]
                ids = torch.stack([b[0] for b in built])
                mask = torch.stack([b[1] for b in built])
                outputs = self.model(input_ids=ids, attention_mask=mask)
                top = self._scores(outputs, torch.arange(len(todo), device=ids.device), mask).argmax(dim=1)
            self.forward_passes += 1
            self.extra_sequences += len(todo)
            for k, t in zip(todo, top.tolist()):
                self._replacements[k] = int(t)
        out = []
        for k in keys:
            item = self._replacements[k]
            out.append((item, self.top_items.index(item) + 1 if item in self.top_items else None))
        return out


@dataclass
class RecommendationExplanation:
    """Per session: the recommendation, the smallest explanations (positions and item ids), what
    replaces the recommendation after removing the first one, the search's outcome, counts and
    seconds."""

    session: list[int]
    recommended: int
    sets: list[tuple[int, ...]] = field(default_factory=list)  # positions in the session
    items: list[tuple[int, ...]] = field(default_factory=list)  # the item ids at those positions
    margins: list = field(default_factory=list)
    status: str = "none"  # explained | none | budget
    minimal_proven: bool = False
    replacement: int | None = None  # the new top-1 after removing sets[0]
    replacement_rank: int | None = None  # its rank in the original top_k (1 = best; None: outside)
    top_items: list[int] = field(default_factory=list)  # the original top_k, best first
    margin: float | None = None  # the recommendation's lead on the unmodified session
    abduced: list[int] = field(default_factory=list)  # the abduction step's input [s1..sn, s~]
    heads: list[dict] = field(default_factory=list)  # per head: sets, status, edges of the PAG
    best: tuple | None = None  # nothing found: the judged set with the lowest margin
    best_margin: float | None = None
    search: str = "guided"
    removal: str = "replace"
    budget: int | None = None
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        """Size of the smallest explanation (None when none was found)."""
        return min((len(s) for s in self.sets), default=None)

    @property
    def target(self) -> int:
        """The target node of the graphs: the recommended item's position in ``abduced``."""
        return len(self.session)

    def to_dict(self) -> dict:
        return {
            "session": list(self.session), "recommended": self.recommended, "target": self.target,
            "abduced": list(self.abduced), "size": self.size,
            "explanations": [list(s) for s in self.sets], "explanation_items": [list(s) for s in self.items],
            "explanation_margins": list(self.margins), "status": self.status, "minimal_proven": self.minimal_proven,
            "replacement": self.replacement, "replacement_rank": self.replacement_rank,
            "top_items": list(self.top_items), "margin": self.margin,
            "best": None if self.best is None else list(self.best), "best_margin": self.best_margin,
            "heads": [dict(h) for h in self.heads], "search": self.search, "removal": self.removal,
            "budget": self.budget, "counts": dict(self.counts), "seconds": dict(self.seconds),
        }


class RecommenderExplainer:
    """Explains a masked-item recommender's next-item recommendation on sessions of item ids.

    Per session: the model recommends s~ at the [MASK] slot; s~ is appended to the session and the
    ``layer``'s attention of [s1..sn, s~] is captured (abduction); ABCD learns one PAG per head
    over positions 0..n with s~ (position n) the target; CLEANN's search (shared by the heads)
    finds the smallest sets of past positions whose removal changes the top-1 recommendation.
    The sessions of one call share the forward passes.

    Args:
        model: a ``BertForMaskedLM`` over the items; ``mask_item``, ``pad_item``: its [MASK] and
            padding item ids.
        heads: which heads give graphs (default: all); ``layer``: which attention layer.
        method, alpha, num_samples: ABCD's learner, significance level and Fisher-z sample size
            (default: the hidden size).
        search: "guided" (default) or "exact"; ``budget``: most sets judged per session;
            ``max_size``: largest explanation tried.
        removal: "replace" or "drop" (see :class:`MaskedItemTester`); ``top_k``: the original
            ranking the replacement is ranked in.
    """

    def __init__(self, model, *, mask_item: int, pad_item: int = 0, heads: Sequence[int] | None = None,
                 layer: int = -1, method: str = "icd", alpha: float = 0.01, search: str = "guided",
                 budget: int | None = None, max_size: int | None = None, removal: str = "replace", top_k: int = 10,
                 num_samples: int | None = None, batch_size: int = 256, exclude: Sequence[int] = ()):
        _check_options(search, budget, max_size, None, 3, 8)
        if removal not in REMOVALS:
            raise ArgumentError(f"removal must be one of {', '.join(REMOVALS)}, got {removal!r}")
        if method not in ("icd", "fci"):
            raise ArgumentError(f"method must be 'icd' or 'fci', got {method!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise ArgumentError(f"alpha must be a number in (0, 1), got {alpha!r}")
        vocab = int(model.config.vocab_size)
        for name, v in (("pad_item", pad_item), ("mask_item", mask_item)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < vocab:
                raise ArgumentError(f"{name} must be an item id in [0, {vocab}), got {v!r}")
        if heads is not None:
            if isinstance(heads, (str, bytes)) or not hasattr(heads, "__iter__"):
                raise ArgumentError(f"heads must be a list of head indices, got {heads!r}")
            heads = [_int_arg("heads", h, minimum=0) for h in heads]
            if not heads or len(set(heads)) != len(heads):
                raise ArgumentError(f"heads must name distinct heads (None: all), got {heads}")
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise ArgumentError(f"layer must be an integer layer index, got {layer!r}")
        layers = int(model.config.num_hidden_layers)
        if not -layers <= layer < layers:
            raise ArgumentError(f"layer {layer} out of range: the model has {layers} layers")
        self.model = model.eval()
        self.mask_item, self.pad_item = int(mask_item), int(pad_item)
        self.heads, self.layer, self.method, self.alpha = heads, int(layer), method, float(alpha)
        self.search, self.budget, self.max_size, self.removal = search, budget, max_size, removal
        self.top_k = _int_arg("top_k", top_k)
        self.num_samples = _int_arg("num_samples", num_samples, minimum=4, allow_none=True)
        self.batch_size = _int_arg("batch_size", batch_size)
        self.exclude = tuple(int(e) for e in exclude)

    def __call__(self, sessions) -> "RecommendationExplanation | list[RecommendationExplanation]":
        return self.explain(sessions)

    def tester(self, session, lazy: bool = True) -> MaskedItemTester:
        """A fresh tester for one session, with this explainer's settings."""
        return MaskedItemTester(self.model, session, pad_item=self.pad_item, mask_item=self.mask_item,
                                removal=self.removal, top_k=self.top_k, batch_size=self.batch_size, lazy=lazy,
                                exclude=self.exclude)

    def explain(self, sessions) -> "RecommendationExplanation | list[RecommendationExplanation]":
        """One session (a list of item ids) or a list of sessions -> RecommendationExplanation(s)."""
        if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__iter__"):
            raise ArgumentError(f"sessions must be a session (a list of item ids) or a list of sessions, got "
                                f"{type(sessions).__name__}")
        sessions = list(sessions)
        if not sessions:
            raise ArgumentError("sessions is empty: give a session (a list of item ids) or a list of sessions")
        single = all(isinstance(s, numbers.Integral) for s in sessions)
        batch = [sessions] if single else sessions
        t0 = time.perf_counter()
        testers = [self.tester(s) for s in batch]
        score_many([(t, []) for t in testers], self.batch_size)  # the recommendations, in shared passes
        t_rec = (time.perf_counter() - t0) / len(batch)
        t0 = time.perf_counter()
        abduced = [t.items + [t.recommended] for t in testers]
        attn = self._attention(abduced)
        t_fwd = (time.perf_counter() - t0) / len(batch)
        num_samples = self.num_samples or int(self.model.config.hidden_size)
        graphs, t_disc = [], []
        for a, seq in zip(attn, abduced):
            t1 = time.perf_counter()
            graphs.append(_learn.abcd(a, num_samples, self.alpha, nodes=list(range(len(seq))), method=self.method))
            t_disc.append(time.perf_counter() - t1)
        results = self._test(batch, testers, abduced, graphs)
        for r, td in zip(results, t_disc):
            r.seconds = {"recommend": t_rec, "forward": t_fwd, "discovery": td, "testing": r.seconds["testing"]}
        return results[0] if single else results

    def _attention(self, abduced) -> list:
        """The chosen heads' attention [H, n+1, n+1] of each abduced input (float32 NumPy)."""
        length = max(len(s) for s in abduced)
        ids = torch.full((len(abduced), length), self.pad_item, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, s in enumerate(abduced):
            ids[b, :len(s)] = torch.as_tensor(s)
            mask[b, :len(s)] = 1
        device = next(self.model.parameters()).device
        with torch.inference_mode(), AttentionCapture(self.model, self.layer) as cap:
            self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        attn = cap.attention.float().cpu().numpy()
        H = attn.shape[1]
        heads = list(range(H)) if self.heads is None else self.heads
        for h in heads:
            if not 0 <= h < H:
                raise ArgumentError(f"head {h} out of range: the layer has {H} heads")
        self._heads = heads
        return [attn[b, heads][:, :len(s), :len(s)] for b, s in enumerate(abduced)]

    def _test(self, batch, testers, abduced, graphs) -> list[RecommendationExplanation]:
        spaces = [[_space(g, len(s), None) for g in gs] for s, gs in zip(batch, graphs)]
        gens = [search_steps(sp, self.max_size, search=self.search, base=t.base_margin, chunk=self.batch_size,
                             budget=self.budget) for sp, t in zip(spaces, testers)]
        seconds = [0.0] * len(batch)
        done = drive_searches(gens, testers, self.batch_size, seconds)
        results = []
        for k, tester in enumerate(testers):
            t2 = time.perf_counter()
            found, status, ledger = done[k]
            target = len(tester.items)
            ex = assemble(spaces[k], target, found, status, ledger, search=self.search, budget=self.budget,
                          model_calls=tester.forward_passes)
            candidates = tester.candidates
            res = RecommendationExplanation(
                session=list(tester.items), recommended=tester.recommended, sets=list(ex.sets),
                items=[tuple(tester.items[p] for p in s) for s in ex.sets], margins=list(ex.margins),
                status=ex.status, minimal_proven=ex.minimal_proven, top_items=list(tester.top_items),
                margin=tester.base_margin, abduced=list(abduced[k]), best=ex.best, best_margin=ex.best_margin,
                search=self.search, removal=self.removal, budget=self.budget)
            for h, g, hx in zip(self._heads, graphs[k], ex.heads):
                res.heads.append({"head": h, "status": hx.status, "sets": [list(s) for s in hx.sets],
                                  "pool": list(hx.candidates),
                                  "edges": [[int(g.nodes[a]), int(g.nodes[b]), m_a, m_b]
                                            for a, b, m_a, m_b in g.edges()]})
            if res.sets:
                res.replacement, res.replacement_rank = tester.replacement(res.sets[0])
            res.counts = {"ci_tests": int(sum(int(g.tests_per_level.sum()) for g in graphs[k])),
                          "candidates": candidates, "forward_passes": tester.forward_passes,
                          "replacement_sequences": tester.extra_sequences}
            res.seconds = {"testing": seconds[k] + time.perf_counter() - t2}
            results.append(res)
        return results


# -- synthetic sessions with planted causes ---------------------------------------------------------


@dataclass
class SyntheticSessions:
    """Sessions from :func:`synthetic_sessions` and the rules that made them.

    Attributes:
        sessions: item-id lists; the last item of each is its "next item".
        parents: per session, the planted causal parent of its last item: the prequel for a sequel,
            None otherwise.
        genre_of: item -> genre; ``sequel_of``: prequel -> its sequel; ``prequel_of`` the inverse.
        num_items: real items are 1..num_items; ``pad_item`` 0 and ``mask_item`` num_items + 1;
            ``vocab_size`` num_items + 2.
    """

    sessions: list[list[int]]
    parents: list[int | None]
    genre_of: dict[int, int]
    sequel_of: dict[int, int]
    num_items: int

    pad_item: int = 0

    @property
    def mask_item(self) -> int:
        return self.num_items + 1

    @property
    def vocab_size(self) -> int:
        return self.num_items + 2

    @property
    def prequel_of(self) -> dict[int, int]:
        return {b: a for a, b in self.sequel_of.items()}

    def cause_positions(self, session: Sequence[int], item: int) -> list[int]:
        """Where ``item``'s planted cause (its prequel) is in ``session``; [] when ``item`` is not
        a sequel or its prequel is absent."""
        a = self.prequel_of.get(int(item))
        return [p for p, i in enumerate(session) if i == a] if a is not None else []


def synthetic_sessions(num_sessions: int, num_items: int, seed: int, *, num_genres: int = 5,
                       sequel_fraction: float = 0.3, stay: float = 0.9, follow: float = 0.9,
                       min_length: int = 4, max_length: int = 12) -> SyntheticSessions:
    """Sessions of item ids with latent genres and planted causes.

    The rules:

    - Items 1..``num_items``; item i has genre (i - 1) mod ``num_genres``.
    - In each genre, pairs of items are chosen as (prequel a, sequel b), so that about
      ``sequel_fraction`` of the items are sequels; every other item is a "free" item.
    - A session has a uniform length in [``min_length``, ``max_length``] and a genre g drawn
      uniformly. Each step, when no sequel is due, the next item is a free item (never one already
      in the session) drawn uniformly from genre g with probability ``stay``, else from any genre.
    - When a prequel a is drawn, with probability ``follow`` its sequel b is due 1 to 3 steps later
      (uniform); a due sequel takes that step (a later one if two fall on the same step). A
      sequel is never drawn otherwise, so b never appears without a earlier in the session.
    - The planted causal parent of a session's last item is its prequel when it is a sequel (that
      prequel is then in the session), else None.

    Deterministic in ``seed``.
    """
    num_sessions = _int_arg("num_sessions", num_sessions)
    num_items = _int_arg("num_items", num_items, minimum=4)
    num_genres = _int_arg("num_genres", num_genres)
    min_length = _int_arg("min_length", min_length, minimum=2)
    max_length = _int_arg("max_length", max_length, minimum=min_length)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArgumentError(f"seed must be an integer, got {seed!r}")
    for name, v in (("sequel_fraction", sequel_fraction), ("stay", stay), ("follow", follow)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
            raise ArgumentError(f"{name} must be a probability in [0, 1], got {v!r}")
    if num_items < 2 * num_genres:
        raise ArgumentError(f"num_items ({num_items}) must be at least twice num_genres ({num_genres})")
    rng = random.Random(int(seed))
    genre_of = {i: (i - 1) % num_genres for i in range(1, num_items + 1)}
    sequel_of: dict[int, int] = {}
    for g in range(num_genres):
        members = [i for i in genre_of if genre_of[i] == g]
        rng.shuffle(members)
        pairs = int(round(sequel_fraction * len(members)))
        pairs = min(pairs, len(members) // 2)
        for k in range(pairs):
            sequel_of[members[2 * k]] = members[2 * k + 1]
    sequels = set(sequel_of.values())
    free = {g: [i for i in genre_of if genre_of[i] == g and i not in sequels] for g in range(num_genres)}
    all_free = [i for i in genre_of if i not in sequels]
    sessions, parents = [], []
    for _ in range(num_sessions):
        length = rng.randint(min_length, max_length)
        g = rng.randrange(num_genres)
        session: list[int] = []
        due: dict[int, list[int]] = {}
        prequel_of_last = None
        while len(session) < length:
            step = len(session)
            if due.get(step):
                item = due[step].pop(0)
                if due[step]:
                    due.setdefault(step + 1, []).extend(due.pop(step))
            else:
                pool = free[g] if rng.random() < stay else all_free
                choices = [i for i in pool if i not in session] or [i for i in all_free if i not in session]
                item = rng.choice(choices)
            session.append(item)
            if item in sequel_of and rng.random() < follow:
                due.setdefault(step + rng.randint(1, 3), []).append(sequel_of[item])
        last = session[-1]
        prequel_of_last = next((a for a, b in sequel_of.items() if b == last), None)
        sessions.append(session)
        parents.append(prequel_of_last)
    return SyntheticSessions(sessions, parents, genre_of, sequel_of, num_items)


# -- training and evaluation ------------------------------------------------------------------------


def _pad(rows: Sequence[Sequence[int]], pad_item: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_item, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[b, :len(r)] = 1
    return ids, mask


def train_bert4rec(sessions: Sequence[Sequence[int]], num_items: int, *, hidden: int = 64, layers: int = 2,
                   heads: int = 2, epochs: int = 10, seed: int = 0, mask_prob: float = 0.2, last_prob: float = 0.5,
                   batch_size: int = 16, lr: float = 1e-3, max_length: int | None = None,
                   dropout: float = 0.0) -> "BertForMaskedLM":
    """A BERT4Rec-style ``BertForMaskedLM`` trained with the cloze objective on CPU, seeded.

    Items are 1..``num_items``, the padding item 0 and the [MASK] item ``num_items`` + 1. Each
    batch masks every item with probability ``mask_prob`` (at least one per session) and predicts
    them; in a ``last_prob`` share of the sessions only the last item is masked instead, so that
    next-item prediction at a final slot is learned. Sessions are right-padded with attention
    mask 0. Deterministic for a seed on one machine (the model's initialisation, the masks and the
    batch order come from it).
    """
    from transformers import BertConfig, BertForMaskedLM

    num_items = _int_arg("num_items", num_items, minimum=2)
    epochs = _int_arg("epochs", epochs)
    sessions = [list(s) for s in sessions]
    if not sessions:
        raise ArgumentError("sessions is empty: nothing to train on")
    for k, s in enumerate(sessions):
        if len(s) < 2:
            raise ArgumentError(f"every training session needs at least two items, session {k} has {len(s)}")
        if min(s) < 1 or max(s) > num_items:
            raise ArgumentError(f"session {k} holds an item outside 1..{num_items}")
    longest = max(len(s) for s in sessions)
    max_length = max(longest + 1, 8) if max_length is None else _int_arg("max_length", max_length, minimum=longest)
    mask_item = num_items + 1
    torch.manual_seed(int(seed))
    config = BertConfig(vocab_size=num_items + 2, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_length,
                        type_vocab_size=1, pad_token_id=0, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    model = BertForMaskedLM(config)
    gen = torch.Generator().manual_seed(int(seed))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast, and its sums are always ordered alike
    try:
        _cloze(model, sessions, mask_item, epochs, batch_size, mask_prob, last_prob, lr, gen)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _cloze(model, sessions, mask_item, epochs, batch_size, mask_prob, last_prob, lr, gen) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(sessions), generator=gen).tolist()
        for start in range(0, len(order), batch_size):
            ids, mask = _pad([sessions[i] for i in order[start:start + batch_size]], 0)
            lengths = mask.sum(1)
            masked = (torch.rand(ids.shape, generator=gen) < mask_prob) & mask.bool()
            last = torch.rand(len(ids), generator=gen) < last_prob
            rows = torch.arange(len(ids))
            masked[last] = False
            masked[rows, lengths - 1] |= last | ~masked.any(dim=1)
            labels = torch.where(masked, ids, torch.full_like(ids, -100))
            inputs = torch.where(masked, torch.full_like(ids, mask_item), ids)
            out = model(input_ids=inputs, attention_mask=mask, labels=labels)
            opt.zero_grad()
            out.loss.backward()
            opt.step()


@torch.inference_mode()
def rank_next(model, prefixes: Sequence[Sequence[int]], *, mask_item: int, pad_item: int = 0,
              k: int = 10, batch_size: int = 256) -> list[list[int]]:
    """The top ``k`` next items after each prefix (the pad and mask items excluded)."""
    out = []
    for start in range(0, len(prefixes), batch_size):
        rows = [list(p) + [mask_item] for p in prefixes[start:start + batch_size]]
        ids, mask = _pad(rows, pad_item)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logits = logits[torch.arange(len(rows)), mask.sum(1) - 1].clone()
        logits[:, [pad_item, mask_item]] = -torch.inf
        out.extend(torch.topk(logits, k, dim=1).indices.tolist())
    return out


def evaluate(model, sessions: Sequence[Sequence[int]], k: int = 10, *, mask_item: int | None = None,
             pad_item: int = 0) -> dict:
    """HR@k and NDCG@k of predicting each session's last item from the items before it.

    ``mask_item`` defaults to the last id of the model's vocabulary (as :func:`train_bert4rec`
    makes it). Returns {"hr": ..., "ndcg": ..., "sessions": ...}.
    """
    k = _int_arg("k", k)
    sessions = [list(s) for s in sessions]
    if not sessions or any(len(s) < 2 for s in sessions):
        raise ArgumentError("evaluate needs sessions of at least two items (a prefix and the item to predict)")
    mask_item = int(model.config.vocab_size) - 1 if mask_item is None else int(mask_item)
    tops = rank_next(model, [s[:-1] for s in sessions], mask_item=mask_item, pad_item=pad_item, k=k)
    hr = ndcg = 0.0
    for s, top in zip(sessions, tops):
        if s[-1] in top:
            hr += 1
            ndcg += 1 / math.log2(top.index(s[-1]) + 2)
    return {"hr": hr / len(sessions), "ndcg": ndcg / len(sessions), "sessions": len(sessions)}
