"""End to end: a click and a flash at known times land where they should in
every clip of the store (through synth's sync video, the ingest CLI and the
reader API)."""

from __future__ import annotations

import numpy as np
import pytest

from audioscope.cli import main
from audioscope.clipstore import ClipStore
from audioscope.synth.sync import make_sync_video

SR = 16_000


def _click_onsets(audio: np.ndarray) -> list[int]:
    """Samples where the signal first rises above a quarter of full scale
    after at least 50 ms of quiet."""
    loud = np.abs(audio) > 0.25
    out = []
    for i in np.flatnonzero(loud):
        if not loud[max(0, i - 800) : i].any():
            out.append(int(i))
    return out


@pytest.mark.integration
@pytest.mark.parametrize(
    "fps,vcodec,acodec,ext,sample_rate",
    # Containers that signal their codec's priming. MP3 in AVI or MKV cannot
    # (LAME's ~25 ms encoder delay stays in the file): see audioscope.media.
    [(25, "libx264", "aac", "mp4", 48000), ("30000/1001", "libvpx-vp9", "libopus", "webm", 48000),
     (24, "mpeg4", "libmp3lame", "mp4", 44100)],
)
def test_click_sample_and_flash_frame_in_every_clip(tmp_path, fps, vcodec, acodec, ext, sample_rate):
    from fractions import Fraction

    rate = Fraction(fps) if isinstance(fps, str) else Fraction(fps)
    duration = 12
    # Flash frames that cover the centre of seconds 2 and 7 (frame k of a
    # clip is the picture shown at start + k + 0.5): the frame starting just
    # before k + 0.5, at a multiple of 1/fps.
    events = [float(int((k + 0.5) * rate) / rate) for k in (2, 7)]
    video = tmp_path / f"sync.{ext}"
    make_sync_video(str(video), duration=duration, events=events, fps=fps,
                    vcodec=vcodec, acodec=acodec, sample_rate=sample_rate)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{video}\n")
    store = tmp_path / "store"
    assert main(["ingest", str(lst), "--out", str(store), "--workers", "1"]) == 0

    cs = ClipStore.open(str(store))
    index = cs.index.sort_values("start")
    assert len(index) == int(np.floor(duration - 5)) + 1  # whole-second duration D: D - 4 clips
    assert index["start"].tolist() == [float(s) for s in range(duration - 4)]
    for row in index.itertuples():
        clip = cs.clip(row.clip_id)
        assert clip.audio.dtype == np.float32 and clip.audio.shape == (80_000,)
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == (5, 128, 128, 3)
        inside = [t for t in events if row.start <= t < row.start + 5]
        # The click: within 1 ms (16 samples) of where its time says.
        onsets = _click_onsets(clip.audio)
        assert len(onsets) == len(inside), (row.clip_id, onsets)
        for t, got in zip(inside, onsets):
            assert abs(got - round((t - row.start) * SR)) <= 16, (row.clip_id, t, got)
        # The flash: exactly in frame floor(t - start), all other frames dark.
        white = [k for k in range(5) if clip.frames[k].mean() > 100]
        expected = [int(np.floor(t - row.start)) for t in inside]
        assert white == expected, (row.clip_id, white, expected)
