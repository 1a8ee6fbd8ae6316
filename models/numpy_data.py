"""The loader without TensorFlow: mixture shards or a release -> dicts of numpy arrays.

Same examples and the same fields as :func:`audioscope.models.data.load_dataset`
(``frames`` uint8 [5,128,128,3]; ``audio1``, ``audio2``, ``mixture`` float32
[80000] with ``mixture = audio1 + audio2``; ``type``, ``label1``,
``clip_id1``, ``clip_id2``, ``video_id1``, ``video_id2`` bytes; ``is_mom``
bool; ``score1`` float32; batched: a leading batch dimension, strings as
object arrays), with only numpy, Pillow and the standard library: every
record's checksums are checked (:mod:`audioscope.schemas.tfrecord`), and the
files of a release are verified against its manifest first, as the TF
loader does. Usable from PyTorch and JAX::

    from audioscope.models.numpy_data import MixtureArrays

    data = MixtureArrays("mix/train/semi-supervised", batch_size=32, shuffle_buffer=1024, seed=1)
    for batch in data:                # one pass; repeat=True loops forever
        batch["frames"]               # uint8 [32, 5, 128, 128, 3]
        batch["mixture"]              # float32 [32, 80000]

    # PyTorch: each DataLoader worker reads its own files
    import torch

    class Mixtures(torch.utils.data.IterableDataset):
        def __init__(self, source, **kw):
            self.source, self.kw = source, kw

        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            part = (info.id, info.num_workers) if info else (0, 1)
            for ex in MixtureArrays(self.source, part=part, **self.kw):
                yield {k: ex[k] for k in ("frames", "mixture", "audio1", "audio2", "is_mom")}

    loader = torch.utils.data.DataLoader(Mixtures("mix/train/unsupervised", shuffle_buffer=512, seed=0),
                                         batch_size=32, num_workers=4)

    # JAX: batches are numpy arrays; jax.device_put(batch["mixture"]) moves one to the device.

Without shuffling, examples come in file order, shard after shard. A packed
shard (record schemas 3 to 5) is read record by record: its reader keeps the
clips' compressed media until the shard is read, and each example takes its
own clips along, so memory holds the shards being read and the compressed
clips of the examples waiting in the shuffle buffer (:func:`held_bytes`), not
the shards those examples came from. Batches are decoded in place: each example's media are
decompressed straight into the batch's arrays (no per-example buffers), and a batch's arrays
are used again for a later batch once nothing refers to them any more (:class:`BatchBuffers`:
a batch, or a view of one, that the caller keeps is never written over).
Shuffling (``shuffle_buffer`` > 0) shuffles the files with ``seed``, reads
four at a time and passes the examples, undecoded, through a buffer of
``shuffle_buffer``; a new order each pass (:func:`epoch_items`). The TF
loader reads through the same functions: both give the same examples in the
same order for the same arguments.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from audioscope.schemas import records
from audioscope.schemas.tfrecord import read_records

#: The fields of every example (those of the TF loader).
FIELDS: tuple[str, ...] = (
    "type", "label1", "clip_id1", "clip_id2", "video_id1", "video_id2", "score1",
    "frames", "audio1", "audio2", "mixture", "is_mom",
)  # fmt: skip
#: The string fields (bytes; object arrays when batched).
STRINGS = ("type", "label1", "clip_id1", "clip_id2", "video_id1", "video_id2")
#: The record features a batch is made of (besides the media).
LOADER_FEATURES = (*STRINGS, "score1", "is_mom")

Source = str | Sequence[str]
#: One example waiting to be decoded: its shard's reader and its parsed features.
Item = tuple[records.ShardReader, dict[str, Any]]


def decode_example(data: bytes, where: str = "") -> dict[str, Any]:
    """One serialized self-contained mixture record (schema 1 or 2) -> the loader's dict of numpy values.

    Raises :class:`audioscope.schemas.records.RecordError` (naming ``where``)
    for a record of an unreadable version or layout; an example of a packed
    (schema 3 to 5) shard needs its shard's clips (:func:`iter_shard`).
    """
    reader = records.ShardReader(where)
    feature = _guarded(lambda: reader.take(data), where)
    if feature is None:
        raise records.RecordError(f"{where + ': ' if where else ''}a clip record, not an example")
    return to_arrays(reader, feature)


def _guarded(call: Any, where: str) -> Any:
    try:
        return call()
    except (KeyError, IndexError, ValueError) as e:
        if isinstance(e, records.RecordError) and (not where or where in str(e)):
            raise
        raise records.RecordError(f"{where + ': ' if where else ''}not a mixture record ({e})") from None


def _fields(feature: dict[str, Any]) -> dict[str, Any]:
    """An example's values besides its media: the strings as bytes, ``score1`` float32, ``is_mom`` bool."""

    def one(name: str) -> Any:
        return feature[name][1][0]

    out: dict[str, Any] = {name: bytes(one(name)) for name in STRINGS}
    out.update(score1=np.float32(one("score1")), is_mom=np.bool_(one("is_mom") != 0))
    return out


def to_arrays(reader: records.ShardReader, feature: dict[str, Any]) -> dict[str, Any]:
    """One example of ``reader``'s shard -> the loader's dict of numpy values: frames uint8,
    ``audio1``, ``audio2`` and ``mixture`` float32 (int16 / 32768)."""

    def get() -> dict[str, Any]:
        frames = np.empty(records.FRAMES_SHAPE, np.uint8)
        audio1, audio2 = np.empty(records.AUDIO_SAMPLES, np.float32), np.empty(records.AUDIO_SAMPLES, np.float32)
        reader.media_into(feature, frames, audio1, audio2)
        return {**_fields(feature), "frames": frames, "audio1": audio1, "audio2": audio2, "mixture": audio1 + audio2}

    return _guarded(get, reader.where)


def iter_shard(uri: str, verify: bool = True) -> Iterator[tuple[records.ShardReader, dict[str, Any]]]:
    """(reader, parsed example) for every example of one shard, in order; the reader holds the
    shard's compressed clips (packed shards) and decodes an example's media (:func:`to_arrays`)."""
    reader = records.ShardReader(uri, fields=LOADER_FEATURES)  # the features batches carry, no others parsed
    for data in read_records(uri, verify=verify):
        feature = _guarded(lambda: reader.take(data), uri)
        if feature is not None:
            yield reader, feature
    reader.release()  # the examples still waiting hold their own clips


def epoch_rng(seed: int | None, epoch: int) -> random.Random:
    """The shuffling generator of pass ``epoch``: the same sequence of orders for the same ``seed``
    (a new order each pass), a fresh random one when ``seed`` is None."""
    return random.Random() if seed is None else random.Random(f"{seed}-{epoch}")


def _interleaved(files: Sequence[str], cycle: int, verify: bool) -> Iterator[Item]:
    """The examples of ``files`` read ``cycle`` files at a time, one example from each in turn (a
    finished file's place taken by the next file)."""
    pending = iter(files)
    active: list[Iterator[Item]] = []
    while True:
        while len(active) < cycle:
            f = next(pending, None)
            if f is None:
                break
            active.append(iter_shard(f, verify))
        if not active:
            return
        for it in list(active):
            item = next(it, None)
            if item is None:
                active.remove(it)
            else:
                yield item


def _through_buffer(items: Iterator[Item], size: int, rng: random.Random) -> Iterator[Item]:
    """``items`` through a shuffle buffer of ``size`` (as ``tf.data``'s shuffle)."""
    buffer: list[Item] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        k = rng.randrange(len(buffer))
        yield buffer[k]
        buffer[k] = item
    rng.shuffle(buffer)
    yield from buffer


#: Shards read side by side when shuffling (as the TF loader's interleave read them before).
CYCLE = 4


def held_bytes(sizes: Sequence[int], shuffle_buffer: int, example_bytes: int) -> int:
    """About the most bytes of stored media that reading shards of ``sizes`` bytes holds at once,
    for examples of ``example_bytes`` each (:func:`stored_example_bytes`).

    The reader of a shard being read keeps the clips read so far; an example waiting in the
    shuffle buffer keeps its own clips: shuffled, :data:`CYCLE` shards side by side and the buffer's
    examples; in order, one shard."""
    if not sizes:
        return 0
    if shuffle_buffer <= 0:
        return max(sizes)
    side_by_side = sum(sorted(sizes)[-CYCLE:])
    return side_by_side + shuffle_buffer * example_bytes


def stored_example_bytes(files: Sequence[str], sizes: Sequence[int]) -> int:
    """Bytes per stored example, from the smallest non-empty one of ``files`` (``sizes``: theirs):
    its size over its examples (it is read once, nothing decoded); 0 when every file is empty."""
    filled = [i for i in range(len(files)) if sizes[i] > 0]
    if not filled:
        return 0
    k = min(filled, key=lambda i: sizes[i])
    examples = sum(1 for _ in iter_shard(files[k], verify=False))
    return -(-sizes[k] // max(examples, 1))


def epoch_items(files: Sequence[str], shuffle_buffer: int = 0, rng: random.Random | None = None,
                verify: bool = True) -> Iterator[Item]:  # fmt: skip
    """One pass over the examples of ``files``, not yet decoded: in file order, shard after shard
    (``rng`` None or ``shuffle_buffer`` 0), or the files shuffled with ``rng``, read :data:`CYCLE` at
    a time, through a buffer of ``shuffle_buffer`` examples. Both loaders read through this, so the
    same seed gives them the same order. The buffer holds parsed records with their compressed
    clips: memory is compressed media, not decoded examples."""
    if rng is None or shuffle_buffer <= 0:
        for f in files:
            yield from iter_shard(f, verify)
        return
    order = list(files)
    rng.shuffle(order)
    yield from _through_buffer(_interleaved(order, CYCLE, verify), shuffle_buffer, rng)


def passes(files: Sequence[str], shuffle_buffer: int, seed: int | None, repeat: bool, epochs: Iterator[int],
           verify: bool = True) -> Iterator[Item]:  # fmt: skip
    """The examples to decode, pass after pass (one pass without ``repeat``; an empty pass ends a
    repeat, as ``tf.data``'s repeat does), each pass shuffled with :func:`epoch_rng` of ``seed``
    and the next of ``epochs`` when ``shuffle_buffer`` > 0."""
    while True:
        rng = epoch_rng(seed, next(epochs)) if shuffle_buffer > 0 else None
        examples = 0
        for item in epoch_items(files, shuffle_buffer, rng, verify):
            examples += 1
            yield item
        if not repeat or examples == 0:
            return


#: The numeric fields of a batch: (shape of one example, dtype).
NUMERIC: dict[str, tuple[tuple[int, ...], Any]] = {
    "frames": (records.FRAMES_SHAPE, np.uint8), "audio1": ((records.AUDIO_SAMPLES,), np.float32),
    "audio2": ((records.AUDIO_SAMPLES,), np.float32), "mixture": ((records.AUDIO_SAMPLES,), np.float32),
    "score1": ((), np.float32), "is_mom": ((), np.bool_),
}  # fmt: skip
#: Alignment of a batch's arrays: TensorFlow takes a numpy array aligned to 64 bytes without copying it.
ALIGN = 64


def _aligned(shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(an uninitialised array of ``shape`` and ``dtype`` starting at a multiple of :data:`ALIGN`, the
    buffer that owns its memory)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape), raw


def _numeric_batch(n: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """(the numeric arrays of a batch of ``n``, the buffers owning them)."""
    arrays, owners = {}, []
    for name, (shape, dtype) in NUMERIC.items():
        arrays[name], raw = _aligned((n, *shape), dtype)
        owners.append(raw)
    return arrays, owners


class BatchBuffers:
    """Numeric batch arrays used again once nothing else holds them, so that a steady loop of batches
    touches the same memory instead of fresh pages each batch (a batch of 64 is ~78 MB; fresh
    pages cost the kernel's zeroing, and on TensorFlow's threads glibc hands such blocks back to
    the system after every batch). A set is taken again only when neither its arrays nor the
    buffers owning their memory have a reference besides this pool's: a batch, a view of it (numpy
    views refer to the owning buffer) or a tensor made from it (TensorFlow keeps the array it
    wraps) keeps its set out of use. At most ``keep`` sets are kept; past them a batch gets new
    arrays that are freed as usual. Thread-safe."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._sets: list[tuple[int, dict[str, np.ndarray], list[np.ndarray], list[int]]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _refs(arrays: dict[str, np.ndarray], owners: list[np.ndarray]) -> list[int]:
        return [sys.getrefcount(a) for a in (*arrays.values(), *owners)]

    def get(self, n: int) -> dict[str, np.ndarray]:
        """The numeric arrays of a batch of ``n`` (uninitialised), aligned to :data:`ALIGN` bytes."""
        with self._lock:
            for size, arrays, owners, idle in self._sets:
                if size == n and self._refs(arrays, owners) == idle:
                    return dict(arrays)
            arrays, owners = _numeric_batch(n)
            if len(self._sets) < self.keep:
                self._sets.append((n, arrays, owners, self._refs(arrays, owners)))
            return dict(arrays)


def _empty_batch(n: int, buffers: BatchBuffers) -> dict[str, np.ndarray]:
    """Uninitialised arrays for a batch of ``n`` examples (as :func:`collate` makes them), the numeric
    ones from ``buffers`` (aligned to :data:`ALIGN` bytes)."""
    out = buffers.get(n)
    for name in STRINGS:
        out[name] = np.empty(n, object)
    return {name: out[name] for name in FIELDS}


def fill(batch: dict[str, np.ndarray], i: int, reader: records.ShardReader, feature: dict[str, Any]) -> None:
    """Decode one example of ``reader``'s shard straight into row ``i`` of ``batch`` (the values of
    :func:`to_arrays`, without its per-example arrays: frames copied once, float audio written in place)."""

    def put() -> None:
        audio1, audio2 = batch["audio1"][i], batch["audio2"][i]
        reader.media_into(feature, batch["frames"][i], audio1, audio2)
        for name, value in _fields(feature).items():
            batch[name][i] = value
        np.add(audio1, audio2, out=batch["mixture"][i])

    _guarded(put, reader.where)


def _each_row(n: int, put: Any, pool: ThreadPoolExecutor | None) -> None:
    """``put(i)`` for every row ``i`` of a batch of ``n``, on ``pool``'s threads when given."""
    if pool is None:
        for i in range(n):
            put(i)
    else:
        list(pool.map(put, range(n)))


@contextmanager
def decode_pool(threads: int) -> Iterator[ThreadPoolExecutor | None]:
    """Threads that decode a batch's rows (None for one thread), shut down on leaving, also when
    the generator holding it is closed before its end."""
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last one shorter when they do not divide)."""
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def collate_items(items: Sequence[Item], pool: ThreadPoolExecutor | None,
                  buffers: BatchBuffers) -> dict[str, np.ndarray]:  # fmt: skip
    """The batch of examples ``items`` (:func:`collate` of their :func:`to_arrays`, decoded into
    arrays from ``buffers``; on ``pool``'s threads when given)."""
    batch = _empty_batch(len(items), buffers)
    _each_row(len(items), lambda k: fill(batch, k, *items[k]), pool)
    return batch


def collate(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A batch: arrays stacked; strings as object arrays of bytes (as TensorFlow's numpy output)."""
    out: dict[str, np.ndarray] = {}
    for name in FIELDS:
        values = [e[name] for e in examples]
        if name in STRINGS:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            out[name] = arr
        else:
            out[name] = np.stack(values)
    return out


def resolve_files(source: Source, release_root: str | None = None, release_dir: str | None = None) -> list[str]:
    """The shard files of ``source`` (file, glob, folder, list; with ``release_root``, ``NAME:VERSION[/path]``
    of a release), release files verified against their manifest first (as the TF loader)."""
    from audioscope.curation.release import resolve_source
    from audioscope.models.data import shard_files

    items = [source] if isinstance(source, str) else list(source)
    return shard_files([resolve_source(s, root=release_root, dest=release_dir) for s in items])


class MixtureArrays:
    """An iterable of decoded mixture examples (dicts of numpy arrays); see the module docstring.

    ``part=(i, n)`` reads every n-th file starting at i (one part per
    DataLoader worker or host). ``threads`` > 1 decodes records on a thread
    pool (zstd and numpy decoding release the GIL). ``verify`` checks every
    record's CRC-32C.
    """

    def __init__(
        self, source: Source, *, batch_size: int | None = None, shuffle_buffer: int = 0, seed: int | None = None,
        repeat: bool = False, drop_remainder: bool = False, part: tuple[int, int] = (0, 1), threads: int = 1,
        verify: bool = True, release_root: str | None = None, release_dir: str | None = None,
    ) -> None:  # fmt: skip
        index, count = part
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part}")
        self.files = resolve_files(source, release_root, release_dir)[index::count]
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.repeat = repeat
        self.drop_remainder = drop_remainder
        self.threads = max(1, threads)
        self.verify = verify
        self._epochs = itertools.count()  # a new shuffled order each pass
        self._buffers = BatchBuffers()  # batch arrays used again once the caller lets go of them

    def _items(self) -> Iterator[Item]:
        return passes(self.files, self.shuffle_buffer, self.seed, self.repeat, self._epochs, self.verify)

    def _examples(self, pool: ThreadPoolExecutor | None) -> Iterator[dict[str, Any]]:
        if pool is None:
            for reader, feature in self._items():
                yield to_arrays(reader, feature)
            return
        for chunk in chunks(self._items(), 4 * self.threads):
            yield from pool.map(lambda it: to_arrays(*it), chunk)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with decode_pool(self.threads) as pool:
            if self.batch_size is None:
                yield from self._examples(pool)
                return
            for batch in chunks(self._items(), self.batch_size):
                if len(batch) == self.batch_size or not self.drop_remainder:
                    yield collate_items(batch, pool, self._buffers)


def load_arrays(source: Source, **kwargs: Any) -> MixtureArrays:
    """:class:`MixtureArrays` of ``source`` (the same arguments)."""
    return MixtureArrays(source, **kwargs)
