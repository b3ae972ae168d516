"""Backend selection: one place that decides which implementation runs."""

from __future__ import annotations

from . import _core

BACKENDS = ("auto", "cpu", "cuda", "triton", "numpy")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but is not built or has no device here."""


def resolve(backend: str, what: str) -> str:
    """The concrete backend for ``backend`` ("auto" picks the fastest present)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        if _core.have_core():
            return "cpu"
        _core.warn_fallback(what)
        return "numpy"
    if backend == "cpu":
        _core.core()  # raises with the reinstall command when missing
        return "cpu"
    if backend in ("cuda", "triton"):
        raise BackendUnavailableError(
            f"backend {backend!r} is not available for {what} in this build; "
            "use backend='cpu' (compiled) or 'numpy' (reference)"
        )
    return backend
