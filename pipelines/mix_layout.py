"""The mixtures folder (MIX_DIR): the one owner of its paths, shard names, "finished?" and tables.

Every other step (release, data card, training, evaluation) reaches a
mixtures folder through :class:`MixLayout`, never by file names::

    mix.json                                the plan's identity (config, inputs, sha256)
    work/work-NNNNN-of-MMMMM.jsonl          this run's shards to write (removed at the end)
    failed/<shard path, / as __>.json       a shard this run could not write (retried next run)
    train/<recipe>/<recipe>-00000-of-00004.tfrecord
    eval/<split>/<set>/<set>-00000-of-00001.tfrecord
    eval/<split>/<set>/<split>_<set>_pairs.csv
    examples.parquet                        schemas.tables.EXAMPLES
    summary.json                            written last: its presence means finished

Shard names come from one template (:func:`shard_name`, :mod:`audioscope.shards`). No Beam and no
TensorFlow here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from audioscope import storage
from audioscope.errors import UserError
from audioscope.shards import ShardTemplate

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Version of the folder's layout (``mix.json``, ``summary.json``).
FORMAT_VERSION = 1
#: Every shard's name, relative to the root: ``<folder>/<stem>-i-of-n.tfrecord``.
SHARD_SUFFIX = ".tfrecord"
#: Folders of the outputs a release carries (the rest is the run's bookkeeping).
OUTPUT_FOLDERS: tuple[str, ...] = ("train", "eval")
TOP_FILES: tuple[str, ...] = ("summary.json", "examples.parquet")
WORK_FOLDERS: tuple[str, ...] = ("work", "failed")


def shard_name(folder: str, stem: str, i: int, n: int) -> str:
    """The relative path of shard ``i`` of ``n`` in ``folder`` (the one shard template, :mod:`audioscope.shards`)."""
    return f"{folder}/{ShardTemplate(stem=stem, suffix=SHARD_SUFFIX).name(i, n)}"


def train_folder(recipe: str) -> str:
    return f"train/{recipe}"


def eval_folder(split: str, name: str) -> str:
    return f"eval/{split}/{name}"


def pairs_csv_path(split: str, name: str) -> str:
    """The pair list of an evaluation set, relative to the root."""
    return f"{eval_folder(split, name)}/{split}_{name}_pairs.csv"


class MixLayout:
    """Where each part of a mixtures folder lives (local path or URI); shard paths are relative."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if "://" in root else root

    def path(self, rel: str) -> str:
        return storage.join(self.root, *rel.split("/"))

    mix_json = property(lambda self: self.path("mix.json"))
    summary_json = property(lambda self: self.path("summary.json"))
    examples_parquet = property(lambda self: self.path("examples.parquet"))
    work_dir = property(lambda self: self.path("work"))
    failed_dir = property(lambda self: self.path("failed"))

    def train_dir(self, recipe: str) -> str:
        """The shards of a training recipe (what ``load_dataset`` takes)."""
        return self.path(train_folder(recipe))

    def eval_dir(self, split: str | None = None, name: str | None = None) -> str:
        return self.path("/".join(p for p in ("eval", split, name) if p))

    def work_file(self, i: int, n: int) -> str:
        return self.path(f"work/work-{i:05d}-of-{n:05d}.jsonl")

    def work_files(self) -> list[str]:
        return storage.glob(storage.join(self.work_dir, "work-*.jsonl"))

    def failed(self, shard: str) -> str:
        """The failure marker of a shard (its relative path with ``/`` as ``__``)."""
        return self.path(f"failed/{shard.replace('/', '__')}.json")

    # ------------------------------------------------------------------ state

    def existing_shards(self) -> dict[str, int]:
        """Every shard file that exists (path relative to the root, ``/`` separated) and its size,
        from one listing; temporary names are skipped."""
        root = self.root.rstrip("/")
        return {
            p[len(root) + 1 :].replace("\\", "/"): n for p, n in storage.iter_sizes(root) if p.endswith(SHARD_SUFFIX)
        }

    def is_finished(self) -> bool:
        """True when the mix run completed: every shard, the tables and ``summary.json`` exist."""
        return storage.exists(self.summary_json)

    def record_failure(self, shard: str, message: str) -> None:
        storage.atomic_write(self.failed(shard), json.dumps({"path": shard, "message": message}, sort_keys=True) + "\n")

    def read_failures(self) -> dict[str, str]:
        """Shards this run could not write: path -> reason."""
        out = {}
        for path in storage.list_files(self.failed_dir, ".json"):
            record = json.loads(storage.read_text(path))
            out[str(record["path"])] = str(record["message"])
        return dict(sorted(out.items()))

    def clear_failures(self) -> None:
        for path in storage.list_files(self.failed_dir, ".json"):
            storage.remove(path)

    # ------------------------------------------------------------------ readers

    def _require_finished(self) -> None:
        if not self.is_finished():
            raise UserError(
                f"{self.root} is not a finished mixtures folder (no summary.json): run `audioscope mix ... "
                f"--out {self.root}` (again) until it ends with 'Mixtures finished'"
            )

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` of a finished folder (options, inputs, counts, shards with sizes, notes)."""
        self._require_finished()
        try:
            summary = json.loads(storage.read_text(self.summary_json))
        except ValueError as e:
            raise UserError(f"{self.summary_json} is not valid JSON ({e}): re-run `audioscope mix` into a new folder") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("shards"), list):
            raise UserError(f"{self.summary_json} was not written by `audioscope mix` (no shard list)")
        return summary

    def read_pin(self) -> dict[str, Any] | None:
        """``mix.json`` (the pinned plan), or None before the first run."""
        if not storage.exists(self.mix_json):
            return None
        try:
            pin = json.loads(storage.read_text(self.mix_json))
        except (ValueError, UnicodeDecodeError):
            pin = None
        if not isinstance(pin, dict):
            raise UserError(
                f"{self.mix_json} is damaged (not the JSON object `audioscope mix` writes): pick a new --out, "
                "or delete that folder and run again"
            )
        return pin

    def read_examples(self) -> "pd.DataFrame":
        """``examples.parquet`` checked against ``schemas.tables.EXAMPLES``: one row per example."""
        import pyarrow.parquet as pq

        from audioscope.schemas.tables import EXAMPLES, SchemaError, validate

        self._require_finished()
        try:
            with storage.open_file(self.examples_parquet) as fh:
                return validate(pq.read_table(fh), EXAMPLES).to_pandas()
        except (SchemaError, OSError, ValueError) as e:
            raise UserError(f"{self.examples_parquet} cannot be read as the examples table ({e}): re-run `audioscope mix`") from None

    def shard_list(self) -> dict[str, int]:
        """Shard path -> planned example count, from ``summary.json``."""
        return {str(s["path"]): int(s["examples"]) for s in self.read_summary()["shards"]}

    def output_files(self) -> dict[str, int]:
        """The files a release carries (relative path -> bytes): the top tables and everything under
        ``train/`` and ``eval/`` (temporary and hidden names skipped)."""
        root = self.root.rstrip("/")
        out = {}
        for p, n in storage.iter_sizes(root):
            rel = p[len(root) + 1 :].replace("\\", "/")
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if rel in TOP_FILES or rel.split("/", 1)[0] in OUTPUT_FOLDERS:
                out[rel] = n
        return dict(sorted(out.items()))


def is_mix_folder(uri: str) -> bool:
    """True when ``uri`` is a finished mixtures folder (what training and evaluation accept as --data)."""
    layout = MixLayout(uri)
    return layout.is_finished() and storage.exists(layout.path("train"))
