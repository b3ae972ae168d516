"""Triton kernels, shipped as ``cleann.kernels``.

``attention_correlation`` (attention -> correlation, fused), ``ci_test`` (batched partial
correlations with the Fisher-z decision for one conditioning-set size) and ``skeleton_level`` (one
level of the PC-stable skeleton over a stack). They run on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1`` (slow; for tests). Importing this package needs Triton and torch; cleann
imports it only when a Triton backend is asked for.
"""

from .ci import ci_test
from .correlation import attention_correlation
from .skeleton import skeleton_level

__all__ = ["attention_correlation", "ci_test", "skeleton_level"]
