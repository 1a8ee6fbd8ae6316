"""argparse ``type=`` functions shared by the command modules (standard library only).

Each turns the text into a value or raises ``argparse.ArgumentTypeError``
with a message that says what is wanted, which argparse prints as usage.
"""

from __future__ import annotations

import argparse


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = float(_number(text, float))
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value:g}")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds > 0."""
    value = float(_number(text, float))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {value:g}")
    return value


def seconds_or_none(text: str) -> float | None:
    """A number of seconds > 0, or ``none`` (no limit)."""
    if text.strip().lower() == "none":
        return None
    return positive_seconds(text)


def nonnegative_db(text: str) -> float:
    """A level in dB >= 0 (0 switches the option off)."""
    value = float(_number(text, float))
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 dB (0: off), got {value:g}")
    return value
