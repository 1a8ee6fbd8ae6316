"""The first steps every pipeline shares: its work shards in, one item per line, spread over workers."""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam

from audioscope import storage


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
