"""Commands we print for the user to paste (standard library only)."""

from __future__ import annotations

import os
import shlex


def q(value: str | os.PathLike[str]) -> str:
    """``value`` as one shell word: a path with spaces or quotes pastes as the same path."""
    return shlex.quote(os.fspath(value))
