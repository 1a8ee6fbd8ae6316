"""Ground truth against the decoded media: an on-screen source's visible
change and its sound's onset fall on the frame the truth names (within one
video frame of each other), and off-screen sources change nothing on screen.

How the picture is read: every object moves (bouncing) inside its own cell of
the frame, recorded in the truth file as ``cell``; cells never overlap. The
mean colour of a cell barely changes while its object only moves (the same
sprite over a smooth background), but jumps when the object switches between
idle (dim fill) and active (bright fill and a white ring). So the step in a
cell's mean RGB colour between consecutive frames is the visual-change signal.

How the sound is read: a short-time spectrum (16 ms windows every 1 ms) of
the decoded audio; the bins whose power rises across the onset are the new
source's band, and the onset is where that band's power first reaches a
quarter of its level after the onset.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from audioscope.synth.sync import CLICK_AMPLITUDE, CLICK_HZ, click_sample, flash_frame, make_sync_video
from tests.synth.conftest import manifest, truth
from tests.synth.media import Frames, audio, frame_times, frames, probe

pytestmark = pytest.mark.integration

#: Other switches (any source, any knock) this close to an onset would mix
#: into what is measured there, so such onsets are not checked.
QUIET_AROUND_S = 0.3
#: Visual window: a same-object switch or knock is never this close to another
#: (segments last >= 1 s, gaps >= 0.3 s, knocks keep 0.2 s away).
VISUAL_WINDOW_S = 0.15
#: A visible switch must be at least this many times the largest other step
#: of its cell inside the window. Measured: switches 2.4-21 (mean-colour
#: units, 0-255 scale), motion and coding (VP9 keyframes included) <= 0.5,
#: so the switch stands 5x or more above everything else; 3x leaves margin.
SPIKE_RATIO = 3.0
#: ... and at least this big in absolute terms (a switch of the smallest
#: sprite in a whole-frame cell is about 1; motion alone stays below 0.5).
MIN_SWITCH_STEP = 0.8
#: Off-screen onsets: no cell may step by more than this around them.
MAX_MOTION_STEP = 0.6
#: Audio analysis rate (all source bands lie below 6 kHz).
SR = 16000
STFT_N, STFT_HOP = 256, 16  # 16 ms Hann windows every 1 ms
#: A sound onset is measured only where its band rises by at least 10 dB
#: (otherwise a louder source in the same band masks it in the mix).
MIN_RISE = 10.0


def _edges(t: dict) -> list[tuple[str, str | None, float, str]]:
    """(source id, object id, time, "on"/"off") of every switch, plus knocks."""
    out: list[tuple[str, str | None, float, str]] = []
    for s in t["sources"]:
        for a, b in s["segments"]:
            out += [(s["id"], s["object"], a, "on"), (s["id"], s["object"], b, "off")]
    out += [("knock", e["object"], e["time"], "knock") for e in t["events"]]
    return out


def _isolated(t: dict, source_id: str, time: float, kind: str, object_id: str | None = None,
              within: float = QUIET_AROUND_S) -> bool:
    """True when no other switch or knock lies within ``within`` seconds of
    ``time`` and the time is far enough from both ends of the video to have
    context. With ``object_id``, only that object's switches and knocks count
    (the picture check looks at that object's cell alone)."""
    if time < within or time > t["duration"] - within:
        return False
    return not any(
        abs(x - time) < within and not (sid == source_id and x == time and k == kind)
        for sid, obj, x, k in _edges(t)
        if object_id is None or obj == object_id
    )


def _steps(f: Frames, oid: str) -> np.ndarray:
    """steps[i]: change of an object's cell's mean colour from frame i-1 into
    frame i (steps[0] = 0)."""
    m = f.means[oid]
    return np.concatenate([[0.0], np.linalg.norm(np.diff(m, axis=0), axis=1)])


def _frame_at(f: Frames, time: float) -> int:
    """The first decoded frame shown at or after ``time`` (container timestamps
    are rounded to 1 ms in Matroska/WebM, hence the tolerance)."""
    return int(np.searchsorted(f.times, time - 0.002))


def _band_envelope(x: np.ndarray, on: float) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(window centre times, band power, power before, power after) around
    ``on``; None when the band does not rise by MIN_RISE."""
    lo = max(0, int((on - 0.35) * SR))
    seg = x[lo : int((on + 0.35) * SR)]
    n_win = 1 + (len(seg) - STFT_N) // STFT_HOP
    idx = np.arange(STFT_N)[None, :] + STFT_HOP * np.arange(n_win)[:, None]
    power = np.abs(np.fft.rfft(seg[idx] * np.hanning(STFT_N), axis=1)) ** 2
    centres = (lo + STFT_HOP * np.arange(n_win) + STFT_N / 2) / SR
    before = power[(centres > on - 0.25) & (centres < on - 0.02)].mean(axis=0)
    after = power[(centres > on + 0.02) & (centres < on + 0.25)].mean(axis=0)
    band = after > 8 * (before + 1e-12)  # bins the new source brings (>= 9 dB up)
    if not band.any():
        return None
    env = power[:, band].sum(axis=1)
    b, a = float(before[band].sum()), float(after[band].sum())
    if a < MIN_RISE * b:
        return None
    return centres, env, b, a


def _sound_onset(x: np.ndarray, on: float, frame_s: float) -> float | None:
    """Where the new source's band power first reaches a quarter (-6 dB) of
    its level after the onset, searched within two frames of ``on``. A
    quarter rather than the dB midpoint: lossy codecs smear a little energy
    ahead of a transient (AAC and MP3 pre-echo, up to ~25 ms here, 15-20 dB
    down), which a lower threshold would take for the onset."""
    got = _band_envelope(x, on)
    if got is None:
        return None
    centres, env, b, a = got
    near = np.flatnonzero((centres > on - 2 * frame_s) & (centres < on + 2 * frame_s))
    above = near[env[near] > a / 4]
    assert len(above), f"the sound never rises near {on}"
    return float(centres[above[0]])


def _decoded(root: Path, v: dict, t: dict) -> tuple[Frames, np.ndarray]:
    """The video's frames (reduced to its objects' cells) and its audio
    (mono, SR Hz), decoded once per test session and video."""
    key = (str(root), v["stem"])
    if key not in _DECODED:
        cells = {o["id"]: o["cell"] for o in t["objects"]}
        f = frames(root / v["file"], v["width"], v["height"], cells)
        _DECODED[key] = (f, audio(root / v["file"], SR)[:, 0])
    return _DECODED[key]


_DECODED: dict[tuple[str, str], tuple[Frames, np.ndarray]] = {}


def _normal_videos(root: Path) -> list[dict]:
    return [v for v in manifest(root)["videos"] if v["kind"] == "normal"]


def _seen(f: Frames, steps: np.ndarray, time: float, what: tuple) -> int:
    """Assert that the cell visibly switches into the frame shown at ``time``
    and nowhere else near it; returns that frame's index."""
    k = _frame_at(f, time)
    # The truth puts every switch on a kept frame's timestamp.
    assert k < len(f.times) and abs(f.times[k] - time) < 0.002, (*what, "no frame at the switch")
    window = np.flatnonzero(np.abs(f.times - time) <= VISUAL_WINDOW_S)
    others = max(float(steps[i]) for i in window if i != k)
    detail = (*what, "step", round(float(steps[k]), 3), "largest other", round(others, 3))
    assert steps[k] >= MIN_SWITCH_STEP, detail
    assert steps[k] >= SPIKE_RATIO * others, detail
    return k


def _frame_s(v: dict) -> float:
    """One frame: 1/fps, or for VFR the 30 fps grid its frames are kept from."""
    return 1 / 30 if v["vfr"] else 1 / float(v["fps"])


def _visible_switches(t: dict, edge: str) -> list[tuple[dict, float]]:
    """(source, time) of every on-screen source's onsets (``edge="on"``) or
    offsets (``"off"``) with no other switch of its object near enough to blur
    what the frames show."""
    i = 0 if edge == "on" else 1
    return [
        (s, seg[i]) for s in t["sources"] if s["screen"] == "on" for seg in s["segments"]
        if _isolated(t, s["id"], seg[i], edge, s["object"], VISUAL_WINDOW_S + 0.01)
    ]


def test_onscreen_onsets_are_seen_and_heard_on_the_truth_frame(corpus: Path) -> None:
    seen = heard_n = 0
    heard_stems: set[str] = set()
    for v in _normal_videos(corpus):
        t = truth(corpus, v["stem"])
        onsets = _visible_switches(t, "on")
        if not onsets:
            continue
        f, x = _decoded(corpus, v, t)
        for src, on in onsets:
            what = (v["stem"], src["id"], on)
            k = _seen(f, _steps(f, src["object"]), on, what)
            seen += 1
            if not _isolated(t, src["id"], on, "on"):
                continue  # another sound starts or stops near it: not measurable alone
            heard = _sound_onset(x, on, _frame_s(v))
            if heard is None:
                continue  # masked in the mix by a louder source in its band
            # Seen on frame k, heard within one frame of it.
            assert abs(heard - f.times[k]) <= _frame_s(v), (*what, "heard at", heard)
            heard_n += 1
            heard_stems.add(v["stem"])
    # The seed is chosen so that there is plenty to check; these floors make
    # sure a change in the generator cannot silently leave nothing checked.
    assert seen >= 8, seen
    assert heard_n >= 4, heard_n
    vfr = {v["stem"] for v in _normal_videos(corpus) if v["vfr"]}
    assert heard_stems & vfr, "no VFR video was checked"


def test_onscreen_offsets_are_seen_on_the_truth_frame(corpus: Path) -> None:
    checked = 0
    for v in _normal_videos(corpus):
        t = truth(corpus, v["stem"])
        offsets = _visible_switches(t, "off")
        if not offsets:
            continue
        f, _ = _decoded(corpus, v, t)
        for src, off in offsets:
            _seen(f, _steps(f, src["object"]), off, (v["stem"], src["id"], off))
            checked += 1
    assert checked >= 6, checked


def test_offscreen_onsets_change_nothing_on_screen(corpus: Path) -> None:
    """Off-screen onsets: no cell changes beyond ordinary motion, while the
    sound itself is heard at the onset (MP3 in AVI/Matroska keeps its ~24 ms
    encoder delay, still within a frame)."""
    seen = heard_n = 0
    for v in _normal_videos(corpus):
        t = truth(corpus, v["stem"])
        onsets = [(s, a) for s in t["sources"] if s["screen"] == "off" for a, _ in s["segments"]]
        if not onsets:
            continue
        f, x = _decoded(corpus, v, t)
        steps = {o["id"]: _steps(f, o["id"]) for o in t["objects"]}
        for src, on in onsets:
            near = np.flatnonzero(np.abs(f.times - on) <= 1.5 * _frame_s(v))
            for oid, s in steps.items():
                if not _isolated(t, src["id"], on, "on", oid, 2 * _frame_s(v)):
                    continue  # this object switches itself right here
                assert float(s[near].max()) <= MAX_MOTION_STEP, (v["stem"], src["id"], on, oid, s[near])
                seen += 1
            if _isolated(t, src["id"], on, "on"):
                heard = _sound_onset(x, on, _frame_s(v))
                if heard is not None:
                    assert abs(heard - on) <= _frame_s(v), (v["stem"], src["id"], on, heard)
                    heard_n += 1
    assert seen >= 8, seen
    assert heard_n >= 2, heard_n


# --------------------------------------------------------------------------- #
# the sync video


def _click_starts(x: np.ndarray, sample_rate: int) -> list[int]:
    """First sample above half the click's amplitude, for each click (clicks
    lie >= 0.2 s apart; everything else is digital silence)."""
    loud = np.flatnonzero(np.abs(x) > CLICK_AMPLITUDE / 2)
    starts = [int(i) for k, i in enumerate(loud) if k == 0 or i - loud[k - 1] > sample_rate // 10]
    # The click's first period peaks a quarter period (0.125 ms) after it starts.
    return [s - int(round(sample_rate / CLICK_HZ / 4)) for s in starts]


@pytest.mark.parametrize(
    ("name", "fps", "vcodec", "acodec", "sample_rate", "channels"),
    [
        ("sync.mp4", "25", "libx264", "aac", 48000, 2),
        ("sync.mkv", "30000/1001", "libx264", "libopus", 48000, 1),
        ("sync.webm", "30", "libvpx-vp9", "libopus", 48000, 2),
        ("sync.mp4", "24", "mpeg4", "aac", 44100, 1),
    ],
)
def test_sync_video_flashes_and_clicks_where_the_docstring_says(
    tmp_path: Path, name: str, fps: str, vcodec: str, acodec: str, sample_rate: int, channels: int
) -> None:
    rate = Fraction(fps)
    # Two times on the frame grid and one between frames (flashes the frame covering it).
    events = [float(Fraction(10) / rate), float(Fraction(37) / rate), 2.01]
    path = tmp_path / name
    make_sync_video(str(path), duration=3.0, events=events, fps=fps, size=(64, 48),
                    vcodec=vcodec, acodec=acodec, sample_rate=sample_rate, channels=channels)
    info = probe(path)
    assert info is not None
    assert [s["codec_type"] for s in info["streams"]] == ["video", "audio"]

    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True,
    ).stdout
    brightness = np.frombuffer(raw, np.uint8).reshape(-1, 48 * 64).mean(axis=1)
    assert len(brightness) == round(3.0 * rate)
    want = sorted(flash_frame(t, fps) for t in events)
    assert want == [10, 37, int(2.01 * float(rate))]
    # White frames are ~255 after coding, black ones ~0: 128 splits them.
    assert np.flatnonzero(brightness > 128).tolist() == want
    assert brightness[want].min() > 240 and np.delete(brightness, want).max() < 15
    times = frame_times(path)
    for k in want[:2]:  # a grid event's flash frame starts at the event time
        assert abs(times[k] - times[0] - events[want.index(k)]) < 0.0015

    x = audio(path, channels=channels)
    # AAC pads the end to a whole 1024-sample frame.
    assert 0 <= len(x) - round(3.0 * sample_rate) < 2048
    for ch in range(channels):
        got = _click_starts(x[:, ch], sample_rate)
        expected = [click_sample(t, sample_rate) for t in events]
        # Lossy codecs smear the click by a few samples (measured <= 2): allow 0.5 ms.
        assert len(got) == 3, (got, expected)
        assert max(abs(g - e) for g, e in zip(got, expected)) <= sample_rate // 2000, (got, expected)


def test_sync_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "mute.mkv"
    make_sync_video(str(path), duration=1.0, events=[0.2], fps=25, acodec=None, size=(64, 48))
    info = probe(path)
    assert info is not None and [s["codec_type"] for s in info["streams"]] == ["video"]
    with pytest.raises(ValueError, match="outside"):
        make_sync_video(str(tmp_path / "bad.mp4"), duration=1.0, events=[1.0])
    with pytest.raises(ValueError, match="container"):
        make_sync_video(str(tmp_path / "bad.mov"), duration=1.0, events=[0.5])
