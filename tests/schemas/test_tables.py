"""audioscope.schemas.tables: per-table versions, the new EXAMPLES and PAIRS tables, the validator."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioscope.schemas import tables
from audioscope.schemas.tables import EXAMPLES, PAIRS, SCHEMA_VERSIONS, SchemaError, to_table, validate


def _pair(**over):
    row = {"path1": "data/videos/mp4/827/f6b/827f6b5.mp4", "start1": 3.0, "end1": 8.0,
           "path2": None, "start2": None, "end2": None}  # fmt: skip
    return {**row, **over}


def test_every_table_has_a_name_and_version():
    assert set(SCHEMA_VERSIONS) == {"clip_index", "status", "df", "scores", "votes", "labels", "examples", "pairs"}
    assert all(v >= 1 for v in SCHEMA_VERSIONS.values())
    for name, schema in tables.SCHEMAS.items():
        assert tables.table_name(schema) == name
        assert tables.schema_version(schema) == SCHEMA_VERSIONS[name]


def test_version_and_name_survive_a_parquet_round_trip():
    table = to_table([_pair(), _pair(path2="b.mp4", start2=1.0, end2=6.0)], PAIRS)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    assert tables.table_name(back.schema) == "pairs" and tables.schema_version(back.schema) == 1
    assert validate(back, PAIRS).equals(table)


def test_a_newer_version_of_a_table_is_refused_with_what_to_do():
    table = to_table([_pair()], PAIRS)
    newer = table.replace_schema_metadata({**table.schema.metadata, b"audioscope.schema_version": b"2"})
    with pytest.raises(SchemaError, match="version 2.*reads version 1.*upgrade"):
        validate(newer, PAIRS)


def test_a_table_of_another_kind_is_refused_even_with_matching_columns():
    other = pa.schema(list(PAIRS), metadata={b"audioscope.table": b"scores", b"audioscope.schema_version": b"1"})
    table = to_table([_pair()], PAIRS).cast(other)
    with pytest.raises(SchemaError, match="'scores' table, not a 'pairs' table"):
        validate(table, PAIRS)


def test_tables_without_metadata_are_checked_by_columns_only():
    plain = pa.table({k: [v] for k, v in _pair(path2="b.mp4", start2=0.0, end2=5.0).items()})
    assert validate(plain, PAIRS).schema.metadata == PAIRS.metadata


def test_a_single_mixture_example_row_needs_no_second_clip():
    row = {
        "shard": "eval/test/onscreen_single/onscreen_single-00000-of-00001.tfrecord", "index": 0,
        "subset": "onscreen_single", "split": "test", "type": "onscreen_single", "is_mom": False,
        "frames_clip_id": "v-0000000", "clip_id1": "v-0000000", "video_id1": "v", "start1": 0.0, "end1": 5.0,
        "path1": "/data/v.mp4", "label1": "onscreen_only", "score1": 0.93,
    }  # fmt: skip
    table = to_table([row], EXAMPLES)
    assert table.column("clip_id2").null_count == 1 and table.column("score1").type == pa.float32()
    with pytest.raises(SchemaError, match="path1"):
        to_table([{**row, "path1": None}], EXAMPLES)
