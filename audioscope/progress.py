"""Progress lines while a step runs, and a summary when it ends.

Runner-agnostic: pipelines report progress from what they have durably
written (status records in the output store), so the same display works for
Beam's local runner and for Dataflow.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Mapping, TextIO

from audioscope import quiet


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A single progress line: ``desc: done/total unit, k=v ..., rate, eta``.

    On a terminal the line is redrawn in place; elsewhere (CI, logs) a full
    line is printed at most every ``log_interval`` seconds.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "items",
        stream: TextIO | None = None,
        log_interval: float = 10.0,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = 0.2 if self.is_tty else log_interval
        self.done = 0
        self.counters: dict[str, int] = {}
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn: tuple[int, tuple[tuple[str, int], ...]] | None = None
        self._lock = threading.Lock()

    def update(self, n: int = 1, **counters: int) -> None:
        with self._lock:
            self.done += n
            for k, v in counters.items():
                self.counters[k] = self.counters.get(k, 0) + v
            self._maybe_draw()

    def set(self, done: int, **counters: int) -> None:
        """Set absolute values (for progress read back from storage)."""
        with self._lock:
            self.done = done
            self.counters.update(counters)
            self._maybe_draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.desc}: {self.done}{total} {self.unit}"]
        parts += [f"{k}={v}" for k, v in self.counters.items()]
        if elapsed > 0 and self.done:
            rate = self.done / elapsed
            parts.append(f"{rate:.2f} {self.unit}/s")
            if self.total:
                parts.append(f"eta {_fmt_duration(max(self.total - self.done, 0) / rate)}")
        parts.append(f"elapsed {_fmt_duration(elapsed)}")
        return ", ".join(parts)

    def _maybe_draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._drawn = (self.done, tuple(self.counters.items()))
        if self.is_tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state (unless the last line already shows it)."""
        with self._lock:
            if self._drawn != (self.done, tuple(self.counters.items())):
                self._maybe_draw(force=True)
            if self.is_tty:
                self.stream.write("\n")
                self.stream.flush()
        quiet.sync()  # the last state shows before whatever the command prints next


class Poller:
    """Calls ``poll() -> (done, counters)`` in a thread and shows it on a
    :class:`Progress` until stopped (a context manager).

    Polls are ``every`` seconds apart at least, and further apart when a poll
    is slow: a poll lists what the run has written (one object per video at
    the users' scale, 200,000 on a bucket), so the wait after a poll is at
    least ``(1 - max_share) / max_share`` times what it took. The poller thus
    spends at most ``max_share`` of the run's time polling, however big the
    listing grows; the lines shown are the same, only less often when the
    listing is slow.
    """

    def __init__(
        self,
        progress: Progress,
        poll: Callable[[], tuple[int, Mapping[str, int]]],
        every: float = 2.0,
        max_share: float = 0.1,
    ) -> None:
        if not 0.0 < max_share <= 1.0:
            raise ValueError(f"max_share must be in (0, 1], got {max_share}")
        self.progress = progress
        self.poll = poll
        self.every = every
        self.max_share = max_share
        self.wait = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.wait):
            began = time.monotonic()
            try:
                done, counters = self.poll()
            except Exception:  # noqa: BLE001 - progress must never break the run
                continue
            finally:
                took = time.monotonic() - began
                self.wait = max(self.every, took * (1.0 - self.max_share) / self.max_share)
            self.progress.set(done, **dict(counters))

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.wait + 1)
        try:
            done, counters = self.poll()
            self.progress.set(done, **dict(counters))
        except Exception:  # noqa: BLE001
            pass
        self.progress.close()


def print_summary(title: str, rows: Mapping[str, object], stream: TextIO | None = None) -> None:
    """Print an aligned ``key: value`` block under a title."""
    stream = stream or sys.stdout
    quiet.sync()  # after what went to standard error before it
    width = max((len(k) for k in rows), default=0)
    stream.write(f"\n{title}\n")
    for k, v in rows.items():
        stream.write(f"  {k.ljust(width)}  {v}\n")
    stream.flush()
