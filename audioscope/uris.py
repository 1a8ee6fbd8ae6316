"""Local paths and URIs, told apart the same way by every step (standard library only).

A location is local when it has no scheme or the ``file://`` one; fsspec
reads ``file://`` followed by the path as written (no percent-decoding), and
so do these helpers, so that a step that opens a local copy itself (a
model, a media root) names the same folder as the storage layer.
"""

from __future__ import annotations

import os

FILE_SCHEME = "file://"


def is_local(uri: str | os.PathLike[str]) -> bool:
    """A path on this machine's disk (plain path or ``file://``), not a URI of an object store."""
    text = os.fspath(uri)
    return "://" not in text or text.startswith(FILE_SCHEME)


def local_path(uri: str) -> str:
    """The path of a local location (``file://`` dropped); other URIs as given."""
    return uri[len(FILE_SCHEME):] if uri.startswith(FILE_SCHEME) else uri


def normalise(uri: str) -> str:
    """A local path made absolute (so `./x` and `/abs/x` are the same); other URIs without a trailing slash."""
    if not is_local(uri):
        return uri.rstrip("/")
    return os.path.abspath(local_path(uri))
