"""audioscope.clipstore.format: windows, spans, params, media shards."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioscope.clipstore.format import (
    Layout,
    StoreError,
    StoreParams,
    clip_id,
    decode_media,
    encode_media,
    fit_spans,
    init_store,
    load_params,
    load_store_json,
    naive_bytes_per_clip,
    sliding_windows,
)


@given(st.integers(0, 400), st.integers(1, 10), st.integers(1, 5))
def test_sliding_windows_cover_the_video(duration, clip, hop):
    windows = sliding_windows(duration, clip, hop)
    expected = (duration - clip) // hop + 1 if duration >= clip else 0
    assert len(windows) == expected
    for k, (s, e) in enumerate(windows):
        assert (s, e) == (k * hop, k * hop + clip) and e <= duration


def test_whole_second_duration_gives_d_minus_4_clips():
    assert len(sliding_windows(12)) == 12 - 5 + 1
    assert sliding_windows(4) == []
    assert sliding_windows(5) == [(0, 5)]


def test_clip_ids_sort_with_start():
    ids = [clip_id("vid", s) for s in (0, 1, 10, 100, 1000)]
    assert ids == sorted(ids)
    assert clip_id("abc", 12) == "abc-0012000"


def test_fit_spans_reports_what_does_not_fit():
    ok, bad = fit_spans(((0.0, 5.0), (3.0, 8.0), (6.0, 11.0), (1.5, 6.5), (2.0, 4.0), (3.0, 8.0)), 10)
    assert ok == [(0, 5), (3, 8)]
    kinds = sorted((p.start, p.kind) for p in bad)
    assert kinds == [(1.5, "bad_span"), (2.0, "bad_span"), (6.0, "span_out_of_range")]
    assert all(p.message for p in bad)


def test_params_are_fixed_at_creation(tmp_path):
    layout = Layout(str(tmp_path / "store"))
    assert load_params(layout) is None
    init_store(layout, StoreParams())
    assert init_store(layout, StoreParams()) == StoreParams()
    with pytest.raises(StoreError, match="aspect: store has 'pad', asked for 'crop'"):
        init_store(layout, StoreParams(aspect="crop"))
    with pytest.raises(ValueError):
        StoreParams(frame_codec="gif")


def test_a_store_gets_an_id_at_creation_that_stays(tmp_path):
    import json

    layout = Layout(str(tmp_path / "store"))
    init_store(layout, StoreParams())
    first = load_store_json(layout)[1]
    assert first and len(first) == 32
    init_store(layout, StoreParams())
    assert load_store_json(layout)[1] == first
    assert load_params(layout) == StoreParams()
    other = Layout(str(tmp_path / "other"))
    init_store(other, StoreParams())
    assert load_store_json(other)[1] != first
    # a store made before stores had ids gets one when ingest next runs; its parameters stay
    data = json.loads((tmp_path / "store" / "store.json").read_text())
    del data["store_id"]
    (tmp_path / "store" / "store.json").write_text(json.dumps(data))
    assert load_store_json(layout)[1] is None and load_params(layout) == StoreParams()
    assert init_store(layout, StoreParams()) == StoreParams()
    given = load_store_json(layout)[1]
    assert given and given != first and load_params(layout) == StoreParams()
    init_store(layout, StoreParams())
    assert load_store_json(layout)[1] == given
    (tmp_path / "store" / "store.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="not a JSON object"):
        load_params(layout)


def _frames(n: int, seed: int = 0) -> np.ndarray:
    """Smooth synthetic pictures (gradients + shapes), like downscaled video."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:128, 0:128]
    out = np.zeros((n, 128, 128, 3), np.uint8)
    for i in range(n):
        base = (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2) + i * 7) % 256
        out[i, ..., 0] = base
        out[i, ..., 1] = (base * 0.5 + 60) % 256
        out[i, ..., 2] = ((x - 64) ** 2 + (y - 64) ** 2 < (20 + i) ** 2) * 200
    return out


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_media_shard_round_trip(codec):
    params = StoreParams(frame_codec=codec)
    rng = np.random.default_rng(1)
    audio = (rng.normal(0, 3000, 16000 * 7)).astype(np.int16)
    frames = _frames(7)
    data = encode_media(audio, frames, params, video_id="v1")
    a, f, meta = decode_media(data)
    assert np.array_equal(a, audio) and a.dtype == np.int16
    assert f.shape == frames.shape and f.dtype == np.uint8
    if codec == "png":
        assert np.array_equal(f, frames)
    else:
        assert np.abs(f.astype(int) - frames).mean() < 3
    assert meta["n_seconds"] == 7 and meta["frame_codec"] == codec
    # readable with numpy alone, without pickle
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert np.array_equal(z["audio"], audio)
        assert z["frame_offsets"][-1] == len(z["frame_data"])
    # deterministic bytes (fixed zip timestamps)
    assert encode_media(audio, frames, params, video_id="v1") == data
    assert set(zipfile.ZipFile(io.BytesIO(data)).namelist()) == {
        "meta.json", "audio.npy", "frame_offsets.npy", "frame_data.npy"
    }


def test_naive_size():
    assert naive_bytes_per_clip(StoreParams()) == 80000 * 4 + 5 * 128 * 128 * 3
