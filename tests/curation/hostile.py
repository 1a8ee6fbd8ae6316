"""Helpers for the hostile-input tests of releases: a snapshot of a folder tree (bytes, links, modes)
to show that nothing outside the intended folder changed, and hand-made release roots."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from audioscope.curation.manifest import FileEntry, Manifest


def snapshot(root: str | Path, skip: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """Every entry under ``root`` (links not followed): relative path -> (kind, content or target, mode).

    Folders in ``skip`` (absolute paths) are left out, with what is under them.
    """
    root = Path(root)
    skipped = {os.path.abspath(s) for s in skip}
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.abspath(full) in skipped:
                continue
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = ("dir", os.lstat(full).st_mode)
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isfile(full):
                out[rel] = ("file", Path(full).read_bytes(), st.st_mode, st.st_mtime_ns)
            else:
                out[rel] = ("other", st.st_mode)
    return out


def entry(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_root(root: Path, files: Mapping[str, bytes], version: str = "1.0.0", name: str = "ds",
              manifest: Mapping[str, Any] | None = None) -> Path:
    """A hand-made published version ``name:version`` in ``root`` holding ``files`` (and a valid manifest,
    unless ``manifest`` is given as the JSON object to write instead)."""
    base = root / name / version
    base.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    if manifest is None:
        entries = [FileEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()]
        manifest = json.loads(
            Manifest(name=name, version=version, created="2026-01-01T00:00:00Z", files=entries).to_json()
        )
    (base / "manifest.json").write_text(json.dumps(manifest))
    return base


def valid_manifest(files: Mapping[str, bytes], name: str = "ds", version: str = "1.0.0") -> dict[str, Any]:
    entries = [FileEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()]
    return json.loads(Manifest(name=name, version=version, created="2026-01-01T00:00:00Z", files=entries).to_json())
