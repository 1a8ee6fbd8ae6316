"""Processes (standard library only): whether one still runs, room for the sockets of a pool, and
where a process's temporary files go.

:func:`pid_alive` is used by the clip store's ingest lock (is the holder on
this machine gone?) and by the Label Studio launcher (is the server we
started still up?); :func:`multiprocessing_folder` by ingest's process pool;
:func:`temporary_files_in` by the trainings and by remote launches;
:func:`command_scratch` by every command of the CLI; :func:`stop_executor` by the
process pools of ingest and synth.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from typing import Any, Iterator

#: The longest path a Unix socket may have (``sun_path`` holds 108 bytes with the final NUL).
UNIX_SOCKET_PATH_MAX = 107


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs: a child of ours that exited is reaped here, and
    a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Where :func:`short_socket_folder` puts a fork server's socket when ``TMPDIR`` is too long for one.
SOCKET_FOLDERS = ("/tmp", "/dev/shm")


def stop_executor(executor: Any) -> None:
    """Stop a ``ProcessPoolExecutor`` at once, for a run that will not finish (a stop, an error): its
    queued work is cancelled and its processes are terminated, not waited for (CPython keeps them in
    ``_processes``; Python 3.14 has ``terminate_workers``), then reaped."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def short_socket_folder(candidates: tuple[str, ...] = SOCKET_FOLDERS) -> str | None:
    """Make multiprocessing's sockets (a fork server's) fit a Unix socket path; returns the folder
    it then uses, or None when the temporary directory already leaves room (or nothing is needed).

    multiprocessing makes its sockets in a ``pymp-XXXXXXXX`` folder of the
    temporary directory. Under a long ``TMPDIR`` (a batch system's per-job
    scratch, a CI runner's) the socket's path passes the 107 bytes a Unix
    socket allows, and the fork server fails to start ("AF_UNIX path too
    long"). Then this process's multiprocessing folder goes to the first of
    ``candidates`` that can be written: only the sockets go there, every other
    scratch file stays in ``TMPDIR``. Call it before the first process pool.
    It is made inside a folder this process holds (as a command's scratch), so
    that if the process is killed outright the next command removes it.
    """
    from multiprocessing import process

    config = process.current_process()._config  # type: ignore[attr-defined]  # where util.get_temp_dir keeps it
    if config.get("tempdir") is not None:
        return None
    longest = os.path.join(tempfile.gettempdir(), "pymp-" + "x" * 8, "listener-" + "x" * 8)
    if len(os.fsencode(longest)) <= UNIX_SOCKET_PATH_MAX:
        return None
    for parent in candidates:
        try:
            owner, _ = _owned_folder(parent)  # its lock stays held (the descriptor open) until the process ends
        except OSError:
            continue
        return _own_multiprocessing_folder(owner, remove=owner)
    return None


def _own_multiprocessing_folder(parent: str, remove: str | None = None) -> str:
    """A new ``pymp-*`` folder in ``parent`` as this process's multiprocessing folder, removed (or
    ``remove``, a folder holding it) when the process exits."""
    from multiprocessing import process, util

    folder = tempfile.mkdtemp(prefix="pymp-", dir=parent)
    process.current_process()._config["tempdir"] = folder  # type: ignore[attr-defined]
    util.Finalize(None, shutil.rmtree, args=(remove or folder,), kwargs={"ignore_errors": True}, exitpriority=-100)
    return folder


_TEMPDIR_LOCK = threading.Lock()
#: The folders :func:`temporary_files_in` has given the process, innermost last, and what was there before.
_TEMPDIRS: list[str] = []
_TEMPDIR_BEFORE: list[str | None] = []


@contextlib.contextmanager
def temporary_files_in(folder: str, clear: bool = True) -> Iterator[str]:
    """The temporary files this process makes meanwhile (``tempfile``'s default folder) go to ``folder``,
    which starts empty (``clear``; else as it is) and is removed at the end, however the block ends.

    Libraries leave files in the system's temporary folder that only their exit handlers remove:
    TensorFlow writes the code of every traced function there (``__autograph_generated_file*.py``),
    Beam a list of the launcher's packages per launch. A process killed outright (SIGKILL, the
    out-of-memory killer, a preempted machine) leaves them behind. Here they land in ``folder``,
    which belongs to the step (a training's run folder), so the next run clears them. Blocks may
    nest or overlap across threads: the default folder is the innermost one still open.
    """
    if clear:
        if os.path.islink(folder):
            os.unlink(folder)
        shutil.rmtree(folder, ignore_errors=True)  # a killed run's leftovers
        os.makedirs(folder, exist_ok=True)
    with _TEMPDIR_LOCK:
        if not _TEMPDIRS:
            _TEMPDIR_BEFORE[:] = [tempfile.tempdir]
        _TEMPDIRS.append(folder)
        tempfile.tempdir = folder
    try:
        yield folder
    finally:
        with _TEMPDIR_LOCK:
            _TEMPDIRS.remove(folder)
            tempfile.tempdir = _TEMPDIRS[-1] if _TEMPDIRS else _TEMPDIR_BEFORE[0]
        shutil.rmtree(folder, ignore_errors=True)


#: The scratch folder of one command, in the system's temporary folder: ``audioscope-run-XXXXXXXX``.
COMMAND_SCRATCH_PREFIX = "audioscope-run-"
#: Inside it, the file its command holds (``flock``) while it runs: the system releases it when the
#: process ends, however it ends, so a scratch whose lock can be taken is an orphan.
SCRATCH_OWNER = ".owner.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def command_scratch(own_process: bool = False) -> Iterator[str]:
    """Every temporary file of the command (ours, Beam's, TensorFlow's, a decode's) goes to one
    folder of the system's temporary folder, removed when the command ends; first the folders
    of commands that were killed outright (SIGKILL, out of memory, a machine preempted) are
    removed: they are the ones whose owner lock is free.

    multiprocessing keeps one folder per process (its fork server's socket) for the life of the
    process: :func:`multiprocessing_folder` puts it in the scratch only when the process ends with
    the command (``own_process``, the console script), else in the system's temporary folder.
    Without flock (Windows) the folder is still used and removed, but orphans stay.
    """
    global _OWN_SCRATCH
    base = tempfile.gettempdir()
    for parent in dict.fromkeys((base, *SOCKET_FOLDERS)):
        remove_orphan_scratch(parent)
    folder, fd = _owned_folder(base)
    try:
        with temporary_files_in(folder, clear=False):
            _OWN_SCRATCH = folder if own_process else None
            try:
                yield folder
            finally:
                _OWN_SCRATCH = None
    finally:
        os.close(fd)


def _owned_folder(base: str) -> tuple[str, int]:
    """A new ``audioscope-run-*`` folder in ``base`` and the descriptor of its owner lock, held
    (``flock``) until closed or the process ends; it gets the name the removal looks for only once
    locked."""
    starting = tempfile.mkdtemp(prefix="." + COMMAND_SCRATCH_PREFIX, dir=base)
    fd = -1
    try:
        fd = os.open(os.path.join(starting, SCRATCH_OWNER), os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        folder = os.path.join(base, os.path.basename(starting)[1:])
        os.rename(starting, folder)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(starting, ignore_errors=True)
        raise
    return folder, fd


#: The scratch of the command running now when the process ends with it (see :func:`command_scratch`).
_OWN_SCRATCH: str | None = None


def multiprocessing_folder() -> None:
    """Place multiprocessing's per-process folder (a fork server's socket lives there until the
    process ends) before a fork server starts: with a long ``TMPDIR``, in a short folder
    (:func:`short_socket_folder`); else in the command's scratch when the process ends with the
    command, or in the system's temporary folder, never in a scratch removed while the process goes
    on (a test's process runs many commands; the fork server would lose its socket)."""
    from multiprocessing import process

    config = process.current_process()._config  # type: ignore[attr-defined]
    if config.get("tempdir") is not None or short_socket_folder() is not None:
        return
    if _OWN_SCRATCH is not None:  # removed with the scratch, after the process's last command
        config["tempdir"] = tempfile.mkdtemp(prefix="pymp-", dir=_OWN_SCRATCH)
        return
    with _TEMPDIR_LOCK:
        outer = _TEMPDIR_BEFORE[0] if _TEMPDIRS else tempfile.tempdir
    _own_multiprocessing_folder(outer or tempfile.gettempdir())


def remove_orphan_scratch(base: str) -> list[str]:
    """Remove the command scratch folders in ``base`` that no running command holds; returns them."""
    try:
        import fcntl
    except ImportError:
        return []
    removed = []
    try:
        names = [n for n in os.listdir(base) if n.startswith(COMMAND_SCRATCH_PREFIX)]
    except OSError:
        return []
    for name in names:
        folder = os.path.join(base, name)
        try:
            fd = os.open(os.path.join(folder, SCRATCH_OWNER), os.O_RDWR | _NOFOLLOW)
        except OSError:  # not one of ours, another user's, or not yet locked by a command starting now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its command runs
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def require_program(name: str) -> None:
    """Refuse to start a step whose local workers run ``name`` (ffmpeg) when it is not installed:
    one line at launch instead of every item failing."""
    if shutil.which(name) is None:
        from audioscope.errors import UserError

        raise UserError(
            f"{name} is not installed (not found on PATH): install it (Debian: `apt-get install {name}`; "
            f"`make install` does it) and run again"
        )


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the system's available memory (Linux
    ``MemAvailable``), or less under a container's limit (cgroup v2 ``memory.max``); None where
    neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
