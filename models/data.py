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

One generator (``tf.data.Dataset.from_generator``) reads the shards with
:mod:`audioscope.models.numpy_data` and yields whole batches, each decoded
straight into its arrays: a packed shard (record schemas 3 to 5) keeps its
clips' compressed media while its examples are read and assembles each
example from them; records of schema 1 (raw) and 2 (self-contained, zstd)
are read too. Shuffling happens before decoding, in Python, as the numpy
loader shuffles (files shuffled, read four at a time, through a buffer of
undecoded examples: the buffer holds compressed clips, not decoded media),
so both loaders give the same order for the same seed. Each batch, float
audio included, is decoded by the numpy loader's code into arrays that
TensorFlow takes without a copy, and those arrays serve again once
TensorFlow has let go of them (no fresh memory per batch); the batches are
read and decoded on one thread of the loader's own, a batch ahead, so the
memory one batch frees serves the next. Shards of a
newer record version are refused before reading, naming the file (and the
decoder refuses any record it cannot read).
TensorFlow is imported only when a function is called, so importing this
module stays cheap. Without TensorFlow, :mod:`audioscope.models.numpy_data`
gives the same examples as numpy arrays.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

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


#: Examples the generator decodes and stacks per call when not batching (memory: 32 x 1.2 MB).
_CHUNK = 32


def example_batches(files: Sequence[str], *, batch_size: int | None, drop_remainder: bool = False,
                    repeat: bool = False, shuffle_buffer: int = 0, seed: int | None = None,
                    threads: int = 1) -> "tf.data.Dataset":  # fmt: skip
    """Batches of the decoded examples of ``files`` made by one generator: examples in file order or
    shuffled before decoding (files shuffled, read four at a time, through a buffer of
    ``shuffle_buffer`` undecoded examples: the numpy loader's order for the same seed, a new one
    each pass), looping with ``repeat``; each batch decoded straight into its arrays on
    ``threads`` threads, float audio included, in arrays aligned for TensorFlow to take without
    a copy and used again once TensorFlow lets go of them (``BatchBuffers``). ``batch_size`` None:
    chunks of :data:`_CHUNK` examples to unbatch."""
    import tensorflow as tf

    from audioscope.models.numpy_data import NUMERIC, STRINGS, BatchBuffers, chunks, collate_items, decode_pool, passes

    size = batch_size or _CHUNK
    epochs = itertools.count()  # shared by every iteration of the dataset: a new order each time
    buffers = BatchBuffers()  # shared too: a batch's arrays serve again once its tensors are gone

    def batches() -> Any:
        with decode_pool(threads) as pool:
            for chunk in chunks(passes(files, shuffle_buffer, seed, repeat, epochs), size):
                if len(chunk) == size or not drop_remainder or batch_size is None:
                    yield collate_items(chunk, pool, buffers)

    def generate() -> Any:
        return on_own_thread(batches)

    rows = batch_size if drop_remainder and batch_size else None
    signature = {name: tf.TensorSpec((rows, *shape), tf.as_dtype(dtype)) for name, (shape, dtype) in NUMERIC.items()}
    signature.update({name: tf.TensorSpec((rows,), tf.string) for name in STRINGS})
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


class _Failed:
    """What the producer of :func:`on_own_thread` raised, for the consumer to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def on_own_thread(make: Callable[[], Iterator[Any]], depth: int = 1) -> Iterator[Any]:
    """The items of ``make()``, made on one thread of their own, ``depth`` ahead of the consumer.

    TensorFlow asks a generator dataset for its next element on whichever of its threads is free,
    and glibc gives each thread its own arena: memory a batch freed on one thread was not used again
    by the next batch read on another, so every shard's records came in fresh pages (page faults).
    One producer thread reads into one arena. Its exceptions are raised to the consumer; closing
    this generator (the dataset's iterator dropped early) stops the producer and closes ``make()``'s."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        items = make()
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failed(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="audioscope-loader", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def check_versions(files: Sequence[str]) -> None:
    """Refuse shards of a record version this version cannot read, naming the file.

    The first record of the first file of each folder is read (a folder's
    shards are written by one run); the graph checks every record again.
    """
    from audioscope.errors import UserError
    from audioscope.schemas.tfrecord import RecordFileError

    seen: set[str] = set()
    for f in files:
        folder = f.rsplit("/", 1)[0]
        if folder in seen:
            continue
        seen.add(folder)
        try:
            version = records.first_version(f)
            if version is not None:
                records.check_version(version, f)
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
    threads: int | None = None,
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
    the last short batch). The order never depends on thread timing.
    ``threads`` decode each batch (default: up to 4, one per core).
    """
    import tensorflow as tf

    from audioscope.curation.release import resolve_source

    if threads is None:
        threads = min(4, os.cpu_count() or 1)
    items = [source] if isinstance(source, str) else list(source)
    files = shard_files([resolve_source(s, root=release_root, dest=release_dir) for s in items])
    check_versions(files)
    ds = example_batches(files, batch_size=batch_size, drop_remainder=drop_remainder, repeat=repeat,
                         shuffle_buffer=shuffle_buffer, seed=seed, threads=threads)  # fmt: skip
    if batch_size is None:
        ds = ds.unbatch()
    return ds.prefetch(tf.data.AUTOTUNE)
