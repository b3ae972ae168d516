"""Explanation testers: does replacing a set of tokens change the model's output at the target?

Each tester holds one tokenized input, computes the model's prediction on it once, and answers a
list of candidate token sets with batched forward passes (``batch_size`` inputs per pass):
a candidate explains the target when the prediction with its tokens replaced differs. They count
the forward passes and candidates they judged. Pass one to :func:`cleann.explain`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch


class _Tester(ABC):
    """Shared machinery: the input, token replacement, batched forward passes and counts."""

    def __init__(self, model, input_ids, attention_mask=None, replacement_id: int | None = None,
                 batch_size: int = 32, protected: Sequence[int] = ()):
        ids = torch.as_tensor(input_ids)
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ValueError(f"a tester holds one input, got a batch of {ids.shape[0]}")
            ids = ids[0]
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError(f"input_ids must be one non-empty sequence, got shape {list(ids.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.input_ids = ids.to(self.device)
        mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).reshape(-1)
        self.attention_mask = mask.to(self.device)
        if replacement_id is None:
            config = model.config
            replacement_id = getattr(config, "pad_token_id", None)
            if replacement_id is None:
                raise ValueError("the model has no pad token: give replacement_id")
        self.replacement_id = int(replacement_id)
        self.batch_size = int(batch_size)
        self.protected = {int(p) for p in protected}
        self.forward_passes = 0
        self.candidates = 0  # distinct sets sent to the model
        self._cache: dict[frozenset, bool] = {}
        self.prediction = self._predict(self._base_ids()[None])[0]

    def _base_ids(self) -> torch.Tensor:
        return self.input_ids

    def _check(self, tokens) -> list[int]:
        n = self.input_ids.numel()
        out = []
        for t in tokens:
            t = int(t)
            if not 0 <= t < n:
                raise ValueError(f"token position {t} is outside the input (length {n})")
            if t in self.protected:
                raise ValueError(f"token position {t} cannot be replaced (it is the target or a protected token)")
            out.append(t)
        return out

    @torch.no_grad()
    def _predict(self, ids: torch.Tensor) -> torch.Tensor:
        self.forward_passes += 1
        mask = self.attention_mask.expand(ids.shape[0], -1)
        return self._outputs_to_prediction(self.model(input_ids=ids, attention_mask=mask))

    @abstractmethod
    def _outputs_to_prediction(self, outputs) -> torch.Tensor:
        """The prediction (one id per batch row) from the model's outputs."""

    def test_batch(self, sets: Sequence[Sequence[int]], target: int | None = None) -> list[bool]:
        """For each set of token positions: does replacing them change the prediction?

        Answers are cached per set (explanations of several heads share candidates), so only
        sets not judged before reach the model.
        """
        keys = [frozenset(self._check(s)) for s in sets]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        base = self._base_ids()
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            ids = base.repeat(len(chunk), 1)
            for row, s in enumerate(chunk):
                if s:
                    ids[row, sorted(s)] = self.replacement_id
            changed = self._predict(ids) != self.prediction
            self._cache.update(zip(chunk, (bool(c) for c in changed.tolist())))
        self.candidates += len(todo)
        return [self._cache[k] for k in keys]

    def __call__(self, tokens, target=None) -> bool:
        return self.test_batch([tokens], target)[0]


class MaskedTokenTester(_Tester):
    """Masked-token prediction: the target token is replaced by [MASK]; a set explains it when
    replacing the set's tokens (by [PAD], or ``replacement_id``) changes the predicted token there.

    Args:
        model: a masked-LM model (``...ForMaskedLM``).
        input_ids: one tokenized input [n] or [1, n].
        target: position of the token to predict.
        mask_token_id: the tokenizer's [MASK] id.
    """

    def __init__(self, model, input_ids, target: int, mask_token_id: int, attention_mask=None,
                 replacement_id: int | None = None, batch_size: int = 32):
        ids = torch.as_tensor(input_ids).reshape(-1)
        if not 0 <= int(target) < ids.numel():
            raise ValueError(f"target {target} is outside the input (length {ids.numel()})")
        self.target = int(target)
        self.mask_token_id = int(mask_token_id)
        super().__init__(model, ids, attention_mask, replacement_id, batch_size, protected=[self.target])

    def _base_ids(self) -> torch.Tensor:
        ids = self.input_ids.clone()
        ids[self.target] = self.mask_token_id
        return ids

    def _outputs_to_prediction(self, outputs) -> torch.Tensor:
        return outputs.logits[:, self.target].argmax(-1)


class SequenceClassificationTester(_Tester):
    """Sequence classification: a set explains the output when replacing it changes the label.

    Args:
        model: a ``...ForSequenceClassification`` model. ``protected``: positions never replaced
            (e.g. the [CLS] target).
    """

    def __init__(self, model, input_ids, attention_mask=None, replacement_id: int | None = None,
                 batch_size: int = 32, protected: Sequence[int] = ()):
        super().__init__(model, input_ids, attention_mask, replacement_id, batch_size, protected)

    def _outputs_to_prediction(self, outputs) -> torch.Tensor:
        return outputs.logits.argmax(-1)


class NextTokenTester(_Tester):
    """Next-token prediction for causal LMs: a set explains the output when replacing it changes
    the top-1 next token after the input."""

    def _outputs_to_prediction(self, outputs) -> torch.Tensor:
        last = int(self.attention_mask.nonzero().max())
        return outputs.logits[:, last].argmax(-1)


class ZeroShotTester(_Tester):
    """Zero-shot classification with a sentence-embedding model: the label whose description's
    mean-pooled embedding is closest (cosine) to the input's. A set explains the output when
    replacing it changes that label.

    Args:
        model: an encoder (e.g. all-MiniLM-L6-v2's ``AutoModel``).
        tokenizer: its tokenizer (for the label descriptions).
        labels: at least two label names.
        template: how a label is described, e.g. "This review is {label}.".
    """

    def __init__(self, model, tokenizer, input_ids, labels: Sequence[str], template: str = "This review is {label}.",
                 attention_mask=None, replacement_id: int | None = None, batch_size: int = 32,
                 protected: Sequence[int] = ()):
        labels = [str(x) for x in labels]
        if len(labels) < 2:
            raise ValueError(f"zero-shot classification needs at least two labels, got {labels}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        if "{label}" not in template:
            raise ValueError(f"template must contain {{label}}, got {template!r}")
        self.labels = labels
        self.template = template
        device = next(model.parameters()).device
        enc = tokenizer([template.format(label=x) for x in labels], padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model(**enc)
        self.label_embeddings = torch.nn.functional.normalize(_mean_pool(out.last_hidden_state,
                                                                         enc["attention_mask"]), dim=-1)
        if replacement_id is None:
            replacement_id = tokenizer.pad_token_id
        super().__init__(model, input_ids, attention_mask, replacement_id, batch_size, protected)

    def _outputs_to_prediction(self, outputs) -> torch.Tensor:
        mask = self.attention_mask.expand(outputs.last_hidden_state.shape[0], -1)
        emb = torch.nn.functional.normalize(_mean_pool(outputs.last_hidden_state, mask), dim=-1)
        return (emb @ self.label_embeddings.T).argmax(-1)

    def scores(self) -> list[float]:
        """Cosine similarity of the unmodified input to each label description."""
        with torch.no_grad():
            out = self.model(input_ids=self.input_ids[None], attention_mask=self.attention_mask[None])
        emb = torch.nn.functional.normalize(_mean_pool(out.last_hidden_state, self.attention_mask[None]), dim=-1)
        return (emb @ self.label_embeddings.T)[0].tolist()


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
