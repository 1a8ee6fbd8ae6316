"""audioscope.schemas.records: the mixture example's layout, encoding, parsing and writing."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import zstandard

from audioscope.schemas import kernels, records
from audioscope.schemas.records import AUDIO_SAMPLES, FRAMES_SHAPE, MixtureRecord, RecordError


def make_record(seed: int = 0, **over) -> MixtureRecord:
    rng = np.random.default_rng(seed)
    fields = dict(
        frames=rng.integers(0, 256, FRAMES_SHAPE, dtype=np.uint8),
        audio1=rng.integers(-32768, 32768, AUDIO_SAMPLES, dtype=np.int16),
        audio2=rng.integers(-32768, 32768, AUDIO_SAMPLES, dtype=np.int16),
        type="NOn", is_mom=True, clip_id1="vid-a-0002000", video_id1="vid-a", start1=2.0, end1=7.0,
        frames_clip_id="vid-a-0002000", clip_id2="vid-b-0000000", video_id2="vid-b", start2=0.0, end2=5.0,
        label1="onscreen_only", votes_onscreen1=(1, 1, 1), votes_offscreen1=(0, 0, 0), score1=0.875,
        licence_name1="CC BY 2.0", licence_url1="https://creativecommons.org/licenses/by/2.0/",
        licence_name2="CC BY-SA 2.0", licence_url2="https://creativecommons.org/licenses/by-sa/2.0/",
        frames_licence_name="CC BY 2.0", frames_licence_url="https://creativecommons.org/licenses/by/2.0/",
    )  # fmt: skip
    fields.update(over)
    return MixtureRecord(**fields)


def single(**over) -> MixtureRecord:
    return make_record(audio2=None, is_mom=False, clip_id2="", video_id2="", start2=math.nan, end2=math.nan,
                       licence_name2="", licence_url2="", **over)  # fmt: skip


def test_encode_decode_round_trip_keeps_every_field_and_sample():
    rec = make_record()
    back = records.decode(records.encode(rec))
    for name in records.record_fields():
        assert getattr(back, name) == getattr(rec, name), name
    np.testing.assert_array_equal(back.frames, rec.frames)
    np.testing.assert_array_equal(back.audio1, rec.audio1)
    np.testing.assert_array_equal(back.audio2, rec.audio2)


def test_decode_parses_a_record_once(monkeypatch):
    calls = []
    parse = records._parse
    monkeypatch.setattr(records, "_parse", lambda data: calls.append(len(data)) or parse(data))
    data = records.encode(make_record(2))
    back = records.decode(data)
    assert calls == [len(data)]
    np.testing.assert_array_equal(back.frames, make_record(2).frames)


def test_the_same_record_gives_the_same_bytes():
    assert records.encode(make_record(3)) == records.encode(make_record(3))
    assert records.encode(make_record(3)) != records.encode(make_record(4))


def test_a_single_mixture_stores_zeros_and_no_second_clip():
    import tensorflow as tf

    rec = single(type="LOn")
    data = records.encode(rec)
    feature = tf.train.Example.FromString(data).features.feature
    assert zstandard.ZstdDecompressor().decompress(feature["audio2"].bytes_list.value[0]) == bytes(2 * AUDIO_SAMPLES)
    assert feature["clip_id2"].bytes_list.value[0] == b"" and feature["is_mom"].int64_list.value[0] == 0
    back = records.decode(data)
    assert back.audio2 is None and math.isnan(back.start2)
    np.testing.assert_array_equal(back.mixture(), rec.audio1.astype(np.float32) / 32768.0)


def test_int16_makes_the_mixture_exactly_the_sum_of_its_parts():
    rec = make_record(audio1=np.full(AUDIO_SAMPLES, 32767, np.int16), audio2=np.full(AUDIO_SAMPLES, -32768, np.int16))
    mixture = rec.mixture()
    assert mixture.dtype == np.float32
    np.testing.assert_array_equal(mixture, np.float32(32767 / 32768) + np.float32(-1.0))


def test_the_feature_spec_parses_what_encode_writes():
    import tensorflow as tf

    rec = make_record()
    parsed = tf.io.parse_single_example(records.encode(rec), records.feature_spec())
    assert set(parsed) == set(records.FEATURES)
    assert parsed["type"].numpy() == b"NOn" and parsed["is_mom"].numpy() == 1
    assert parsed["score1"].numpy() == np.float32(0.875)
    assert tf.sparse.to_dense(parsed["votes_onscreen1"]).numpy().tolist() == [1, 1, 1]
    assert parsed["schema_version"].numpy() == records.SCHEMA_VERSION
    frames, pcm, _ = records.decode_media(parsed["frames"].numpy(), parsed["audio1"].numpy(), parsed["audio2"].numpy(), 2)
    np.testing.assert_array_equal(frames, rec.frames)
    np.testing.assert_array_equal(pcm, rec.audio1)
    raw = zstandard.ZstdDecompressor().decompress(parsed["audio1"].numpy())  # the audio is plain PCM in zstd
    np.testing.assert_array_equal(np.frombuffer(raw, "<i2"), rec.audio1)


@pytest.mark.parametrize(
    "over,message",
    [
        ({"frames": np.zeros((5, 64, 64, 3), np.uint8)}, "frames must be uint8"),
        ({"audio1": np.zeros(AUDIO_SAMPLES, np.float32)}, "audio1 must be int16"),
        ({"audio2": np.zeros(79_999, np.int16)}, "audio2 must be int16"),
        ({"type": "Noisy"}, "type 'Noisy'"),
        ({"video_id2": "vid-a", "clip_id2": "vid-a-0001000"}, "also in the first mixture"),
        ({"type": "SOff", "frames_clip_id": "vid-b-0003000"}, "also in the first mixture"),
        ({"label1": "maybe"}, "label1"),
        ({"audio2": None}, "single mixture has neither"),
        ({"schema_version": records.SCHEMA_VERSION + 1}, "upgrade"),
    ],
)
def test_records_that_break_the_layout_are_refused(over, message):
    with pytest.raises(RecordError, match=message):
        records.encode(make_record(**over))


def test_decode_refuses_an_example_of_another_kind():
    import tensorflow as tf

    other = tf.train.Example(features=tf.train.Features(feature={
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
    })).SerializeToString()  # fmt: skip
    with pytest.raises(RecordError, match="lacks the features"):
        records.decode(other)


def test_write_tfrecord_is_atomic_and_reads_back_in_order(tmp_path):
    path = str(tmp_path / "shard" / "x-00000-of-00001.tfrecord")
    data = [records.encode(make_record(i)) for i in range(3)]
    size = records.write_tfrecord(path, data)
    assert size == os.path.getsize(path)
    assert records.read_tfrecord(path) == data
    assert os.listdir(tmp_path / "shard") == ["x-00000-of-00001.tfrecord"]

    def broken():
        yield data[0]
        raise RuntimeError("media unreadable")

    other = str(tmp_path / "shard" / "y-00000-of-00001.tfrecord")
    with pytest.raises(RuntimeError):
        records.write_tfrecord(other, broken())
    assert os.listdir(tmp_path / "shard") == ["x-00000-of-00001.tfrecord"]  # nothing partial left


def test_records_without_the_frames_licence_still_decode():
    import tensorflow as tf

    example = records.to_example(make_record())
    del example.features.feature["frames_licence_name"]
    del example.features.feature["frames_licence_url"]
    back = records.decode(example.SerializeToString())
    assert back.frames_licence_name == "" and back.licence_name1 == "CC BY 2.0"
    assert isinstance(example, tf.train.Example)


def v1_example(rec: MixtureRecord) -> bytes:
    """``rec`` as schema version 1 wrote it: raw frames and raw PCM."""
    example = records.to_example(rec)
    f = example.features.feature
    f["frames"].bytes_list.value[0] = rec.frames.tobytes()
    f["audio1"].bytes_list.value[0] = rec.audio1.astype("<i2").tobytes()
    f["audio2"].bytes_list.value[0] = (np.zeros(AUDIO_SAMPLES, "<i2") if rec.audio2 is None else rec.audio2).tobytes()
    f["schema_version"].int64_list.value[0] = 1
    return example.SerializeToString(deterministic=True)


def test_version_1_records_still_decode_to_the_same_record():
    rec = make_record(5)
    back = records.decode(v1_example(rec))
    assert back.schema_version == 1
    np.testing.assert_array_equal(back.frames, rec.frames)
    np.testing.assert_array_equal(back.audio2, rec.audio2)
    assert records.SCHEMA_VERSION == 5


def test_compressed_records_are_lossless_and_smaller_on_smooth_media():
    rng = np.random.default_rng(0)
    t = np.arange(AUDIO_SAMPLES)
    frames = np.zeros(FRAMES_SHAPE, np.uint8)
    frames[:, 32:96, 32:96] = rng.integers(0, 256, 3, dtype=np.uint8)  # a flat square on black
    rec = make_record(frames=frames, audio1=(3000 * np.sin(t / 20)).astype(np.int16),
                      audio2=(2000 * np.sin(t / 7)).astype(np.int16))  # fmt: skip
    data = records.encode(rec)
    assert len(data) * 4 < len(v1_example(rec))
    back = records.decode(data)
    np.testing.assert_array_equal(back.frames, rec.frames)
    np.testing.assert_array_equal(back.audio1, rec.audio1)


def test_the_standard_library_reader_checks_every_record(tmp_path):
    from audioscope.schemas.tfrecord import RecordFileError, read_records

    path = tmp_path / "x-00000-of-00001.tfrecord"
    data = [records.encode(make_record(i)) for i in range(2)]
    records.write_tfrecord(str(path), data)
    assert list(read_records(str(path))) == data
    blob = bytearray(path.read_bytes())
    blob[40] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(RecordFileError, match=f"{path.name} is damaged .record 0: bad data checksum"):
        list(read_records(str(path)))
    for cut in (len(data[0]) // 2, 12 + len(data[0]) + 2):  # inside the first record; inside its checksum
        path.write_bytes(bytes(blob[:cut]))
        with pytest.raises(RecordFileError, match="is truncated .record 0 is cut short"):
            list(read_records(str(path)))


def test_the_wire_decoder_agrees_with_tensorflow():
    import tensorflow as tf

    from audioscope.schemas.tfrecord import parse_example

    example = records.to_example(make_record(2, votes_onscreen1=(1, 0, 1), score1=-0.25))
    example.features.feature["negative"].int64_list.value.extend([-5, 2**40])
    data = example.SerializeToString()
    parsed = parse_example(data)
    for name, feature in tf.train.Example.FromString(data).features.feature.items():
        kind = feature.WhichOneof("kind").removesuffix("_list")
        assert parsed[name] == (kind, list(getattr(feature, f"{kind}_list").value)), name
    assert parsed["negative"] == ("int64", [-5, 2**40])
    with pytest.raises(RecordError, match="not a tf.train.Example"):
        records.decode(b"\x0a\xff\xff")


def test_a_shard_is_never_written_with_fewer_examples_than_planned(tmp_path):
    path = tmp_path / "s" / "x-00000-of-00001.tfrecord"
    data = [records.encode(make_record(i)) for i in range(2)]
    with pytest.raises(RecordError, match="2 examples were given for a shard planned to hold 3; not written"):
        records.write_tfrecord(str(path), data, expected=3)
    assert os.listdir(tmp_path / "s") == []
    assert records.write_tfrecord(str(path), data, expected=2) == path.stat().st_size


def test_the_pure_python_crc32c_fallback_agrees():
    from audioscope.schemas.tfrecord import crc32c, crc32c_python

    assert crc32c_python(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert crc32c_python(data) == crc32c(data)


def test_a_decompression_bomb_or_garbage_media_is_refused():
    example = records.to_example(make_record(1))
    example.features.feature["audio1"].bytes_list.value[0] = zstandard.ZstdCompressor().compress(bytes(10 * 2**20))
    with pytest.raises(RecordError, match="audio cannot be decompressed|audio hold"):
        records.decode(example.SerializeToString())
    example.features.feature["audio1"].bytes_list.value[0] = b"not zstd"
    with pytest.raises(RecordError, match="audio cannot be decompressed"):
        records.decode(example.SerializeToString())


@pytest.mark.parametrize("version", [4, 5])
def test_clip_codecs_are_lossless_at_the_extremes(version):
    # Differences and residuals that wrap int16 (full-scale square waves, a jump from -32768 to 32767),
    # high parts of +128 (stored as -128), noise over the whole range, and frames of every value.
    rng = np.random.default_rng(7)
    square = np.where(np.arange(AUDIO_SAMPLES) % 2, 32767, -32768).astype(np.int16)
    edges = np.resize(np.array([0, 32767, -32768, 32767, 32640, -129, 127, -128, 255, -256], np.int16), AUDIO_SAMPLES)
    noise = rng.integers(-32768, 32768, AUDIO_SAMPLES).astype(np.int16)
    out = np.empty(AUDIO_SAMPLES, np.int16)
    tone = (32767 * np.sin(np.arange(AUDIO_SAMPLES) * 0.05)).astype(np.int16)  # predicted near full scale
    for audio in (square, edges, noise, tone, np.zeros(AUDIO_SAMPLES, np.int16)):
        records.clip_audio_into(version, records.CLIP_CODECS[version][1](audio), out)
        np.testing.assert_array_equal(out, audio)
    frames = np.empty(FRAMES_SHAPE, np.uint8)
    for pictures in (rng.integers(0, 256, FRAMES_SHAPE).astype(np.uint8), np.full(FRAMES_SHAPE, 255, np.uint8),
                     np.resize(np.array([0, 255], np.uint8), FRAMES_SHAPE)):  # fmt: skip
        records.clip_frames_into(version, records.clip_frames_bytes(pictures), frames)
        np.testing.assert_array_equal(frames, pictures)
    with pytest.raises(RecordError, match="cannot be decompressed"):
        records.clip_audio_into(version, b"garbage", out)


def test_schema_5_predicts_each_block_within_the_format_and_the_same_way_every_time():
    rng = np.random.default_rng(11)
    t = np.arange(AUDIO_SAMPLES)
    speechlike = (8000 * np.sin(t * 0.07) * np.sin(t * 0.0007) + rng.normal(0, 40, t.size)).astype(np.int16)
    blocks = speechlike.reshape(kernels.LPC_BLOCKS, -1)
    shifts, coefs, residuals = records.lpc_predict(blocks)
    assert shifts.dtype == np.uint8 and shifts.max() <= kernels.LPC_MAX_SHIFT
    assert coefs.shape == (kernels.LPC_ORDER, kernels.LPC_BLOCKS) and coefs.dtype == np.int16
    assert np.abs(coefs.astype(np.int64)).sum(axis=0).max() < kernels.LPC_COEFFICIENT_SUM
    assert np.abs(residuals).mean() < np.abs(np.diff(speechlike.astype(np.int64))).mean() / 4  # it predicts
    again = records.lpc_predict(blocks.copy())
    assert all(np.array_equal(a, b) for a, b in zip((shifts, coefs, residuals), again))
    data = records.clip_audio_bytes(speechlike)
    assert data == records.clip_audio_bytes(speechlike) and len(data) < 0.9 * len(records.delta_audio_bytes(speechlike))
    silent = records.lpc_predict(np.zeros((kernels.LPC_BLOCKS, 2500), np.int16))
    assert not silent[2].any()


def test_a_schema_5_clip_with_a_predictor_outside_the_format_is_refused():
    payload = bytearray(zstandard.ZstdDecompressor().decompress(records.clip_audio_bytes(np.zeros(AUDIO_SAMPLES, np.int16))))
    payload[0] = 200  # a shift no writer makes
    with pytest.raises(RecordError, match="the audio's predictor is out of range"):
        records.clip_audio_into(5, zstandard.ZstdCompressor().compress(bytes(payload)), np.empty(AUDIO_SAMPLES, np.int16))


def test_clip_records_read_alike_whatever_zstd_level_wrote_them():
    """The zstd settings are the writer's choice, not the format: clips written at the levels of
    earlier versions (6, and level 3's defaults) read as those written now, so a reader needs no
    new schema for them."""
    rng = np.random.default_rng(3)
    t = np.arange(AUDIO_SAMPLES)
    audio = (6000 * np.sin(t * 0.03) + rng.normal(0, 30, t.size)).astype(np.int16)
    frames = np.clip(np.add.outer(np.arange(128), np.arange(128))[None, :, :, None] + rng.integers(0, 9, FRAMES_SHAPE),
                     0, 255).astype(np.uint8)  # fmt: skip
    out_audio, out_frames = np.empty(AUDIO_SAMPLES, np.int16), np.empty(FRAMES_SHAPE, np.uint8)
    plain = zstandard.ZstdDecompressor()
    for level in (3, 6, records.CLIP_FRAMES_LEVEL, records.CLIP_AUDIO_LEVEL):
        again = zstandard.ZstdCompressor(level=level)
        records.clip_audio_into(5, again.compress(plain.decompress(records.clip_audio_bytes(audio))), out_audio)
        records.clip_frames_into(5, again.compress(plain.decompress(records.clip_frames_bytes(frames))), out_frames)
        np.testing.assert_array_equal(out_audio, audio)
        np.testing.assert_array_equal(out_frames, frames)
    # the writer's settings hold: a smooth picture's frames take fewer bytes than level 6 gives them
    assert len(records.clip_frames_bytes(frames)) < len(zstandard.ZstdCompressor(level=6).compress(
        plain.decompress(records.clip_frames_bytes(frames))))  # fmt: skip
