"""Parquet table schemas, versioned; one :func:`validate` for writers and readers.

Writers build tables with :func:`to_table` (which validates) and readers call
:func:`validate` on what they load, so a column that changes type or goes
missing fails loudly at the boundary instead of deep inside a later step.
Bump :data:`SCHEMA_VERSION` when a schema changes; it is stored in each
file's metadata (``audioscope.schema_version``).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1
_META = {b"audioscope.schema_version": str(SCHEMA_VERSION).encode()}


class SchemaError(ValueError):
    """A table does not match its schema."""


#: One row per clip of the clip store (``STORE/index/clips-*.parquet``).
CLIP_INDEX = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("licence_name", pa.string()),
        pa.field("licence_url", pa.string()),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("video_duration", pa.float64()),
    ],
    metadata={**_META, b"audioscope.table": b"clip_index"},
)

#: One row per requested video or bad list row (``STORE/index/status.parquet``).
#: ``status`` is ``ok``, ``failed`` or ``bad_row``; ``kind`` is the machine
#: reason of a failure (null when ok).
STATUS = pa.schema(
    [
        pa.field("video_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("origin", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("message", pa.string()),
        pa.field("transient", pa.bool_()),
        pa.field("n_clips", pa.int64(), nullable=False),
        pa.field("duration", pa.float64()),
        pa.field("media_bytes", pa.int64(), nullable=False),
        pa.field("media_seconds", pa.int64(), nullable=False),
        pa.field("format_name", pa.string()),
        pa.field("video_codec", pa.string()),
        pa.field("audio_codec", pa.string()),
    ],
    metadata={**_META, b"audioscope.table": b"status"},
)


def validate(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Check ``table`` against ``schema`` and return it cast to the schema.

    Columns must all be present (extra ones are refused), types must cast
    without loss, and non-nullable columns must have no nulls.
    """
    names = set(table.column_names)
    missing = [f.name for f in schema if f.name not in names]
    extra = sorted(names - set(schema.names))
    if missing or extra:
        raise SchemaError(f"table columns differ from the schema: missing {missing}, unexpected {extra}")
    table = table.select(schema.names)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaError(f"column {field.name!r} must not contain nulls")
    try:
        table = table.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SchemaError(f"table does not cast to the schema: {e}") from None
    return table.replace_schema_metadata(schema.metadata)


def to_table(rows: Iterable[Mapping[str, object]], schema: pa.Schema) -> pa.Table:
    """Build a validated table from dict rows (keys not in the schema are dropped)."""
    rows = list(rows)
    columns = {}
    for f in schema:
        try:
            columns[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            raise SchemaError(f"column {f.name!r}: {e}") from None
    return validate(pa.table(columns), schema)


#: One row per clip of the filtered subset Df (``DF_DIR/df.parquet``), sorted
#: by (video_id, start). ``split`` is ``train``, ``validation`` or ``test``;
#: ``probability`` is the coincidence score the selection used.
DF = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("probability", pa.float32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("model_id", pa.string()),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("licence_name", pa.string()),
        pa.field("licence_url", pa.string()),
    ],
    metadata={**_META, b"audioscope.table": b"df"},
)


#: One row per scored clip (``SCORES_DIR/scores.parquet`` and the per-video
#: parts under ``SCORES_DIR/parts/``): the coincidence model's probability
#: that the clip's audio and frames belong together, and the ``model_id``
#: (``sha256:...``) of the model that gave it.
SCORES = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("probability", pa.float32(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
    ],
    metadata={**_META, b"audioscope.table": b"scores"},
)


#: Final labels of the annotation protocol (SPEC.md 2.5): a clip gets one only
#: when all three raters agree; otherwise its label is null (votes are kept).
LABEL_ONSCREEN_ONLY = "onscreen_only"
LABEL_OFFSCREEN_ONLY = "offscreen_only"
LABEL_VALUES: tuple[str, ...] = (LABEL_ONSCREEN_ONLY, LABEL_OFFSCREEN_ONLY)

#: Annotation pools (SPEC.md 2.5): unfiltered train clips, Df train clips, Df
#: validation and test clips.
POOLS: tuple[str, ...] = ("unfiltered_train", "filtered_train", "filtered_eval")

#: One row per counted vote (``ANNOTATION_DIR/votes.parquet``): for each clip,
#: the latest completed, non-cancelled annotation of each distinct rater.
#: ``onscreen``: "sound from something visible on screen?"; ``offscreen``:
#: "sound from something not visible?". ``lead_time`` in seconds;
#: ``updated_at`` as ISO 8601 text (UTC).
VOTES = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("pool", pa.string(), nullable=False),
        pa.field("task_id", pa.int64(), nullable=False),
        pa.field("annotation_id", pa.int64(), nullable=False),
        pa.field("rater", pa.string(), nullable=False),
        pa.field("rater_id", pa.int64(), nullable=False),
        pa.field("onscreen", pa.bool_(), nullable=False),
        pa.field("offscreen", pa.bool_(), nullable=False),
        pa.field("lead_time", pa.float64()),
        pa.field("updated_at", pa.string()),
    ],
    metadata={**_META, b"audioscope.table": b"votes"},
)

#: One row per sampled clip (``ANNOTATION_DIR/labels.parquet``), sorted by
#: (video_id, start). ``raters``, ``onscreen_votes`` and ``offscreen_votes``
#: are parallel lists (one entry per counted vote, raters sorted by name);
#: ``label`` is one of :data:`LABEL_VALUES` when exactly three raters voted
#: and all agree on "on-screen only" (yes, no) or "off-screen only" (no, yes),
#: else null.
LABELS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("pool", pa.string(), nullable=False),
        pa.field("n_votes", pa.int64(), nullable=False),
        pa.field("raters", pa.list_(pa.string()), nullable=False),
        pa.field("onscreen_votes", pa.list_(pa.bool_()), nullable=False),
        pa.field("offscreen_votes", pa.list_(pa.bool_()), nullable=False),
        pa.field("label", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("licence_name", pa.string()),
        pa.field("licence_url", pa.string()),
    ],
    metadata={**_META, b"audioscope.table": b"labels"},
)
