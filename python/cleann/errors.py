"""The exceptions cleann raises on purpose.

Every one derives from :class:`CleannError`, so ``except cleann.CleannError`` catches them all, and
each keeps the built-in parent it had before (``ValueError``, ``RuntimeError``, ``ImportError``), so
``except ValueError`` and the like still work. The compiled core raises :class:`ArgumentError`
itself: its C++ argument errors arrive in Python as exactly this class.

This module imports nothing from cleann: the compiled core imports it while ``cleann`` is still
being initialised.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "CleannError"]


class CleannError(Exception):
    """Base of every exception cleann raises on purpose."""


class ArgumentError(CleannError, ValueError):
    """A bad argument: a wrong shape, dtype, value or option (also raised by the compiled core)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for errors
    that name another library's failure in one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
