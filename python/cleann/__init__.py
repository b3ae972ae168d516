"""cleann: causal graphs from self-attention (ABCD) and minimal causal explanations (CLEANN).

The compiled core ``cleann._C`` runs the batched partial-correlation CI tests, the skeleton
search and PC's orientation; ``cleann._reference`` holds the slow NumPy versions they are tested
against.
"""

from . import errors, graph, oracle
from ._backend import BackendUnavailableError
from ._core import CoreUnavailableError
from ._pc import pc
from .ci import CIResult, ci_test, fisher_z_pvalue, partial_correlation
from .correlation import attention_to_correlation
from .errors import ArgumentError, CleannError
from ._learn import abcd, fci, icd
from .explain import Explanation, TesterError, explain, explain_heads, explain_tokens
from .graph import Graph
from .skeleton import SepSets, Skeleton, skeleton

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BackendUnavailableError",
    "CIResult",
    "CleannError",
    "CoreUnavailableError",
    "Explanation",
    "Graph",
    "SepSets",
    "Skeleton",
    "TesterError",
    "abcd",
    "attention_to_correlation",
    "ci_test",
    "errors",
    "explain",
    "explain_heads",
    "explain_tokens",
    "fci",
    "fisher_z_pvalue",
    "graph",
    "icd",
    "oracle",
    "partial_correlation",
    "pc",
    "skeleton",
]
