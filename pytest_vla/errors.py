"""Turning exceptions into the one-line reasons pytest-vla shows users."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """``Type: message`` with all whitespace collapsed, so a reason never spans lines."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
