"""What is derived from a plan alone, once every shard exists: examples.parquet, the pair CSVs,
summary.json (last). No Beam and no TensorFlow here."""

from __future__ import annotations

import io
import json
import math
from typing import Any, Mapping

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


def example_rows(plan: Plan) -> list[dict[str, Any]]:
    """One EXAMPLES row per planned example, in (shard, index) order."""
    rows = []
    for shard in sorted(plan.shards, key=lambda s: s.path):
        for i, e in enumerate(shard.examples):
            label, _, _, score = first_clip_info(e)
            second = e.second
            rows.append({
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
            })  # fmt: skip
    return rows


def examples_parquet(plan: Plan) -> bytes:
    """``examples.parquet`` bytes (schemas.tables.EXAMPLES; deterministic)."""
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import EXAMPLES, to_table

    buf = io.BytesIO()
    pq.write_table(to_table(example_rows(plan), EXAMPLES), buf, compression="zstd")
    return buf.getvalue()


def eval_sets(plan: Plan) -> dict[tuple[str, str], list[Planned]]:
    """The planned examples of each evaluation set (split, set), in shard order."""
    out: dict[tuple[str, str], list[Planned]] = {}
    for shard in plan.shards:
        for e in shard.examples:
            if e.split != "train":
                out.setdefault((e.split, e.subset), []).append(e)
    return out


def summary(plan: Plan, config: PlanOptions, inputs: Mapping[str, Any], shard_bytes: Mapping[str, int]) -> dict[str, Any]:
    """``summary.json``: versions, every option, inputs, counts, shards (with sizes) and notes."""
    from audioscope import __version__
    from audioscope.schemas.tables import SCHEMA_VERSIONS

    return {
        "format_version": FORMAT_VERSION,
        "schema_versions": {
            "mixture_record": records.SCHEMA_VERSION, "examples": SCHEMA_VERSIONS["examples"],
            "pairs": SCHEMA_VERSIONS["pairs"],
        },
        "toolkit_version": __version__,
        "config": config.to_json(),
        "inputs": dict(inputs),
        "plan_sha256": plan.sha256(),
        "counts": plan.counts,
        "shards": [{"path": s.path, "examples": len(s.examples), "bytes": int(shard_bytes[s.path])} for s in plan.shards],
        "examples": "examples.parquet",
        "pairs": [pairs_csv_path(split, name) for split, name in eval_sets(plan)],
        "notes": plan.notes,
    }  # fmt: skip


def write_outputs(layout: MixLayout, plan: Plan, config: PlanOptions, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """After every shard exists: examples.parquet, the pair CSVs, then summary.json (last)."""
    sizes = layout.existing_shards()
    storage.atomic_write(layout.examples_parquet, examples_parquet(plan))
    for (split, name), examples in eval_sets(plan).items():
        storage.atomic_write(layout.path(pairs_csv_path(split, name)), pairs_csv(examples))
    result = summary(plan, config, inputs, sizes)
    storage.atomic_write(layout.summary_json, json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result
