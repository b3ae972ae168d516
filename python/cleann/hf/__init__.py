"""Hugging Face layer: attention capture (and, built on it, testers and the explainer).

The only part of cleann that imports transformers.
"""

from .capture import AttentionCapture, CaptureError, attention_modules
from .explainer import Explainer, TextExplanation, default_model_path, load
from .recommend import (MaskedItemTester, RecommendationExplanation, RecommenderExplainer, evaluate,
                        synthetic_sessions, train_bert4rec)
from .testers import MaskedTokenTester, NextTokenTester, SequenceClassificationTester, ZeroShotTester

__all__ = [
    "AttentionCapture",
    "CaptureError",
    "Explainer",
    "MaskedItemTester",
    "MaskedTokenTester",
    "NextTokenTester",
    "RecommendationExplanation",
    "RecommenderExplainer",
    "SequenceClassificationTester",
    "TextExplanation",
    "ZeroShotTester",
    "attention_modules",
    "default_model_path",
    "evaluate",
    "load",
    "synthetic_sessions",
    "train_bert4rec",
]
