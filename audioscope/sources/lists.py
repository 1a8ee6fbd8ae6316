"""Video lists: Google's AudioScope clip lists, YFCC100M metadata, URI lists.

Every reader turns one list into a stream of :class:`VideoRequest` (one per
video, with the clip spans the list asks for) and :class:`BadRow` (a row that
cannot be used, with a machine ``kind`` and a message saying what to fix).
A bad row never stops the reading: the caller records it and goes on.

What the published lists look like (checked in google-research/sound-separation,
``datasets/audioscope/README.md`` and ``datasets/audioscope-v2/README.md``):

* Clip lists (``filtered_train_clips.csv``, ``unfiltered_validate_clips.csv``,
  ``filtered_test_onscreen_unanimous_clips.csv``, ...) have three columns:
  video path (a multimedia-commons path such as
  ``data/videos/mp4/827/f6b/827f6b53467db2d5218ed8247418c4c.mp4``; note the
  31-character key, the MD5 written without zero padding), input start time
  and input end time, both float seconds. The READMEs do not show a header
  row, so both with and without one are accepted.
* MoM pair lists (``..._plus_offscreen_unanimous_mom_clips.csv``) have six
  columns: path1, start1, end1, path2, start2, end2. Both halves are clips we
  need, so both become spans of their videos.
* The split is only in the file name (``train`` / ``validate`` / ``test``).
* The older MixIT YFCC100M lists (``datasets/yfcc100m``) add an "output
  offset" column after each clip (4 or 8 columns). The offset only says where
  a short clip sits inside a padded 10 s output, not which part of the video
  is used, so it is accepted and ignored.

This module imports only the standard library, so the CLI can read lists
without loading Beam or TensorFlow; remote list files (``gs://``, ``s3://``)
are opened through :mod:`audioscope.storage` (fsspec), imported when needed,
so a public bucket is read without credentials as the media are.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import posixpath
import re
import sqlite3
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, TextIO
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from audioscope.errors import UserError

FORMATS: tuple[str, ...] = ("audioscope-csv", "yfcc", "uris")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: The 23 columns of the YFCC100M metadata, in file order (docs/recipe.md, section 1).
YFCC_COLUMNS: tuple[str, ...] = (
    "photoid", "uid", "unickname", "datetaken", "dateuploaded", "capturedevice",
    "title", "description", "usertags", "machinetags", "longitude", "latitude",
    "accuracy", "pageurl", "downloadurl", "licensename", "licenseurl", "serverid",
    "farmid", "secret", "secretoriginal", "ext", "marker",
)  # fmt: skip
_YFCC = {name: i for i, name in enumerate(YFCC_COLUMNS)}
YFCC_TABLE = "yfcc100m_dataset"

#: Schemes a list may name. Everything else (ftp, data, javascript, ...) is refused.
ALLOWED_SCHEMES: tuple[str, ...] = ("file", "http", "https", "gs", "s3")
_REMOTE_SCHEMES = ("http", "https", "gs", "s3")

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_RAW = 2000  # BadRow.raw is cut here so one absurd line cannot bloat the status table


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class VideoRequest:
    """One video to ingest, as a list asked for it.

    ``uri`` is already resolved and checked (see :func:`resolve_location`):
    an absolute local path, or an ``http(s)://``, ``gs://`` or ``s3://`` URI
    (an ``http(s)`` URI may be a page that yt-dlp understands). ``spans`` are
    the (start, end) seconds the list names, sorted and without duplicates;
    ``None`` means "every clip of the video".
    """

    video_id: str
    uri: str
    spans: tuple[tuple[float, float], ...] | None
    split: str | None
    licence_name: str | None
    licence_url: str | None
    origin: str
    #: ``uri`` below the media root (or the list's folder when no root is given): the part of
    #: the location that stays when the media move to another root; "" when it is not below it.
    relative: str = ""

    def names(self, source: str, relative: str = "") -> bool:
        """Whether the video the store took from ``source`` (``relative`` below its root) is this
        request's: the same location, or the same path below another root (the media were moved or
        mounted elsewhere)."""
        return source == self.uri or (bool(self.relative) and relative == self.relative)

    def to_json(self) -> str:
        d = asdict(self)
        d["spans"] = None if self.spans is None else [list(s) for s in self.spans]
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "VideoRequest":
        d = json.loads(s)
        spans = d.get("spans")
        d["spans"] = None if spans is None else tuple((float(a), float(b)) for a, b in spans)
        return cls(**d)


@dataclass(frozen=True)
class BadRow:
    """A list row that cannot become a request.

    ``kind`` is short and machine readable (``bad_row``, ``unsafe_path``,
    ``duplicate_id``, ``unsupported_uri``); ``message`` tells a person what is
    wrong and what to do; ``raw`` is the row as read (cut at 2000 characters).
    """

    origin: str
    kind: str
    message: str
    raw: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "BadRow":
        return cls(**json.loads(s))


class RowError(ValueError):
    """A row-level problem; the readers turn it into a :class:`BadRow`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _bad(origin: str, err: RowError, raw: str) -> BadRow:
    return BadRow(origin=origin, kind=err.kind, message=err.message, raw=raw[:_MAX_RAW])


# --------------------------------------------------------------------------- keys and ids


def mmcommons_key(download_url: str) -> str:
    """The multimedia-commons key of a YFCC100M item.

    The MD5 of ``downloadurl`` (UTF-8 bytes, as stored in the metadata) with
    each byte written as lowercase hex *without* zero padding, exactly as the
    multimedia-commons bucket names its files; a key can therefore be shorter
    than 32 characters (e.g. ``827f6b53467db2d5218ed8247418c4c``).
    """
    digest = hashlib.md5(download_url.encode("utf-8")).digest()
    return "".join(format(b, "x") for b in digest)


def _padded_md5(download_url: str) -> str:
    return hashlib.md5(download_url.encode("utf-8")).hexdigest()


def mmcommons_path(key: str) -> str:
    """Where the video of ``key`` lives under the multimedia-commons root."""
    return f"data/videos/mp4/{key[0:3]}/{key[3:6]}/{key}.mp4"


def is_safe_id(s: str) -> bool:
    """True for ids usable as file names everywhere: ``[A-Za-z0-9][A-Za-z0-9_.-]*``, <= 100 chars."""
    return _SAFE_ID.fullmatch(s) is not None


def video_id_for(uri: str) -> str:
    """The default ``video_id`` of a source (docs/ARCHITECTURE.md, "Ids").

    The file stem when it is a safe name; otherwise a sanitised stem plus 8
    hex characters of the URI's SHA-1. A URL with a query string (e.g.
    ``https://www.youtube.com/watch?v=...``) always gets the hash suffix: its
    stem alone (``watch``) names nothing.
    """
    parts = urlsplit(uri)
    is_url = parts.scheme in ALLOWED_SCHEMES
    path = parts.path if is_url else uri
    stem = posixpath.splitext(posixpath.basename(unquote(path).rstrip("/")))[0]
    if is_safe_id(stem) and not (is_url and parts.query):
        return stem
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip("_.-")[:80] or "video"
    return f"{clean}-{hashlib.sha1(uri.encode('utf-8')).hexdigest()[:8]}"


def split_from_name(path: str) -> str | None:
    """The published split named by a list's file name, if any.

    Word-like tokens only (``filtered_validate_clips.csv`` -> validation), so
    ``contest.csv`` is not a test list.
    """
    name = posixpath.basename(path.replace("\\", "/")).lower()
    tokens = set(re.split(r"[^a-z0-9]+", name))
    found = set()
    if "train" in tokens:
        found.add("train")
    if tokens & {"validate", "validation", "val", "valid", "dev"}:
        found.add("validation")
    if tokens & {"test", "eval"}:
        found.add("test")
    return found.pop() if len(found) == 1 else None


def normalise_split(value: str) -> str:
    """``train`` / ``validation`` / ``test`` from the usual spellings; RowError otherwise."""
    v = value.strip().lower()
    aliases = {"val": "validation", "valid": "validation", "validate": "validation", "dev": "validation"}
    v = aliases.get(v, v)
    if v not in SPLITS:
        raise RowError("bad_row", f"unknown split {value!r}: use one of {', '.join(SPLITS)}")
    return v


# --------------------------------------------------------------------------- locations


def _is_remote(uri: str) -> bool:
    return urlsplit(uri).scheme in _REMOTE_SCHEMES


def _local_root(media_root: str) -> str:
    parts = urlsplit(media_root)
    if parts.scheme == "file":
        return os.path.normpath(unquote(parts.path))
    return os.path.normpath(os.path.abspath(media_root))


def _join(base: str, rel: str) -> str:
    """``rel`` (already checked: relative, no ``..``) under ``base`` (local dir or URI)."""
    rel = rel.lstrip("/")
    scheme = urlsplit(base).scheme
    if scheme in ("http", "https"):
        return base.rstrip("/") + "/" + quote(rel, safe="/")
    if scheme in ("gs", "s3"):
        return base.rstrip("/") + "/" + rel
    return os.path.normpath(os.path.join(_local_root(base), rel))


def _check_components(path: str, raw: str) -> None:
    if ".." in path.replace("\\", "/").split("/"):
        raise RowError("unsafe_path", f"{raw!r} has a '..' component; list paths must stay inside the media root")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _under_remote_root(value: str, media_root: str) -> bool:
    """Whether URI ``value`` lies under the remote root ``media_root`` (same
    scheme and host or bucket, path below the root's, no ``..``)."""
    v, r = urlsplit(value), urlsplit(media_root)
    if (v.scheme.lower(), v.netloc.lower()) != (r.scheme.lower(), r.netloc.lower()):
        return False
    if ".." in unquote(v.path).split("/"):
        return False
    root_path = r.path.rstrip("/")
    return v.path == root_path or v.path.startswith(root_path + "/")


def resolve_location(raw: str, list_dir: str, media_root: str | None, *, allow_outside: bool = False) -> str:
    """Resolve and check one location from a list; raises :class:`RowError`.

    * ``http(s)://``, ``gs://``, ``s3://`` URIs are kept (object keys must not
      have ``..`` components). Under a remote ``media_root`` they must lie
      below it (same scheme, host or bucket and path prefix): an entry
      ``http://127.0.0.1/...`` or ``s3://other-bucket/...`` under a root of
      ``https://host/data`` is ``unsafe_path`` unless ``allow_outside``.
    * Relative paths go under ``media_root`` (a local dir, ``gs://``,
      ``s3://`` or ``https://`` root), or the list file's own directory when
      no media root is given. A ``..`` component is refused (``unsafe_path``).
    * Absolute paths and ``file://`` URIs must lie inside ``media_root`` when
      one is given (``unsafe_path`` otherwise); without one they are the
      user's own files and are kept. Under a local root, a path whose
      symbolic links lead out of the root is refused too.
    * Control characters (NUL included) and any other scheme are refused.
    """
    value = raw.strip()
    if not value:
        raise RowError("bad_row", "empty location")
    if _CONTROL.search(value):
        raise RowError("unsafe_path", f"{value!r} contains control characters")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme and scheme not in ALLOWED_SCHEMES:
        raise RowError(
            "unsafe_path",
            f"{value!r}: scheme {scheme!r} is not allowed; use a local path or one of "
            f"{', '.join(s + '://' for s in ALLOWED_SCHEMES)}",
        )
    if scheme in ("http", "https", "gs", "s3"):
        if not parts.netloc:
            raise RowError("unsupported_uri", f"{value!r} has no host or bucket")
        if scheme in ("gs", "s3"):
            _check_components(parts.path, value)
        if media_root is not None and _is_remote(media_root) and not allow_outside:
            if not _under_remote_root(value, media_root):
                raise RowError(
                    "unsafe_path",
                    f"{value!r} is outside the media root {media_root}; list paths relative to the root, "
                    "or allow URIs elsewhere with --allow-outside-root",
                )
        return value
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RowError("unsafe_path", f"{value!r}: file:// URIs must name a local file (no host)")
        local = unquote(parts.path)
        if _CONTROL.search(local):
            raise RowError("unsafe_path", f"{value!r} contains control characters")
        return _check_absolute(local, value, media_root, allow_outside)
    if value.startswith("/"):
        return _check_absolute(value, value, media_root, allow_outside)
    _check_components(value, value)
    joined = _join(media_root if media_root is not None else list_dir, value)
    if media_root is not None and not _is_remote(media_root) and not allow_outside:
        _check_links(joined, value, _local_root(media_root))
    return joined


@functools.lru_cache(maxsize=32_768)
def _real_dir(directory: str) -> str:
    """``os.path.realpath`` of a folder, folder by folder with every parent cached:
    a list naming files of many folders costs one ``lstat`` per new folder."""
    parent, name = os.path.split(directory)
    if not name or parent == directory:
        return os.path.realpath(directory)
    if os.path.islink(directory):
        return os.path.realpath(directory)
    return os.path.join(_real_dir(parent), name)


def _check_links(path: str, raw: str, root: str) -> None:
    """Refuse a local path whose symbolic links lead out of ``root``."""
    head, name = os.path.split(path)
    real = os.path.realpath(path) if os.path.islink(path) else os.path.join(_real_dir(head), name)
    real_root = _real_dir(root)
    if not _inside(real, real_root):
        raise RowError(
            "unsafe_path",
            f"{raw!r} is a symbolic link (or lies under one) that leads outside the media root {root}",
        )


def _check_absolute(path: str, raw: str, media_root: str | None, allow_outside: bool = False) -> str:
    _check_components(path, raw)
    path = os.path.normpath(path)
    if media_root is None or allow_outside:
        return path
    if _is_remote(media_root):
        raise RowError(
            "unsafe_path",
            f"{raw!r} is a local path but the media root is {media_root}; give paths relative to the media root",
        )
    root = _local_root(media_root)
    if not _inside(path, root):
        raise RowError("unsafe_path", f"{raw!r} is outside the media root {root}")
    _check_links(path, raw, root)
    return path


# --------------------------------------------------------------------------- opening lists


def _is_local(path: str) -> bool:
    scheme = urlsplit(path).scheme
    return scheme in ("", "file") or len(scheme) == 1  # len 1: a Windows drive letter


def _local_path(path: str) -> str:
    parts = urlsplit(path)
    return unquote(parts.path) if parts.scheme == "file" else path


def _list_dir(path: str) -> str:
    if _is_local(path):
        return os.path.dirname(os.path.abspath(_local_path(path)))
    return path.rsplit("/", 1)[0]


#: Magic bytes of the compressions a list may come in, read as streams.
_COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def compression_of(head: bytes) -> str | None:
    """``gzip``, ``bz2``, ``xz`` or ``zstd`` from a file's first bytes; None for plain files."""
    for magic, name in _COMPRESSIONS:
        if head.startswith(magic):
            return name
    return None


def _decompressing(raw: io.BufferedIOBase, path: str) -> io.BufferedIOBase:
    """``raw`` itself, or a stream that decompresses it (chosen by magic bytes, not the name)."""
    peek = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    if not peek:
        raw = io.BufferedReader(raw)  # type: ignore[arg-type]
        peek = raw.peek(8)[:8]
    kind = compression_of(peek)
    if kind is None:
        return raw
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "bz2":
        import bz2

        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency of the package
        raise UserError(f"{path} is zstd-compressed: install the zstandard package, or decompress it first") from None
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))  # type: ignore[return-value]


def _open_binary(path: str) -> io.BufferedIOBase:
    """The list's bytes, decompressed when it is a .gz/.bz2/.xz/.zst file (by content)."""
    return _decompressing(_open_raw(path), path)


def _open_raw(path: str) -> io.BufferedIOBase:
    if _is_local(path):
        local = _local_path(path)
        try:
            return open(local, "rb")
        except FileNotFoundError:
            raise UserError(f"video list {path} not found: check the path") from None
        except IsADirectoryError:
            raise UserError(f"video list {path} is a directory: give the list file itself") from None
        except PermissionError:
            raise UserError(f"cannot read video list {path}: permission denied") from None
    from audioscope import storage  # remote list files: public buckets without credentials, the GCS emulator

    try:
        return storage.open_file(path, "rb")  # type: ignore[return-value]
    except FileNotFoundError:
        raise UserError(f"video list {path} not found: check the URI and your credentials") from None


def _open_text(path: str) -> TextIO:
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read
    # as part of the first path or header name.
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", errors="replace", newline="")


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) for every line of a text list."""
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            yield n, line.rstrip("\r\n")


def is_comment(line: str) -> bool:
    """A comment line: ``#`` followed by a space, a tab or nothing.

    Only that: a line such as ``#holiday.mp4,0,5`` names a file whose name
    begins with ``#`` and is read as data (a list row must never vanish
    because of its first letter).
    """
    text = line.strip()
    return text == "#" or text.startswith(("# ", "#\t"))


def _skip(line: str) -> bool:
    return not line.strip() or is_comment(line)


def _first_lines(path: str, n: int = 5) -> list[str]:
    out: list[str] = []
    for _, line in _lines(path):
        if not _skip(line):
            out.append(line)
            if len(out) >= n:
                break
    return out


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _csv_row(line: str, delimiter: str = ",") -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def _looks_like_clip_row(row: list[str]) -> bool:
    if len(row) not in (3, 4, 6, 8):
        return False
    width = 4 if len(row) in (4, 8) else 3
    return all(
        row[i].strip() and not _is_number(row[i]) and _is_number(row[i + 1]) and _is_number(row[i + 2])
        for i in range(0, len(row), width)
    )


def _header_fields(line: str) -> list[str]:
    delimiter = "\t" if "\t" in line else ","
    return [f.strip().lower() for f in _csv_row(line, delimiter)]


def detect_format(path: str) -> str:
    """Guess a list's format from its first bytes and lines.

    SQLite magic -> ``yfcc``; 23 tab-separated fields (or a header starting
    with ``photoid``) -> ``yfcc``; a header with a ``uri`` column -> ``uris``;
    rows of (path, start, end) -> ``audioscope-csv``; anything else -> ``uris``
    (one location per line).
    """
    with _open_binary(path) as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head == _SQLITE_MAGIC:
        return "yfcc"
    lines = _first_lines(path)
    if not lines:
        return "uris"
    first = lines[0]
    if first.lower().startswith(("photoid", "linenumber", "line_number")) or first.count("\t") in (
        len(YFCC_COLUMNS) - 1, len(YFCC_COLUMNS) + 1,
    ):
        return "yfcc"
    if "uri" in _header_fields(first):
        return "uris"
    rows = [_csv_row(line) for line in lines]
    if _looks_like_clip_row(rows[0]) or (len(rows) > 1 and len(rows[0]) == len(rows[1]) and _looks_like_clip_row(rows[1])):
        return "audioscope-csv"
    return "uris"


def read_video_list(
    path: str,
    fmt: str | None = None,
    media_root: str | None = None,
    *,
    allow_outside_root: bool = False,
    clip_seconds: int = 5,
    workdir: str | None = None,
) -> Iterator[VideoRequest | BadRow]:
    """Read a video list of any supported format (detected when ``fmt`` is None).

    Raises :class:`audioscope.errors.UserError` when the list as a whole
    cannot be read (missing file, unknown format, wrong SQLite table); every
    problem with one row is yielded as a :class:`BadRow` instead.

    Memory stays flat whatever the list's size: rows are read as a stream
    (compressed lists too), and what must be remembered across rows (the
    clip spans of each video, the ids already seen) goes to a temporary
    SQLite file in ``workdir`` (the system's temporary folder by default).
    A span that can never become a clip (not ``clip_seconds`` long, or not
    starting on a whole second) is a ``bad_span`` row here, before anything
    is downloaded. ``allow_outside_root`` lets URIs outside a remote
    ``media_root`` through (see :func:`resolve_location`).
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown list format {fmt!r}: use one of {', '.join(FORMATS)}")
    if media_root is not None:
        media_root = _check_media_root(media_root)
    opts = _ReadOptions(allow_outside=allow_outside_root, clip_seconds=clip_seconds, workdir=workdir)
    readers = {"audioscope-csv": _read_audioscope_csv, "yfcc": _read_yfcc, "uris": _read_uris}
    root = media_root if media_root is not None else _list_dir(path)
    return _below_root(_dedupe(readers[fmt](path, media_root, opts), opts), root)


def _below_root(items: Iterable[VideoRequest | BadRow], root: str) -> Iterator[VideoRequest | BadRow]:
    """``items`` with each request's :attr:`VideoRequest.relative` set from ``root``."""
    prefix = root.rstrip("/") + "/"
    for item in items:
        if isinstance(item, VideoRequest) and item.uri.startswith(prefix) and len(item.uri) > len(prefix):
            item = dataclasses.replace(item, relative=item.uri[len(prefix):])
        yield item


@dataclass(frozen=True)
class _ReadOptions:
    allow_outside: bool = False
    clip_seconds: int = 5
    workdir: str | None = None


def _check_media_root(media_root: str) -> str:
    if _CONTROL.search(media_root):
        raise UserError(f"--media-root {media_root!r} contains control characters")
    scheme = urlsplit(media_root).scheme.lower()
    if scheme in _REMOTE_SCHEMES or scheme == "file":
        return media_root.rstrip("/") if scheme != "file" else _local_root(media_root)
    if scheme and len(scheme) > 1:
        raise UserError(f"--media-root {media_root!r}: use a local directory, gs://, s3:// or https:// root")
    return _local_root(media_root)


class DiskTable:
    """A temporary SQLite file: the readers' memory for lists of any size.

    SQLite keeps a few MB of pages in memory and the rest on disk, so a
    list of 100 million rows costs disk, not RAM. Removed on :meth:`close`.
    """

    def __init__(self, workdir: str | None = None) -> None:
        import tempfile

        fd, self.path = tempfile.mkstemp(prefix="audioscope-list-", suffix=".sqlite", dir=workdir)
        os.close(fd)
        # One thread at a time (SeenIds locks): a progress thread may ask too.
        self.con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", "cache_size=-4000"):
            self.con.execute(f"PRAGMA {pragma}")
        self.con.execute("BEGIN")

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if os.path.exists(self.path):
                os.remove(self.path)


class SeenIds:
    """A set of ids kept on disk (``add`` says whether the id was new), with its first origin."""

    def __init__(self, workdir: str | None = None) -> None:
        import threading

        self.lock = threading.Lock()
        self.table = DiskTable(workdir)
        self.table.con.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, origin TEXT) WITHOUT ROWID")

    def first(self, key: str, origin: str) -> str | None:
        """None if ``key`` is new (and remember it), else the origin that had it first."""
        con = self.table.con
        with self.lock:
            row = con.execute("SELECT origin FROM seen WHERE id = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
            con.execute("INSERT INTO seen VALUES (?, ?)", (key, origin))
        return None

    def __contains__(self, key: str) -> bool:
        with self.lock:
            return self.table.con.execute("SELECT 1 FROM seen WHERE id = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        self.table.close()


def _dedupe(items: Iterable[VideoRequest | BadRow], opts: _ReadOptions) -> Iterator[VideoRequest | BadRow]:
    """First request of a video id wins; later ones become ``duplicate_id`` rows."""
    seen = SeenIds(opts.workdir)
    try:
        for item in items:
            if isinstance(item, VideoRequest):
                first = seen.first(item.video_id, item.origin)
                if first is not None:
                    yield BadRow(
                        origin=item.origin,
                        kind="duplicate_id",
                        message=(
                            f"video id {item.video_id!r} is already used by {first}; give every video its own id "
                            "with an explicit video_id column (a CSV list with header uri,video_id)"
                        ),
                        raw=item.uri[:_MAX_RAW],
                    )
                    continue
            yield item
    finally:
        seen.close()


# --------------------------------------------------------------------------- audioscope-csv


def _parse_time(s: str, what: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise RowError("bad_row", f"{what} {s!r} is not a number of seconds") from None
    if not math.isfinite(v) or v < 0:
        raise RowError("bad_row", f"{what} {s!r} must be a finite number >= 0")
    return v


def _clip_cells(row: list[str], clip_seconds: int) -> list[tuple[str, float, float]]:
    if len(row) not in (3, 4, 6, 8):
        raise RowError(
            "bad_row",
            f"expected 3 columns (video_path,start,end) or 6 (a MoM pair), got {len(row)}",
        )
    width = 4 if len(row) in (4, 8) else 3
    out = []
    for i in range(0, len(row), width):
        start = _parse_time(row[i + 1].strip(), "start")
        end = _parse_time(row[i + 2].strip(), "end")
        if end <= start:
            raise RowError("bad_row", f"end {end:g} is not after start {start:g}")
        check_span(start, end, clip_seconds)
        out.append((row[i].strip(), start, end))
    return out


def check_span(start: float, end: float, clip_seconds: int = 5) -> None:
    """Raise ``bad_span`` for a span that can never be a clip of the store.

    Frames are one per second, so a clip starts on a whole second, and it
    lasts exactly ``clip_seconds``. (Whether it fits the video is known only
    once the video's length is known.)
    """
    if abs(start - round(start)) > 1e-3:
        raise RowError("bad_span", f"span {start:g}-{end:g} s does not start on a whole second; clips start on whole seconds")
    if abs((end - start) - clip_seconds) > 1e-3:
        raise RowError("bad_span", f"span {start:g}-{end:g} s does not last {clip_seconds} s, the clip length")


class _SpanGroups:
    """The spans of each video of a clip list, grouped on disk (any list size)."""

    #: videos whose group is also kept in memory (~200 bytes each)
    KNOWN = 50_000

    def __init__(self, workdir: str | None) -> None:
        self.table = DiskTable(workdir)
        con = self.table.con
        con.execute("CREATE TABLE videos (vid TEXT PRIMARY KEY, seq INTEGER, uri TEXT, origin TEXT) WITHOUT ROWID")
        con.execute("CREATE TABLE spans (seq INTEGER, start REAL, stop REAL)")
        self._last: tuple[str, int, str, str] | None = None  # rows of one video are usually together
        self._known: dict[str, tuple[int, str, str]] = {}  # recent videos, at most KNOWN
        self._n = 0
        self._pending: list[tuple[int, float, float]] = []

    def group_of(self, vid: str, uri: str, origin: str) -> tuple[int, str, str]:
        """(seq, uri, origin) of the video's group; a new group if the id is new."""
        if self._last is not None and self._last[0] == vid:
            return self._last[1:]  # type: ignore[return-value]
        row = self._known.get(vid)
        if row is None:
            row = self.table.con.execute("SELECT seq, uri, origin FROM videos WHERE vid = ?", (vid,)).fetchone()
            if row is None:
                row = (self._n, uri, origin)
                self._n += 1
                self.table.con.execute("INSERT INTO videos VALUES (?, ?, ?, ?)", (vid, *row))
            if len(self._known) >= self.KNOWN:
                self._known.clear()  # bounded: beyond it, SQLite answers
            self._known[vid] = row
        self._last = (vid, int(row[0]), str(row[1]), str(row[2]))
        return self._last[1:]  # type: ignore[return-value]

    def add(self, seq: int, start: float, end: float) -> None:
        self._pending.append((seq, start, end))
        if len(self._pending) >= 50_000:
            self.flush()

    def flush(self) -> None:
        self.table.con.executemany("INSERT INTO spans VALUES (?, ?, ?)", self._pending)
        self._pending = []

    def groups(self) -> Iterator[tuple[str, str, str, tuple[tuple[float, float], ...]]]:
        """(video id, uri, origin, sorted distinct spans) in the order videos first appeared."""
        self.flush()
        con = self.table.con
        videos = con.execute("SELECT vid, uri, origin FROM videos ORDER BY seq")
        spans = self.table.con.cursor().execute("SELECT DISTINCT seq, start, stop FROM spans ORDER BY seq, start, stop")
        nxt = spans.fetchone()
        for seq, (vid, uri, origin) in enumerate(videos):
            out = []
            while nxt is not None and nxt[0] == seq:
                out.append((float(nxt[1]), float(nxt[2])))
                nxt = spans.fetchone()
            yield vid, uri, origin, tuple(out)

    def close(self) -> None:
        self.table.close()


@functools.lru_cache(maxsize=32_768)
def _resolve_cached(raw: str, list_dir: str, media_root: str | None, allow_outside: bool) -> str:
    # A clip list repeats each video's path once per clip, usually on consecutive rows.
    return resolve_location(raw, list_dir, media_root, allow_outside=allow_outside)


def _read_audioscope_csv(path: str, media_root: str | None, opts: _ReadOptions) -> Iterator[VideoRequest | BadRow]:
    """Group the clip rows of each video into one request (see module docstring)."""
    list_dir = _list_dir(path)
    split = split_from_name(path)
    groups = _SpanGroups(opts.workdir)
    try:
        seen_data = False
        for n, line in _lines(path):
            if _skip(line):
                continue
            origin = f"{path}:{n}"
            row = _csv_row(line)
            if not seen_data and not _looks_like_clip_row(row) and len(row) in (3, 4, 6, 8) and not _is_number(row[1]):
                seen_data = True  # a header row
                continue
            seen_data = True
            try:
                if "\ufffd" in line:
                    raise RowError("bad_row", "the row is not valid UTF-8")
                cells = _clip_cells(row, opts.clip_seconds)
                resolved = [(_resolve_cached(p, list_dir, media_root, opts.allow_outside), s, e) for p, s, e in cells]
            except RowError as err:
                yield _bad(origin, err, line)
                continue
            for uri, start, end in resolved:
                vid = video_id_for(uri)
                seq, group_uri, group_origin = groups.group_of(vid, uri, origin)
                if group_uri != uri:
                    yield BadRow(
                        origin=origin,
                        kind="duplicate_id",
                        message=(
                            f"{uri} has the same video id {vid!r} as {group_uri} ({group_origin}); "
                            "give the videos distinct file names, or list them in a uris CSV with a video_id column"
                        ),
                        raw=line[:_MAX_RAW],
                    )
                else:
                    groups.add(seq, start, end)
        for vid, uri, origin, spans in groups.groups():
            yield VideoRequest(
                video_id=vid, uri=uri, spans=spans, split=split,
                licence_name=None, licence_url=None, origin=origin,
            )  # fmt: skip
    finally:
        groups.close()


# --------------------------------------------------------------------------- yfcc


def _yfcc_request(
    values: list[str], origin: str, list_dir: str, media_root: str | None
) -> VideoRequest | None:
    """A request from one metadata row; None for photos (marker 0).

    A row has the 23 YFCC100M columns, or 25 (``yfcc100m_dataset`` as
    shipped in the multimedia-commons bucket): line number, photo id, photo
    hash, then the other 22 columns (user id ... marker; downloadurl is the
    17th field). The hash names the item's files there; our
    key (:func:`mmcommons_key` of ``downloadurl``) must equal it, else the
    row is a ``hash_mismatch`` (the metadata and the bucket would disagree
    about which file is this video).
    """
    official_hash = None
    if len(values) == len(YFCC_COLUMNS) + 2:
        official_hash = values[2].strip().lower()
        values = [values[1], *values[3:]]
    if len(values) != len(YFCC_COLUMNS):
        raise RowError(
            "bad_row",
            f"expected {len(YFCC_COLUMNS)} columns of YFCC100M metadata (or {len(YFCC_COLUMNS) + 2} with "
            f"line number, photo id and hash first), got {len(values)}",
        )
    marker = values[_YFCC["marker"]].strip()
    if marker == "0":
        return None
    if marker != "1":
        raise RowError("bad_row", f"marker {marker!r} is neither 0 (photo) nor 1 (video)")
    url = values[_YFCC["downloadurl"]].strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or _CONTROL.search(url):
        raise RowError("bad_row", f"downloadurl {url!r} is not an http(s) URL, so the video has no key")
    key = mmcommons_key(url)
    if official_hash is not None and official_hash not in (key, _padded_md5(url)):
        raise RowError(
            "hash_mismatch",
            f"the row's hash {official_hash!r} is not the key of its downloadurl ({key!r}); "
            "the metadata row is damaged or from another release",
        )
    uri = _join(media_root if media_root is not None else list_dir, mmcommons_path(key))
    name = unquote_plus(values[_YFCC["licensename"]]).strip() or None
    lurl = unquote(values[_YFCC["licenseurl"]]).strip() or None
    return VideoRequest(
        video_id=key, uri=uri, spans=None, split=None, licence_name=name, licence_url=lurl, origin=origin
    )


def _read_yfcc(path: str, media_root: str | None, opts: _ReadOptions) -> Iterator[VideoRequest | BadRow]:
    """YFCC100M metadata, as the TSV dump or the SQLite file; videos only.

    ``downloadurl`` is hashed exactly as stored (the multimedia-commons keys
    are MD5s of the stored string). Titles and tags in the TSV are
    URL-encoded; only the licence columns are decoded, as they are carried on.
    """
    list_dir = _list_dir(path)
    with _open_binary(path) as f:
        is_sqlite = f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    if is_sqlite:
        with _open_raw(path) as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise UserError(f"{path} is a compressed SQLite file: decompress it first (SQLite is read in place)")
    rows = _sqlite_rows(path) if is_sqlite else _tsv_rows(path)
    for origin, values, raw in rows:
        try:
            if raw is not None and "\ufffd" in raw:
                raise RowError("bad_row", "the row is not valid UTF-8")
            req = _yfcc_request(values, origin, list_dir, media_root)
        except RowError as err:
            yield _bad(origin, err, raw if raw is not None else "\t".join(values))
            continue
        if req is not None:
            yield req


def _tsv_rows(path: str) -> Iterator[tuple[str, list[str], str | None]]:
    for n, line in _lines(path):
        if not line.strip():
            continue
        if n == 1 and line.lower().startswith(("photoid", "linenumber", "line_number")):
            continue  # the real dump has no header; tolerate one
        yield f"{path}:{n}", line.split("\t"), line


def _sqlite_rows(path: str) -> Iterator[tuple[str, list[str], str | None]]:
    if not _is_local(path):
        raise UserError(f"{path}: SQLite metadata must be a local file; copy it locally first")
    local = _local_path(path)
    con = sqlite3.connect(f"file:{quote(os.path.abspath(local))}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({YFCC_TABLE})")]
        if len(cols) not in (len(YFCC_COLUMNS), len(YFCC_COLUMNS) + 2):
            raise UserError(
                f"{path}: expected a table {YFCC_TABLE} with the {len(YFCC_COLUMNS)} YFCC100M columns "
                f"(or {len(YFCC_COLUMNS) + 2} with line number, photo id and hash first), "
                f"found {len(cols)} columns; is this the yfcc100m_dataset.sql file?"
            )
        marker = cols[-1].replace('"', '""')  # by position: the 23rd column, whatever its name
        # Filtering in SQL keeps the ~99 million photo rows out of Python.
        query = f'SELECT rowid, * FROM {YFCC_TABLE} WHERE "{marker}" = 1 OR "{marker}" = \'1\' ORDER BY rowid'
        for row in con.execute(query):
            values = ["" if v is None else str(v) for v in row[1:]]
            yield f"{path}#{row[0]}", values, None
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path}: cannot read the SQLite metadata ({e}); check the file is complete") from None
    finally:
        con.close()


# --------------------------------------------------------------------------- uris


_URI_COLUMNS = {
    "uri": "uri", "video_id": "video_id", "split": "split",
    "licence_name": "licence_name", "license_name": "licence_name",
    "licence_url": "licence_url", "license_url": "licence_url",
}  # fmt: skip


def _read_uris(path: str, media_root: str | None, opts: _ReadOptions) -> Iterator[VideoRequest | BadRow]:
    """One location per line, or a CSV/TSV with a header naming a ``uri`` column."""
    list_dir = _list_dir(path)
    header: dict[str, int] | None = None
    delimiter = ","
    first = True
    for n, line in _lines(path):
        if _skip(line):
            continue
        origin = f"{path}:{n}"
        if first:
            first = False
            fields = _header_fields(line)
            if "uri" in fields:
                delimiter = "\t" if "\t" in line else ","
                header = {_URI_COLUMNS[f]: i for i, f in enumerate(fields) if f in _URI_COLUMNS}
                continue
        try:
            if "\ufffd" in line:
                raise RowError("bad_row", "the row is not valid UTF-8")
            yield _uris_request(line, header, delimiter, origin, list_dir, media_root, opts.allow_outside)
        except RowError as err:
            yield _bad(origin, err, line)


def _uris_request(
    line: str, header: dict[str, int] | None, delimiter: str, origin: str, list_dir: str, media_root: str | None,
    allow_outside: bool = False,
) -> VideoRequest:
    if header is None:
        text = line.strip()
        if text.startswith('"'):  # a quoted location (a spreadsheet quotes names with commas)
            cells = _csv_row(text, delimiter)
            if len(cells) != 1:
                raise RowError("bad_row", "a quoted location must be the only field of its line")
            text = cells[0]
        values = {"uri": text}
    else:
        row = _csv_row(line, delimiter)
        values = {k: row[i].strip() for k, i in header.items() if i < len(row)}
    uri = resolve_location(values.get("uri", ""), list_dir, media_root, allow_outside=allow_outside)
    vid = values.get("video_id") or video_id_for(uri)
    if not is_safe_id(vid):
        raise RowError("bad_row", f"video_id {vid!r} must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 100 characters)")
    split = values.get("split")
    return VideoRequest(
        video_id=vid,
        uri=uri,
        spans=None,
        split=normalise_split(split) if split else None,
        licence_name=values.get("licence_name") or None,
        licence_url=values.get("licence_url") or None,
        origin=origin,
    )
