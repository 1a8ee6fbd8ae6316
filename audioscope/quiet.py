"""Quiet output: TensorFlow's and absl's start-up lines stay out of every
command's output unless ``--verbose`` is given.

TensorFlow (2.21) logs through absl before absl's logging is initialised,
so its start-up lines (``WARNING: All log messages before
absl::InitializeLog() ...``, ``oneDNN custom operations are on ...``,
``cpu_feature_guard ... This TensorFlow binary is optimized ...``) go
straight to the process's standard error whatever ``TF_CPP_MIN_LOG_LEVEL``
says. :func:`configure` therefore does two things, before TensorFlow is
imported:

- sets the environment variables TensorFlow, absl and gRPC read (only
  errors), which worker processes inherit;
- in a command's own process (standard error is the real one), passes file
  descriptor 2 through a filter that drops C++ INFO and WARNING log lines
  (``I0000 ... file.cc:N] ...``) and the two lines above, and forwards
  everything else unchanged (errors, tracebacks, progress lines).

``audioscope.cli.main`` calls it once, after parsing the arguments.
Values the user has set are kept; ``--verbose`` leaves everything as it is.

Standard output does not pass through the filter, so a line written to
standard error reaches it a moment later than a line written to standard
output after it; :func:`sync` waits until standard error has caught up (a
progress line's last state before the summary that follows it).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

#: environment variables read by TensorFlow, absl and gRPC at load time
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "ABSL_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
}

#: Python loggers that TensorFlow and Keras print to, and gcsfs's (on a machine without Google
#: credentials, every first use of a bucket warns that its type could not be determined)
NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "gcsfs")

#: lines dropped from standard error (C++ INFO/WARNING in absl's and in
#: TensorFlow's older format, and the start-up notes)
NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    rb"|\d{4}-\d\d-\d\d [\d:.]+: [IW] \S+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)
_PREFIXES = (b"I0", b"W0", b"WARNING: All log", b"To enable the following", b"20")

#: log records that libraries send to the root logger and that say nothing
#: to our users (Beam's RunInference on a platform without per-process
#: memory figures)
HARMLESS_LOG_MESSAGES = ("Resource module is not available for current platform",)

_installed = False
_quiet = False
#: written to the filtered standard error by :func:`sync`; the pump drops it and wakes the waiter
_SYNC_MARK = b"\x00audioscope-stderr-sync\x00"
_sync_lock = threading.Lock()
_sync_waiters: list[threading.Event] = []  # one per mark written and not yet seen, in order
_pump_pid: int | None = None  # the process whose filter is running (a forked child has none)


class _HarmlessRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(m in message for m in HARMLESS_LOG_MESSAGES)


#: Loggers whose records of an interrupt (Ctrl-C, SIGTERM), a full disk or a server out of reach
#: repeat what the command says in one line (``errors.system_failure``): Beam logs the exception a
#: DoFn raises (a KeyboardInterrupt in the main thread included) with its traceback, and gcsfs each
#: request it gave up on.
REPORTED_ERROR_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker", "gcsfs")


def reported_by_the_command(exc: BaseException | None, text: str = "") -> bool:
    """Whether a runner's report of an error (the exception, or only its text) is an
    interrupt or a failure of the machine (a full disk...): the command says either
    in one line of its own (``audioscope.cli``), so the runner's traceback is a repeat."""
    from audioscope.errors import system_failure

    if isinstance(exc, KeyboardInterrupt):
        return True
    lines = text.strip().splitlines()
    if exc is None and lines and lines[-1].startswith("KeyboardInterrupt"):
        return True
    return system_failure(exc if exc is not None else Exception(text)) is not None


def active() -> bool:
    """Whether :func:`configure` made this process quiet (no ``--verbose``)."""
    return _quiet


class _ReportedErrorRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not reported_by_the_command(record.exc_info[1] if record.exc_info else None, record.getMessage())


def configure(verbose: int = 0) -> None:
    """Keep library start-up noise out of the output (``verbose`` 0), or let
    it through (``verbose`` >= 1). Call it before TensorFlow is imported."""
    global _quiet
    if verbose:
        return
    _quiet = True
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().addFilter(_HarmlessRecords())
    for name in REPORTED_ERROR_LOGGERS:
        if not any(isinstance(f, _ReportedErrorRecords) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(_ReportedErrorRecords())
    for module in ("keras", "tensorflow", "absl"):
        warnings.filterwarnings("ignore", module=module)
    if sys.stderr is sys.__stderr__:  # not under a test runner's capture
        _filter_stderr()


def is_noise(line: bytes) -> bool:
    """Whether a line of standard error is library start-up noise."""
    return NOISE.match(line) is not None


def _maybe_noise(fragment: bytes) -> bool:
    """Whether an unfinished line could still turn out to be noise."""
    return any(p.startswith(fragment[: len(p)]) or fragment.startswith(p) for p in _PREFIXES)


def _filter_stderr() -> None:
    global _installed, _pump_pid
    if _installed:
        return
    try:
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        wake_read, wake_write = os.pipe()
        original = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no usable file descriptor 2: leave it alone
        return
    _installed = True
    thread = threading.Thread(
        target=_pump, args=(read_end, original, wake_read), name="stderr-filter", daemon=True
    )
    thread.start()
    _pump_pid = os.getpid()

    def restore() -> None:
        global _pump_pid
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        with _sync_lock:
            _pump_pid = None
            os.dup2(original, 2)  # closes the pipe's write end in this process
        # Child processes that outlive the command (multiprocessing's resource
        # tracker lives until this process exits) still hold the pipe's write
        # end, so its end of file may never come: tell the pump to stop once
        # the pipe is drained instead of waiting for it.
        os.write(wake_write, b"x")
        thread.join(timeout=2.0)

    atexit.register(restore)


def sync(timeout: float = 1.0) -> None:
    """Return once everything written to standard error so far has passed the filter
    (or after ``timeout`` seconds): what is written to standard output next comes after it."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    seen = threading.Event()
    with _sync_lock:
        if _pump_pid != os.getpid():
            return
        _sync_waiters.append(seen)
        try:
            os.write(2, _SYNC_MARK)
        except OSError:
            _sync_waiters.remove(seen)
            return
    seen.wait(timeout)


def _marks_seen(count: int) -> None:
    with _sync_lock:
        for _ in range(min(count, len(_sync_waiters))):
            _sync_waiters.pop(0).set()


#: how long the pump waits for more output once the command has ended
DRAIN_IDLE_S = 0.05


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data) :]
        return True
    except OSError:
        return False


def _pump(read_end: int, out: int, wake: int) -> None:
    """Forward what is written to standard error, less the noise lines, until
    the pipe's end of file, or until ``wake`` is written to and the pipe has
    been quiet for :data:`DRAIN_IDLE_S`."""
    import select

    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    poller.register(wake, select.POLLIN)
    pending = b""
    alive = True
    ending = False
    while True:
        ready = {fd for fd, _ in poller.poll(DRAIN_IDLE_S * 1000 if ending else None)}
        if wake in ready:
            poller.unregister(wake)
            ending = True
        if read_end not in ready:
            if ending and not ready:
                break
            continue
        try:
            chunk = os.read(read_end, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        marks = pending.count(_SYNC_MARK)
        if marks:
            pending = pending.replace(_SYNC_MARK, b"")
        *lines, pending = pending.split(b"\n")
        data = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if pending and (marks or not _maybe_noise(pending)):  # a waiter wants all that came before
            data, pending = data + pending, b""
        if data and alive:
            alive = _write_all(out, data)
        if marks:
            _marks_seen(marks)
    if pending and alive and not is_noise(pending):
        _write_all(out, pending)
    os.close(read_end)
