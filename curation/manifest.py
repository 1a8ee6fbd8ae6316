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
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from audioscope.errors import UserError
from audioscope.sources.lists import is_safe_id

MANIFEST_JSON = "manifest.json"
README_MD = "README.md"
LICENSES_CSV = "LICENSES.csv"
#: Hidden file a pull writes next to the files: which release and groups the copy holds.
PULL_STATE = ".audioscope-release.json"
FORMAT = "audioscope-release"
FORMAT_VERSION = 1

#: File groups: ``meta`` (manifest, data card, licences, summary, example table) is always pulled.
GROUPS: tuple[str, ...] = ("train", "eval", "curated", "meta")
SELECTABLE_GROUPS: tuple[str, ...] = ("train", "eval", "curated")

CHUNK = 8 * 2**20

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


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
    m = _SEMVER.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a semantic version: give MAJOR.MINOR.PATCH such as 1.0.0 "
            "(optionally with -PRERELEASE such as 1.0.0-rc.1; see semver.org)"
        )
    major, minor, patch, pre, build = m.groups()
    return Version(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or "")


def check_name(name: str) -> str:
    """A release name usable as a folder name everywhere, or ``ValueError``."""
    if not is_safe_id(name):
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


def group_of(path: str) -> str:
    """The group of a release-relative path (``train/...`` -> ``train`` and so on)."""
    head = path.split("/", 1)[0]
    return head if head in SELECTABLE_GROUPS and "/" in path else "meta"


def check_relative_path(path: str) -> str:
    """A release-relative path that stays inside the release folder, or ``ValueError``.

    A manifest comes from a release root that may not be trusted: a path with
    ``..``, a leading ``/``, a backslash, a drive letter or a control
    character could make a pull write outside its folder.
    """
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or ":" in path.split("/", 1)[0]
        or any(ord(c) < 32 for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
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
    def from_dict(cls, d: Mapping[str, Any]) -> "FileEntry":
        return cls(path=str(d["path"]), size=int(d["size"]), sha256=str(d["sha256"]), group=str(d.get("group", "")))


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
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        if d.get("format") != FORMAT:
            raise ValueError("not an audioscope release manifest (its 'format' is not 'audioscope-release')")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"manifest format version {d.get('format_version')} is newer than this toolkit reads "
                f"({FORMAT_VERSION}); upgrade audioscope-data"
            )
        keys = {k for k in cls.__dataclass_fields__ if k != "files"}
        kwargs = {k: d[k] for k in keys if k in d}
        files = [FileEntry.from_dict(f) for f in d.get("files", [])]
        if len({f.path for f in files}) != len(files):
            raise ValueError("a release manifest lists a file twice")
        return cls(files=files, **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"manifest.json is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError("manifest.json does not hold a JSON object")
        return cls.from_dict(data)


# --------------------------------------------------------------------------- checking a local copy


def sha256_file(path: str) -> tuple[int, str]:
    """(size, SHA-256 hex) of a local file, read in chunks."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


#: In a local copy: the files already found intact, so that loading a
#: training set does not re-hash hundreds of gigabytes every time.
VERIFIED_CACHE = ".verified.json"


class VerifiedCache:
    """Files of a local copy found intact, keyed by path, with their size,
    modification time (ns) and SHA-256 at that moment.

    A file counts as still intact only while its size and modification time
    are unchanged (any write changes the time), and only against the same
    manifest hash. ``audioscope release verify`` never uses it: it always
    re-hashes everything.
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, VERIFIED_CACHE)
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict):
                self.entries = {str(k): v for k, v in data.items() if isinstance(v, list)}
        except (OSError, ValueError):
            pass

    @staticmethod
    def _key(path: str, entry: FileEntry) -> list[Any]:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns, entry.sha256]

    def intact(self, path: str, entry: FileEntry) -> bool:
        return self.entries.get(entry.path) == self._key(path, entry)

    def add(self, path: str, entry: FileEntry) -> None:
        self.entries[entry.path] = self._key(path, entry)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.entries, f, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:  # a read-only copy: verification still happened, only not remembered
            if os.path.exists(tmp):
                os.remove(tmp)
        self.dirty = False


def file_problem(directory: str, entry: FileEntry, cache: VerifiedCache | None = None) -> str | None:
    """What is wrong with the local copy of ``entry`` under ``directory`` (None: it is intact).

    With ``cache``, a file found intact before and not modified since is not
    hashed again, and a newly hashed intact file is added to it.
    """
    path = os.path.join(directory, *entry.path.split("/"))
    if not os.path.isfile(path):
        return "missing"
    size = os.path.getsize(path)
    if size != entry.size:
        return f"size {size} bytes, the manifest says {entry.size}"
    if cache is not None and cache.intact(path, entry):
        return None
    if sha256_file(path)[1] != entry.sha256:
        return "SHA-256 differs from the manifest (the file is corrupt or was changed)"
    if cache is not None:
        cache.add(path, entry)
    return None


def read_local_manifest(directory: str) -> Manifest:
    """The manifest of a local release copy; :class:`UserError` when there is none."""
    path = os.path.join(directory, MANIFEST_JSON)
    if not os.path.isfile(path):
        raise UserError(
            f"{directory} is not a release copy (no {MANIFEST_JSON}): pull one with "
            "`audioscope release pull NAME:VERSION --root ROOT --to DIR`"
        )
    try:
        with open(path, "rb") as f:
            return Manifest.from_json(f.read())
    except ValueError as e:
        raise UserError(f"{path}: {e}; pull the release again into an empty folder") from None


def pulled_groups(directory: str) -> tuple[str, ...] | None:
    """The groups a pull put in ``directory`` (None: all of them, e.g. a published folder)."""
    path = os.path.join(directory, PULL_STATE)
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


def check_dir(
    directory: str, groups: Iterable[str] | None = None, on_file: Any = None, use_cache: bool = False
) -> CheckReport:
    """Check every file of ``groups`` (default: the groups pulled there) by size and SHA-256.

    ``on_file(entry, problem)`` is called after each file (progress).
    ``use_cache`` skips files found intact before and unchanged since
    (:class:`VerifiedCache`; loaders use it, ``release verify`` does not).
    """
    manifest = read_local_manifest(directory)
    chosen = tuple(groups) if groups is not None else pulled_groups(directory)
    report = CheckReport(manifest=manifest, groups=chosen)
    cache = VerifiedCache(directory) if use_cache else None
    for entry in manifest.select(chosen):
        problem = file_problem(directory, entry, cache)
        report.checked.append(entry.path)
        if problem is not None:
            report.problems[entry.path] = problem
        if on_file is not None:
            on_file(entry, problem)
    if cache is not None:
        cache.save()
    report.extra = _extra_files(directory, set(manifest.by_path()))
    return report


def _relative(directory: str, path: str) -> str:
    if os.path.isabs(path):
        rel = os.path.relpath(path, directory)
        if rel.startswith(".."):
            raise ValueError(f"{path} is not inside the release copy {directory}")
        path = rel
    return path.replace(os.sep, "/")


def verify_files(directory: str, paths: Sequence[str] | None = None, use_cache: bool = False) -> list[str]:
    """Check files of a local release copy against its manifest; return the paths checked.

    ``paths`` are relative to ``directory`` (or absolute paths inside it);
    None checks every file of the groups pulled there. Raises
    :class:`VerificationError` naming each file that is missing, has the
    wrong size or a different SHA-256, or is not in the manifest.
    ``use_cache``: see :func:`check_dir`.
    """
    directory = os.fspath(directory)
    if paths is None:
        report = check_dir(directory, use_cache=use_cache)
        problems, checked = report.problems, report.checked
    else:
        entries = read_local_manifest(directory).by_path()
        cache = VerifiedCache(directory) if use_cache else None
        problems, checked = {}, []
        for p in paths:
            rel = _relative(directory, os.fspath(p))
            entry = entries.get(rel)
            problem = "not in the release manifest" if entry is None else file_problem(directory, entry, cache)
            checked.append(rel)
            if problem is not None:
                problems[rel] = problem
        if cache is not None:
            cache.save()
    if problems:
        raise VerificationError(
            directory,
            problems,
            "Pull the release again to fetch good copies (`audioscope release pull NAME:VERSION --root ROOT "
            f"--to {directory}` transfers only the bad files)",
        )
    return checked
