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
