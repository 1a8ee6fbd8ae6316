"""IngestVideo keeps two videos in flight: the next one decodes while the
previous one is written. Unit tests with fake halves (the real ones are
covered end to end in test_ingest_pipeline.py)."""

from __future__ import annotations

import threading

import pytest
from apache_beam.utils.windowed_value import WindowedValue

from audioscope.clipstore import writer
from audioscope.clipstore.writer import STATUS_FAILED, DecodedVideo, StatusRecord
from audioscope.pipelines import ingest_beam as ingest
from audioscope.sources.lists import VideoRequest


def _line(video_id: str) -> str:
    return VideoRequest(
        video_id=video_id, uri=f"/videos/{video_id}.mp4", origin="list.csv:1",
        spans=None, split=None, licence_name=None, licence_url=None,
    ).to_json()


class Recorder:
    """Fake halves: decode_video returns a DecodedVideo (or a failure record for
    ids starting with "bad"); store_video of a video waits until the decode of
    the next video of its bundle has started, which only happens when the two
    overlap."""

    def __init__(self, bundles: list[list[str]]) -> None:
        self.next = {a: b for bundle in bundles for a, b in zip(bundle, bundle[1:])}
        self.events: list[str] = []
        self.started = {v: threading.Event() for bundle in bundles for v in bundle}
        self.lock = threading.Lock()

    def decode(self, request, settings, workdir):
        with self.lock:
            self.events.append(f"decode {request.video_id}")
        self.started[request.video_id].set()
        if request.video_id.startswith("bad"):
            failed = StatusRecord(video_id=request.video_id, source=request.uri, status=STATUS_FAILED, kind="corrupt")
            return failed, False
        base = StatusRecord(video_id=request.video_id, source=request.uri)
        return DecodedVideo(request=request, base=base, info=None, decoded=None, t0=0.0)

    def store(self, video, settings):
        after = self.next.get(video.request.video_id)
        if after is not None:
            assert self.started[after].wait(10), "the next video was not decoding meanwhile"
        with self.lock:
            self.events.append(f"store {video.request.video_id}")
        return video.base


@pytest.fixture
def recorder(monkeypatch):
    def make(*bundles):
        rec = Recorder(list(bundles))
        monkeypatch.setattr(ingest, "decode_video", rec.decode)  # what the DoFn submits
        monkeypatch.setattr(writer, "store_video", rec.store)  # what finish_video calls
        return rec
    return make


def _run_bundle(fn: ingest.IngestVideo, ids: list[str]) -> list[str]:
    out: list[str] = []
    fn.start_bundle()
    for v in ids:
        out.extend(fn.process(_line(v)))
    tail = list(fn.finish_bundle())
    assert all(isinstance(w, WindowedValue) for w in tail)
    return out + [w.value for w in tail]


def test_next_video_decodes_while_the_previous_is_stored(recorder):
    ids = ["v1", "v2", "bad3", "v4"]
    rec = recorder(ids, ["v5"])
    fn = ingest.IngestVideo(settings=None)
    fn.setup()
    try:
        assert _run_bundle(fn, ids) == ids  # every video finished once, in order
        # a second bundle on the same instance starts clean
        assert _run_bundle(fn, ["v5"]) == ["v5"]
    finally:
        fn.teardown()
    stores = [e for e in rec.events if e.startswith("store")]
    assert stores == ["store v1", "store v2", "store v4", "store v5"]  # the failed one was finished by its decode
    assert rec.events.index("decode v2") < rec.events.index("store v1")


def test_a_bundle_with_one_video_is_finished_in_finish_bundle(recorder):
    recorder(["only"])
    fn = ingest.IngestVideo(settings=None)
    fn.setup()
    try:
        fn.start_bundle()
        assert list(fn.process(_line("only"))) == []
        assert [w.value for w in fn.finish_bundle()] == ["only"]
    finally:
        fn.teardown()
