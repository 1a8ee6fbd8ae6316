"""The release manifest: what a release holds, and checking a copy against it.

A release (``ROOT/<name>/<version>/``) is described by ``manifest.json``:
every other file of the release with its relative path, size and SHA-256, the
group it belongs to (``train``, ``eval``, ``curated`` or ``meta``), the example
counts, schema versions, the configs and seeds of every step that made it,
the toolkit version and git commit, and the models used for filtering. The
manifest is also the commit marker: a version without one does not exist
(see :mod:`audioscope.curation.release`).

This module holds the format (:class:`Manifest`, :class:`FileEntry`), the
names (:func:`parse_spec`, :func:`parse_version`, semantic-version order) and
the checks of a local copy (:func:`check_dir`, :func:`verify_files`). It
imports only the standard library, so the data loader can verify a release
without pandas, Beam or TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from audioscope import ids
from audioscope.curation.release_layout import (
    CROISSANT_JSON,
    GROUPS,
    LICENSES_CSV,
    MANIFEST_JSON,
    PULL_STATE,
    README_MD,
    SELECTABLE_GROUPS,
    CopyLayout,
    group_of,
)
from audioscope.errors import UserError
from audioscope.folders import another_steps_folder

__all__ = [
    "CHUNK", "CROISSANT_JSON", "FORMAT", "FORMAT_VERSION", "GROUPS", "LICENSES_CSV", "MANIFEST_JSON",
    "PULL_STATE", "README_MD", "SELECTABLE_GROUPS", "CheckReport", "FileEntry", "Manifest", "ManifestError",
    "VerificationError", "VerifiedCache", "check_dir", "check_relative_path", "file_problem", "group_of",
    "latest", "parse_spec", "parse_version", "pulled_groups", "read_local_manifest", "release_files",
    "sha256_file", "verify_files",
]  # fmt: skip

FORMAT = "audioscope-release"
FORMAT_VERSION = 1

CHUNK = 8 * 2**20
#: Threads that hash files at the same time (``release verify``, a loader's first use): SHA-256 in
#: hashlib releases the GIL, so threads use every core.
HASH_JOBS = max(1, min(32, os.cpu_count() or 1))
#: A manifest larger than this is refused before it is parsed (about 2.5 million files).
MAX_MANIFEST_BYTES = 1 << 30
#: No release file may be larger than this (a sanity bound: 1 TiB).
MAX_FILE_BYTES = 1 << 40

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(UserError, ValueError):
    """A manifest that does not follow the format; the message names the field."""


class VerificationError(UserError):
    """Files of a local release copy are missing or differ from the manifest.

    ``problems`` maps each bad file (relative path) to what is wrong with it.
    """

    def __init__(self, directory: str, problems: Mapping[str, str], hint: str) -> None:
        self.directory = directory
        self.problems = dict(problems)
        lines = [f"{directory}/{p}: {why}" for p, why in sorted(self.problems.items())]
        shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        super().__init__(
            f"{len(lines)} file(s) of the release copy in {directory} fail verification:\n  {shown}\n{hint}"
        )


def fmt_bytes(n: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, order=False)
class Version:
    """A semantic version (semver.org 2.0.0); :meth:`key` orders by precedence."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")

    def key(self) -> tuple[Any, ...]:
        """Sort key by semver precedence (build metadata ignored; a pre-release sorts before its release)."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def parse_version(text: str) -> Version:
    """A :class:`Version` from ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``; ``ValueError`` otherwise."""
    m = ids.VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"{text!r} is not a semantic version: give MAJOR.MINOR.PATCH such as 1.0.0 "
            "(optionally with -PRERELEASE such as 1.0.0-rc.1; see semver.org)"
        )
    major, minor, patch, pre, build = m.groups()
    return Version(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or "")


def check_name(name: str) -> str:
    """A release name usable as a folder name everywhere, or ``ValueError``."""
    if not ids.is_valid("video id", name):  # the same grammar as video ids: a safe folder name
        raise ValueError(f"release name {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 100 characters)")
    return name


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME:VERSION`` -> (name, version text); ``NAME`` or ``NAME:latest`` -> (name, None)."""
    name, _, version = spec.partition(":")
    check_name(name)
    if not version or version == "latest":
        return name, None
    return name, str(parse_version(version))


def latest(versions: Iterable[str]) -> str | None:
    """The highest version, preferring releases over pre-releases; None for none."""
    parsed = sorted((parse_version(v) for v in versions), key=Version.key)
    released = [v for v in parsed if not v.prerelease]
    pick = released or parsed
    return str(pick[-1]) if pick else None


# --------------------------------------------------------------------------- format


def check_relative_path(path: str) -> str:
    """A release-relative path that stays inside the release folder, or ``ValueError``.

    A manifest comes from a release root that may not be trusted: a path with
    ``..``, a leading ``/``, a backslash, a drive letter, a control character
    or a hidden component (the copy's own state files are hidden) could make a
    pull write outside its folder or over its bookkeeping.
    """
    bad = (
        not isinstance(path, str)
        or not path
        or len(path) > 1024
        or path.startswith("/")
        or "\\" in path
        or ":" in path.split("/", 1)[0]
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or any(part in ("", ".", "..") or part.startswith(".") or len(part) > 255 for part in path.split("/"))
        or posixpath.normpath(path) != path
    )
    if bad:
        raise ValueError(f"unsafe path in a release manifest: {path!r}")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One file of a release."""

    path: str
    size: int
    sha256: str
    group: str = ""

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if not self.group:
            object.__setattr__(self, "group", group_of(self.path))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "files[?]") -> "FileEntry":
        """An entry from its JSON object, every field checked (:class:`ManifestError` naming the field)."""
        if not isinstance(d, Mapping):
            raise ManifestError(f"{where} is {_kind(d)}, not an object with path, size and sha256")
        unknown = sorted(set(d) - {"path", "size", "sha256", "group"})
        if unknown:
            raise ManifestError(f"{where} has unknown field(s) {unknown}")
        path = _field(d, "path", str, where)
        try:
            check_relative_path(path)
        except ValueError as e:
            raise ManifestError(f"{where}.path: {e}") from None
        where = f"{where} ({path})"
        size = _field(d, "size", int, where)
        if not 0 <= size <= MAX_FILE_BYTES:
            raise ManifestError(f"{where}.size is {size}: a size is a whole number of bytes from 0 to {MAX_FILE_BYTES}")
        sha = _field(d, "sha256", str, where)
        if not _SHA256.fullmatch(sha):
            raise ManifestError(f"{where}.sha256 is not 64 lower-case hex digits: {sha[:80]!r}")
        group = d.get("group", "")
        if group != "" and group != group_of(path):
            raise ManifestError(
                f"{where}.group is {group!r}, but a file at that path belongs to {group_of(path)!r}"
            )
        return cls(path=path, size=size, sha256=sha, group=group_of(path))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


def _field(d: Mapping[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    """``d[key]`` when it is a ``kind`` (bool is not an int, a float is not an int); :class:`ManifestError`."""
    if key not in d:
        if required:
            raise ManifestError(f"{where} has no {key!r}")
        return None
    value = d[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is int and isinstance(value, float):
        ok = False
    if not ok:
        names = {int: "a whole number", str: "a string", dict: "an object", list: "a list"}
        raise ManifestError(f"{where}.{key} is {_kind(value)}, not {names.get(kind, kind.__name__)}")
    return value


def _check_json_values(value: Any, where: str, depth: int = 0) -> None:
    """Only finite numbers and plain JSON below ``where`` (``1e400`` reads as infinity: refused)."""
    if depth > 64:
        raise ManifestError(f"{where} is nested more than 64 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"{where} is {value!r}: numbers in a manifest must be finite")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_json_values(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json_values(v, f"{where}[{i}]", depth + 1)


def _check_tree(files: Sequence[FileEntry]) -> None:
    """No path twice, no file where another file needs a folder, no reserved name."""
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise ManifestError(f"a release manifest lists a file twice: files[].path {f.path!r}")
        seen.add(f.path)
    folders = {"/".join(f.path.split("/")[:i]) for f in files for i in range(1, f.path.count("/") + 1)}
    if clash := sorted(seen & folders):
        raise ManifestError(
            f"files[].path {clash[0]!r} is both a file and the folder of another file in the manifest"
        )
    if MANIFEST_JSON in seen:
        raise ManifestError(f"files[].path {MANIFEST_JSON!r} is reserved for the manifest itself")


@dataclass(kw_only=True)
class Manifest:
    """The content of ``manifest.json`` (see the module docstring)."""

    name: str
    version: str
    created: str
    files: list[FileEntry]
    counts: dict[str, Any] = field(default_factory=dict)
    schema_versions: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    toolkit: dict[str, Any] = field(default_factory=dict)
    licences: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def select(self, groups: Iterable[str] | None) -> list[FileEntry]:
        """Files of ``groups`` (None: all); ``meta`` files are always included."""
        wanted = set(GROUPS if groups is None else (*groups, "meta"))
        return [f for f in self.files if f.group in wanted]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)]
        d["total_bytes"] = self.total_bytes
        return d

    def to_json(self) -> str:
        return "".join(self.iter_json())

    def iter_json(self) -> Iterator[str]:
        """The text of :meth:`to_json` in pieces, one per file entry: a release of millions of files is
        written (and hashed) as it streams, never held as one string. Same bytes as ``json.dumps(
        to_dict(), indent=2, sort_keys=True)``."""
        head = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "files"}
        head["total_bytes"] = self.total_bytes
        token = f"files-{uuid.uuid4().hex}"  # a value nothing else in the manifest holds
        head["files"] = token
        text = json.dumps(head, indent=2, sort_keys=True, allow_nan=False)
        before, after = text.split(f'"files": "{token}"', 1)
        files = sorted(self.files, key=lambda f: f.path)
        if not files:
            yield before + '"files": []' + after + "\n"
            return
        yield before + '"files": ['
        for i, f in enumerate(files):
            # json.dumps(entry, indent=2, sort_keys=True) spelled out: an indented dump runs the pure-Python
            # encoder, about 50x slower per entry (the test checks the bytes are the same).
            yield (
                f'{"," if i else ""}\n    {{\n      "group": {json.dumps(f.group)},'
                f'\n      "path": {json.dumps(f.path)},'
                f'\n      "sha256": {json.dumps(f.sha256)},\n      "size": {int(f.size)}\n    }}'
            )
        yield "\n  ]" + after + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        """A manifest from its JSON object, validated against the format before anything uses it.

        Raises :class:`ManifestError` (a ``ValueError`` and a ``UserError``) naming the bad field.
        """
        if not isinstance(d, Mapping):
            raise ManifestError("manifest.json does not hold a JSON object")
        if d.get("format") != FORMAT:
            raise ManifestError("not an audioscope release manifest (its 'format' is not 'audioscope-release')")
        fv = _field(d, "format_version", int, "manifest")
        if fv > FORMAT_VERSION:
            raise ManifestError(
                f"manifest format version {fv} is newer than this toolkit reads ({FORMAT_VERSION}); "
                "upgrade audioscope-data"
            )
        if fv < 1:
            raise ManifestError(f"manifest.format_version is {fv}: versions start at 1")
        _check_json_values(dict(d), "manifest")
        name = _field(d, "name", str, "manifest")
        try:
            check_name(name)
        except ValueError as e:
            raise ManifestError(f"manifest.name: {e}") from None
        version = _field(d, "version", str, "manifest")
        try:
            ids.check_version(version, "manifest.version")
        except ValueError as e:
            raise ManifestError(str(e)) from None
        created = _field(d, "created", str, "manifest")
        raw = _field(d, "files", list, "manifest")
        files = [FileEntry.from_dict(f, f"manifest.files[{i}]") for i, f in enumerate(raw)]
        _check_tree(files)
        kwargs: dict[str, Any] = {}
        for key in ("counts", "schema_versions", "configs", "models", "toolkit", "licences"):
            value = _field(d, key, dict, "manifest", required=False)
            if value is not None:
                kwargs[key] = value
        if d.get("labels") is not None:
            kwargs["labels"] = _field(d, "labels", dict, "manifest")
        total = d.get("total_bytes")
        if total is not None and total != sum(f.size for f in files):
            raise ManifestError(
                f"manifest.total_bytes is {_kind(total)}, but the files listed add up to {sum(f.size for f in files)}"
            )
        _check_counts(kwargs.get("counts", {}))
        return cls(name=name, version=version, created=created, files=files, format_version=fv, **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest.json has more than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except ManifestError:
            raise
        except (ValueError, RecursionError) as e:
            raise ManifestError(f"manifest.json is not valid JSON ({e})") from None
        return cls.from_dict(data)


def _no_constant(name: str) -> Any:
    raise ManifestError(f"manifest.json holds {name}, which is not a JSON number")


def _check_counts(counts: Mapping[str, Any]) -> None:
    """The example counts ``list`` adds up: whole numbers >= 0 where they are counts."""
    for part in ("train", "eval"):
        value = counts.get(part)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ManifestError(f"manifest.counts.{part} is {_kind(value)}, not an object")
        for k, sub in value.items():
            if not isinstance(sub, Mapping):
                raise ManifestError(f"manifest.counts.{part}.{k} is {_kind(sub)}, not an object")
            for kk, n in sub.items():
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise ManifestError(f"manifest.counts.{part}.{k}.{kk} is {_kind(n)}, not a count")
    ex = counts.get("examples")
    if ex is not None and (isinstance(ex, bool) or not isinstance(ex, int) or ex < 0):
        raise ManifestError(f"manifest.counts.examples is {_kind(ex)}, not a count")


# --------------------------------------------------------------------------- checking a local copy


def sha256_file(path: str) -> tuple[int, str]:
    """(size, SHA-256 hex) of a local file, read in chunks (never through a link: ``O_NOFOLLOW``)."""
    h = hashlib.sha256()
    n = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


class VerifiedCache:
    """Files of local copies this process has hashed and found intact.

    The record lives in this process's memory only: every process (a
    training job, an evaluation) hashes each file of a release with SHA-256
    before its first read, so neither a restored timestamp nor bit rot
    between two runs can pass. Within the process a file is not hashed again
    while its device, inode, size, modification and change times (ns) are
    unchanged (a write changes them; restoring the modification time changes
    the change time). ``audioscope release verify`` never uses it.
    """

    _memo: dict[str, dict[str, tuple[Any, ...]]] = {}
    _lock = threading.Lock()

    def __init__(self, directory: str) -> None:
        self.directory = os.path.realpath(directory)
        with self._lock:
            self.entries = self._memo.setdefault(self.directory, {})

    @staticmethod
    def _key(path: str, entry: FileEntry) -> tuple[Any, ...]:
        st = os.lstat(path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, entry.sha256)

    def intact(self, path: str, entry: FileEntry) -> bool:
        with self._lock:
            return self.entries.get(entry.path) == self._key(path, entry)

    def add(self, path: str, entry: FileEntry, key: tuple[Any, ...] | None = None) -> None:
        with self._lock:
            self.entries[entry.path] = key or self._key(path, entry)

    def save(self) -> None:
        """Nothing to write: the record is kept for the life of the process only (see the class)."""

    @classmethod
    def forget(cls) -> None:
        """Drop every record (the next use hashes every file again)."""
        with cls._lock:
            cls._memo.clear()


def file_problem(directory: str, entry: FileEntry, cache: VerifiedCache | None = None) -> str | None:
    """What is wrong with the local copy of ``entry`` under ``directory`` (None: it is intact).

    A link anywhere on the file's path inside the copy is a problem (the
    bytes would live outside the copy). With ``cache``, a file this process
    found intact and that has not changed since is not hashed again.
    """
    layout = CopyLayout(directory)
    path = layout.file(entry.path)
    link = layout.link_in_path(entry.path)
    if link is not None:
        return f"{link} is a symbolic link; a release copy holds real files (pull again into a plain folder)"
    if not os.path.lexists(path):
        return "missing"
    if not os.path.isfile(path):
        return "not a regular file"
    before = VerifiedCache._key(path, entry)
    size = before[2]
    if size != entry.size:
        return f"size {size} bytes, the manifest says {entry.size}"
    if cache is not None and cache.intact(path, entry):
        return None
    try:
        if sha256_file(path)[1] != entry.sha256:
            return "SHA-256 differs from the manifest (the file is corrupt or was changed)"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if cache is not None and VerifiedCache._key(path, entry) == before:  # unchanged while it was hashed
        cache.add(path, entry, before)
    return None


def read_local_manifest(directory: str) -> Manifest:
    """The manifest of a local release copy; :class:`UserError` when there is none or it is not valid."""
    layout = CopyLayout(directory)
    path = layout.manifest
    if os.path.islink(path):
        raise UserError(f"{path} is a symbolic link; a release copy holds real files: pull again into a plain folder")
    if not os.path.isfile(path):
        raise UserError(
            another_steps_folder(directory, "release") or
            f"{directory} is not a release copy (no {MANIFEST_JSON}): pull one with "
            "`audioscope release pull NAME:VERSION --root ROOT --to DIR`"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        return Manifest.from_json(data)
    except ValueError as e:
        raise UserError(f"{path}: {e}; pull the release again into an empty folder") from None


def pulled_groups(directory: str) -> tuple[str, ...] | None:
    """The groups a pull put in ``directory`` (None: all of them, e.g. a published folder)."""
    path = CopyLayout(directory).state
    try:
        with open(path, encoding="utf-8") as f:
            groups = json.load(f).get("groups")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(groups, list) or set(groups) >= set(SELECTABLE_GROUPS):
        return None
    return tuple(g for g in SELECTABLE_GROUPS if g in groups)


@dataclass
class CheckReport:
    """The result of checking a local copy: files checked, problems by path, files not in the manifest."""

    manifest: Manifest
    groups: tuple[str, ...] | None
    checked: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _extra_files(directory: str, known: set[str]) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), directory).replace(os.sep, "/")
            if not fn.startswith(".") and rel not in known and rel != MANIFEST_JSON:
                out.append(rel)
    return sorted(out)


def check_entries(
    directory: str,
    entries: Sequence[FileEntry],
    cache: VerifiedCache | None = None,
    on_file: Callable[[FileEntry, str | None], None] | None = None,
    jobs: int | None = None,
) -> dict[str, str | None]:
    """The problem (or None) of each entry, hashed ``jobs`` files at a time (default :data:`HASH_JOBS`).

    Larger files start first so that one big file does not finish last alone.
    ``on_file`` runs in the calling thread after each file.
    """
    jobs = HASH_JOBS if jobs is None else max(1, jobs)
    out: dict[str, str | None] = {}
    order = sorted(entries, key=lambda e: -e.size)
    if jobs == 1 or len(order) <= 1:
        for e in order:
            out[e.path] = file_problem(directory, e, cache)
            if on_file is not None:
                on_file(e, out[e.path])
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="release-hash") as pool:
            for e, problem in zip(order, pool.map(lambda e: file_problem(directory, e, cache), order)):
                out[e.path] = problem
                if on_file is not None:
                    on_file(e, problem)
    return {e.path: out[e.path] for e in entries}


def check_dir(
    directory: str,
    groups: Iterable[str] | None = None,
    on_file: Any = None,
    use_cache: bool = False,
    jobs: int | None = None,
) -> CheckReport:
    """Check every file of ``groups`` (default: the groups pulled there) by size and SHA-256.

    Files are hashed in parallel (``jobs`` threads, default: one per core).
    ``on_file(entry, problem)`` is called after each file (progress).
    ``use_cache`` skips files this process already found intact and unchanged
    since (:class:`VerifiedCache`; loaders use it, ``release verify`` does not).
    """
    manifest = read_local_manifest(directory)
    chosen = tuple(groups) if groups is not None else pulled_groups(directory)
    report = CheckReport(manifest=manifest, groups=chosen)
    cache = VerifiedCache(directory) if use_cache else None
    for path, problem in check_entries(directory, manifest.select(chosen), cache, on_file, jobs).items():
        report.checked.append(path)
        if problem is not None:
            report.problems[path] = problem
    report.extra = _extra_files(directory, set(manifest.by_path()))
    return report


def _relative(directory: str, path: str) -> str:
    return CopyLayout(directory).rel(path)


REPAIR_HINT = (
    "Pull the release again to fetch good copies (`audioscope release pull NAME:VERSION --root ROOT "
    "--to {directory}` transfers only the bad files)"
)


def verify_files(directory: str, paths: Sequence[str] | None = None, use_cache: bool = False) -> list[str]:
    """Check files of a local release copy against its manifest; return the paths checked.

    ``paths`` are relative to ``directory`` (or absolute paths inside it);
    None checks every file of the groups pulled there. Raises
    :class:`VerificationError` naming each file that is missing, has the
    wrong size or a different SHA-256, is reached through a link, or is not
    in the manifest. ``use_cache``: see :func:`check_dir`.
    """
    directory = os.fspath(directory)
    if paths is None:
        report = check_dir(directory, use_cache=use_cache)
        problems, checked = report.problems, report.checked
    else:
        entries = read_local_manifest(directory).by_path()
        cache = VerifiedCache(directory) if use_cache else None
        problems, checked, wanted = {}, [], []
        for p in paths:
            rel = _relative(directory, os.fspath(p))
            checked.append(rel)
            if rel in entries:
                wanted.append(entries[rel])
            else:
                problems[rel] = "not in the release manifest"
        for rel, problem in check_entries(directory, wanted, cache).items():
            if problem is not None:
                problems[rel] = problem
    if problems:
        raise VerificationError(directory, problems, REPAIR_HINT.format(directory=directory))
    return checked


def release_files(directory: str, groups: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The files of a local release copy by group, each checked (SHA-256) before it is returned.

    ``{"train": [...], "eval": [...], "curated": [...], "meta": [...]}`` with
    absolute local paths, in manifest order, for the groups pulled there (or
    ``groups``). Standard library only (no TensorFlow): for loaders in any
    framework. Raises :class:`VerificationError` naming every bad file.
    """
    directory = os.path.abspath(os.fspath(directory))
    chosen = tuple(groups) if groups is not None else pulled_groups(directory)
    report = check_dir(directory, chosen, use_cache=True)
    if report.problems:
        raise VerificationError(directory, report.problems, REPAIR_HINT.format(directory=directory))
    layout = CopyLayout(directory)
    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for entry in report.manifest.select(chosen):
        out[entry.group].append(layout.file(entry.path))
    return out
