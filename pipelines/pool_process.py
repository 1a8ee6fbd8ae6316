"""Imported by the ingest pool's fork server only (:data:`ingest_pool.POOL_PRELOAD`), never by a launcher.

A process that multiprocessing starts through a fork server (or by
spawning) first runs its parent's main script again, as ``__mp_main__``,
so that functions defined there can be unpickled; Python asks every script
that starts such processes to guard its top level with
``if __name__ == "__main__":``. The pool's processes need nothing of the
launcher's main script (every function they run lives in our modules), and
a user's script that calls ``audioscope ingest`` from Python without that
guard would otherwise be run again, side effects and all, in each of the
pool's processes (each one then tried a nested ingest and died, and the run
ended in a ``BrokenProcessPool`` traceback). So the fork server turns that
step off before it forks any pool process: its children inherit the change.
"""

from __future__ import annotations

from multiprocessing import spawn


def _no_main(_main: str) -> None:
    """Instead of importing the parent's main module (by path or by name): nothing."""


spawn._fixup_main_from_path = _no_main
spawn._fixup_main_from_name = _no_main
