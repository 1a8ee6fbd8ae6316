"""Ids that come from tables, and the file names made from them.

Every id that enters from a file (a list, a Df, a store index, a manifest,
a Label Studio export) is checked against one grammar here before it is
used, and every file name made from an id is built by :func:`file_in`,
which cannot leave its folder.

The grammar (documented in docs/ARCHITECTURE.md):

- **video id**: 1-100 characters of ``A-Z a-z 0-9 _ . -``, starting with a
  letter or digit (so never ``.``, ``..`` or a hidden name), no ``/``.
- **clip id**: ``{video_id}-{start_ms:07d}`` (start in milliseconds, at
  least 7 digits).
- **name** (set, pool, recipe, split, task kind): 1-64 characters of
  ``a-z 0-9 _ -``, starting with a letter or digit.
- **version**: semantic versioning 2.0 (``1.2.3``, ``1.0.0-rc.1+b5``).
"""

from __future__ import annotations

import posixpath
import re

from audioscope.errors import UserError

VIDEO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
CLIP_ID = re.compile(r"(?P<video>[A-Za-z0-9][A-Za-z0-9_.-]{0,99})-(?P<ms>\d{7,})")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)

_KINDS = {"video id": VIDEO_ID, "clip id": CLIP_ID, "name": NAME, "version": VERSION}


class BadId(UserError, ValueError):
    """An id that does not follow its grammar (``kind`` says which)."""

    def __init__(self, kind: str, value: object, where: str = "") -> None:
        self.kind, self.value = kind, value
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        at = f" in {where}" if where else ""
        super().__init__(f"{shown} is not a valid {kind}{at}: {describe(kind)}")


def describe(kind: str) -> str:
    """One line saying what a valid id of ``kind`` looks like."""
    return {
        "video id": "1-100 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
        "clip id": "VIDEO_ID-MILLISECONDS (e.g. abc123-0005000)",
        "name": "1-64 characters of a-z, 0-9, '_', '-', starting with a letter or digit",
        "version": "a semantic version such as 1.0.0",
    }[kind]


def is_valid(kind: str, value: object) -> bool:
    return isinstance(value, str) and _KINDS[kind].fullmatch(value) is not None


def check(kind: str, value: object, where: str = "") -> str:
    """``value`` if it is a valid ``kind`` ("video id", "clip id", "name", "version"), else :class:`BadId`."""
    if not is_valid(kind, value):
        raise BadId(kind, value, where)
    return value  # type: ignore[return-value]


def check_video_id(value: object, where: str = "") -> str:
    return check("video id", value, where)


def check_clip_id(value: object, where: str = "") -> str:
    return check("clip id", value, where)


def check_name(value: object, where: str = "") -> str:
    return check("name", value, where)


def check_version(value: object, where: str = "") -> str:
    return check("version", value, where)


def split_clip_id(clip: str) -> tuple[str, float]:
    """``"abc-0005000"`` -> ``("abc", 5.0)``; :class:`BadId` for anything else."""
    m = CLIP_ID.fullmatch(clip) if isinstance(clip, str) else None
    if m is None:
        raise BadId("clip id", clip)
    return m.group("video"), int(m.group("ms")) / 1000.0


def file_in(folder: str, name: str, suffix: str = "", kind: str = "video id") -> str:
    """``folder/name+suffix`` for a ``name`` valid as ``kind``; never outside ``folder``.

    ``folder`` may be a local path or a URI (``gs://b/x``). The name is
    checked against its grammar (which has no ``/`` and cannot be ``.`` or
    ``..``), and the joined path is checked once more to sit directly in
    ``folder``.
    """
    check(kind, name)
    if "/" in suffix or "\\" in suffix or "\x00" in suffix:
        raise ValueError(f"a file suffix cannot hold a path separator: {suffix!r}")
    base = name + suffix
    path = posixpath.join(folder.rstrip("/"), base) if folder else base
    if posixpath.dirname(path) != folder.rstrip("/") or posixpath.basename(path) != base:
        raise BadId(kind, name)
    return path
