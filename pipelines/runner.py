"""How a pipeline command talks to its Beam runner (standard library only).

Every pipeline command (ingest, score, render, mix) takes the same runner
options (``audioscope.options.add_runner_options``) and turns them into Beam
flags here: the flags after ``--``, local parallelism on the DirectRunner,
and local paths made absolute.
"""

from __future__ import annotations

import os

from audioscope.errors import UserError

LOCAL_RUNNERS = (None, "DirectRunner", "direct")


def beam_flags(rest: list[str] | None) -> list[str]:
    """The Beam flags written after ``--`` (argparse keeps the ``--`` in REMAINDER)."""
    rest = list(rest or [])
    if rest and rest[0] == "--":
        return rest[1:]
    if rest:
        raise UserError(f"unexpected arguments {rest}; Beam flags go after `--`")
    return rest


def runner_name(beam_args: list[str]) -> str | None:
    """The ``--runner`` the Beam flags name (None: Beam's default, the DirectRunner)."""
    runner = None
    for i, a in enumerate(beam_args):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(beam_args):
            runner = beam_args[i + 1]
    return runner


def local_runner(beam_args: list[str]) -> bool:
    """True when the Beam flags leave the pipeline on the local DirectRunner."""
    return runner_name(beam_args) in LOCAL_RUNNERS


def local_parallelism(beam_args: list[str], workers: int | None) -> list[str]:
    """Add ``workers``-way parallelism when the pipeline runs on the local runner.

    Beam's DirectRunner processes one bundle at a time unless told otherwise.
    The work is mostly inside ffmpeg or TensorFlow, which release the GIL, so
    threads (not processes) keep every core busy. Flags the user gives
    (``--direct_*``) win.
    """
    if not local_runner(beam_args) or any(a.startswith("--direct_") for a in beam_args):
        return beam_args
    n = workers or os.cpu_count() or 1
    if n <= 1:
        return beam_args
    return [*beam_args, f"--direct_num_workers={n}", "--direct_running_mode=multi_threading"]


def normalise(uri: str) -> str:
    """A local path made absolute (so `./x` and `/abs/x` are the same); URIs as given."""
    if "://" in uri and not uri.startswith("file://"):
        return uri.rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return os.path.abspath(uri)
