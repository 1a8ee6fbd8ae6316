"""Helpers for the hostile-input and lossy-runner tests of the pipeline steps.

- :func:`snapshot`: every file under a folder (size + SHA-256), to show that
  nothing outside the intended folder changed.
- :func:`dropping_finish_bundle_outputs`: a runner stand-in. Beam's
  DaskRunner runs a DoFn's ``finish_bundle`` but drops what it emits (so
  ``BatchElements`` loses each bundle's last, partial batch); inside this
  context the in-process DirectRunner does the same to Beam's batching DoFns.
- :func:`dropping_last_work_line`: a runner stand-in that loses one element
  per work shard (the last line read from each ``work-*.jsonl``).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, str]]:
    """relative path -> (size, sha256) of every file under ``root`` (folders in ``skip`` left out)."""
    out = {}
    skip_s = tuple(os.path.abspath(p) + os.sep for p in skip)
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if os.path.abspath(path).startswith(skip_s):
                continue
            if path.is_symlink():
                out[str(path.relative_to(root))] = (-1, os.readlink(path))
                continue
            data = path.read_bytes()
            out[str(path.relative_to(root))] = (len(data), hashlib.sha256(data).hexdigest())
    return out


@contextmanager
def dropping_finish_bundle_outputs() -> Iterator[list[int]]:
    """Beam's batching DoFns run ``finish_bundle`` but what it emits is lost (as on DaskRunner).

    Yields a list that gets the size of every dropped batch.
    """
    from apache_beam.transforms import util

    dropped: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        for cls in (util._GlobalWindowsBatchingDoFn, util._WindowAwareBatchingDoFn):
            original = cls.finish_bundle

            def finish_bundle(self, _original=original):  # type: ignore[no-untyped-def]
                for out in _original(self) or ():
                    value = getattr(out, "value", out)
                    dropped.append(len(value) if hasattr(value, "__len__") else 1)

            mp.setattr(cls, "finish_bundle", finish_bundle)
        yield dropped


@contextmanager
def dropping_last_work_line() -> Iterator[None]:
    """The last line of every work shard read by a pipeline is lost.

    (The runner pickles the step, so what is lost is seen in the outputs,
    not in a list kept here.)
    """
    from audioscope import storage

    read_lines = storage.read_lines

    def lossy(uri):  # type: ignore[no-untyped-def]
        lines = read_lines(uri)
        name = str(uri).rsplit("/", 1)[-1]
        if name.startswith("work-") and name.endswith(".jsonl") and lines:
            return lines[:-1]
        return lines

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(storage, "read_lines", lossy)
        yield
