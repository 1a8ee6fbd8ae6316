"""The error type for "the user can fix this".

Library code raises :class:`UserError` with a message that says what went
wrong and what to do next; the command line (``audioscope.cli``) prints it
on one line, without a traceback, and exits with status 2. Library code
never decides exit codes or imports the command line. A failure of the
machine (a full disk, a read-only folder) is not the user's input: it rises
as the OSError it is, and :func:`system_failure` gives the command line its
one line (exit status 1).
"""

from __future__ import annotations

import errno
import os
import re
from typing import Iterator


class UserError(Exception):
    """An error the user can fix; printed without a traceback.

    The message must say what went wrong and what to do next.
    """


#: Failures of the machine, not of the input or the code: errno -> (what happened, what to do).
_SYSTEM_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free some space (or give a location on another disk)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space (or give a location on another disk)"),
    errno.EROFS: ("the file system is read-only", "give a location that can be written"),
    errno.EACCES: ("permission denied", "check the folder's permissions (or give another location)"),
    errno.EPERM: ("operation not permitted", "check the folder's permissions (or give another location)"),
    errno.EMFILE: ("too many open files", "raise the limit (`ulimit -n 65536`) or run fewer workers"),
    errno.ENFILE: ("too many open files on the system", "close other programs or run fewer workers"),
}
#: The failures of the machine that end a whole run rather than one item: the next
#: item would fail the same way. (A source that cannot be read, EACCES included,
#: is that item's own problem and is recorded with it.)
RUN_ENDING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE})
#: The same failures as they read in messages that crossed a process (Beam's SDK workers
#: and TensorFlow pass on the text of an error, not the error).
_SYSTEM_ERROR_TEXT = {os.strerror(code): code for code in _SYSTEM_ERRORS}
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] [^\n:']*(?:: '([^'\n]+)'(?: -> '([^'\n]+)')?)?")


class MissingProgram(OSError):
    """A program a step runs (ffmpeg) is not installed where the step runs: every item
    after it would fail the same way, so it ends the run (:func:`ends_the_run`)."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.ENOENT, f"{name} is not installed (not found on PATH)", name)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # crosses to the launcher from a pool process
        return (MissingProgram, (str(self.filename),))


_MISSING_PROGRAM_TEXT = re.compile(r"\[Errno 2\] (\S+) is not installed \(not found on PATH\)")


def _missing_program(chain: list[BaseException]) -> str | None:
    name = next((str(e.filename) for e in chain if isinstance(e, MissingProgram)), None)
    if name is None:  # only the text crossed over
        name = next((m[1] for e in chain for m in [_MISSING_PROGRAM_TEXT.search(str(e))] if m), None)
    if name is None:
        return None
    return (
        f"{name} is not installed where the work runs (not found on PATH): install it (Debian: `apt-get install "
        f"{name}`; on Dataflow, in the worker image, --sdk_container_image), then run the same command again; "
        "finished work is kept"
    )


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, once each."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        yield e
        seen.add(id(e))
        e = e.__cause__ or e.__context__


#: A server that cannot be reached (an object store, Label Studio, an emulator's address).
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT})


def _network_failure(chain: list[BaseException]) -> str | None:
    """The one line for a server that cannot be reached (refused, unreachable, unknown host)."""
    import socket

    if not any(isinstance(e, socket.gaierror) or (isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS)
               for e in chain):  # fmt: skip
        return None
    # the outermost message that says which server (a runner's wrapper holds a whole traceback)
    said = next((str(e).strip().splitlines()[0] for e in chain if str(e).strip() and not str(e).startswith("Traceback")), "")
    said = said if len(said) <= 200 else said[:197] + "..."
    return (
        f"cannot reach the server{f' ({said})' if said else ''}: check the network connection and the address "
        "(an emulator's STORAGE_EMULATOR_HOST, an S3 endpoint's AWS_ENDPOINT_URL), then run the same command again; "
        "finished work is kept"
    )


def system_failure(exc: BaseException) -> str | None:
    """One line for a failure of the machine behind ``exc`` (a full disk, a read-only or
    forbidden folder, too many open files, a server out of reach), saying what to do;
    None for any other error.

    Library code lets such an OSError rise (it is not the input's fault, and the
    next item would fail the same way); Beam and TensorFlow may wrap it, or pass
    on only its text, so the whole exception chain and its messages are read.
    """
    chain = list(exception_chain(exc))
    missing = _missing_program(chain)
    if missing is not None:
        return missing
    failures = [e for e in chain if isinstance(e, OSError) and e.errno in _SYSTEM_ERRORS]
    failures.sort(key=lambda e: e.filename is None)  # one that names its file first
    # (of a copy or a rename, the file written: ``filename2``)
    found = (failures[0].errno, failures[0].filename2 or failures[0].filename) if failures else None
    if found is None:  # only the text crossed over: Python's "[Errno N] text: 'file'", or the text alone
        texts = [str(e) for e in chain]
        named = [(int(m[1]), m[3] or m[2]) for t in texts for m in _ERRNO_TEXT.finditer(t) if int(m[1]) in _SYSTEM_ERRORS]
        named.sort(key=lambda n: n[1] is None)
        found = named[0] if named else next(
            ((c, None) for t in texts for text, c in _SYSTEM_ERROR_TEXT.items() if text in t), None
        )
    if found is None:
        return _network_failure(chain)
    (what, todo), filename = _SYSTEM_ERRORS[found[0]], found[1]
    where = f" ({filename})" if filename else ""
    return f"{what}{where}: {todo}, then run the same command again; finished work is kept"


def ends_the_run(exc: BaseException) -> bool:
    """Whether ``exc`` is (or was raised from) a failure in :data:`RUN_ENDING_ERRNOS` or a
    :class:`MissingProgram`: a step that records one item's failure and goes on must let this one rise."""
    return any(
        isinstance(e, MissingProgram) or (isinstance(e, OSError) and e.errno in RUN_ENDING_ERRNOS)
        for e in exception_chain(exc)
    )


def tool_failure(messages: str) -> OSError | None:
    """The run-ending failure a program (ffmpeg) reports in its messages, as the OSError
    Python would have raised, naming the file when the message does; None when there is none."""
    for code in sorted(RUN_ENDING_ERRNOS):
        text = os.strerror(code)
        if text in messages:
            named = re.search(r"(?:file:)?(/[^\s:']+)'?: " + re.escape(text), messages)
            return OSError(code, text, named.group(1) if named else None)
    return None
