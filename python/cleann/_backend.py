"""Backend selection: one place that decides which implementation runs.

"auto" follows the data: a CUDA tensor runs on the GPU (cleann's CUDA kernels when this build has
them, else the Triton kernels, else it is copied to the CPU with a warning); anything else runs on
the compiled CPU core (or the NumPy reference, with a warning, when the core failed to load).
A backend named explicitly runs or raises :class:`BackendUnavailableError` saying why it cannot.
"""

from __future__ import annotations

import os
import warnings

from . import _core
from .errors import ArgumentError, CleannError

BACKENDS = ("auto", "cpu", "cuda", "triton", "numpy")
GPU_BACKENDS = ("cuda", "triton")


class BackendUnavailableError(CleannError, RuntimeError):
    """A backend was asked for by name but is not built or has no device here."""


def is_cuda_tensor(x: object) -> bool:
    return type(x).__module__.startswith("torch") and getattr(x, "is_cuda", False)


def triton_interpreted() -> bool:
    """Triton kernels run on CPU tensors in the interpreter (slow; for tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cuda_built() -> bool:
    return _core.have_core() and bool(_core.core().build_info()["cuda"])


def _cuda_devices() -> int:
    return _core.core().cuda_device_count() if cuda_built() else 0


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda_error(what: str) -> str | None:
    if not cuda_built():
        return (f"backend 'cuda' is not available for {what}: this build of cleann has no CUDA kernels "
                "(rebuild with CLEANN_CUDA=ON pip install --no-build-isolation . on a machine with nvcc)")
    if _cuda_devices() == 0 or not _torch_cuda():
        return f"backend 'cuda' is not available for {what}: no CUDA device is visible to cleann and torch"
    return None


def triton_error(what: str, data) -> str | None:
    if not _triton_importable():
        return (f"backend 'triton' is not available for {what}: Triton (and torch) are not installed; "
                "pip install 'cleann[gpu]'")
    if _torch_cuda() or triton_interpreted():
        return None
    return (f"backend 'triton' is not available for {what}: Triton kernels need a CUDA device "
            "(or TRITON_INTERPRET=1 to run them in the CPU interpreter)")


def resolve(backend: str, what: str, data=None, gpu: bool = False) -> str:
    """The concrete backend for ``backend`` given the input ``data``.

    ``gpu`` says whether ``what`` has GPU kernels; without them a CUDA input runs on the CPU.
    """
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        if gpu and is_cuda_tensor(data):
            if _cuda_error(what) is None:
                return "cuda"
            if triton_error(what, data) is None:
                return "triton"
            warnings.warn(f"{what}: the input is on {data.device} but this build has no CUDA kernels and Triton "
                          "is not installed; copying it to the CPU", RuntimeWarning, stacklevel=3)
        if _core.have_core():
            return "cpu"
        _core.warn_fallback(what)
        return "numpy"
    if backend == "cpu":
        _core.core()  # raises with the reinstall command when missing
        return "cpu"
    if backend in GPU_BACKENDS:
        if not gpu:
            raise BackendUnavailableError(
                f"backend {backend!r} is not available for {what}: it has no GPU kernels; use backend='cpu'")
        err = _cuda_error(what) if backend == "cuda" else triton_error(what, data)
        if err:
            raise BackendUnavailableError(err)
    return backend


def device_for(backend: str, data):
    """The torch device a GPU backend runs on: the input's when it is a CUDA tensor, else the
    current CUDA device (or the CPU, for Triton in the interpreter)."""
    import torch

    if is_cuda_tensor(data):
        return data.device
    if backend == "triton" and triton_interpreted() and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())
