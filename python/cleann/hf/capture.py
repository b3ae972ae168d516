"""Capturing one layer's attention probabilities during an ordinary forward pass.

transformers' default attention backend (sdpa) never materialises attention weights, and asking
for ``output_attentions=True`` would materialise every layer's. Instead, while a capture is active,
the model runs a registered attention function that computes the captured module's attention with
the model family's own eager code (keeping its probabilities) and hands every other module to the
backend the model used before. A matching mask function always materialises the additive mask, so
padding and causal masking reach the eager path; the other modules receive the same mask.
"""

from __future__ import annotations

import sys
import threading

from ..errors import CleannError

_NAME = "cleann_capture"  # must not contain "sdpa", "flash" or "flex": transformers matches by substring
_LOCK = threading.Lock()
_ACTIVE: dict[int, "AttentionCapture"] = {}  # id(captured module) -> capture
_ORIGINAL: dict[int, str] = {}  # id(attention module) -> the backend its model used before
_REGISTERED = False


class CaptureError(CleannError, RuntimeError):
    """The model's attention cannot be captured."""


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(_NAME, _attention)
    AttentionMaskInterface.register(_NAME, eager_mask)
    _REGISTERED = True


def _eager_for(module):
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise CaptureError(f"{type(module).__name__}'s module has no eager_attention_forward to capture with")
    return fn


def _attention(module, query, key, value, attention_mask, **kwargs):
    capture = _ACTIVE.get(id(module))
    if capture is not None:
        out, weights = _eager_for(module)(module, query, key, value, attention_mask, **kwargs)
        capture._record(weights, attention_mask)
        return out, weights
    from transformers import AttentionInterface

    backend = _ORIGINAL.get(id(module), "eager")
    fn = _eager_for(module) if backend == "eager" else AttentionInterface._global_mapping[backend]
    return fn(module, query, key, value, attention_mask, **kwargs)


def attention_modules(model) -> list:
    """The self-attention modules of ``model`` in forward order (found through the class that
    ``_can_record_outputs["attentions"]`` names)."""
    spec = getattr(type(model), "_can_record_outputs", None) or {}
    target = spec.get("attentions")
    if target is None:
        raise CaptureError(f"{type(model).__name__} does not say which modules compute its attention "
                           "(no _can_record_outputs['attentions']); its attention cannot be captured")
    cls = getattr(target, "target_class", target)
    suffix = getattr(target, "layer_name", None)
    found = [m for name, m in model.named_modules()
             if isinstance(m, cls) and (suffix is None or name.endswith(suffix.lstrip(".")))]
    if not found:
        raise CaptureError(f"no {cls.__name__} module found in {type(model).__name__}")
    return found


class AttentionCapture:
    """Context manager that records one layer's attention probabilities [B, H, n, n].

    Args:
        model: a transformers model (PreTrainedModel).
        layer: index into the model's self-attention layers (default -1, the deepest).

    After a forward pass inside the ``with`` block: ``attention`` holds the probabilities as the
    model computed them (pad rows and columns included, detached), ``key_mask`` is a bool [B, n]
    marking the key positions that any query may attend to (False for padding) and ``lengths``
    its row sums. On exit the model's attention backend is restored.
    """

    def __init__(self, model, layer: int = -1):
        modules = attention_modules(model)
        if not -len(modules) <= layer < len(modules):
            raise CaptureError(f"layer {layer} out of range: the model has {len(modules)} attention layers")
        self.model = model
        self.layer = layer % len(modules)
        self.module = modules[self.layer]
        self._modules = modules
        self.attention = None
        self.key_mask = None
        self.lengths = None
        self._previous = None

    def __enter__(self) -> "AttentionCapture":
        if not getattr(self.model, "_can_set_attn_implementation", lambda: False)():
            raise CaptureError(f"{type(self.model).__name__} cannot switch its attention backend, so its "
                               "attention cannot be captured")
        with _LOCK:
            if id(self.module) in _ACTIVE:
                raise CaptureError("this layer is already being captured")
            _register()
            self._previous = self.model.config._attn_implementation or "eager"
            for m in self._modules:
                _ORIGINAL[id(m)] = self._previous
            _ACTIVE[id(self.module)] = self
            self.model.set_attn_implementation(_NAME)
        return self

    def __exit__(self, *exc) -> None:
        with _LOCK:
            self.model.set_attn_implementation(self._previous)
            _ACTIVE.pop(id(self.module), None)
            for m in self._modules:
                _ORIGINAL.pop(id(m), None)

    def _record(self, weights, mask) -> None:
        import torch

        self.attention = weights.detach()
        B, _, q, k = weights.shape
        if mask is None:
            self.key_mask = torch.ones(B, k, dtype=torch.bool, device=weights.device)
        else:
            m = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
            self.key_mask = m.expand(B, -1, q, k).any(dim=2).any(dim=1) if m.dim() == 4 else m.bool()
        self.lengths = self.key_mask.sum(dim=1)
