"""The corpus plan: what each synthetic video looks like on the outside.

A plan entry (:class:`VideoSpec`) fixes everything about a video except its
content: kind (normal, no audio, silent audio, broken...), container and
codecs, size, frame rate, duration, sample rate, channels, and which sound
"mode" it has (on-screen only, off-screen only, both, quiet).

Why a cycle of 12 profiles
--------------------------
Tests and demos use small corpora, and every case (each kind, codec,
container, frame rate, resolution, sample rate, channel count) must show up
in them. Video ``i`` takes profile ``i % 12``; the first cycle uses the table
in order, later cycles a permutation drawn from the seed, so any corpus of
12 or more videos holds every case, and larger corpora still mix them.

Determinism
-----------
Everything random about video ``i`` comes from ``numpy.random.default_rng
([seed, i, stream])``: a video depends only on (seed, index, options), never
on how many videos are made or in which order, so videos are made in
parallel and ``--videos`` can grow on an existing corpus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

Kind = Literal[
    "normal", "no_audio", "silent_audio", "broken_truncated", "broken_empty", "broken_not_video"
]
Mode = Literal["both", "onscreen", "offscreen", "quiet"]

KINDS: tuple[str, ...] = (
    "normal", "no_audio", "silent_audio", "broken_truncated", "broken_empty", "broken_not_video"
)
BROKEN_KINDS: frozenset[str] = frozenset({"broken_truncated", "broken_empty", "broken_not_video"})

#: What ingest is expected to say about each kind (``ok`` = it gives clips;
#: a video shorter than 5 s is ``ok`` but gives no 5-second clip).
EXPECTED: dict[str, str] = {
    "normal": "ok",
    "silent_audio": "ok",
    "no_audio": "no_audio",
    "broken_truncated": "corrupt",
    "broken_empty": "corrupt",
    "broken_not_video": "unsupported_format",
}

CONTAINER_FORMAT: dict[str, str] = {"mp4": "mp4", "webm": "webm", "mkv": "matroska", "avi": "avi"}

#: Sizes used after the first cycle (the first cycle uses the table's).
SIZES: tuple[tuple[int, int], ...] = ((320, 240), (426, 240), (640, 360), (480, 640), (854, 480))

#: Frame rates: a fraction string, or "vfr" (a 30 fps grid with frames dropped).
FRAME_RATES: tuple[str, ...] = ("24", "25", "30000/1001", "30", "vfr")
VFR_BASE = "30"

#: Per-container codec choices used after the first cycle: (vcodec, acodec).
CODECS: dict[str, tuple[tuple[str, str], ...]] = {
    "mp4": (("libx264", "aac"), ("mpeg4", "aac"), ("libx264", "libmp3lame")),
    "webm": (("libvpx-vp9", "libopus"),),
    "mkv": (("libx264", "libopus"), ("libvpx-vp9", "libmp3lame"), ("libx264", "aac")),
    "avi": (("mpeg4", "libmp3lame"),),
}


@dataclass(frozen=True)
class Profile:
    """One row of the 12-slot table: the outside of a video."""

    kind: str
    container: str
    vcodec: str
    acodec: str
    size: tuple[int, int]
    rate: str
    sample_rate: int
    channels: int
    mode: str
    length: str  # "short" (< 5 s), "long" (40 s to max), "any"
    no_broken_kind: str = "normal"  # what a broken slot becomes with --no-broken


#: The first cycle. Every kind, container, codec, size, rate, sample rate and
#: channel count occurs in it at least once (and without the broken slots too).
PROFILES: tuple[Profile, ...] = (
    Profile("normal", "mp4", "libx264", "aac", (320, 240), "25", 48000, 1, "both", "any"),
    Profile("normal", "webm", "libvpx-vp9", "libopus", (640, 360), "30", 48000, 2, "onscreen", "any"),
    Profile("broken_truncated", "mp4", "libx264", "aac", (426, 240), "24", 44100, 2, "offscreen", "any"),
    Profile("normal", "avi", "mpeg4", "libmp3lame", (320, 240), "30000/1001", 44100, 1, "offscreen", "short"),
    Profile("no_audio", "mp4", "libx264", "aac", (480, 640), "30", 48000, 1, "quiet", "any"),
    Profile("normal", "mp4", "libx264", "aac", (426, 240), "vfr", 44100, 2, "both", "any"),
    Profile("silent_audio", "mkv", "libx264", "libopus", (320, 240), "25", 48000, 1, "quiet", "any"),
    Profile("broken_empty", "mkv", "libx264", "aac", (640, 360), "24", 48000, 2, "both", "any"),
    Profile("normal", "mp4", "mpeg4", "aac", (854, 480), "24", 44100, 2, "quiet", "any"),
    Profile("normal", "mkv", "libvpx-vp9", "libmp3lame", (640, 360), "30000/1001", 48000, 2, "offscreen", "long"),
    Profile("broken_not_video", "mp4", "libx264", "libmp3lame", (320, 240), "25", 44100, 1, "onscreen", "any"),
    Profile("normal", "webm", "libvpx-vp9", "libopus", (320, 240), "vfr", 48000, 1, "onscreen", "any"),
)

#: Within a video that has on-screen sound, roughly this share of its whole
#: seconds has an audible on-screen source (segments of 1-4 s with short
#: gaps, one or two sources). Used to turn --onscreen-rate into the share of
#: videos that have on-screen sources at all.
ONSCREEN_DUTY = 0.8
#: Share of videos (outside the first cycle) with off-screen sources.
OFFSCREEN_VIDEO_RATE = 0.6

# RNG stream numbers, so that adding a draw in one place never shifts another.
STREAM_PLAN = 0
STREAM_SCENE = 1
STREAM_AUDIO = 2
STREAM_CYCLE = 3  # (seed, cycle number, 3): the profile order of a later cycle
STREAM_VFR = 4


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator for one video and one purpose."""
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class PlanOptions:
    """The options of a corpus that decide its videos (not how they are made)."""

    seed: int
    broken: bool = True
    min_duration: float = 3.0
    max_duration: float = 90.0
    onscreen_rate: float = 0.45

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class VideoSpec:
    """Everything about one video except its content."""

    index: int
    seed: int
    stem: str
    kind: str
    container: str
    vcodec: str
    acodec: str | None  # None: no audio track
    width: int
    height: int
    rate: str  # "25", "30000/1001", ... or "vfr"
    duration: float  # seconds, a whole number of frames of the (base) rate
    n_frames: int  # frames on the base grid (before VFR drops)
    sample_rate: int | None
    channels: int | None
    mode: str

    @property
    def vfr(self) -> bool:
        return self.rate == "vfr"

    @property
    def base_rate(self) -> Fraction:
        """The frame grid: the CFR rate, or the grid VFR frames are dropped from."""
        return Fraction(VFR_BASE if self.vfr else self.rate)

    @property
    def filename(self) -> str:
        return f"{self.stem}.{self.container}"

    @property
    def expected(self) -> str:
        return EXPECTED[self.kind]

    @property
    def broken(self) -> bool:
        return self.kind in BROKEN_KINDS

    @property
    def fps_value(self) -> float | str:
        """fps as written in truth files: a number, or "vfr"."""
        return "vfr" if self.vfr else round(float(self.base_rate), 6)


def stem_for(seed: int, index: int) -> str:
    return f"syn{seed}-{index:04d}"


def _base_duration(rng: np.random.Generator, length: str) -> float:
    """A duration on the default 3-90 s scale, skewed toward short videos:
    ~10% under 5 s, ~75% 8-40 s (log-uniform), ~15% 40-90 s."""
    if length == "short":
        return float(rng.uniform(3.0, 4.9))
    if length == "long":
        return float(rng.uniform(40.0, 90.0))
    u = rng.random()
    if u < 0.10:
        return float(rng.uniform(3.0, 4.9))
    if u < 0.85:
        return float(np.exp(rng.uniform(np.log(8.0), np.log(40.0))))
    return float(rng.uniform(40.0, 90.0))


def _scale_duration(d: float, lo: float, hi: float) -> float:
    """Map the default 3-90 s scale onto [lo, hi], keeping the skew."""
    if (lo, hi) == (3.0, 90.0):
        return d
    return lo + (d - 3.0) * (hi - lo) / 87.0


def _mode(rng: np.random.Generator, onscreen_rate: float) -> str:
    p_on = min(1.0, max(0.0, onscreen_rate / ONSCREEN_DUTY))
    on = rng.random() < p_on
    off = rng.random() < OFFSCREEN_VIDEO_RATE
    return {(True, True): "both", (True, False): "onscreen", (False, True): "offscreen"}.get(
        (on, off), "quiet"
    )


def video_spec(index: int, options: PlanOptions) -> VideoSpec:
    """The plan entry of video ``index`` (depends only on index and options)."""
    rng = rng_for(options.seed, index, STREAM_PLAN)
    cycle, slot = divmod(index, len(PROFILES))
    if cycle == 0:
        p = PROFILES[slot]
    else:
        perm = rng_for(options.seed, cycle, STREAM_CYCLE).permutation(len(PROFILES))
        p = PROFILES[int(perm[slot])]
    kind = p.kind if (options.broken or p.kind not in BROKEN_KINDS) else p.no_broken_kind
    if cycle == 0:
        container, vcodec, acodec = p.container, p.vcodec, p.acodec
        size, rate, sr, ch, mode, length = p.size, p.rate, p.sample_rate, p.channels, p.mode, p.length
    else:
        container = p.container
        choices = CODECS[container]
        vcodec, acodec = choices[int(rng.integers(len(choices)))]
        size = SIZES[int(rng.integers(len(SIZES)))]
        rate = FRAME_RATES[int(rng.integers(len(FRAME_RATES)))]
        if container == "avi" and rate == "vfr":  # AVI has no timestamps: CFR only
            rate = "25"
        sr = 48000 if acodec == "libopus" else int(rng.choice([44100, 48000]))
        ch = int(rng.integers(1, 3))
        mode = _mode(rng, options.onscreen_rate) if kind == "normal" else "quiet"
        length = "any"
    if kind != "normal":
        mode = "quiet"
    elif cycle == 0 and p.kind in BROKEN_KINDS:
        mode = p.mode  # a broken slot turned normal by --no-broken keeps its mode
    d = _scale_duration(_base_duration(rng, length), options.min_duration, options.max_duration)
    if kind == "broken_truncated":  # its content is never read: keep it cheap to make
        d = min(d, max(options.min_duration, 8.0))
    base = Fraction(VFR_BASE if rate == "vfr" else rate)
    n_frames = max(2, int(round(d * base)))
    duration = float(n_frames / base)
    if duration < options.min_duration:
        n_frames += 1
        duration = float(n_frames / base)
    has_audio = kind != "no_audio"
    return VideoSpec(
        index=index,
        seed=options.seed,
        stem=stem_for(options.seed, index),
        kind=kind,
        container=container,
        vcodec=vcodec,
        acodec=acodec if has_audio else None,
        width=size[0],
        height=size[1],
        rate=rate,
        duration=duration,
        n_frames=n_frames,
        sample_rate=sr if has_audio else None,
        channels=ch if has_audio else None,
        mode=mode,
    )


def vfr_keep(n_frames: int, index: int, seed: int) -> np.ndarray:
    """Which frames of the 30 fps grid a VFR video keeps (bool per frame).

    Drops every 7th frame (n % 7 == 3) and every odd frame inside one stretch
    [a, b], so frame intervals vary irregularly (33, 67 ms). Written so that
    ffmpeg's ``select`` filter (:func:`vfr_select_expr`) keeps the same frames.
    Frame 0 is always kept (0 % 7 == 0 and 0 is even).
    """
    a, b = vfr_stretch(n_frames, index, seed)
    n = np.arange(n_frames)
    return ~((n % 7) == 3) & ~((n >= a) & (n <= b) & (n % 2 == 1))


def vfr_stretch(n_frames: int, index: int, seed: int) -> tuple[int, int]:
    rng = rng_for(seed, index, STREAM_VFR)
    a = int(rng.integers(0, max(1, n_frames // 2)))
    b = a + int(rng.integers(10, 60))
    return a, b


def vfr_select_expr(n_frames: int, index: int, seed: int) -> str:
    """The ``select`` filter expression equal to :func:`vfr_keep`."""
    a, b = vfr_stretch(n_frames, index, seed)
    return (
        f"select=not(eq(mod(n\\,7)\\,3))"
        f"*not(between(n\\,{a}\\,{b})*eq(mod(n\\,2)\\,1))"
    )
