"""Hugging Face layer: attention capture (and, built on it, testers and the explainer).

The only part of cleann that imports transformers.
"""

from .capture import AttentionCapture, CaptureError, attention_modules
from .testers import MaskedTokenTester, NextTokenTester, SequenceClassificationTester, ZeroShotTester

__all__ = [
    "AttentionCapture",
    "CaptureError",
    "MaskedTokenTester",
    "NextTokenTester",
    "SequenceClassificationTester",
    "ZeroShotTester",
    "attention_modules",
]
