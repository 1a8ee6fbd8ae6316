"""Parquet table schemas, versioned; one :func:`validate` for writers and readers.

Writers build tables with :func:`to_table` (which validates) and readers call
:func:`validate` on what they load, so a column that changes type or goes
missing fails loudly at the boundary instead of deep inside a later step.
Each schema carries its own version and table name in its metadata
(``audioscope.schema_version``, ``audioscope.table``), written into every
file; bump a table's version when its schema changes (:data:`SCHEMA_VERSION`
is the version the first tables started at). :func:`validate` refuses a file
that names another table or a newer version, and :data:`SCHEMA_VERSIONS`
lists them all (summaries record the versions they wrote).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1

#: Split names, in order: the values of every ``split`` column.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: The published file-name spelling of each split (``filtered_validate_clips.csv``).
CSV_NAMES: dict[str, str] = {"train": "train", "validation": "validate", "test": "test"}
#: The default split ratios (train, validation, test).
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)

_META = {b"audioscope.schema_version": str(SCHEMA_VERSION).encode()}


def _clip_key() -> list[pa.Field]:
    """The four columns that name a clip in every per-clip table:
    ``clip_id``, ``video_id``, ``start`` and ``end`` (seconds), none null."""
    return [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
    ]


class SchemaError(ValueError):
    """A table does not match its schema."""


#: One row per clip of the clip store (``STORE/index/clips-*.parquet``).
CLIP_INDEX = pa.schema(
    [
        *_clip_key(),
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
        # version 2: the video's split, the clips its list asked for (all
        # clips of the video when the list names none) and those stored.
        pa.field("split", pa.string()),
        pa.field("clips_requested", pa.int64()),
        pa.field("clips_produced", pa.int64()),
    ],
    metadata={**_META, b"audioscope.schema_version": b"2", b"audioscope.table": b"status"},
)
#: The STATUS columns that version 1 tables lack (readers add them as nulls).
STATUS_V2_COLUMNS: tuple[str, ...] = ("split", "clips_requested", "clips_produced")


def table_name(schema: pa.Schema) -> str | None:
    """The table a schema (or a file's schema) describes (``audioscope.table``), if it says."""
    name = (schema.metadata or {}).get(b"audioscope.table")
    return name.decode() if name else None


def schema_version(schema: pa.Schema) -> int | None:
    """The version of a table's schema (``audioscope.schema_version``), if it says."""
    version = (schema.metadata or {}).get(b"audioscope.schema_version")
    try:
        return int(version) if version else None
    except ValueError:
        return None


def _check_version(table: pa.Table, schema: pa.Schema) -> None:
    """Refuse a table that says it is another table, or a newer version of this one."""
    have, want = table_name(table.schema), table_name(schema)
    if have and want and have != want:
        raise SchemaError(f"this is a {have!r} table, not a {want!r} table: give the file the step expects")
    got, reads = schema_version(table.schema), schema_version(schema)
    if have == want and got is not None and reads is not None and got > reads:
        raise SchemaError(
            f"the {want!r} table has schema version {got}, this version of audioscope-data reads "
            f"version {reads}: upgrade audioscope-data to read it"
        )


def validate(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Check ``table`` against ``schema`` and return it cast to the schema.

    Columns must all be present (extra ones are refused), types must cast
    without loss, and non-nullable columns must have no nulls. A table whose
    metadata names another table, or a newer version of this one, is refused.
    """
    _check_version(table, schema)
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
        *_clip_key(),
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
        *_clip_key(),
        pa.field("probability", pa.float32(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
    ],
    metadata={**_META, b"audioscope.table": b"scores"},
)


#: Final labels of the annotation protocol (docs/recipe.md, section 5): a clip gets one only
#: when all three raters agree; otherwise its label is null (votes are kept).
LABEL_ONSCREEN_ONLY = "onscreen_only"
LABEL_OFFSCREEN_ONLY = "offscreen_only"
LABEL_VALUES: tuple[str, ...] = (LABEL_ONSCREEN_ONLY, LABEL_OFFSCREEN_ONLY)

#: Annotation pools (docs/recipe.md, section 5): unfiltered train clips, Df train clips, Df
#: validation and test clips; and ours, empty by default: unfiltered
#: validation and test clips, for when Df holds too few off-screen clips to
#: make the off-screen evaluation sets (a precise filter leaves none).
POOLS: tuple[str, ...] = ("unfiltered_train", "filtered_train", "filtered_eval", "unfiltered_eval")

#: One row per clip drawn for annotation (``ANNOTATION_DIR/pools.parquet``), sorted by
#: pool, then clip.
ANNOTATION_POOLS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("pool", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("licence_name", pa.string()),
        pa.field("licence_url", pa.string()),
    ],
    metadata={b"audioscope.table": b"annotation_pools"},
)

#: One row per counted vote (``ANNOTATION_DIR/votes.parquet``): for each clip,
#: the latest completed, non-cancelled annotation of each distinct rater.
#: ``onscreen``: "sound from something visible on screen?"; ``offscreen``:
#: "sound from something not visible?". ``lead_time`` in seconds;
#: ``updated_at`` as ISO 8601 text (UTC).
VOTES = pa.schema(
    [
        *_clip_key(),
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
        *_clip_key(),
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


def _meta(table: str, version: int) -> dict[bytes, bytes]:
    return {b"audioscope.schema_version": str(version).encode(), b"audioscope.table": table.encode()}


#: One row per example written by ``audioscope mix`` (``MIX_DIR/examples.parquet``),
#: sorted by (shard, index). ``shard`` is the TFRecord path relative to
#: MIX_DIR (``/`` separated) and ``index`` the example's position in it;
#: ``subset`` is the recipe (training) or the evaluation set; ``type`` is
#: ``NOn``/``SOff``/``LOn``/``LOff`` or the evaluation set name. Clip 1 is the
#: first mixture's audio; the frames come from ``frames_clip_id`` (clip 1 but
#: for SOff); clip 2 (the second mixture) is null for a single mixture.
#: ``path1``/``path2`` are the source videos as the published pair lists name
#: them. ``label1`` and ``score1`` describe clip 1 as a clip (null for SOff);
#: the licences are those of clip 1, clip 2 and the frames' video.
EXAMPLES = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),
        pa.field("subset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("is_mom", pa.bool_(), nullable=False),
        pa.field("frames_clip_id", pa.string(), nullable=False),
        pa.field("clip_id1", pa.string(), nullable=False),
        pa.field("video_id1", pa.string(), nullable=False),
        pa.field("start1", pa.float64(), nullable=False),
        pa.field("end1", pa.float64(), nullable=False),
        pa.field("path1", pa.string(), nullable=False),
        pa.field("clip_id2", pa.string()),
        pa.field("video_id2", pa.string()),
        pa.field("start2", pa.float64()),
        pa.field("end2", pa.float64()),
        pa.field("path2", pa.string()),
        pa.field("label1", pa.string()),
        pa.field("score1", pa.float32()),
        pa.field("licence_name1", pa.string()),
        pa.field("licence_url1", pa.string()),
        pa.field("licence_name2", pa.string()),
        pa.field("licence_url2", pa.string()),
        pa.field("frames_licence_name", pa.string()),
        pa.field("frames_licence_url", pa.string()),
    ],
    metadata=_meta("examples", 1),
)

#: A pair list in the published six-column format (``path1,start1,end1,path2,
#: start2,end2``, no header): the MoM lists of AudioScope and the evaluation
#: sets ``audioscope mix`` writes. A single mixture has no second clip (the
#: last three fields empty).
PAIRS = pa.schema(
    [
        pa.field("path1", pa.string(), nullable=False),
        pa.field("start1", pa.float64(), nullable=False),
        pa.field("end1", pa.float64(), nullable=False),
        pa.field("path2", pa.string()),
        pa.field("start2", pa.float64()),
        pa.field("end2", pa.float64()),
    ],
    metadata=_meta("pairs", 1),
)

#: Every table schema the toolkit writes, by table name.
SCHEMAS: dict[str, pa.Schema] = {
    str(table_name(s)): s for s in (CLIP_INDEX, STATUS, DF, SCORES, VOTES, LABELS, EXAMPLES, PAIRS)
}
#: The schema version of every table, by table name.
SCHEMA_VERSIONS: dict[str, int] = {name: int(schema_version(s) or 0) for name, s in SCHEMAS.items()}
