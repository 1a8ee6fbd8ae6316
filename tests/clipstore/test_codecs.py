"""The store's own writers: PNG frames and zip shards that standard readers decode exactly."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from audioscope.clipstore import format as format_module
from audioscope.clipstore.format import (
    AUDIO_DEFLATE,
    DEFAULT_DEFLATE,
    PNG_DEFLATE,
    StoreParams,
    decode_media,
    encode_media,
    png_rgb,
    zip_bytes,
)


@pytest.mark.parametrize("shape", [(128, 128, 3), (1, 1, 3), (7, 3, 3)])
def test_png_round_trips_through_pillow(shape):
    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, size=shape, dtype=np.uint8)
    frame[: shape[0] // 2] = frame[: shape[0] // 2] // 64 * 64  # flat stretches too
    with Image.open(io.BytesIO(png_rgb(frame))) as img:
        img.load()  # checks every chunk's CRC and the deflate stream
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(img), frame)


def test_sub_filter_wraps_modulo_256():
    frame = np.array([[[255, 0, 10], [0, 255, 5], [1, 1, 250]]], dtype=np.uint8)
    with Image.open(io.BytesIO(png_rgb(frame))) as img:
        np.testing.assert_array_equal(np.asarray(img), frame)


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        png_rgb(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        png_rgb(np.zeros((4, 4, 3), np.float32))


def test_zip_members_read_back_with_zipfile():
    rng = np.random.default_rng(3)
    pcm = (rng.normal(0, 3000, 48_000)).astype("<i2").tobytes()
    members = [
        ("meta.json", b'{"a": 1}', DEFAULT_DEFLATE),
        ("audio.npy", pcm, AUDIO_DEFLATE),
        ("blob.bin", bytes(range(256)) * 10, None),
        ("empty", b"", DEFAULT_DEFLATE),
    ]
    data = zip_bytes(members)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None  # every CRC matches
        assert z.namelist() == [m[0] for m in members]
        for name, payload, deflate in members:
            assert z.read(name) == payload
            info = z.getinfo(name)
            assert info.compress_type == (zipfile.ZIP_STORED if deflate is None else zipfile.ZIP_DEFLATED)
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
    assert zip_bytes(members) == data  # same input, same bytes


@pytest.fixture(params=["isal", "zlib"])
def deflater(request, monkeypatch):
    """Each test that takes it runs with ISA-L's deflate and with zlib's (a platform without isal)."""
    if request.param == "isal":
        assert format_module._isal_zlib is not None, "the isal package is a dependency on this platform"
    else:
        monkeypatch.setattr(format_module, "_isal_zlib", None)
    return request.param


def test_audio_deflate_is_close_to_zlib_level_1(deflater):
    rng = np.random.default_rng(0)
    t = np.arange(16_000 * 5) / 16_000
    pcm = (3000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 200, t.size)).astype("<i2").tobytes()
    ours = AUDIO_DEFLATE.raw_stream(pcm)
    assert zlib.decompress(ours, -15) == pcm
    assert len(ours) < len(pcm) and len(ours) <= 1.1 * len(zlib.compress(pcm, 1))


def test_both_deflaters_write_what_standard_readers_read(deflater):
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    frame[:16] = 7
    with Image.open(io.BytesIO(png_rgb(frame))) as img:
        np.testing.assert_array_equal(np.asarray(img), frame)
    data = b"".join(bytes([i % 251]) * (i % 17) for i in range(5_000))
    for deflate in (DEFAULT_DEFLATE, PNG_DEFLATE, AUDIO_DEFLATE):
        assert zlib.decompress(deflate.zlib_stream(data)) == data
        assert zlib.decompress(deflate.raw_stream(data), -15) == data
        assert deflate.raw_stream(data) == deflate.raw_stream(data)  # same input, same bytes


def test_media_shard_is_an_npz_that_numpy_reads():
    rng = np.random.default_rng(1)
    audio = rng.integers(-20_000, 20_000, 16_000 * 3, dtype=np.int16)
    frames = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    shard = encode_media(audio, frames, StoreParams(), video_id="v")
    with np.load(io.BytesIO(shard), allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["audio"], audio)
        assert npz["frame_offsets"][-1] == npz["frame_data"].size
    got_audio, got_frames, meta = decode_media(shard)
    np.testing.assert_array_equal(got_audio, audio)
    np.testing.assert_array_equal(got_frames, frames)
    assert meta["video_id"] == "v" and meta["n_seconds"] == 3


def test_media_shards_parse_their_npy_headers_one_thread_at_a_time(monkeypatch):
    # numpy parses a .npy header with ast.literal_eval, and on CPython 3.11 two threads building AST
    # objects at once can raise a SystemError (seen in the coincidence trainer's reading threads
    # under load): every .npy member goes through clipstore.format's lock, also from many threads
    from concurrent.futures import ThreadPoolExecutor

    from audioscope.clipstore import format as fmt

    rng = np.random.default_rng(2)
    audio = rng.integers(-20_000, 20_000, 16_000 * 2, dtype=np.int16)
    frames = rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    shard = encode_media(audio, frames, StoreParams(), video_id="v")
    real_load, unlocked = np.load, []

    def load(*args, **kwargs):
        if not fmt._NPY_LOCK.locked():
            unlocked.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(fmt.np, "load", load)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: decode_media(shard), range(16)))
    assert not unlocked
    assert all(np.array_equal(a, audio) and np.array_equal(f, frames) for a, f, _ in got)
