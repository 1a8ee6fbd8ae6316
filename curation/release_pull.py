"""Pulling a published version into a local folder: every file streamed to a partial of this pull,
capped at the size the manifest gives, checked by SHA-256 and renamed into place; the manifest last.

A pull treats the release root as untrusted: the manifest is validated first
(:class:`~audioscope.curation.manifest.Manifest`), a file that streams more
bytes than its manifest entry says is stopped at that size and dropped, and
nothing is written through a link or over a file the pull did not create. Two
pulls into one folder (two jobs sharing a cache) take turns: the second waits
for the first's lock, then finds the files there and keeps them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from audioscope import storage
from audioscope.curation import release_store as store
from audioscope.curation.manifest import FileEntry, Manifest, VerificationError, file_problem, pulled_groups
from audioscope.curation.release_layout import MANIFEST_JSON, SELECTABLE_GROUPS, CopyLayout
from audioscope.curation.release_list import pick_version, remote_manifest
from audioscope.curation.release_store import ReleaseRoot, TooLarge
from audioscope.errors import UserError
from audioscope.locks import local_flock
from audioscope.progress import Progress


@dataclass
class PullResult:
    """What a pull did: files transferred and files already there (both checked), bytes moved."""

    name: str
    version: str
    directory: str
    groups: tuple[str, ...] | None
    transferred: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    manifest_sha256: str = ""


def parse_groups(only: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``None`` (everything) or the selected groups, from ``"eval"``, ``"eval,curated"`` or a list."""
    if only is None:
        return None
    items = [only] if isinstance(only, str) else list(only)
    groups = {g.strip() for item in items for g in item.split(",") if g.strip()}
    unknown = sorted(groups - set(SELECTABLE_GROUPS))
    if unknown:
        raise UserError(f"unknown part(s) {unknown}: --only takes {', '.join(SELECTABLE_GROUPS)} (comma-separated)")
    return None if groups >= set(SELECTABLE_GROUPS) else tuple(g for g in SELECTABLE_GROUPS if g in groups)


@contextlib.contextmanager
def copy_lock(layout: CopyLayout, announce: bool = True) -> Iterator[None]:
    """Hold the copy's lock (``flock`` on a hidden file in it); wait, saying so, while another process does."""

    def wait(holder: str) -> None:
        if announce:
            print(
                f"audioscope release pull: another pull is writing {layout.directory}; waiting for it to finish",
                file=sys.stderr,
            )

    with local_flock(layout.lock, wait):
        yield


def _read_state(layout: CopyLayout) -> dict | None:
    try:
        with open(layout.state, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _check_dest(layout: CopyLayout, manifest: Manifest, data: bytes, entries: list[FileEntry]) -> None:
    """Refuse a folder that holds another release, or files at the release's paths that no pull made."""
    dest = layout.directory
    if os.path.lexists(layout.manifest):
        try:
            with open(layout.manifest, "rb") as f:
                have = f.read(len(data) + 1)
        except OSError:
            have = b""
        if have == data and not os.path.islink(layout.manifest):
            return
        try:
            other = Manifest.from_json(have)
            what = f"{other.name}:{other.version}"
        except ValueError:
            what = "another release"
        raise UserError(
            f"{dest} already holds {what}, not this {manifest.name}:{manifest.version}: pull into an empty "
            "folder (or the folder of an earlier pull of the same release to resume it)"
        )
    state = _read_state(layout)
    if state is not None and state.get("manifest_sha256") == store.sha(data):
        return  # an interrupted pull of this release: resume it
    if state is not None:
        raise UserError(
            f"{dest} holds an interrupted pull of {state.get('name')}:{state.get('version')}, not "
            f"{manifest.name}:{manifest.version}: pull into an empty folder"
        )
    if taken := [e.path for e in entries if os.path.lexists(layout.file(e.path))]:
        raise UserError(
            f"{dest} already has {len(taken)} file(s) at the release's paths that no pull of "
            f"{manifest.name}:{manifest.version} made (e.g. {taken[0]}); a pull never overwrites them: pull into "
            "an empty folder"
        )


def _write_state(
    layout: CopyLayout, manifest: Manifest, data: bytes, groups: tuple[str, ...] | None, root: str, done: bool
) -> None:
    """The copy's state: ``groups`` complete in it (merged with an earlier finished pull's)."""
    previous = pulled_groups(layout.directory) if layout.finished() else ()
    if not done:
        groups = previous if layout.finished() else ()
    elif groups is not None and previous is not None:
        groups = tuple(g for g in SELECTABLE_GROUPS if g in set(groups) | set(previous))
    state = {
        "name": manifest.name, "version": manifest.version, "root": root, "manifest_sha256": store.sha(data),
        "groups": list(SELECTABLE_GROUPS if groups is None else groups), "pulled": store.now(),
        "complete": done,
    }  # fmt: skip
    storage.atomic_write(layout.state, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _download(root: ReleaseRoot, name: str, version: str, entry: FileEntry, layout: CopyLayout) -> str | None:
    """Fetch one file to a partial of this pull, check it, rename it into place; a problem or None."""
    link = layout.link_in_path(entry.path)
    if link is not None and link != entry.path:
        raise UserError(
            f"{layout.directory}/{link} is a symbolic link: a pull never writes through a link (it could lead "
            "outside the folder); remove it or pull into another folder"
        )
    local = layout.file(entry.path)
    if os.path.isdir(local) and not os.path.islink(local):
        raise UserError(f"{local} is a folder where the release has a file: move it away or pull into another folder")
    try:
        os.makedirs(os.path.dirname(local), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(
            f"a file is in the way of the folder {os.path.dirname(local)}: move it away or pull into another folder"
        ) from None
    os.makedirs(layout.partial_dir, exist_ok=True)
    tmp = layout.new_partial()
    try:
        size, sha = store.copy_file(
            root.fs, root.p(name, version, *entry.path.split("/")), None, tmp, True, max_bytes=entry.size
        )
        if (size, sha) != (entry.size, entry.sha256):
            return (
                f"the copy in the release root has {size} bytes and SHA-256 {sha[:12]}..., not what the manifest says"
            )
        os.replace(tmp, local)
        return None
    except TooLarge:
        return (
            f"the copy in the release root has more than the {entry.size} bytes the manifest says: the transfer "
            "was stopped there and nothing was kept"
        )
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "missing from the release root"
    except io.UnsupportedOperation as e:  # not a file that can be read as a stream (a socket, a device)
        return f"cannot be read as a file in the release root ({e})"
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def pull(
    spec: str, *, root: str, dest: str, only: str | Iterable[str] | None = None, show_progress: bool = True,
    jobs: int = store.DEFAULT_JOBS,
) -> PullResult:
    """Copy a published version (or some of its groups) into the local folder ``dest``, verified.

    Files already in ``dest`` with the right size and SHA-256 are kept; the
    others stream to a partial of this pull (at most the manifest's size), are
    checked, and are renamed into place. ``manifest.json`` is written last.
    Raises :class:`VerificationError` naming files whose copy in the root does
    not match the manifest, and :class:`UserError` for a folder it must not
    write into.
    """
    if not storage.is_local(dest):
        raise UserError(f"--to {dest}: a pull needs a local folder")
    groups = parse_groups(only)
    rroot = ReleaseRoot(root)
    rroot.refresh()
    name, version = pick_version(rroot, spec)
    manifest, data = remote_manifest(rroot, name, version)
    dest = os.path.abspath(dest)
    try:
        os.makedirs(dest, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--to {dest} is a file, not a folder: give a folder to pull into") from None
    layout = CopyLayout(dest)
    entries = manifest.select(groups)
    with copy_lock(layout, announce=show_progress):
        _check_dest(layout, manifest, data, entries)
        for partial in layout.stale_partials():  # left by a killed pull of this folder (we hold the lock)
            os.remove(partial)
        _write_state(layout, manifest, data, groups, rroot.uri, done=False)
        result = _transfer(rroot, name, version, manifest, entries, layout, groups, data, show_progress, jobs)
        _write_state(layout, manifest, data, groups, rroot.uri, done=True)
        storage.atomic_write(layout.manifest, data)
        with contextlib.suppress(OSError):
            os.rmdir(layout.partial_dir)
    return result


def _transfer(
    rroot: ReleaseRoot, name: str, version: str, manifest: Manifest, entries: list[FileEntry], layout: CopyLayout,
    groups: tuple[str, ...] | None, data: bytes, show_progress: bool, jobs: int,
) -> PullResult:
    dest = layout.directory
    result = PullResult(name=name, version=version, directory=dest, groups=groups, manifest_sha256=store.sha(data))
    problems: dict[str, str] = {}
    progress = Progress(f"pull {name}:{version}", total=len(entries), unit="files") if show_progress else None

    def fetch(entry: FileEntry) -> tuple[FileEntry, str, str | None]:
        if file_problem(dest, entry) is None:
            return entry, "kept", None
        return entry, "transferred", _download(rroot, name, version, entry, layout)

    def done(outcome: tuple[FileEntry, str, str | None]) -> None:
        if progress is not None:
            progress.update(1, **{outcome[1]: 1})

    try:
        for entry, what, problem in store.each_in_parallel(entries, fetch, jobs, done):  # in manifest order
            if what == "kept":
                result.kept.append(entry.path)
                continue
            if problem is not None:
                problems[entry.path] = problem
            result.transferred.append(entry.path)
            result.bytes_transferred += entry.size
    finally:
        if progress is not None:
            progress.close()
    if problems:
        raise VerificationError(
            rroot.display(name, version),
            problems,
            "The published copy differs from its manifest: tell the owner of the release root, or pull another "
            "version",
        )
    return result


__all__ = ["MANIFEST_JSON", "PullResult", "copy_lock", "parse_groups", "pull"]
