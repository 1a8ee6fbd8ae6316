"""audioscope.models.data.load_dataset: real TFRecord shards written with the record encoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioscope.models.data import load_dataset, shard_files
from audioscope.schemas import records

from ..schemas.test_records import make_record, single


def write_shards(root: Path, sizes: dict[str, int]) -> dict[str, list[records.MixtureRecord]]:
    """Shards named by ``sizes`` (relative path -> examples); every other example a single mixture."""
    out, n = {}, 0
    for rel, size in sizes.items():
        recs = []
        for _ in range(size):
            recs.append(make_record(n, clip_id1=f"v{n}-0000000", video_id1=f"v{n}", frames_clip_id=f"v{n}-0000000")
                        if n % 2 == 0 else single(seed=n, type="LOff", clip_id1=f"v{n}-0000000", video_id1=f"v{n}",
                                                  frames_clip_id=f"v{n}-0000000", label1="offscreen_only"))  # fmt: skip
            n += 1
        records.write_tfrecord(str(root / rel), [records.encode(r) for r in recs])
        out[rel] = recs
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    written = write_shards(root, {"train/r/r-00000-of-00002.tfrecord": 5, "train/r/r-00001-of-00002.tfrecord": 4,
                                  "eval/test/s/s-00000-of-00001.tfrecord": 3})  # fmt: skip
    return root, written


def ids(ds) -> list[str]:
    return [x.decode() for e in ds.as_numpy_iterator() for x in np.atleast_1d(e["clip_id1"])]


def test_each_element_is_decoded_exactly(shards):
    root, written = shards
    recs = written["train/r/r-00000-of-00002.tfrecord"]
    elements = list(load_dataset(str(root / "train/r/r-00000-of-00002.tfrecord")).as_numpy_iterator())
    assert len(elements) == len(recs)
    for e, rec in zip(elements, recs):
        assert e["frames"].dtype == np.uint8 and e["frames"].shape == (5, 128, 128, 3)
        np.testing.assert_array_equal(e["frames"], rec.frames)
        for name in ("audio1", "audio2", "mixture"):
            assert e[name].dtype == np.float32 and e[name].shape == (80_000,)
        np.testing.assert_array_equal(e["audio1"], rec.audio1.astype(np.float32) / 32768.0)
        np.testing.assert_array_equal(e["mixture"], rec.mixture())
        np.testing.assert_array_equal(e["mixture"], e["audio1"] + e["audio2"])
        assert bool(e["is_mom"]) == rec.is_mom and e["type"].decode() == rec.type
        assert e["label1"].decode() == rec.label1 and e["video_id2"].decode() == rec.video_id2
        assert e["score1"] == np.float32(rec.score1)
        if not rec.is_mom:
            assert not e["audio2"].any() and e["clip_id2"] == b""


def test_sources_a_directory_a_glob_a_list(shards):
    root, written = shards
    everything = sorted(written)
    assert [Path(f).relative_to(root).as_posix() for f in shard_files(str(root))] == everything
    assert [Path(f).name for f in shard_files(str(root / "train/r/*.tfrecord"))] == [
        "r-00000-of-00002.tfrecord", "r-00001-of-00002.tfrecord"]  # fmt: skip
    pair = [str(root / "eval"), str(root / "train/r/r-00001-of-00002.tfrecord")]
    in_order = [r.clip_id1 for rel in ("eval/test/s/s-00000-of-00001.tfrecord", "train/r/r-00001-of-00002.tfrecord")
                for r in written[rel]]  # fmt: skip
    assert ids(load_dataset(pair)) == in_order
    with pytest.raises(FileNotFoundError, match="audioscope mix"):
        shard_files(str(root / "nothing-here"))


def test_batches_and_the_last_short_one(shards):
    root, _ = shards
    sizes = [int(b["frames"].shape[0]) for b in load_dataset(str(root / "train"), batch_size=4)]
    assert sizes == [4, 4, 1]
    batches = list(load_dataset(str(root / "train"), batch_size=4, drop_remainder=True))
    assert [b["mixture"].shape.as_list() for b in batches] == [[4, 80_000], [4, 80_000]]
    assert batches[0]["frames"].shape.as_list() == [4, 5, 128, 128, 3] and batches[0]["is_mom"].dtype.name == "bool"


def test_unshuffled_batches_equal_the_examples_stacked(shards):
    # Unshuffled batches are made whole by one generator (no unbatch and batch): the same values,
    # batches spanning shards and, with repeat, the end of one pass and the start of the next.
    root, _ = shards
    examples = list(load_dataset(str(root)).as_numpy_iterator())
    looped = examples * 3
    batches = list(load_dataset(str(root), batch_size=5, repeat=True).take(5).as_numpy_iterator())
    for k, batch in enumerate(batches):
        for name, value in batch.items():
            expected = np.stack([e[name] for e in looped[5 * k : 5 * k + 5]])
            np.testing.assert_array_equal(value, expected, err_msg=name)
    fixed = load_dataset(str(root), batch_size=5, drop_remainder=True)
    assert fixed.element_spec["frames"].shape.as_list() == [5, 5, 128, 128, 3]
    assert fixed.element_spec["mixture"].shape.as_list() == [5, 80_000]
    assert len(list(fixed)) == len(examples) // 5


def test_shuffling_is_seeded_and_repeat_goes_on(shards):
    root, written = shards
    plain = ids(load_dataset(str(root)))
    assert plain == [r.clip_id1 for rel in sorted(written) for r in written[rel]]
    a = ids(load_dataset(str(root), shuffle_buffer=16, seed=3))
    b = ids(load_dataset(str(root), shuffle_buffer=16, seed=3))
    c = ids(load_dataset(str(root), shuffle_buffer=16, seed=4))
    assert a == b and sorted(a) == sorted(plain) and a != plain and c != a
    looped = ids(load_dataset(str(root), repeat=True, batch_size=5).take(6))
    assert len(looped) == 30 and looped[:12] == plain


def test_both_loaders_shuffle_alike_a_new_order_each_pass(shards):
    from audioscope.models.numpy_data import MixtureArrays

    root, written = shards
    n = sum(len(r) for r in written.values())
    for kw in ({"shuffle_buffer": 5, "seed": 7}, {"shuffle_buffer": 100, "seed": 8}):
        tf_side = ids(load_dataset(str(root), batch_size=3, **kw))
        np_side = [x.decode() for b in MixtureArrays(str(root), batch_size=3, **kw) for x in b["clip_id1"]]
        assert tf_side == np_side and len(tf_side) == n
    two = ids(load_dataset(str(root), shuffle_buffer=5, seed=7, repeat=True, batch_size=4).take(2 * n // 4))
    first, second = two[:n], two[n:]
    assert sorted(first) == sorted(second) and first != second  # every example once per pass, a new order
    ds = load_dataset(str(root), shuffle_buffer=5, seed=7)
    assert ids(ds) != ids(ds)  # iterating the dataset again is another pass: another order


def test_shuffling_decodes_only_the_examples_it_yields(shards, monkeypatch):
    # The shuffle buffer holds parsed records, not decoded media: a first batch of 2 out of a buffer
    # of 100 examples decodes 2 examples.
    from audioscope.models.numpy_data import MixtureArrays

    root, _ = shards
    decoded = []
    media_into = records.ShardReader.media_into
    monkeypatch.setattr(records.ShardReader, "media_into", lambda self, *a: decoded.append(1) or media_into(self, *a))
    batches = iter(MixtureArrays(str(root), batch_size=2, shuffle_buffer=100, seed=1))
    next(batches)
    assert len(decoded) == 2


def test_an_abandoned_endless_dataset_leaves_no_decoding_threads(shards):
    import gc
    import threading
    import time

    root, _ = shards

    def decoding() -> list[str]:  # the pool's threads and the thread reading the batches
        return [t.name for t in threading.enumerate() if t.name.startswith(("ThreadPoolExecutor", "audioscope-loader"))]

    before = set(decoding())
    for seed in range(3):
        it = iter(load_dataset(str(root), shuffle_buffer=8, seed=seed, repeat=True, threads=3))
        for _ in range(5):
            next(it)
        assert set(decoding()) - before  # the batches are decoded on the pool's threads
        del it
        gc.collect()
        deadline = time.monotonic() + 10
        while set(decoding()) - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not set(decoding()) - before


def test_batches_are_read_on_one_thread_of_their_own(shards, monkeypatch):
    # TensorFlow calls the generator on whichever of its threads is free; reading every batch on one
    # thread keeps the memory it frees for the next batch (glibc keeps an arena per thread)
    import threading

    from audioscope.models import numpy_data

    root, _ = shards
    threads = []
    collate_items = numpy_data.collate_items
    monkeypatch.setattr(numpy_data, "collate_items", lambda *a: threads.append(threading.current_thread().name) or collate_items(*a))
    for _ in range(3):
        assert len(list(load_dataset(str(root), batch_size=2, threads=1))) > 1
    assert set(threads) == {"audioscope-loader"} and len(threads) > 6


def test_the_reading_thread_hands_over_items_errors_and_stops_when_closed():
    import threading

    from audioscope.models.data import on_own_thread

    assert list(on_own_thread(lambda: iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise records.RecordError("shard x is damaged")

    got = on_own_thread(failing)
    assert next(got) == 1
    with pytest.raises(records.RecordError, match="shard x is damaged"):
        next(got)
    closed = threading.Event()

    def endless():
        try:
            yield from iter(int, 1)  # zeros forever
        finally:
            closed.set()

    got = on_own_thread(endless)
    assert next(got) == 0
    got.close()  # the consumer lets go early: the producer stops and closes its generator
    assert closed.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "audioscope-loader"]


def test_importing_the_loader_does_not_import_tensorflow():
    code = "import sys, audioscope.models.data; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
