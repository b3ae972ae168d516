"""Hugging Face layer: attention capture (and, built on it, testers and the explainer).

The only part of cleann that imports transformers.
"""

from .capture import AttentionCapture, CaptureError, attention_modules
from .explainer import Explainer, TextExplanation, default_model_path, load
from .testers import MaskedTokenTester, NextTokenTester, SequenceClassificationTester, ZeroShotTester

__all__ = [
    "AttentionCapture",
    "CaptureError",
    "Explainer",
    "MaskedTokenTester",
    "NextTokenTester",
    "SequenceClassificationTester",
    "TextExplanation",
    "ZeroShotTester",
    "attention_modules",
    "default_model_path",
    "load",
]
