"""A folder written by one run at a time: a create-if-absent lock object, or ``flock`` on a local file.

Two runs writing one folder at once could interleave their work (two
ingests rebuilding one store's index; two pushes each creating a rater's
project). So a run first creates ``FOLDER/<name>.lock`` *only if it does
not exist* (``O_CREAT | O_EXCL`` on local disk; a conditional write on
object stores: ``ifGenerationMatch=0`` on GCS, ``If-None-Match: *`` on S3,
both through fsspec's ``mode="create"``), and a second run is refused at
once with a message naming the holder. The lock is removed when the run
ends, also on errors and Ctrl-C. A lock left by a killed run on this
machine (its process is gone) is taken over; any other stale lock is
removed by hand, as the message says.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import uuid
from typing import Any, Callable, Iterator

from audioscope import storage
from audioscope.errors import UserError
from audioscope.processes import pid_alive


class FolderBusy(UserError):
    """Another run holds the folder."""


def create_if_absent(uri: str, data: bytes) -> bool:
    """Write ``data`` to ``uri`` only if nothing is there; False if something is."""
    if storage.is_local(uri):
        path = storage.url_to_fs(uri)[1]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, path = storage.url_to_fs(uri)
    # The conditional write makes this atomic on GCS and S3. Some stand-ins
    # (the GCS emulator) ignore the condition, so an existing object is also
    # looked for first and the object read back after the write.
    if fs.exists(path):
        return False
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as e:  # some back ends report the failed precondition as a plain error
        if e.errno == errno.EEXIST or "412" in str(e) or "PreconditionFailed" in str(e):
            return False
        raise
    fs.invalidate_cache(path)
    return bool(fs.cat_file(path) == data)


class FolderLock:
    """``with FolderLock(uri, activity="push", subject="the annotations X", what=...):`` holds a folder
    for one run; ``what`` (a list, a server) names the holder's work in the message another run gets."""

    busy: type[FolderBusy] = FolderBusy

    def __init__(self, uri: str, *, activity: str, subject: str, what: str = "") -> None:
        self.uri = uri
        self.activity = activity
        self.subject = subject
        self.what = what
        self.held = False

    def _payload(self) -> bytes:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "what": self.what,
            "token": uuid.uuid4().hex,  # tells this run's lock from any other's
        }
        return (json.dumps(info, sort_keys=True) + "\n").encode("utf-8")

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(storage.read_text(self.uri)))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        payload = self._payload()
        if create_if_absent(self.uri, payload):
            self.held = True
            return
        info = self.holder()
        same_host = info.get("host") == socket.gethostname()
        if same_host and isinstance(info.get("pid"), int) and not pid_alive(int(info["pid"])):
            # left by a killed run on this machine: take it over
            storage.remove(self.uri)
            if create_if_absent(self.uri, payload):
                self.held = True
                return
            info = self.holder()
        what = info.get("what") or info.get("list")  # "list": the store locks of earlier versions
        who = (
            f"{what or 'its work'} (process {info.get('pid')} on {info.get('host')}, since {info.get('started_at')})"
            if info else "another run"
        )
        raise self.busy(
            f"{self.subject} is being written by another {self.activity} of {who}; wait for it to "
            f"finish and run this command again. If no {self.activity} is running (it was killed on another "
            f"machine), remove {self.uri} first"
        )

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                storage.remove(self.uri)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def local_flock(path: str | os.PathLike[str], on_busy: Callable[[str], None]) -> Iterator[None]:
    """Hold ``flock`` on the local file ``path`` (created if absent, never through a link), which the
    system releases when the process ends, however it ends. While another process holds it,
    ``on_busy(holder)`` is called (``holder``: the process id the holder wrote, or "") and may raise
    to refuse; if it returns, this waits for the lock. Without flock (Windows) nothing is coordinated."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_busy(os.pread(fd, 32, 0).decode("ascii", "replace").strip())
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
