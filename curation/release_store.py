"""Where releases are kept and how bytes move: the release root (local folder, ``gs://``, ``s3://``),
streaming copies with a size cap, and the thread pool that moves several files at once.

This is the one place bytes move between stores (publish and pull use :func:`copy_file`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import posixpath
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Sequence

from audioscope import storage
from audioscope.curation.manifest import CHUNK

#: Files moved at the same time by publish and pull (``--jobs``). An object
#: store answers each request after a round trip, so several transfers at
#: once keep the link busy; on a local disk a few at once cost nothing.
DEFAULT_JOBS = 8


def now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-04T15:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TooLarge(Exception):
    """A source streamed more bytes than it may (``copy_file``'s ``max_bytes``); nothing was kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"more than {limit} bytes")


class ReleaseRoot:
    """A release root (local folder or object store) and the fsspec calls on it."""

    def __init__(self, root: str) -> None:
        self.uri = os.fspath(root).rstrip("/") or "/"
        self.fs, path = storage.url_to_fs(self.uri)
        self.path = path.rstrip("/")
        self.local = storage.is_local(self.uri)

    def p(self, *parts: str) -> str:
        """The file-system path of ``ROOT/parts...``."""
        return posixpath.join(self.path, *parts)

    def display(self, *parts: str) -> str:
        """``ROOT/parts...`` as the user wrote the root."""
        return posixpath.join(self.uri, *parts)

    def refresh(self) -> None:
        """Forget cached listings (another process may have written since)."""
        self.fs.invalidate_cache()

    def children(self, *parts: str) -> list[tuple[str, str]]:
        """(basename, type) of the entries directly under ``ROOT/parts``; hidden names included."""
        path = self.p(*parts)
        try:
            entries = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for e in entries:
            base = posixpath.basename(str(e["name"]).rstrip("/"))
            if base and str(e["name"]).rstrip("/") != path.rstrip("/"):
                out.append((base, str(e.get("type"))))
        return sorted(out)

    def read(self, *parts: str, limit: int | None = None) -> bytes | None:
        """The bytes of ``ROOT/parts`` or None when it does not exist; :class:`TooLarge` beyond ``limit``."""
        path = self.p(*parts)
        try:
            if limit is None:
                return bytes(self.fs.cat_file(path))
            with self.fs.open(path, "rb") as f:
                data = f.read(limit + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        if len(data) > limit:
            raise TooLarge(limit)
        return bytes(data)

    def remove_tree(self, *parts: str) -> None:
        """Delete ``ROOT/parts`` and everything under it (nothing when absent)."""
        path = self.p(*parts)
        if self.local:
            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass


def open_write(fs: Any, path: str, local: bool) -> Any:
    if local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "xb")  # never through an existing name (a link planted there)
    return fs.open(path, "wb")


def copy_file(
    src_fs: Any, src: str, dst_fs: Any, dst: str, dst_local: bool, max_bytes: int | None = None
) -> tuple[int, str]:
    """Stream one file from ``src`` to ``dst`` and return (bytes, SHA-256 of what was written).

    A local destination is created fresh (it must not exist) and flushed to
    disk (fsync) before returning. With ``max_bytes``, a source that has more
    raises :class:`TooLarge` as soon as the byte after the limit arrives, so an
    endless source cannot fill the disk; the caller removes ``dst``.
    """
    h = hashlib.sha256()
    n = 0
    local_src = "file" in _protocols(src_fs)  # plain open: streams pipes and devices too (no seek)
    with (open(src, "rb") if local_src else src_fs.open(src, "rb")) as fin, open_write(dst_fs, dst, dst_local) as fout:
        while True:
            want = CHUNK if max_bytes is None else min(CHUNK, max_bytes - n + 1)
            chunk = fin.read(want)
            if not chunk:
                break
            if max_bytes is not None and n + len(chunk) > max_bytes:
                raise TooLarge(max_bytes)
            h.update(chunk)
            try:
                fout.write(chunk)
            except OSError as e:  # a full or read-only disk: say which file could not be written
                raise OSError(e.errno, e.strerror, dst) from e
            n += len(chunk)
        if dst_local:
            fout.flush()
            os.fsync(fout.fileno())
    return n, h.hexdigest()


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def each_in_parallel(
    items: Sequence[Any], fn: Callable[[Any], Any], jobs: int, on_done: Callable[[Any], None]
) -> list[Any]:
    """``fn(item)`` for every item, ``jobs`` at a time; the results in item order.

    ``on_done(result)`` runs in the calling thread as each one finishes (for
    progress). The first error cancels the items not started yet, waits for
    the running ones (so that nothing writes after the caller cleans up) and
    is raised.
    """
    if jobs <= 1 or len(items) <= 1:
        results = []
        for item in items:
            results.append(fn(item))
            on_done(results[-1])
        return results
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="release-transfer")
    futures = [pool.submit(fn, item) for item in items]
    try:
        for future in as_completed(futures):
            on_done(future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return [f.result() for f in futures]


def server_copy(fs: Any, sources: list[str], targets: list[str]) -> None:
    """Copy objects inside an object store, concurrently (GCS: server-side rewrites; no bytes pass through here)."""
    fs.copy(sources, targets)


def write_bytes(fs: Any, path: str, data: bytes, local: bool) -> None:
    with open_write(fs, path, local) as f:
        f.write(data)
        if local:
            f.flush()
            os.fsync(f.fileno())


def write_pieces(path: str, pieces: Iterable[bytes]) -> str:
    """Write a new local file from ``pieces`` as they come (fsync'ed); the SHA-256 of its bytes."""
    h = hashlib.sha256()
    with open_write(None, path, True) as f:
        for piece in pieces:
            h.update(piece)
            f.write(piece)
        f.flush()
        os.fsync(f.fileno())
    return h.hexdigest()


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
