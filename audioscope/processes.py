"""Whether a process still runs (standard library only).

Used by the clip store's ingest lock (is the holder on this machine gone?)
and by the Label Studio launcher (is the server we started still up?).
"""

from __future__ import annotations

import os


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
