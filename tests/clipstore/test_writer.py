"""The per-video unit of work without Beam: decode_video, store_video and ingest_video on real files."""

from __future__ import annotations

import numpy as np

from audioscope import storage
from audioscope.clipstore.format import Layout, StoreParams, decode_media, init_store
from audioscope.clipstore.writer import (
    STATUS_FAILED,
    DecodedVideo,
    IngestSettings,
    decode_video,
    ingest_video,
    read_status,
    store_video,
)
from audioscope.sources.lists import VideoRequest
from tests.pipelines.videos import av_video, video_only


def _request(video_id: str, path) -> VideoRequest:
    return VideoRequest(
        video_id=video_id, uri=str(path), origin="test", spans=None, split=None, licence_name=None, licence_url=None
    )


def test_the_two_halves_write_nothing_until_the_second(tmp_path):
    store = tmp_path / "store"
    init_store(Layout(str(store)), StoreParams())
    settings = IngestSettings(store=str(store), params=StoreParams())
    video = av_video(tmp_path / "v.mp4", duration=7)

    first = decode_video(_request("v", video), settings, str(tmp_path))
    assert isinstance(first, DecodedVideo) and first.decoded.frames.shape[1:] == (128, 128, 3)
    assert read_status(Layout(str(store)), "v") is None  # decoded, nothing written yet
    record = store_video(first, settings)
    assert record.n_clips == 3 and read_status(Layout(str(store)), "v") == record

    # finished: the same request is skipped, nothing is decoded again
    assert ingest_video(_request("v", video), settings, str(tmp_path)) == (record, True)


def test_a_failure_is_finished_by_the_first_half(tmp_path):
    store = tmp_path / "store"
    init_store(Layout(str(store)), StoreParams())
    settings = IngestSettings(store=str(store), params=StoreParams())
    record, skipped = decode_video(_request("silent", video_only(tmp_path / "silent.mp4")), settings, str(tmp_path))
    assert not skipped and record.status == STATUS_FAILED and record.kind == "no_audio"
    assert read_status(Layout(str(store)), "silent") == record


def test_ingest_video_gives_the_clips_the_reader_returns(tmp_path):
    store = tmp_path / "store"
    init_store(Layout(str(store)), StoreParams())
    settings = IngestSettings(store=str(store), params=StoreParams())
    record, skipped = ingest_video(_request("w", av_video(tmp_path / "w.mp4", duration=6)), settings, str(tmp_path))
    assert not skipped and [tuple(c) for c in record.clips] == [(0.0, 5.0), (1.0, 6.0)]
    audio, frames, meta = decode_media(storage.read_bytes(Layout(str(store)).media("w")))
    assert audio.dtype == np.int16 and frames.shape == (6, 128, 128, 3) and meta["video_id"] == "w"


def test_a_video_too_short_for_a_clip_is_finished_from_its_probe_without_decoding(tmp_path, monkeypatch):
    """A container that says 4.4 s cannot give 5 whole seconds of frames (second k's frame is the one
    shown at k + 0.5 s): no ffmpeg run, a finished record with no clips that says why. Just past the
    bound (5.2 s: frames at 0.5 ... 4.5 s) the video is decoded and gives its clip, as is a short
    video without sound refused as before."""
    import audioscope.media

    store = tmp_path / "store"
    init_store(Layout(str(store)), StoreParams())
    settings = IngestSettings(store=str(store), params=StoreParams())
    short, clip, mute = (av_video(tmp_path / "short.mp4", duration=4.4), av_video(tmp_path / "clip.mp4", duration=5.2),
                         video_only(tmp_path / "mute.mp4", duration=3))  # fmt: skip
    decoded: list[str] = []
    real_decode = audioscope.media.decode
    monkeypatch.setattr(audioscope.media, "decode", lambda path, **kw: decoded.append(path) or real_decode(path, **kw))

    record, skipped = ingest_video(_request("short", short), settings, str(tmp_path))
    assert not skipped and decoded == [] and record.status == "ok" and record.n_clips == 0
    assert record.usable_seconds == 4 and 4.3 < record.duration < 4.5
    assert "not decoded" in record.message and "a clip needs 5 s" in record.message
    assert read_status(Layout(str(store)), "short") == record and not storage.exists(Layout(str(store)).media("short"))

    record, _ = ingest_video(_request("clip", clip), settings, str(tmp_path))
    assert decoded == [str(clip)] and [tuple(c) for c in record.clips] == [(0.0, 5.0)]

    record, _ = ingest_video(_request("mute", mute), settings, str(tmp_path))
    assert record.status == STATUS_FAILED and record.kind == "no_audio" and len(decoded) == 1
