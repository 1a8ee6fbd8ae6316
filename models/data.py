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

Each shard is read by a generator (``tf.data.Dataset.from_generator``
over :func:`audioscope.models.numpy_data.iter_shard`, yielding stacked
chunks of examples that ``unbatch`` splits again; unshuffled and batched,
one generator yields the batches themselves, the same values): a packed shard
(record schema 3) keeps its clips' compressed media while its examples are
read and assembles each example from them; records of schema 1 (raw) and 2
(self-contained, zstd) are read too. Shuffling holds the examples as stored
(uint8 frames, int16 PCM); the float audio is made after it (per batch when
batched). Shards of a newer record version are refused before reading,
naming the file (and the decoder refuses any record it cannot read).
TensorFlow is imported only when a function is called, so importing this
module stays cheap. Without TensorFlow, :mod:`audioscope.models.numpy_data`
gives the same examples as numpy arrays.
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


#: What a shard's generator yields (media as stored: uint8 frames, int16 PCM), converted after shuffling.
_INTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("frames", "uint8", records.FRAMES_SHAPE), ("pcm1", "int16", (records.AUDIO_SAMPLES,)),
    ("pcm2", "int16", (records.AUDIO_SAMPLES,)), ("type", "string", ()), ("label1", "string", ()),
    ("clip_id1", "string", ()), ("clip_id2", "string", ()), ("video_id1", "string", ()),
    ("video_id2", "string", ()), ("score1", "float32", ()), ("is_mom", "bool", ()),
)  # fmt: skip


#: Examples a shard's generator decodes and stacks per call (memory: 32 x 0.57 MB of media as stored).
_CHUNK = 32


def shard_dataset(uri: "tf.Tensor") -> "tf.data.Dataset":
    """The examples of one shard, media as stored (any record version; a packed shard's clips are
    kept while its examples are read: memory is one shard's compressed clips)."""
    import tensorflow as tf

    from audioscope.models.numpy_data import chunks, int_batch, iter_shard

    def generate(path: bytes) -> Any:
        for chunk in chunks(iter_shard(path.decode("utf-8")), _CHUNK):
            yield int_batch(chunk)

    # The generator yields stacked chunks (a Python call per chunk, not per example); unbatch()
    # gives the examples one by one, in the same order.
    signature = {name: tf.TensorSpec((None, *shape), getattr(tf, dtype)) for name, dtype, shape in _INTS}
    return tf.data.Dataset.from_generator(generate, args=(uri,), output_signature=signature).unbatch()


def in_order_batches(files: Sequence[str], batch_size: int, drop_remainder: bool, repeat: bool) -> "tf.data.Dataset":
    """The batches (media as stored) that reading ``files`` shard after shard (looping with
    ``repeat``) and batching would give, made by one generator: each batch is decoded straight
    into its arrays, with no per-example tensors to split and stack again (the unshuffled path:
    evaluation, export)."""
    import tensorflow as tf

    from audioscope.models.numpy_data import chunks, int_batch, iter_shard

    def passes() -> Any:
        while True:
            examples = 0
            for f in files:
                for item in iter_shard(f):
                    examples += 1
                    yield item
            if not repeat or examples == 0:  # an empty pass ends a repeat (as tf.data's repeat does)
                return

    def generate() -> Any:
        for chunk in chunks(passes(), batch_size):
            if len(chunk) == batch_size or not drop_remainder:
                yield int_batch(chunk)

    rows = batch_size if drop_remainder else None
    signature = {name: tf.TensorSpec((rows, *shape), getattr(tf, dtype)) for name, dtype, shape in _INTS}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def to_float(example: dict[str, "tf.Tensor"]) -> dict[str, "tf.Tensor"]:
    """A shard's example (or a batch of them) with ``audio1``, ``audio2`` and ``mixture`` float32 (int16 / 32768)."""
    import tensorflow as tf

    out = {k: v for k, v in example.items() if k not in ("pcm1", "pcm2")}
    out["audio1"] = tf.cast(example["pcm1"], tf.float32) * (1.0 / records.AUDIO_SCALE)
    out["audio2"] = tf.cast(example["pcm2"], tf.float32) * (1.0 / records.AUDIO_SCALE)
    out["mixture"] = out["audio1"] + out["audio2"]
    return out


def check_versions(files: Sequence[str]) -> None:
    """Refuse shards of a record version this version cannot read, naming the file.

    The first record of the first file of each folder is read (a folder's
    shards are written by one run); the graph checks every record again.
    """
    from audioscope.errors import UserError
    from audioscope.schemas.tfrecord import RecordFileError, parse_example, read_records

    seen: set[str] = set()
    for f in files:
        folder = f.rsplit("/", 1)[0]
        if folder in seen:
            continue
        seen.add(folder)
        try:
            first = next(iter(read_records(f)), None)
            if first is None:
                continue
            kind, values = parse_example(first).get("schema_version", ("int64", [0]))
            records.check_version(int(values[0]) if values else 0, f)
        except (records.RecordError, RecordFileError, ValueError) as e:
            raise UserError(f"{e}" if f in str(e) else f"{f}: {e}") from None


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
    check_versions(files)
    if shuffle_buffer <= 0 and batch_size is not None:  # the same batches, without unbatching and batching
        ds = in_order_batches(files, batch_size, drop_remainder, repeat)
        return ds.map(to_float, num_parallel_calls=parallel, deterministic=deterministic).prefetch(tf.data.AUTOTUNE)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_buffer > 0:
        # Shuffled: files in a new order each epoch, read four at a time.
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            tf.autograph.experimental.do_not_convert(shard_dataset), cycle_length=min(len(files), 4), block_length=1,
            num_parallel_calls=parallel, deterministic=deterministic,
        )  # fmt: skip
    else:
        ds = ds.flat_map(tf.autograph.experimental.do_not_convert(shard_dataset))  # in order: shard after shard
    if repeat:
        ds = ds.repeat()
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:  # float audio made per batch (one vectorised op, not one per example)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(to_float, num_parallel_calls=parallel, deterministic=deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)
