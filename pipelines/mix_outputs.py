"""What is derived from a plan alone, once every shard exists: examples.parquet, the pair CSVs,
summary.json (last). No Beam and no TensorFlow here."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator, Mapping

from audioscope import storage
from audioscope.pipelines.mix_layout import FORMAT_VERSION, MixLayout, pairs_csv_path
from audioscope.pipelines.mix_pairs import pairs_csv, published_path
from audioscope.pipelines.mix_plan import PlanOptions, Plan, Planned
from audioscope.schemas import records


def first_clip_info(e: Planned) -> tuple[str, tuple[int, ...], tuple[int, ...], float]:
    """Label, votes and score of clip 1. They describe it as a clip (its own audio
    with its own frames), so an SOff example, whose frames come from another
    video, has none."""
    first = e.first
    if e.frames != first:
        return "", (), (), math.nan
    return first.label or "", first.votes_onscreen, first.votes_offscreen, math.nan if first.score is None else first.score


#: Rows of examples.parquet held in memory at once (one row group each).
ROWS_PER_GROUP = 100_000


def example_rows(plan: Plan) -> Iterator[dict[str, Any]]:
    """One EXAMPLES row per planned example, in (shard, index) order, planned shard by shard."""
    for shard in plan.iter_shards(by_path=True):
        for i, e in enumerate(shard.examples):
            label, _, _, score = first_clip_info(e)
            second = e.second
            yield {
                "shard": shard.path, "index": i, "subset": e.subset, "split": e.split, "type": e.type,
                "is_mom": e.is_mom, "frames_clip_id": e.frames.clip_id,
                "clip_id1": e.first.clip_id, "video_id1": e.first.video_id, "start1": e.first.start,
                "end1": e.first.end, "path1": published_path(e.first.path),
                "clip_id2": second and second.clip_id, "video_id2": second and second.video_id,
                "start2": second and second.start, "end2": second and second.end,
                "path2": second and published_path(second.path),
                "label1": label or None, "score1": None if math.isnan(score) else score,
                "licence_name1": e.first.licence_name, "licence_url1": e.first.licence_url,
                "licence_name2": second and second.licence_name, "licence_url2": second and second.licence_url,
                "frames_licence_name": e.frames.licence_name, "frames_licence_url": e.frames.licence_url,
            }  # fmt: skip


def write_examples_parquet(plan: Plan, path: str) -> None:
    """``examples.parquet`` (schemas.tables.EXAMPLES; deterministic), written a row group at a time
    to a local temporary file and moved into place whole."""
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import EXAMPLES, to_table

    with tempfile.TemporaryDirectory(prefix="audioscope-examples-") as tmp:
        local = os.path.join(tmp, "examples.parquet")
        with pq.ParquetWriter(local, EXAMPLES, compression="zstd") as writer:
            rows = example_rows(plan)
            wrote = False
            while chunk := list(itertools.islice(rows, ROWS_PER_GROUP)):
                writer.write_table(to_table(chunk, EXAMPLES))
                wrote = True
            if not wrote:
                writer.write_table(to_table([], EXAMPLES))
        put_file(local, path)


def put_file(local: str, uri: str) -> None:
    """Move a finished local file to ``uri`` whole (a rename next to it when local, an upload else)."""
    if storage.is_local(uri):
        target = storage.url_to_fs(uri)[1]
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = os.path.join(os.path.dirname(target) or ".", f".{os.path.basename(target)}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)
    else:
        fs, remote = storage.url_to_fs(uri)
        fs.put_file(local, remote)


def eval_sets(plan: Plan) -> dict[tuple[str, str], list[Planned]]:
    """The planned examples of each evaluation set (split, set) that has any, in plan order."""
    return plan.eval


def summary(plan: Plan, config: PlanOptions, inputs: Mapping[str, Any], shard_bytes: Mapping[str, int],
            record_version: int = records.SCHEMA_VERSION) -> dict[str, Any]:  # fmt: skip
    """``summary.json``: versions (``record_version``: the shards' record schema), every option,
    inputs, counts, shards (with sizes) and notes."""
    from audioscope import __version__
    from audioscope.schemas.tables import SCHEMA_VERSIONS

    return {
        "format_version": FORMAT_VERSION,
        "schema_versions": {
            "mixture_record": record_version, "examples": SCHEMA_VERSIONS["examples"],
            "pairs": SCHEMA_VERSIONS["pairs"],
        },
        "toolkit_version": __version__,
        "config": config.to_json(),
        "inputs": dict(inputs),
        "plan_sha256": plan.sha256(),
        "counts": plan.counts,
        "shards": [{"path": p, "examples": n, "bytes": int(shard_bytes[p])} for p, n in plan.shard_sizes().items()],
        "examples": "examples.parquet",
        "pairs": [pairs_csv_path(split, name) for split, name in eval_sets(plan)],
        "notes": plan.notes,
    }  # fmt: skip


def write_outputs(
    layout: MixLayout, plan: Plan, config: PlanOptions, inputs: Mapping[str, Any],
    record_version: int = records.SCHEMA_VERSION,
) -> dict[str, Any]:
    """After every shard exists: examples.parquet, the pair CSVs, then summary.json (last), which
    names ``record_version``, the record schema the shards were written in."""
    sizes = layout.existing_shards()
    write_examples_parquet(plan, layout.examples_parquet)
    for (split, name), examples in eval_sets(plan).items():
        storage.atomic_write(layout.path(pairs_csv_path(split, name)), pairs_csv(examples))
    result = summary(plan, config, inputs, sizes, record_version)
    storage.atomic_write(layout.summary_json, json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result
