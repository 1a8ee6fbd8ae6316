"""The `audioscope` command line: one subcommand per step.

Each subcommand lives in its own module that exposes
``register(subparsers) -> argparse.ArgumentParser``; the module sets
``func`` as a default on its parser. Command modules import only the standard
library at import time, so `audioscope --help` never loads Beam or TensorFlow;
the heavy work is imported inside ``func``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

from audioscope import __version__, quiet, tfmemory
from audioscope.errors import UserError, exception_chain, system_failure
from audioscope.processes import command_scratch

__all__ = ["UserError", "build_parser", "main", "run"]

# Order is the order of the data flow; it is also the order of `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "audioscope.synth.cli",
    "audioscope.pipelines.ingest_cli",
    "audioscope.clipstore.cli",
    "audioscope.models.cli",
    "audioscope.pipelines.score_cli",
    "audioscope.curation.filter_cli",
    "audioscope.annotation.cli",
    "audioscope.pipelines.mix_cli",
    "audioscope.curation.release_cli",
    "audioscope.models.train_cli",
    "audioscope.models.evaluate_cli",
    "audioscope.curation.report_cli",
)

EPILOG = """\
The data flows one way: synth (or your own videos) -> ingest -> clip store
-> scores -> curated lists and labels -> mixture shards -> releases ->
training. Every step is resumable: running it again does only what is
missing. Pipelines run on Beam's local runner by default; pass standard Beam
flags (e.g. --runner=DataflowRunner --project=... --region=...
--temp_location=gs://...) after `--` to run them elsewhere.

Run `audioscope COMMAND --help` for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audioscope",
        description="Build the AudioScope on-screen / off-screen sound dataset end to end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"audioscope-data {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the command stops as on Ctrl-C (finished work kept, scratch removed, worker
    processes stopped, a training checkpointed) instead of dying where it stands."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Seconds after which a stop signal that could not be raised where it arrived is delivered again.
STOP_RETRY_S = 0.1
#: How many times a stop signal waits for an import to end before it is raised there all the same.
STOP_DEFERRALS = 100
#: Held while the stop signals are ours (a command runs), so that one delivered again never reaches
#: the handler that comes back after the command (SIGTERM's default ends the process).
_STOP_LOCK = threading.Lock()
_stops_ours = False
_stop_deferred = 0


def _raise_stopped(signum: int, frame: Any) -> None:
    """Raise :class:`Stopped` (KeyboardInterrupt for SIGINT) where the main thread is, unless it is
    importing a module: an exception raised there can be lost (a C extension's module set-up cleared
    one, seen when a stop arrived while ingest imported Beam, and the run then went on until killed).
    Then the signal is delivered again shortly, until it lands outside an import (at most
    :data:`STOP_DEFERRALS` times)."""
    global _stop_deferred
    if _importing(frame) and _stop_deferred < STOP_DEFERRALS:  # (a command run by an import raises at last)
        _stop_deferred += 1
        _deliver_again(signum)
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _deliver_again(signum: int) -> None:
    def deliver() -> None:
        with _STOP_LOCK:
            if _stops_ours:  # a real signal: it also wakes the main thread from a wait
                signal.pthread_kill(threading.main_thread().ident or 0, signum)

    timer = threading.Timer(STOP_RETRY_S, deliver)
    timer.daemon = True
    timer.start()


def _lost_stop(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``sys.unraisablehook`` that delivers a stop (:class:`Stopped`, or Ctrl-C's KeyboardInterrupt)
    raised where Python can only report it (a ``__del__``, a weak reference's callback) again
    instead of printing it."""

    def report(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            _deliver_again(exc.signum if isinstance(exc, Stopped) else signal.SIGINT)
        else:
            hook(unraisable)

    return report


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread while a command runs, and Ctrl-C
    (SIGINT, unless ignored or taken by someone else) KeyboardInterrupt as usual, both by
    :func:`_raise_stopped`; the previous handlers come back after (the tests call :func:`main` in
    their own process)."""
    global _stops_ours, _stop_deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        ours.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in ours}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _lost_stop(previous_hook)
    with _STOP_LOCK:
        _stops_ours, _stop_deferred = True, 0
    try:
        yield
    finally:
        with _STOP_LOCK:
            _stops_ours = False
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or :class:`Stopped`) behind ``exc``, if any.

    A Beam DoFn running in the main thread (one local worker) turns the
    KeyboardInterrupt it receives into ``RuntimeError("KeyboardInterrupt
    [while running 'step']")``, raised while handling it: the interrupt is in
    the exception's context chain.
    """
    return next((e for e in exception_chain(exc) if isinstance(e, KeyboardInterrupt)), None)


def _interrupted(command: str, exc: KeyboardInterrupt) -> int:
    what = f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped) else "interrupted"
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(
            f"\naudioscope {command}: {what}. Finished work is kept; run the same command again to resume.",
            file=sys.stderr,
        )
    return 128 + exc.signum if isinstance(exc, Stopped) else 130


def _check_output_folder(args: argparse.Namespace) -> None:
    """A command's output folder (its parser's ``writes`` default: the option's dest and the
    step's folder kind) must not be another step's (:func:`audioscope.folders.refuse_another_steps`)."""
    dest, kind = getattr(args, "writes", None) or (None, None)
    root = getattr(args, dest, None) if dest else None
    if root:
        from audioscope.folders import refuse_another_steps

        refuse_another_steps(str(root), kind, "--" + dest.replace("_", "-"))


def main(argv: Sequence[str] | None = None, own_process: bool = False) -> int:
    """Run one command; ``own_process``: the process ends with it (the console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tfmemory.configure()  # both before any command imports TensorFlow
    quiet.configure(args.verbose)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        _check_output_folder(args)
        with _stop_signals(), command_scratch(own_process):
            return int(func(args) or 0)
    except UserError as e:
        print(f"audioscope {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return _interrupted(args.command, e)
    except BrokenPipeError:
        # The reader went away (`audioscope clips list | head`): stop quietly,
        # as other Unix tools do, with 128 + SIGPIPE. Standard output now
        # points at /dev/null so that flushing it at exit raises nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        stop = interruption(e)
        if stop is not None:
            return _interrupted(args.command, stop)
        failure = system_failure(e)
        if failure is None:
            raise
        print(f"audioscope {args.command}: error: {failure}", file=sys.stderr)
        return 1


def run() -> None:
    """The console script: :func:`main`, then a quick exit.

    A process that imported Apache Beam spends a further 0.3-0.7 s after its
    last line while the interpreter tears down Beam's modules and objects
    (``python -c "import apache_beam"`` alone takes that long to exit, on 2
    cores). None of it is ours: every output is written atomically and closed
    by then. So after the ordinary shutdown steps that matter (other threads
    joined as at interpreter exit, atexit handlers such as temporary-file and
    logging cleanup, standard streams flushed), the process ends with
    ``os._exit``. An exception or ``SystemExit`` out of :func:`main` (``--help``,
    ``--version``) takes the ordinary exit.
    """
    code = main(own_process=True)
    shutdown_threads = getattr(threading, "_shutdown", None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        shutdown_threads = None
    if shutdown_threads is None:  # an interpreter we do not know: the ordinary exit
        sys.exit(code)
    shutdown_threads()  # what interpreter exit does first: wait for non-daemon threads
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
