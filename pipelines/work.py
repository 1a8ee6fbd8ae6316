"""What every pipeline step shares about its work: shards in, counts out.

- :data:`WORK_SHARDS`: the work shards names (``work-00003-of-00012.jsonl``,
  from :class:`audioscope.shards.ShardTemplate`).
- :func:`write_work_shards`: the launcher writes the items to do as JSON
  lines into work shards and removes the stale shards of an earlier run, so
  a worker never reads a shard the launcher did not write this run.
- :class:`ReadWork`: the first Beam step, those lines spread over workers.
- :func:`shortfalls` / :func:`require_complete`: every unit of work (a
  video's scores, a shard's clips) knows how many items it must produce. A
  step never marks a unit finished with fewer, and a run whose units came up
  short ends with :class:`IncompleteRun` (exit status non-zero) instead of a
  summary that looks whole. A runner that silently drops elements (Beam's
  DaskRunner drops what a DoFn emits in ``finish_bundle``) then costs a
  re-run, never data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import apache_beam as beam

from audioscope import storage
from audioscope.errors import UserError
from audioscope.shards import ShardTemplate  # noqa: F401 (re-exported: the one template)


#: The work shards of every pipeline step (JSON lines, one item each).
WORK_SHARDS = ShardTemplate(stem="work", suffix=".jsonl")


def write_work_shards(
    folder: str,
    lines: Iterable[str],
    *,
    per_shard: int,
    total: int | None = None,
    template: ShardTemplate = WORK_SHARDS,
) -> list[str]:
    """Write ``lines`` (one item each, no newline) into shards of ``per_shard`` lines in ``folder``.

    Each shard is written atomically; shards of the same template left by an
    earlier run that this run did not write are removed. ``total`` (the
    number of lines) lets a caller stream ``lines`` without holding them;
    without it they are read into a list first. Returns the shard paths, in
    order (none for no lines).
    """
    if per_shard < 1:
        raise ValueError("per_shard must be >= 1")
    if total is None:
        lines = list(lines)
        total = len(lines)
    n = math.ceil(total / per_shard)
    paths: list[str] = []
    it: Iterator[str] = iter(lines)
    for i in range(n):
        chunk = [line for _, line in zip(range(per_shard), it)]
        path = storage.join(folder, template.name(i, n))
        storage.atomic_write(path, "".join(line + "\n" for line in chunk))
        paths.append(path)
    if next(it, None) is not None:
        raise ValueError(f"more than total={total} lines were given")
    for path in storage.glob(storage.join(folder, template.pattern())):
        if path not in paths:
            storage.remove(path)
    return paths


class ReadWork(beam.PTransform):
    """Work shards (files of one JSON line per item) -> their non-blank lines, reshuffled.

    The launcher wrote the shards and passes their paths: a handful of small
    files (thousands of items each). They are read through fsspec
    (:func:`audioscope.storage.read_lines`), like the media, rather than with
    ``beam.io.ReadAllFromText``, whose own GCS client first retries a
    credentials lookup (~17 s lost where there are none, as against a GCS
    emulator) and which splits files that gain nothing from it. The
    Reshuffle stops the runner from fusing the heavy step that follows with
    the read, so that the items spread over all workers.
    """

    def __init__(self, work_files: Sequence[str]) -> None:
        super().__init__()
        self.work_files = list(work_files)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return (
            pbegin
            | "Files" >> beam.Create(self.work_files)
            | "Lines" >> beam.FlatMap(storage.read_lines)
            | "Reshuffle" >> beam.Reshuffle()
        )


# --------------------------------------------------------------------------- expected counts


@dataclass(frozen=True, kw_only=True)
class Shortfall:
    """A unit of work that produced fewer items than it must (``got`` may be 0: nothing at all)."""

    unit: str
    expected: int
    got: int


def shortfalls(expected: Mapping[str, int], produced: Mapping[str, int]) -> list[Shortfall]:
    """The units of ``expected`` (unit -> items it must produce) that ``produced`` falls short of, sorted.

    A unit missing from ``produced`` got 0 items. Units of ``produced`` that
    were not expected are ignored (earlier runs' work).
    """
    out = []
    for unit in sorted(expected):
        want, got = int(expected[unit]), int(produced.get(unit, 0))
        if got < want:
            out.append(Shortfall(unit=unit, expected=want, got=got))
    return out


class IncompleteRun(UserError):
    """A run ended with units of work short of what they must produce; nothing short was marked finished."""

    def __init__(self, step: str, what: str, missing: Sequence[Shortfall], rerun: str) -> None:
        self.step, self.missing = step, list(missing)
        shown = ", ".join(f"{s.unit} ({s.got} of {s.expected})" for s in self.missing[:3])
        more = f" and {len(self.missing) - 3} more" if len(self.missing) > 3 else ""
        super().__init__(
            f"{step} ended short: {len(self.missing)} {what} have fewer outputs than they must: {shown}{more} "
            f"(the runner lost work; nothing short was marked finished). {rerun}"
        )


def require_complete(
    step: str, what: str, expected: Mapping[str, int], produced: Mapping[str, int], rerun: str
) -> None:
    """Raise :class:`IncompleteRun` when any unit of ``expected`` fell short in ``produced``.

    ``what`` names the units in the message ("videos", "work shards");
    ``rerun`` says what to do (e.g. "Run the same command again to complete it.").
    """
    missing = shortfalls(expected, produced)
    if missing:
        raise IncompleteRun(step, what, missing, rerun)
