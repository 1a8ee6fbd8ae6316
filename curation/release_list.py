"""What a release root holds: published versions (and bad ones, shown as bad), leftovers of killed
publishes, and reading one version's manifest from the root."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from audioscope.curation.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    check_name,
    latest,
    parse_spec,
    parse_version,
)
from audioscope.curation.release_layout import INCOMPLETE_PREFIX, MANIFEST_JSON, PUBLISH_MARKER
from audioscope.curation.release_store import ReleaseRoot, TooLarge, sha
from audioscope.errors import UserError
from audioscope.shell import q

#: A leftover ``.incomplete-*`` folder older than this is removed by the next publish.
STALE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class VersionInfo:
    """One published version, as ``list`` shows it."""

    name: str
    version: str
    created: str
    files: int
    total_bytes: int
    train_examples: int
    eval_examples: int
    manifest_sha256: str


@dataclass(frozen=True)
class BadVersion:
    """A version whose manifest cannot be used (not valid JSON, not the format, a bad field): why."""

    name: str
    version: str
    path: str
    problem: str


@dataclass(frozen=True)
class Leftover:
    """Something under a release name that is not a version: a killed publish, a version without manifest."""

    path: str
    kind: str
    started: str | None = None


@dataclass
class Listing:
    """The versions of one release name, the bad ones, and the leftovers beside them."""

    versions: list[VersionInfo] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    bad: list[BadVersion] = field(default_factory=list)


def _examples(counts: Mapping[str, Any], part: str) -> int:
    values = (counts.get(part) or {}).values()
    if part == "train":
        return int(sum(int(c.get("total", 0)) for c in values if isinstance(c, Mapping)))
    return int(sum(int(n) for split in values if isinstance(split, Mapping) for n in split.values()))


def read_manifest(root: ReleaseRoot, name: str, version: str) -> tuple[Manifest, bytes] | None:
    """The manifest of ``name:version`` in ``root`` and its bytes; None when there is none (not published).

    A manifest that is too large, not valid JSON, or not valid against the
    format raises :class:`~audioscope.curation.manifest.ManifestError` (or
    :class:`UserError`) naming the file and the bad field; nothing else is
    read from the version before this passes. A manifest that describes
    another release than the folder it is in is refused too.
    """
    where = root.display(name, version, MANIFEST_JSON)
    try:
        data = root.read(name, version, MANIFEST_JSON, limit=MAX_MANIFEST_BYTES)
    except TooLarge:
        raise UserError(f"{where} is larger than {MAX_MANIFEST_BYTES} bytes: not a release manifest") from None
    if data is None:
        return None
    try:
        manifest = Manifest.from_json(data)
    except ValueError as e:
        raise UserError(f"{where}: {e}; ask the owner of the release root to fix it, or use another version") from None
    if (manifest.name, manifest.version) != (name, version):
        raise UserError(
            f"{where} describes {manifest.name}:{manifest.version}, not {name}:{version}: the release root was "
            "changed by hand; ask its owner to fix it"
        )
    return manifest, data


def _version_info(name: str, version: str, manifest: Manifest, data: bytes) -> VersionInfo:
    m = manifest
    return VersionInfo(
        name=name, version=version, created=m.created, files=len(m.files) + 1, total_bytes=m.total_bytes + len(data),
        train_examples=_examples(m.counts, "train"), eval_examples=_examples(m.counts, "eval"),
        manifest_sha256=sha(data),
    )  # fmt: skip


def _started(root: ReleaseRoot, name: str, entry: str) -> str | None:
    try:
        data = root.read(name, entry, PUBLISH_MARKER, limit=1 << 16)
        return str(json.loads(data)["started"]) if data else None
    except (ValueError, KeyError, TypeError, TooLarge):
        return None


def list_names(root_uri: str) -> list[str]:
    """Release names under a root."""
    root = ReleaseRoot(root_uri)
    root.refresh()
    return [b for b, t in root.children() if t == "directory" and not b.startswith(".")]


def list_versions(root_uri: str, name: str) -> Listing:
    """Published versions of ``name`` (sorted by precedence), bad versions, and leftovers of failed publishes.

    A version whose manifest is not valid is listed in ``bad`` with the
    reason, and the listing goes on.
    """
    try:
        check_name(name)
    except ValueError as e:
        raise UserError(f"{e}; see `audioscope release list --root {q(root_uri)}` for the names there") from None
    root = ReleaseRoot(root_uri)
    root.refresh()
    out = Listing()
    for base, kind in root.children(name):
        if kind != "directory":
            continue
        if base.startswith(INCOMPLETE_PREFIX):
            out.leftovers.append(Leftover(root.display(name, base), "incomplete publish", _started(root, name, base)))
            continue
        try:
            parse_version(base)
        except ValueError:
            continue
        try:
            found = read_manifest(root, name, base)
        except UserError as e:
            out.bad.append(BadVersion(name, base, root.display(name, base), str(e)))
            continue
        if found is None:
            out.leftovers.append(Leftover(root.display(name, base), "version without manifest (not published)"))
            continue
        out.versions.append(_version_info(name, base, *found))
    out.versions.sort(key=lambda v: parse_version(v.version).key())
    out.bad.sort(key=lambda v: parse_version(v.version).key())
    return out


def _age_seconds(started: str | None) -> float | None:
    if not started:
        return None
    try:
        t = _dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return (_dt.datetime.now(_dt.timezone.utc) - t).total_seconds()


def clean_leftovers(root: ReleaseRoot, name: str, stale_seconds: float = STALE_SECONDS) -> list[str]:
    """Remove ``.incomplete-*`` folders of ``name`` whose publish started more than ``stale_seconds`` ago."""
    removed = []
    for base, kind in root.children(name):
        if kind != "directory" or not base.startswith(INCOMPLETE_PREFIX):
            continue
        age = _age_seconds(_started(root, name, base))
        if age is None and root.local:
            age = _dt.datetime.now().timestamp() - os.path.getmtime(root.p(name, base))
        if age is None or age > stale_seconds:
            root.remove_tree(name, base)
            removed.append(root.display(name, base))
    return removed


def pick_version(root: ReleaseRoot, spec: str) -> tuple[str, str]:
    """(name, version) of ``NAME:VERSION`` (``NAME`` alone: the newest release in ``root``)."""
    try:
        name, version = parse_spec(spec)
    except ValueError as e:
        raise UserError(f"{e}; give NAME:VERSION such as audioscope:1.0.0") from None
    if version is None:
        version = latest(v.version for v in list_versions(root.uri, name).versions)
        if version is None:
            raise UserError(
                f"no published version of {name!r} in {root.uri}; see `audioscope release list --root {q(root.uri)}`"
            )
    return name, version


def remote_manifest(root: ReleaseRoot, name: str, version: str) -> tuple[Manifest, bytes]:
    """The manifest of a published version; :class:`UserError` when the version is not published or bad."""
    found = read_manifest(root, name, version)
    if found is None:
        have = [v.version for v in list_versions(root.uri, name).versions]
        raise UserError(
            f"{name}:{version} is not published in {root.uri} (versions: {', '.join(have) or 'none'}); "
            f"see `audioscope release list {q(name)} --root {q(root.uri)}`"
        )
    return found
