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
are opened through fsspec, imported when needed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import posixpath
import re
import sqlite3
from array import array
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, TextIO
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from audioscope.errors import UserError

FORMATS: tuple[str, ...] = ("audioscope-csv", "yfcc", "uris")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: The 23 columns of the YFCC100M metadata, in file order (SPEC.md 2.1).
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


def resolve_location(raw: str, list_dir: str, media_root: str | None) -> str:
    """Resolve and check one location from a list; raises :class:`RowError`.

    * ``http(s)://``, ``gs://``, ``s3://`` URIs are kept (object keys must not
      have ``..`` components).
    * Relative paths go under ``media_root`` (a local dir, ``gs://``,
      ``s3://`` or ``https://`` root), or the list file's own directory when
      no media root is given. A ``..`` component is refused (``unsafe_path``).
    * Absolute paths and ``file://`` URIs must lie inside ``media_root`` when
      one is given (``unsafe_path`` otherwise); without one they are the
      user's own files and are kept.
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
        return value
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RowError("unsafe_path", f"{value!r}: file:// URIs must name a local file (no host)")
        local = unquote(parts.path)
        if _CONTROL.search(local):
            raise RowError("unsafe_path", f"{value!r} contains control characters")
        return _check_absolute(local, value, media_root)
    if value.startswith("/"):
        return _check_absolute(value, value, media_root)
    _check_components(value, value)
    return _join(media_root if media_root is not None else list_dir, value)


def _check_absolute(path: str, raw: str, media_root: str | None) -> str:
    _check_components(path, raw)
    path = os.path.normpath(path)
    if media_root is None:
        return path
    if _is_remote(media_root):
        raise RowError(
            "unsafe_path",
            f"{raw!r} is a local path but the media root is {media_root}; give paths relative to the media root",
        )
    root = _local_root(media_root)
    if not _inside(path, root):
        raise RowError("unsafe_path", f"{raw!r} is outside the media root {root}")
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


def _open_binary(path: str) -> io.BufferedIOBase:
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
    import fsspec  # remote list files only

    try:
        return fsspec.open(path, "rb").open()
    except FileNotFoundError:
        raise UserError(f"video list {path} not found: check the URI and your credentials") from None


def _open_text(path: str) -> TextIO:
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace", newline="")


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) for every line of a text list."""
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            yield n, line.rstrip("\r\n")


def _first_lines(path: str, n: int = 5) -> list[str]:
    out: list[str] = []
    for _, line in _lines(path):
        if line.strip() and not line.lstrip().startswith("#"):
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
    if first.lower().startswith("photoid") or first.count("\t") == len(YFCC_COLUMNS) - 1:
        return "yfcc"
    if "uri" in _header_fields(first):
        return "uris"
    rows = [_csv_row(line) for line in lines]
    if _looks_like_clip_row(rows[0]) or (len(rows) > 1 and len(rows[0]) == len(rows[1]) and _looks_like_clip_row(rows[1])):
        return "audioscope-csv"
    return "uris"


def read_video_list(path: str, fmt: str | None = None, media_root: str | None = None) -> Iterator[VideoRequest | BadRow]:
    """Read a video list of any supported format (detected when ``fmt`` is None).

    Raises :class:`audioscope.cli.UserError` when the list as a whole cannot
    be read (missing file, unknown format, wrong SQLite table); every problem
    with one row is yielded as a :class:`BadRow` instead.
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown list format {fmt!r}: use one of {', '.join(FORMATS)}")
    if media_root is not None:
        media_root = _check_media_root(media_root)
    readers = {"audioscope-csv": _read_audioscope_csv, "yfcc": _read_yfcc, "uris": _read_uris}
    return _dedupe(readers[fmt](path, media_root))


def _check_media_root(media_root: str) -> str:
    if _CONTROL.search(media_root):
        raise UserError(f"--media-root {media_root!r} contains control characters")
    scheme = urlsplit(media_root).scheme.lower()
    if scheme in _REMOTE_SCHEMES or scheme == "file":
        return media_root.rstrip("/") if scheme != "file" else _local_root(media_root)
    if scheme and len(scheme) > 1:
        raise UserError(f"--media-root {media_root!r}: use a local directory, gs://, s3:// or https:// root")
    return _local_root(media_root)


def _dedupe(items: Iterable[VideoRequest | BadRow]) -> Iterator[VideoRequest | BadRow]:
    """First request of a video id wins; later ones become ``duplicate_id`` rows."""
    seen: dict[str, str] = {}
    for item in items:
        if isinstance(item, VideoRequest):
            first = seen.get(item.video_id)
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
            seen[item.video_id] = item.origin
        yield item


# --------------------------------------------------------------------------- audioscope-csv


def _parse_time(s: str, what: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise RowError("bad_row", f"{what} {s!r} is not a number of seconds") from None
    if not math.isfinite(v) or v < 0:
        raise RowError("bad_row", f"{what} {s!r} must be a finite number >= 0")
    return v


def _clip_cells(row: list[str]) -> list[tuple[str, float, float]]:
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
        out.append((row[i].strip(), start, end))
    return out


@dataclass
class _Group:
    uri: str
    origin: str
    spans: array  # flat (start, end, start, end, ...): 16 bytes a span, millions of rows fit


def _read_audioscope_csv(path: str, media_root: str | None) -> Iterator[VideoRequest | BadRow]:
    """Group the clip rows of each video into one request (see module docstring)."""
    list_dir = _list_dir(path)
    split = split_from_name(path)
    groups: dict[str, _Group] = {}
    seen_data = False
    for n, line in _lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
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
            cells = _clip_cells(row)
            resolved = [(resolve_location(p, list_dir, media_root), s, e) for p, s, e in cells]
        except RowError as err:
            yield _bad(origin, err, line)
            continue
        for uri, start, end in resolved:
            vid = video_id_for(uri)
            group = groups.get(vid)
            if group is None:
                groups[vid] = _Group(uri=uri, origin=origin, spans=array("d", (start, end)))
            elif group.uri != uri:
                yield BadRow(
                    origin=origin,
                    kind="duplicate_id",
                    message=(
                        f"{uri} has the same video id {vid!r} as {group.uri} ({group.origin}); "
                        "give the videos distinct file names, or list them in a uris CSV with a video_id column"
                    ),
                    raw=line[:_MAX_RAW],
                )
            else:
                group.spans.extend((start, end))
    for vid, group in groups.items():
        flat = group.spans
        spans = tuple(sorted({(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)}))
        yield VideoRequest(
            video_id=vid, uri=group.uri, spans=spans, split=split,
            licence_name=None, licence_url=None, origin=group.origin,
        )  # fmt: skip


# --------------------------------------------------------------------------- yfcc


def _yfcc_request(values: list[str], origin: str, list_dir: str, media_root: str | None) -> VideoRequest | None:
    """A request from one 23-field metadata row; None for photos (marker 0)."""
    if len(values) != len(YFCC_COLUMNS):
        raise RowError("bad_row", f"expected {len(YFCC_COLUMNS)} columns of YFCC100M metadata, got {len(values)}")
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
    uri = _join(media_root if media_root is not None else list_dir, mmcommons_path(key))
    name = unquote_plus(values[_YFCC["licensename"]]).strip() or None
    lurl = unquote(values[_YFCC["licenseurl"]]).strip() or None
    return VideoRequest(
        video_id=key, uri=uri, spans=None, split=None, licence_name=name, licence_url=lurl, origin=origin
    )


def _read_yfcc(path: str, media_root: str | None) -> Iterator[VideoRequest | BadRow]:
    """YFCC100M metadata, as the TSV dump or the SQLite file; videos only.

    ``downloadurl`` is hashed exactly as stored (the multimedia-commons keys
    are MD5s of the stored string). Titles and tags in the TSV are
    URL-encoded; only the licence columns are decoded, as they are carried on.
    """
    list_dir = _list_dir(path)
    with _open_binary(path) as f:
        is_sqlite = f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
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
        if n == 1 and line.lower().startswith("photoid"):
            continue  # the real dump has no header; tolerate one
        yield f"{path}:{n}", line.split("\t"), line


def _sqlite_rows(path: str) -> Iterator[tuple[str, list[str], str | None]]:
    if not _is_local(path):
        raise UserError(f"{path}: SQLite metadata must be a local file; copy it locally first")
    local = _local_path(path)
    con = sqlite3.connect(f"file:{quote(os.path.abspath(local))}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({YFCC_TABLE})")]
        if len(cols) != len(YFCC_COLUMNS):
            raise UserError(
                f"{path}: expected a table {YFCC_TABLE} with the {len(YFCC_COLUMNS)} YFCC100M columns, "
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


def _read_uris(path: str, media_root: str | None) -> Iterator[VideoRequest | BadRow]:
    """One location per line, or a CSV/TSV with a header naming a ``uri`` column."""
    list_dir = _list_dir(path)
    header: dict[str, int] | None = None
    delimiter = ","
    first = True
    for n, line in _lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
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
            yield _uris_request(line, header, delimiter, origin, list_dir, media_root)
        except RowError as err:
            yield _bad(origin, err, line)


def _uris_request(
    line: str, header: dict[str, int] | None, delimiter: str, origin: str, list_dir: str, media_root: str | None
) -> VideoRequest:
    if header is None:
        values = {"uri": line.strip()}
    else:
        row = _csv_row(line, delimiter)
        values = {k: row[i].strip() for k, i in header.items() if i < len(row)}
    uri = resolve_location(values.get("uri", ""), list_dir, media_root)
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
