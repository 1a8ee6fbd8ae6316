"""The researchers' loader: mixture shards -> a ``tf.data.Dataset`` of decoded examples.

    from audioscope.models.data import load_dataset
    ds = load_dataset("mix/train/semi-supervised", batch_size=256, shuffle_buffer=2048, seed=1, repeat=True)
    for batch in ds:
        batch["frames"]    # uint8 [B, 5, 128, 128, 3]
        batch["mixture"]   # float32 [B, 80000] = audio1 + audio2

Each element is a dict: ``frames`` uint8 [5,128,128,3]; ``audio1``,
``audio2``, ``mixture`` float32 [80000] (``mixture = audio1 + audio2``,
int16 / 32768); ``type``, ``label1``, ``clip_id1``, ``clip_id2``,
``video_id1``, ``video_id2`` tf.string; ``is_mom`` tf.bool; ``score1``
float32. Batched, every feature gets a leading batch dimension.

Records are parsed a batch at a time (``tf.io.parse_example`` on the batch of
serialized records, then one ``decode_raw`` per feature), which is what keeps
decoding cheaper than reading. TensorFlow is imported only when a function is
called, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from audioscope import storage
from audioscope.schemas import records

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

#: The features the loader parses (the rest of the record is metadata for tools).
PARSED: tuple[str, ...] = (
    "frames", "audio1", "audio2", "type", "is_mom", "label1",
    "clip_id1", "clip_id2", "video_id1", "video_id2", "score1",
)  # fmt: skip

Source = str | Sequence[str]


def shard_files(source: Source) -> list[str]:
    """The TFRecord files of ``source``: a file, a glob, a directory (every ``*.tfrecord``
    below it, sorted), or a list of those (in the order given, each expanded)."""
    if not isinstance(source, str):
        return [f for item in source for f in shard_files(item)]
    if any(c in source for c in "*?["):
        files = storage.glob(source)
    elif storage.exists(source) and not _is_file(source):
        files = storage.list_files(source, ".tfrecord")
    else:
        files = [source] if storage.exists(source) else []
    if not files:
        raise FileNotFoundError(
            f"no TFRecord shards at {source}: give a shard, a glob, or a folder written by `audioscope mix`"
        )
    return files


def _is_file(uri: str) -> bool:
    fs, path = storage.url_to_fs(uri)
    return bool(fs.isfile(path))


def decode_batch(serialized: "tf.Tensor") -> dict[str, "tf.Tensor"]:
    """Parse and decode a 1-D batch of serialized mixture records (see the module docstring)."""
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, records.feature_spec(PARSED))
    n = tf.shape(serialized)[0]
    frames = tf.reshape(tf.io.decode_raw(parsed["frames"], tf.uint8), tf.concat([[n], records.FRAMES_SHAPE], 0))
    audio = {
        name: tf.reshape(
            tf.cast(tf.io.decode_raw(parsed[name], tf.int16, little_endian=True), tf.float32)
            * (1.0 / records.AUDIO_SCALE),
            [n, records.AUDIO_SAMPLES],
        )
        for name in ("audio1", "audio2")
    }
    out = {name: parsed[name] for name in ("type", "label1", "clip_id1", "clip_id2", "video_id1", "video_id2", "score1")}
    return {
        **out, "frames": frames, **audio, "mixture": audio["audio1"] + audio["audio2"],
        "is_mom": tf.not_equal(parsed["is_mom"], 0),
    }  # fmt: skip


def load_dataset(
    source: Source,
    *,
    batch_size: int | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    deterministic: bool = True,
    num_parallel_calls: Any = None,
    release_root: str | None = None,
    release_dir: str | None = None,
) -> "tf.data.Dataset":
    """A ``tf.data.Dataset`` of decoded mixture examples from shards (see the module docstring).

    ``source``: a shard path, a glob, a directory or a list of them; with
    ``release_root``, ``NAME:VERSION`` of a release there, optionally followed
    by a path inside it (``"audioscope:1.0.0/eval/test"``), pulled to
    ``release_dir`` (default: a cache folder) when missing. Files of a release
    (pulled, or a local copy) are checked against its manifest first, and a
    damaged file raises ``VerificationError`` naming it. Without
    shuffling, examples come in file order, shard after shard.
    ``shuffle_buffer`` > 0 shuffles files and examples with ``seed`` (a new
    order each epoch, the same sequence of orders for the same seed);
    ``repeat`` loops forever; ``batch_size`` batches (``drop_remainder`` drops
    the last short batch). With ``deterministic`` the order does not depend on
    thread timing. ``num_parallel_calls`` defaults to ``tf.data.AUTOTUNE``.
    """
    import tensorflow as tf

    from audioscope.curation.release import resolve_source

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    items = [source] if isinstance(source, str) else list(source)
    files = shard_files([resolve_source(s, root=release_root, dest=release_dir) for s in items])
    if shuffle_buffer > 0:
        # Shuffled: files in a new order each epoch, read four at a time.
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(files), 4), block_length=1,
            num_parallel_calls=parallel, deterministic=deterministic,
        )  # fmt: skip
    else:
        ds = tf.data.TFRecordDataset(files)  # in order: shard after shard
    if repeat:
        ds = ds.repeat()
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is None:
        ds = ds.map(lambda s: _unbatch(decode_batch(tf.expand_dims(s, 0))), num_parallel_calls=parallel,
                    deterministic=deterministic)  # fmt: skip
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(decode_batch, num_parallel_calls=parallel, deterministic=deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)


def _unbatch(batch: dict[str, "tf.Tensor"]) -> dict[str, "tf.Tensor"]:
    return {k: v[0] for k, v in batch.items()}
