"""How a pipeline command talks to its Beam runner (standard library only).

Every pipeline command (ingest, score, render, mix) takes the same runner
options (``audioscope.options.add_runner_options``) and turns them into Beam
flags here: the flags after ``--``, local parallelism on the DirectRunner,
and local paths made absolute. :func:`check_paths_for_runner` normalises a
step's paths and refuses local ones when the workers are elsewhere
(:func:`remote_workers`: Dataflow, or ``--environment_type`` EXTERNAL or
DOCKER), in one message at launch instead of a failure on the workers.
:class:`RunnerConfig` is the part of every step's typed config that these
options fill.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from audioscope.errors import UserError
from audioscope.uris import is_local, normalise


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """The runner options every pipeline step's config shares (``add_runner_options`` on the command line).

    ``beam_args``: Beam flags (``--runner`` ...); ``poll``: seconds between
    progress lines on stderr (None: no progress display).
    """

    beam_args: Sequence[str] = ()
    poll: float | None = None


def to_stderr(message: str) -> None:
    """The default ``echo`` of the library entries: one note for the user on stderr."""
    print(message, file=sys.stderr)

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


def new_pipeline(beam_args: Sequence[str]) -> Any:
    """A Beam pipeline for these flags; on the local runner, :class:`~audioscope.pipelines.local_runner.LocalRunner`
    (Beam's DirectRunner would first try to download and run the PrismRunner)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(beam_args))
    if local_runner(list(beam_args)):
        from audioscope.pipelines.local_runner import LocalRunner

        return beam.Pipeline(runner=LocalRunner(), options=options)
    return beam.Pipeline(options=options)


def run_to_end(pipeline: Any) -> Any:
    """Run a pipeline built by :func:`new_pipeline` and wait until it finishes; returns its result.

    For a runner other than the local one, Beam stages a list of the
    launcher's packages in a new folder under the system's temporary folder
    (``tmp*/submission_environment_dependencies.txt``) and leaves it there,
    one per launch; that scratch goes to a private folder removed when the
    run ends, whatever the ending.
    """
    import tempfile

    from audioscope.pipelines.local_runner import LocalRunner
    from audioscope.processes import temporary_files_in

    if isinstance(pipeline.runner, LocalRunner):
        result = pipeline.run()
        result.wait_until_finish()
        return result
    with temporary_files_in(tempfile.mkdtemp(prefix="audioscope-launch-"), clear=False):  # new and private (0700)
        result = pipeline.run()
        result.wait_until_finish()
    return result


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


#: Runners whose workers are other machines (or containers) whatever other flags say.
REMOTE_RUNNERS = ("DataflowRunner", "dataflow")
#: Portable environments whose workers may not see the launcher's disk (LOOPBACK and
#: PROCESS workers run on the launcher's machine).
REMOTE_ENVIRONMENTS = ("EXTERNAL", "DOCKER")


def flag_value(beam_args: list[str], name: str) -> str | None:
    """The last value of ``--name=V`` / ``--name V`` in the Beam flags (None when absent)."""
    value = None
    for i, a in enumerate(beam_args):
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(beam_args):
            value = beam_args[i + 1]
    return value


def without_flag(beam_args: Sequence[str], name: str) -> list[str]:
    """The Beam flags without ``--name=V`` / ``--name V`` (the forms :func:`flag_value` reads)."""
    kept: list[str] = []
    skip = False
    for a in beam_args:
        if skip:
            skip = False
        elif a == f"--{name}":
            skip = True  # its value follows
        elif not a.startswith(f"--{name}="):
            kept.append(a)
    return kept


def require_local_programs(beam_args: list[str], *names: str) -> None:
    """Refuse at launch when workers on this machine would run a program (ffmpeg) that is not
    installed here; remote workers (:func:`remote_workers`) bring their own image."""
    from audioscope.processes import require_program

    if not remote_workers(beam_args):
        for name in names:
            require_program(name)


def _runner_class(beam_args: list[str]) -> str:
    """The ``--runner``'s class name (``DataflowRunner`` also from its dotted path); "" for Beam's default."""
    return (runner_name(beam_args) or "").rsplit(".", 1)[-1]


def worker_environment(beam_args: list[str]) -> str | None:
    """The portable environment the workers get (``DOCKER``, ``EXTERNAL``, ``PROCESS``, ``LOOPBACK``), as
    Beam chooses it; None for runners that are not portable ones (Direct, Dataflow, Dask).

    ``--environment_type`` when given (a name or a ``beam:env:...`` URN); else Beam's default:
    containers (DOCKER) for the PortableRunner, and for the Flink and Spark runners with a master
    elsewhere; LOOPBACK (this process) for Prism, and Flink or Spark started here (``[auto]``,
    ``[local]``, ``local[N]``: their defaults).
    """
    env = flag_value(beam_args, "environment_type")
    if env:
        if env.startswith("beam:env:"):  # beam:env:docker:v1, beam:env:external:v1, ...
            env = env.split(":")[2]
        return "LOOPBACK" if env.upper().startswith("EMBEDDED") else env.upper()
    runner = _runner_class(beam_args)
    if runner == "PortableRunner":
        return "DOCKER"
    if runner == "PrismRunner":
        return "LOOPBACK"
    if runner == "FlinkRunner":
        here = (flag_value(beam_args, "flink_master") or "[auto]") in ("[auto]", "[local]")
        return "LOOPBACK" if here else "DOCKER"
    if runner == "SparkRunner":
        here = re.match(r"^local(\[.+\])?$", flag_value(beam_args, "spark_master_url") or "local[4]")
        return "LOOPBACK" if here else "DOCKER"
    return None


def remote_workers(beam_args: list[str]) -> bool:
    """True when the Beam flags send the work to workers that may not see this machine's disk.

    Dataflow always; any portable runner whose workers are EXTERNAL or DOCKER (a worker pool, or
    containers, which see their own file system), given or by Beam's default
    (:func:`worker_environment`: a bare ``--runner=PortableRunner`` runs containers). The
    DirectRunner, and portable runners with LOOPBACK or PROCESS workers, share the launcher's disk.
    """
    runner = _runner_class(beam_args)
    return runner in REMOTE_RUNNERS or worker_environment(beam_args) in REMOTE_ENVIRONMENTS


def remote_runner(beam_args: list[str]) -> str | None:
    """The runner's name for messages when its workers cannot see this machine's disk
    (:func:`remote_workers`); None when they can."""
    if not remote_workers(beam_args):
        return None
    return runner_name(beam_args) or "the portable runner"


def check_paths_for_runner(beam_args: list[str], paths: dict[str, str | None]) -> dict[str, str | None]:
    """Every path normalised (:func:`normalise`), local ones refused when the workers are remote.

    ``paths`` maps the option as the user wrote it (``"--out"``) to its value
    (None: not given, kept None). With remote workers (:func:`remote_workers`)
    a local path would only fail later on a worker that cannot see it, so
    all local paths are refused here in ONE :class:`UserError` naming them.
    Returns the same keys with normalised values.
    """
    out = {k: (normalise(v) if v else v) for k, v in paths.items()}
    runner = remote_runner(beam_args)
    if runner:
        local = [f"{k} {v}" for k, v in out.items() if v and is_local(v)]
        if local:
            raise UserError(
                f"{', '.join(local)}: local path{'s' if len(local) > 1 else ''} on this machine, but {runner} runs "
                "its workers elsewhere and they cannot read it; give gs:// or s3:// locations the workers can "
                "reach (or run on the local runner)"
            )
    return out
