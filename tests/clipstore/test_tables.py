"""audioscope.schemas.tables: one validate() for writers and readers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from audioscope.schemas.tables import CLIP_INDEX, SCHEMA_VERSION, STATUS, SchemaError, to_table, validate


def _clip_row(**over):
    row = {
        "clip_id": "v-0000000", "video_id": "v", "start": 0.0, "end": 5.0, "split": None,
        "licence_name": "CC BY", "licence_url": "https://creativecommons.org/licenses/by/2.0/",
        "source_uri": "/data/v.mp4", "video_duration": 12.0,
    }
    row.update(over)
    return row


def test_to_table_builds_a_validated_table_with_version():
    t = to_table([_clip_row(), _clip_row(clip_id="v-0001000", start=1, end=6)], CLIP_INDEX)
    assert t.schema.equals(CLIP_INDEX)
    assert t.schema.metadata[b"audioscope.schema_version"] == str(SCHEMA_VERSION).encode()
    assert t.column("start").to_pylist() == [0.0, 1.0]


def test_missing_and_extra_columns_are_refused():
    t = to_table([_clip_row()], CLIP_INDEX)
    with pytest.raises(SchemaError, match="missing \\['end'\\]"):
        validate(t.drop_columns(["end"]), CLIP_INDEX)
    with pytest.raises(SchemaError, match="unexpected \\['x'\\]"):
        validate(t.append_column("x", pa.array([1])), CLIP_INDEX)


def test_nulls_in_required_columns_are_refused():
    with pytest.raises(SchemaError, match="video_id"):
        to_table([_clip_row(video_id=None)], CLIP_INDEX)


def test_lossy_casts_are_refused():
    t = pa.table({**{k: [v] for k, v in _clip_row().items()}, "start": ["zero"]})
    with pytest.raises(SchemaError):
        validate(t, CLIP_INDEX)


def test_status_table_accepts_bad_rows_without_video_id():
    row = {
        "video_id": None, "source": "x,y", "origin": "list.csv:3", "status": "bad_row", "kind": "bad_time",
        "message": "start is not a number", "transient": False, "n_clips": 0, "duration": None,
        "media_bytes": 0, "media_seconds": 0, "format_name": None, "video_codec": None, "audio_codec": None,
    }
    t = to_table([row], STATUS)
    assert t.num_rows == 1 and t.column("video_id").null_count == 1
