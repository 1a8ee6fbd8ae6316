"""Packed mixture shards (record schemas 3 and 4): each clip once, examples by reference, read by both loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioscope.models.numpy_data import MixtureArrays
from audioscope.schemas import records
from audioscope.schemas.records import RecordError
from audioscope.schemas.tfrecord import parse_example, read_records

from ..schemas.test_records import make_record


def shard_of(n: int) -> list[records.MixtureRecord]:
    """``n`` examples of ``n`` clips: clip i is the first mixture of example i and the second of
    example i-1; every third example is a single mixture."""
    base = [make_record(i) for i in range(n)]
    recs = []
    for i in range(n):
        j = (i + 1) % n
        mom = i % 3 != 2
        recs.append(records.MixtureRecord(
            frames=base[i].frames, audio1=base[i].audio1, audio2=base[j].audio1 if mom else None,
            type="NOn" if mom else "LOff", is_mom=mom, clip_id1=f"v{i}-0000000", video_id1=f"v{i}",
            start1=0.0, end1=5.0, frames_clip_id=f"v{i}-0000000",
            clip_id2=f"v{j}-0000000" if mom else "", video_id2=f"v{j}" if mom else "",
            start2=0.0 if mom else float("nan"), end2=5.0 if mom else float("nan"), score1=0.5,
            label1="" if mom else "offscreen_only",
        ))  # fmt: skip
    return recs


def as_version_2(rec: records.MixtureRecord) -> bytes:
    """A record as schema 2 wrote it (its own zstd media, no record_kind)."""
    example = records.to_example(rec)
    example.features.feature["schema_version"].int64_list.value[0] = 2
    del example.features.feature["record_kind"]
    return example.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, list[records.MixtureRecord]]:
    root = tmp_path_factory.mktemp("packed")
    recs = shard_of(6)
    records.write_tfrecord(str(root / "train/p/p-00000-of-00002.tfrecord"), records.encode_shard(recs[:4]))
    records.write_tfrecord(str(root / "train/p/p-00001-of-00002.tfrecord"), records.encode_shard(recs[4:]))
    records.write_tfrecord(str(root / "v2/q-00000-of-00001.tfrecord"), [as_version_2(r) for r in recs])
    records.write_tfrecord(str(root / "v3/r-00000-of-00001.tfrecord"), records.encode_shard(recs, version=3))
    return root, recs


def assert_same_media(a: records.MixtureRecord, b: records.MixtureRecord) -> None:
    """The two records hold the same frames and audio (and both or neither a second mixture)."""
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio1, b.audio1)
    assert (a.audio2 is None) == (b.audio2 is None)
    if a.audio2 is not None:
        np.testing.assert_array_equal(a.audio2, b.audio2)


def test_a_packed_shard_holds_each_clip_once_and_decodes_to_the_same_records(packed):
    root, recs = packed
    data = list(read_records(str(root / "train/p/p-00000-of-00002.tfrecord")))
    kinds = [bytes(parse_example(d)["record_kind"][1][0]) for d in data]
    # clips v0..v3 plus v4, the second mixture of example 3: five clips, then four examples
    assert kinds == [b"clip"] * 5 + [b"example"] * 4
    clip_v4 = parse_example(data[4])
    assert clip_v4["clip_id"][1] == [b"v4-0000000"] and clip_v4["frames"][1] == [b""]  # heard, never shown
    back = list(records.decode_shard(data))
    assert len(back) == 4
    for a, b in zip(recs[:4], back):
        assert b.schema_version == records.SCHEMA_VERSION == 5
        for name in records.record_fields():
            if name != "schema_version":
                assert getattr(a, name) == getattr(b, name) or (getattr(a, name) != getattr(a, name)), name
        assert_same_media(a, b)
    with pytest.raises(RecordError, match="refers to the clips of a packed shard.*decode_shard"):
        records.decode(data[-1])
    # the 4 second mixtures are clips the shard holds already: their (incompressible) audio is not stored again
    saved = len(b"".join(records.encode(r) for r in recs)) - len(b"".join(records.encode_shard(recs)))
    assert saved > 3.9 * 2 * records.AUDIO_SAMPLES


def test_both_loaders_assemble_packed_and_read_schema_2_and_3_shards_alike(packed):
    from audioscope.models.data import load_dataset

    root, recs = packed
    for source in (str(root / "train"), str(root / "v2"), str(root / "v3")):
        tf_side = list(load_dataset(source, batch_size=4).as_numpy_iterator())
        np_side = list(MixtureArrays(source, batch_size=4))
        assert [len(b["frames"]) for b in tf_side] == [len(b["frames"]) for b in np_side] == [4, 2]
        for a, b in zip(tf_side, np_side):
            for name in a:
                np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
        frames = np.concatenate([b["frames"] for b in np_side])
        mixture = np.concatenate([b["mixture"] for b in np_side])
        for k, rec in enumerate(recs):
            np.testing.assert_array_equal(frames[k], rec.frames)
            np.testing.assert_allclose(mixture[k], rec.mixture(), rtol=0, atol=1e-6)
    shuffled = [e["clip_id1"] for e in MixtureArrays(str(root / "train"), shuffle_buffer=3, seed=1)]
    assert sorted(shuffled) == sorted(r.clip_id1.encode() for r in recs)


def test_an_example_whose_clip_is_missing_is_refused_naming_the_file(packed, tmp_path):
    from audioscope.errors import UserError  # noqa: F401 - the loaders' refusal types
    from audioscope.models.data import load_dataset

    root, _ = packed
    data = list(read_records(str(root / "train/p/p-00000-of-00002.tfrecord")))
    cut = tmp_path / "cut-00000-of-00001.tfrecord"
    records.write_tfrecord(str(cut), data[1:])  # the first clip record lost
    with pytest.raises(RecordError, match=f"{cut.name}: an example refers to the frames of clip v0-0000000.*write or fetch it again"):
        list(MixtureArrays(str(cut)))
    with pytest.raises(Exception, match="an example refers to the frames of clip v0-0000000"):
        list(load_dataset(str(cut)))
    with pytest.raises(RecordError, match="two different audio"):
        recs = shard_of(3)
        records.encode_shard([recs[0], records.MixtureRecord(**{**recs[1].__dict__, "clip_id1": recs[0].clip_id1,
                                                               "audio1": recs[2].audio1})])  # fmt: skip


def test_the_fast_readers_give_what_the_reference_readers_give(packed):
    """The protobuf parse of every record equals the pure Python reader's; batches decoded in place
    (numpy loader, one and several threads) equal the single examples stacked; garbage is refused."""
    import math

    from audioscope.models.numpy_data import collate
    from audioscope.schemas.records import _parse

    root, _recs = packed
    files = sorted(str(p) for p in root.rglob("*.tfrecord"))
    for f in files:
        for data in read_records(f):
            fast, slow = _parse(data), parse_example(data)
            assert list(fast) == list(slow) or set(fast) == set(slow)
            for name, (kind, values) in slow.items():
                assert fast[name][0] == kind and len(fast[name][1]) == len(values), name
                for x, y in zip(fast[name][1], values):
                    assert type(x) is type(y) and (x == y or (math.isnan(x) and math.isnan(y))), name
    for bad in (b"\xff\xff\xff", b"\x0a\x05\x0a\x03"):
        with pytest.raises(RecordError, match="not a tf.train.Example"):
            _parse(bad)
    for source in (str(root / "train"), str(root / "v2"), str(root / "v3")):
        singles = list(MixtureArrays(source))
        for threads in (1, 3):
            batches = list(MixtureArrays(source, batch_size=4, threads=threads))
            assert len(batches) == math.ceil(len(singles) / 4)
            for k, batch in enumerate(batches):
                want = collate(singles[4 * k : 4 * k + 4])
                assert list(batch) == list(want)
                for name in want:
                    assert batch[name].dtype == want[name].dtype and batch[name].shape == want[name].shape, name
                    np.testing.assert_array_equal(batch[name], want[name], err_msg=name)


def test_without_protobuf_the_pure_python_reader_gives_the_same_batches(packed, monkeypatch):
    root, _recs = packed
    with_protobuf = list(MixtureArrays(str(root / "train"), batch_size=3))
    monkeypatch.setattr(records, "_EXAMPLE", [None])  # as where the protobuf package is missing
    without = list(MixtureArrays(str(root / "train"), batch_size=3))
    assert len(with_protobuf) == len(without) == 2
    for a, b in zip(with_protobuf, without):
        assert list(a) == list(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("protobuf", [True, False])
def test_a_reader_told_its_fields_parses_only_those_and_assembles_the_same_media(packed, monkeypatch, protobuf):
    # the loaders parse the ~10 features a batch carries, not all 25 of an example record
    root, _recs = packed
    if not protobuf:
        monkeypatch.setattr(records, "_EXAMPLE", [None])  # the pure Python reader, as without protobuf
    f = str(root / "train/p/p-00000-of-00002.tfrecord")
    full, few = records.ShardReader(f), records.ShardReader(f, fields=("type", "score1", "no_such_feature"))
    taken = 0
    for data in read_records(f):
        a, b = full.take(data), few.take(data)
        assert (a is None) == (b is None)
        if a is None:
            continue
        taken += 1
        assert set(b) <= {"type", "score1", records._CLIPS} | records.READER_FEATURES and "no_such_feature" not in b
        assert "licence_name1" in a and "licence_name1" not in b and b["type"] == a["type"]
        for got, want in zip(few.media(b), full.media(a)):
            np.testing.assert_array_equal(got, want)
    assert taken == 4


def test_media_decoded_in_place_equal_the_media_and_wrong_sizes_are_refused(packed):
    import zstandard

    root, _recs = packed
    for f in sorted(str(p) for p in root.rglob("*.tfrecord")):
        reader = records.ShardReader(f)
        for data in read_records(f):
            feature = reader.take(data)
            if feature is None:
                continue
            frames = np.empty(records.FRAMES_SHAPE, np.uint8)
            pcm1, pcm2 = np.full(records.AUDIO_SAMPLES, 7, np.int16), np.full(records.AUDIO_SAMPLES, 7, np.int16)
            version = reader.media_into(feature, frames, pcm1, pcm2)
            want = reader.media(feature)
            assert version == want[0]
            for got, expected in zip((frames, pcm1, pcm2), want[1:]):
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected)
    out = np.empty(100, np.uint8)
    for payload, what in ((bytes(99), "hold 99 bytes, not 100"), (bytes(101), "hold more than 100 bytes")):
        with pytest.raises(RecordError, match=what):
            records._unzstd_into(zstandard.ZstdCompressor().compress(payload), out, "audio")
    with pytest.raises(RecordError, match="cannot be decompressed"):
        records._unzstd_into(b"not zstd at all", out, "frames")


def test_schema_3_4_and_5_shards_hold_the_same_examples_and_5_is_written_by_default(packed):
    root, recs = packed
    v3 = list(records.decode_shard(read_records(str(root / "v3/r-00000-of-00001.tfrecord"))))
    assert [r.schema_version for r in v3] == [3] * len(recs)
    assert records.encode_shard(recs) == records.encode_shard(recs, version=5)
    v4 = list(records.decode_shard(records.encode_shard(recs, version=4)))
    v5 = list(records.decode_shard(records.encode_shard(recs)))
    assert [r.schema_version for r in v4] == [4] * len(recs) and [r.schema_version for r in v5] == [5] * len(recs)
    for a, b, c in zip(v3, v4, v5):
        assert_same_media(a, b)
        assert_same_media(a, c)
    with pytest.raises(RecordError, match="written in record schema .3, 4, 5., not 2"):
        records.encode_shard(recs, version=2)


def test_shuffled_reading_holds_the_shards_being_read_and_the_buffers_clips_only(tmp_path):
    """An example waiting in the shuffle buffer keeps its own clips, not its whole shard: the peak
    memory of a shuffled pass over many shards stays within ``held_bytes`` (four shards read side by
    side and the buffer's examples), well under the shards' total; and the bytes per example are
    measured from one shard."""
    import random
    import tracemalloc

    from audioscope import storage
    from audioscope.models import numpy_data

    rng = np.random.default_rng(3)
    per_shard, files = 40, []
    for k in range(12):  # 12 shards of 40 examples, each of its own clip, ~50 kB compressed
        frames = [rng.integers(0, 2, records.FRAMES_SHAPE, dtype=np.uint8) for _ in range(per_shard)]
        audio = [rng.integers(-1, 2, records.AUDIO_SAMPLES, dtype=np.int16) for _ in range(per_shard)]
        recs = []
        for i in range(per_shard):
            j = (i + 1) % per_shard  # the second mixture: the next clip's sound, so each clip is stored once
            recs.append(make_record(frames=frames[i], audio1=audio[i], audio2=audio[j], clip_id1=f"v{k}x{i}-0000000",
                                    video_id1=f"v{k}x{i}", frames_clip_id=f"v{k}x{i}-0000000",
                                    clip_id2=f"v{k}x{j}-0000000", video_id2=f"v{k}x{j}"))  # fmt: skip
        path = str(tmp_path / f"s-{k:05d}-of-00012.tfrecord")
        records.write_tfrecord(path, records.encode_shard(recs))
        files.append(path)
    sizes = storage.sizes(files)
    example = numpy_data.stored_example_bytes(files, sizes)
    assert min(sizes) / per_shard <= example <= min(sizes) / per_shard + 1
    (tmp_path / "empty.tfrecord").write_bytes(b"")  # an empty file is not the smallest shard
    assert numpy_data.stored_example_bytes([str(tmp_path / "empty.tfrecord"), *files], [0, *sizes]) == example
    assert numpy_data.stored_example_bytes([str(tmp_path / "empty.tfrecord")], [0]) == 0

    for buffer in (16, 64):
        estimate = numpy_data.held_bytes(sizes, buffer, example)
        assert estimate < sum(sizes) / 2
        tracemalloc.start()
        try:
            examples = sum(1 for _ in numpy_data.epoch_items(files, buffer, random.Random(buffer), verify=False))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert examples == 12 * per_shard
        assert peak <= estimate + 2_000_000, (buffer, peak, estimate)


def test_the_bytes_per_example_of_a_mixtures_folder_come_from_its_summary_without_reading_a_shard(tmp_path, monkeypatch):
    """`train` checks memory before it starts: a finished mixtures folder lists each shard's bytes and
    examples, so no shard is read (a release on object storage: ~130 MB per shard); a shard the summary
    does not list, a summary without shard sizes or with sizes that are not the files', falls back to
    reading the smallest shard."""
    import json

    from audioscope import storage
    from audioscope.models import numpy_data
    from audioscope.models.train_cli import example_bytes

    root = tmp_path / "mix"
    (root / "train" / "semi-supervised").mkdir(parents=True)
    files = []
    for k, n in enumerate((3, 5)):
        path = root / "train" / "semi-supervised" / f"shard-{k:05d}-of-00002.tfrecord"
        records.write_tfrecord(str(path), records.encode_shard(shard_of(n)))
        files.append(str(path))
    sizes = storage.sizes(files)
    listed = [{"path": f"train/semi-supervised/{Path(f).name}", "examples": n, "bytes": b}
              for f, n, b in zip(files, (3, 5), sizes)]  # fmt: skip
    (root / "summary.json").write_text(json.dumps({"shards": listed}))

    def no_reading(*a, **k):
        raise AssertionError("a shard was read")

    with monkeypatch.context() as m:
        m.setattr(numpy_data, "iter_shard", no_reading)
        assert example_bytes(str(root), files, sizes) == -(-sum(sizes) // 8)
        assert example_bytes(str(root), files[:1], sizes[:1]) == -(-sizes[0] // 3)
    extra = root / "train" / "semi-supervised" / "copied-here.tfrecord"
    extra.write_bytes(Path(files[0]).read_bytes())  # not in the summary: the smallest shard is read
    assert example_bytes(str(root), [*files, str(extra)], [*sizes, sizes[0]]) == -(-sizes[0] // 3)
    # a summary whose sizes are not the files' (a shard written again, the summary edited): read
    wrong = [{**p, "bytes": p["bytes"] // 100} for p in listed]
    (root / "summary.json").write_text(json.dumps({"shards": wrong}))
    assert example_bytes(str(root), files, sizes) == numpy_data.stored_example_bytes(files, sizes) == -(-sizes[0] // 3)
    (root / "summary.json").write_text(json.dumps({"shards": [{"path": p["path"]} for p in listed]}))
    assert example_bytes(str(root), files, sizes) == numpy_data.stored_example_bytes(files, sizes)
