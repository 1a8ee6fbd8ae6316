"""What a loader reads for a release: a verified local copy (pulled into a cache when missing), or
the files of one part of it. No TensorFlow here; :func:`release_files` serves any framework.

The guarantee: before this process hands out any file of a release copy,
that file's SHA-256 has been computed in this process and equals the
manifest's (files are hashed in parallel; a file hashed once is not hashed
again by the same process while its inode, size, modification and change
times are unchanged). A bad file raises
:class:`~audioscope.curation.manifest.VerificationError` naming it, for every
kind of file (shards, tables, pair lists, data card); a link inside the copy
is refused, never followed.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from audioscope import storage
from audioscope.curation.manifest import (
    FORMAT,
    REPAIR_HINT,
    VerificationError,
    check_dir,
    check_relative_path,
    parse_spec,
    pulled_groups,
    read_local_manifest,
    release_files,
    verify_files,
)
from audioscope.curation.release_layout import MANIFEST_JSON, SELECTABLE_GROUPS, CopyLayout
from audioscope.curation.release_list import pick_version
from audioscope.curation.release_pull import parse_groups, pull
from audioscope.curation.release_store import ReleaseRoot
from audioscope.errors import UserError

__all__ = ["default_cache", "release_files", "resolve", "resolve_source"]


def default_cache(name: str, version: str) -> str:
    """Where :func:`resolve` keeps pulled releases.

    ``$AUDIOSCOPE_RELEASE_CACHE/<name>/<version>``, by default under ``~/.cache/audioscope/releases``.
    """
    base = os.environ.get("AUDIOSCOPE_RELEASE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "audioscope", "releases"
    )
    return os.path.join(base, name, version)


def _complete_copy(dest: str, name: str, version: str, groups: tuple[str, ...] | None) -> bool:
    """True when ``dest`` holds a finished pull of ``name:version`` covering ``groups``."""
    if not CopyLayout(dest).finished():
        return False
    m = read_local_manifest(dest)
    if (m.name, m.version) != (name, version):
        raise UserError(f"{dest} holds {m.name}:{m.version}, not {name}:{version}: give another destination")
    have = pulled_groups(dest)
    return have is None or (groups is not None and set(groups) <= set(have))


def _verified(directory: str, groups: tuple[str, ...] | None) -> str:
    report = check_dir(directory, groups, use_cache=True)
    if report.problems:
        raise VerificationError(directory, report.problems, REPAIR_HINT.format(directory=directory))
    return directory


def resolve(spec: str, *, root: str | None, dest: str | None = None, only: str | Iterable[str] | None = None) -> str:
    """A verified local folder holding the release ``spec`` (``NAME:VERSION``, or a local release folder).

    A finished local copy (in ``dest``, default :func:`default_cache`) is
    checked file by file (size and SHA-256, see the module docstring) and
    refused with a :class:`VerificationError` naming each bad file; without
    one the release is pulled from ``root`` (resuming an interrupted pull).
    ``only`` limits it to groups (``"eval"``).
    """
    groups = parse_groups(only)
    if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, MANIFEST_JSON)):
        return _verified(os.path.abspath(spec), groups)
    if root is None:
        raise UserError(f"{spec!r} is not a local release folder: give the release root it is published in")
    rroot = ReleaseRoot(root)
    name, version = pick_version(rroot, spec)
    dest = os.path.abspath(dest or default_cache(name, version))
    if _complete_copy(dest, name, version, groups):
        return _verified(dest, groups)
    pull(f"{name}:{version}", root=root, dest=dest, only=groups, show_progress=False)
    return dest


def _is_release_manifest(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(1 << 30)).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _enclosing_copy(path: str, max_up: int = 8) -> str | None:
    """The nearest folder at or above ``path`` that holds a release manifest (a local release copy).

    A ``manifest.json`` of something else (not an audioscope release) is passed over.
    """
    here = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
    for _ in range(max_up):
        if _is_release_manifest(os.path.join(here, MANIFEST_JSON)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return None


def resolve_source(source: str, *, root: str | None = None, dest: str | None = None) -> str:
    """What a loader should read for ``source``, verified when it belongs to a release.

    * With ``root``: ``source`` is ``NAME:VERSION`` optionally followed by a
      path inside the release (``audioscope:1.0.0/eval/test/onscreen_mom``);
      the release (only the group of that path) is resolved with
      :func:`resolve` and the local path returned.
    * A local path inside a release copy (a folder with ``manifest.json`` at
      or above it): the release files under it are verified (size and
      SHA-256) and ``source`` is returned; a bad file raises
      :class:`VerificationError` naming it.
    * Anything else (a mixtures folder, ``gs://``, a glob) is returned as it is.
    """
    if root is not None:
        spec, _, sub = source.partition("/")
        try:
            parse_spec(spec)
        except ValueError as e:
            raise UserError(f"{source}: {e}; give NAME:VERSION/PATH such as audioscope:1.0.0/eval/test") from None
        try:
            sub = check_relative_path(sub.rstrip("/")) if sub.strip("/") else ""
        except ValueError as e:
            raise UserError(
                f"{source}: the path after NAME:VERSION/ must stay inside the release ({e})"
            ) from None
        group = sub.split("/", 1)[0] if sub.split("/", 1)[0] in SELECTABLE_GROUPS else None
        base = resolve(spec, root=root, dest=dest, only=group)
        return os.path.join(base, *sub.split("/")) if sub else base
    if not storage.is_local(source) or not os.path.exists(source):
        return source
    copy = _enclosing_copy(source)
    if copy is None:
        return source
    rel = os.path.relpath(os.path.abspath(source), copy).replace(os.sep, "/")
    prefix = "" if rel == "." else rel
    entries = read_local_manifest(copy).select(pulled_groups(copy))
    wanted = [e.path for e in entries if not prefix or e.path == prefix or e.path.startswith(prefix + "/")]
    verify_files(copy, wanted, use_cache=True)
    return source
