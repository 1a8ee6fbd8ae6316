"""What changed between two releases: files (by SHA-256), counts, configs and the other fields."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from audioscope.curation.manifest import FileEntry, Manifest, read_local_manifest
from audioscope.curation.release_layout import CROISSANT_JSON
from audioscope.curation.release_list import pick_version, remote_manifest
from audioscope.curation.release_store import ReleaseRoot
from audioscope.errors import UserError


def load_manifest(spec: str, root: str | None) -> tuple[Manifest, str]:
    """A manifest and a label for it, from a local release folder or ``NAME:VERSION`` in ``root``."""
    if os.path.isdir(spec):
        m = read_local_manifest(spec)
        return m, f"{m.name}:{m.version} ({spec})"
    if root is None:
        raise UserError(f"{spec!r} is not a local release folder; give --root to read it from a release root")
    rroot = ReleaseRoot(root)
    rroot.refresh()
    name, version = pick_version(rroot, spec)
    return remote_manifest(rroot, name, version)[0], f"{name}:{version}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: value}


Change = tuple[str, Any, Any]


def _changes(a: Any, b: Any, prefix: str) -> list[Change]:
    fa, fb = _flatten(a, prefix), _flatten(b, prefix)
    missing = object()
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k, missing) != fb.get(k, missing)]


@dataclass
class ReleaseDiff:
    """What changed from release ``a`` to release ``b``."""

    a: str
    b: str
    added: list[FileEntry] = field(default_factory=list)
    removed: list[FileEntry] = field(default_factory=list)
    changed: list[tuple[FileEntry, FileEntry]] = field(default_factory=list)
    unchanged: int = 0
    counts: list[Change] = field(default_factory=list)
    configs: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)
    #: Files generated from the manifest (croissant.json) that differ: they change whenever anything does,
    #: so they are not counted among the changed files.
    derived: list[str] = field(default_factory=list)


#: Files made from the manifest's other fields; a diff names them apart.
DERIVED = (CROISSANT_JSON,)


def diff(a: Manifest, b: Manifest, labels: tuple[str, str] = ("a", "b")) -> ReleaseDiff:
    """Files added, removed and changed (by SHA-256), and changed counts, configs and other fields."""
    fa, fb = a.by_path(), b.by_path()
    out = ReleaseDiff(a=labels[0], b=labels[1])
    out.derived = [p for p in DERIVED if (fa.get(p) and fa[p].sha256) != (fb.get(p) and fb[p].sha256)]
    for p in DERIVED:
        fa.pop(p, None)
        fb.pop(p, None)
    out.added = [fb[p] for p in sorted(set(fb) - set(fa))]
    out.removed = [fa[p] for p in sorted(set(fa) - set(fb))]
    both = sorted(set(fa) & set(fb))
    out.changed = [(fa[p], fb[p]) for p in both if (fa[p].sha256, fa[p].size) != (fb[p].sha256, fb[p].size)]
    out.unchanged = len(both) - len(out.changed)
    out.counts = _changes(a.counts, b.counts, "counts")
    out.configs = _changes(a.configs, b.configs, "configs")
    for key in ("schema_versions", "models", "toolkit", "licences", "labels"):
        out.other += _changes(getattr(a, key), getattr(b, key), key)
    return out
