"""Loads the compiled core ``cleann._C`` and says how to fix a broken install.

``import cleann`` works without it; the first call that needs it raises :class:`CoreUnavailableError`
with the reinstall command, and ``backend="auto"`` falls back to the NumPy reference with a warning.
"""

from __future__ import annotations

import warnings
from types import ModuleType

from .errors import CleannError

try:
    from . import _C  # type: ignore[attr-defined]

    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _C = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

REINSTALL = "pip install --force-reinstall --no-deps --no-build-isolation --no-cache-dir cleann"


class CoreUnavailableError(CleannError, ImportError):
    """The compiled module cleann._C is missing or failed to load."""


def have_core() -> bool:
    return _C is not None


def core() -> ModuleType:
    """The compiled module, or an error that says how to get it."""
    if _C is None:
        raise CoreUnavailableError(
            f"cleann's compiled core (cleann._C) could not be loaded: {_IMPORT_ERROR}. "
            f"Rebuild it from the source tree with: {REINSTALL} ."
            " (needs a C++17 compiler and cmake >= 3.18)"
        )
    return _C


def warn_fallback(what: str) -> None:
    warnings.warn(
        f"cleann._C is not available ({_IMPORT_ERROR}); {what} runs on the slow NumPy reference. "
        f"Rebuild the core with: {REINSTALL} .",
        RuntimeWarning,
        stacklevel=3,
    )
