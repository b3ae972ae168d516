"""Triton kernels, shipped as ``cleann.kernels``.

Importing this package never needs Triton; each kernel module imports it when used.
"""

__all__: list[str] = []
