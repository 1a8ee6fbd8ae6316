"""Option groups that several commands share, declared once (standard library only).

- :func:`add_command`: a subcommand parser with our help layout and its
  ``func``.
- :func:`add_store_option`: the clip store, ``--store`` everywhere (the
  older spellings ``--clips`` and, for ingest, ``--out`` stay as aliases).
- :func:`add_workers_option`: ``--workers N`` (a whole number >= 1).
- :func:`add_runner_options`: ``--workers``, ``--poll`` and the Beam flags
  after ``--`` for the pipeline commands.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from audioscope.argtypes import positive_int, positive_seconds

def add_command(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    *,
    help: str,
    description: str,
    func: Callable[[argparse.Namespace], int] | None = None,
    epilog: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose description and epilog keep their line breaks; ``func`` runs it."""
    p = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
    )
    if func is not None:
        p.set_defaults(func=func)
    return p


STORE_HELP = "the clip store made by `audioscope ingest` (path, gs://, s3://)"


def add_store_option(
    p: argparse.ArgumentParser,
    *,
    aliases: tuple[str, ...] = (),
    required: bool = True,
    help: str = STORE_HELP,
) -> None:
    """``--store STORE`` (dest ``store``); ``aliases`` are older spellings kept working."""
    p.add_argument(
        "--store", *aliases, dest="store", required=required, metavar="STORE",
        help=help + ("" if not required else "; required"),
    )


def add_workers_option(p: argparse.ArgumentParser, what: str = "bundles processed") -> None:
    """``--workers N``: how many units the local runner works on at once."""
    p.add_argument(
        "--workers", type=positive_int, default=None, metavar="N",
        help=f"{what} at once on the local runner (default: CPU count); "
        "ignored with another --runner, whose own flags decide",
    )


def add_runner_options(
    p: argparse.ArgumentParser, *, what: str = "bundles processed", beam_args: bool = True
) -> None:
    """--workers, --poll and (unless ``beam_args`` is False) the Beam flags after `--`."""
    add_workers_option(p, what)
    p.add_argument(
        "--poll", type=positive_seconds, default=2.0, metavar="S",
        help="seconds between progress updates (default: 2)",
    )
    if beam_args:
        p.add_argument(
            "rest", nargs=argparse.REMAINDER, metavar="-- BEAM_FLAGS",
            help="standard Apache Beam pipeline options after `--` (e.g. --runner=DataflowRunner)",
        )
