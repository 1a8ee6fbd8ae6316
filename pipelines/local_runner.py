"""The local runner: Beam's DirectRunner as it runs our batch pipelines, minus its PrismRunner detour.

Since Beam 2.6x, the DirectRunner (``SwitchingDirectRunner``) first tries
to run a pipeline on the PrismRunner, whose binary it downloads from GitHub
at run time. Offline the download fails, an empty ``beam-temp*`` folder
is left in the temporary directory, and the pipeline falls back to Beam's
FnApiRunner; online the same command would fetch a program and run on
another engine, which ignores ``--direct_num_workers`` and which nothing
here has tested. The steps' local runs therefore go straight to the
FnApiRunner, set up as the DirectRunner sets it up for a batch pipeline
(the pipeline options handed to its workers), with no network access.
``--runner PrismRunner`` still chooses Prism explicitly.

Beam's in-process workers also print the traceback of any error a DoFn
raises to standard error, before the runner raises the same error in the
command: for an interrupt or a full disk, which the command reports in one
line, that print is dropped unless ``--verbose`` is given.
"""

from __future__ import annotations

from typing import Any

from apache_beam.runners.runner import PipelineRunner


class LocalRunner(PipelineRunner):
    """Runs a batch pipeline on Beam's FnApiRunner (threads or processes per ``--direct_*`` flags)."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        _quiet_worker_tracebacks()
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


def _quiet_worker_tracebacks() -> None:
    """Route the print of Beam's SDK worker (``sdk_worker.print``) through
    :func:`audioscope.quiet.reported_by_the_command` in a quiet command."""
    from apache_beam.runners.worker import sdk_worker

    from audioscope import quiet

    if not quiet.active() or getattr(sdk_worker, "print", None) is _worker_print:
        return
    sdk_worker.print = _worker_print  # type: ignore[attr-defined]  # a module global shadows the builtin


def _worker_print(*args: Any, **kwargs: Any) -> None:
    from audioscope import quiet

    if not quiet.reported_by_the_command(None, " ".join(str(a) for a in args)):
        print(*args, **kwargs)
