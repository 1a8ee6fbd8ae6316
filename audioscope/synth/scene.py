"""The content of one synthetic video: moving objects, sounds, ground truth.

Visual classes and their sounds (fixed; this is the mapping the truth files
name):

============  ===================  ==========================================
shape         visual_class         sound_class (on-screen)
============  ===================  ==========================================
circle        ``red_circle``       ``tone``: a harmonic tone, 220-880 Hz
square        ``blue_square``      ``chirp``: repeated rising sweeps
triangle      ``green_triangle``   ``noise_burst``: band-pass noise
face          ``yellow_face``      ``speech``: formant-filtered buzz and
                                   noise, modulated at a syllable rate
============  ===================  ==========================================

Off-screen sources use the same four sound classes plus ``hum`` (a low
harmonic drone); nothing on screen changes with them.

How a source looks
------------------
An on-screen source is drawn *active* (bright fill and a white glow ring;
a face opens its mouth) for exactly the frames during which its sound is on,
and *idle* (dim fill, no ring, mouth closed) otherwise. Segments are 1-4 s
long so the one-frame-per-second view of the coincidence model sees them.
Every onset and offset is a frame timestamp: the schedule is drawn in
continuous time, then each switch is moved to the first kept video frame
whose timestamp is >= the drawn time, and the audio switches at sample
``round(frame_time * sample_rate)``. Picture and sound therefore agree to
within one sample by construction (a 2 ms fade-in starts at the onset and a
5 ms fade-out ends at the offset).

Transient events (``knock``): only in videos with on-screen sources; a
visible object is drawn white for exactly one frame and a 40 ms knock starts
at that frame's timestamp. Knocks are listed in ``events`` and are too short
to count as audible seconds.

Distractors are objects that never switch and make no sound. Objects move
(bouncing) each inside its own cell of the frame, so no object ever hides
another.

Levels: background pink noise at about -50 dBFS RMS; on-screen sources about
-18 dBFS and off-screen about -24 dBFS while on (so on-screen sounds stand
>= 25 dB above the noise floor and ~6 dB above off-screen sources on
average); the mix is scaled down if its peak exceeds 0.95.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import numpy as np

from audioscope.synth.plan import STREAM_AUDIO, STREAM_SCENE, VideoSpec, rng_for, vfr_keep

#: A source counts as audible in second s when it is on for at least this
#: many seconds of [s, s + 1).
AUDIBLE_MIN_S = 0.25

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "face")
VISUAL_CLASS: dict[str, str] = {
    "circle": "red_circle",
    "square": "blue_square",
    "triangle": "green_triangle",
    "face": "yellow_face",
}
SOUND_CLASS: dict[str, str] = {
    "circle": "tone",
    "square": "chirp",
    "triangle": "noise_burst",
    "face": "speech",
}
CLASS_COLOUR: dict[str, tuple[int, int, int]] = {
    "circle": (235, 40, 40),
    "square": (50, 90, 240),
    "triangle": (40, 210, 70),
    "face": (245, 205, 60),
}
OFFSCREEN_CLASSES: tuple[str, ...] = ("tone", "chirp", "noise_burst", "speech", "hum")

ONSET_FADE_S = 0.002
OFFSET_FADE_S = 0.005
KNOCK_S = 0.04


@dataclass(frozen=True)
class MovingObject:
    """A shape bouncing inside its cell. Positions are pixel centres."""

    id: str
    shape: str
    role: str  # "source" | "distractor"
    radius: float
    idle_colour: tuple[int, int, int]
    active_colour: tuple[int, int, int]
    cell: tuple[int, int, int, int]  # x0, y0, x1, y1
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per second

    @property
    def half_extent(self) -> int:
        """Half the side of the sprite (the glow ring reaches 1.3 r)."""
        return int(math.ceil(self.radius * 1.3)) + 1

    def centres(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer sprite centres at ``times`` (reflecting off the cell walls)."""
        h = self.half_extent
        x0, y0, x1, y1 = self.cell
        out = []
        for p0, v, lo, hi in (
            (self.start[0], self.velocity[0], x0 + h, x1 - h - 1),
            (self.start[1], self.velocity[1], y0 + h, y1 - h - 1),
        ):
            span = max(hi - lo, 1e-6)
            u = np.mod(p0 - lo + v * times, 2 * span)
            out.append(np.rint(lo + np.where(u > span, 2 * span - u, u)).astype(np.int64))
        return out[0], out[1]


@dataclass(frozen=True)
class Source:
    """A sound source with its on/off schedule (seconds and, on-screen, frames)."""

    id: str
    screen: str  # "on" | "off"
    sound_class: str
    visual_class: str | None
    object_id: str | None
    segments: tuple[tuple[float, float], ...]
    frame_segments: tuple[tuple[int, int], ...]  # on-screen: base-grid frame [on, off)
    level_dbfs: float
    pan: float
    params: dict[str, float] = field(default_factory=dict)

    def truth(self) -> dict[str, object]:
        return {
            "id": self.id,
            "screen": self.screen,
            "sound_class": self.sound_class,
            "visual_class": self.visual_class,
            "object": self.object_id,
            "segments": [[round(a, 6), round(b, 6)] for a, b in self.segments],
            "level_dbfs": round(self.level_dbfs, 2),
        }


@dataclass(frozen=True)
class Event:
    """A one-frame flash of an object with a knock starting at its timestamp."""

    time: float
    frame: int
    kind: str
    object_id: str
    params: dict[str, float] = field(default_factory=dict)

    def truth(self) -> dict[str, object]:
        return {"time": round(self.time, 6), "kind": self.kind, "object": self.object_id}


@dataclass
class Scene:
    """Everything needed to render the frames and the audio of one video."""

    spec: VideoSpec
    keep: np.ndarray  # bool per base-grid frame (all True for CFR)
    background: np.ndarray  # uint8 [H, W, 3]
    background_kind: str
    objects: list[MovingObject]
    sources: list[Source]
    events: list[Event]

    # ------------------------------------------------------------------ time
    @property
    def base_rate(self) -> Fraction:
        return self.spec.base_rate

    def frame_time(self, n: int) -> float:
        return float(Fraction(n) / self.base_rate)

    @property
    def kept_frames(self) -> np.ndarray:
        return np.flatnonzero(self.keep)

    def kept_times(self) -> np.ndarray:
        return self.kept_frames / float(self.base_rate)

    # ----------------------------------------------------------------- truth
    def seconds(self) -> list[dict[str, object]]:
        """For every whole second s (s + 1 <= duration), the ids of sources on
        for at least :data:`AUDIBLE_MIN_S` of [s, s + 1)."""
        rows = []
        for s in range(int(math.floor(self.spec.duration + 1e-9))):
            row: dict[str, object] = {"second": s, "onscreen": [], "offscreen": []}
            for src in self.sources:
                on = sum(max(0.0, min(b, s + 1) - max(a, s)) for a, b in src.segments)
                if on >= AUDIBLE_MIN_S - 1e-9:
                    row["onscreen" if src.screen == "on" else "offscreen"].append(src.id)  # type: ignore[union-attr]
            rows.append(row)
        return rows

    def truth(self) -> dict[str, object]:
        spec = self.spec
        return {
            "video_id": spec.stem,
            "file": f"videos/{spec.filename}",
            "kind": spec.kind,
            "mode": spec.mode,
            "duration": round(spec.duration, 6),
            "fps": spec.fps_value,
            "frame_grid": str(spec.base_rate),
            "n_frames": int(self.keep.sum()),
            "width": spec.width,
            "height": spec.height,
            "sample_rate": spec.sample_rate,
            "channels": spec.channels,
            "audible_min_s": AUDIBLE_MIN_S,
            "background": self.background_kind,
            "objects": [
                {
                    "id": o.id,
                    "shape": o.shape,
                    "visual_class": VISUAL_CLASS[o.shape] if o.role == "source" else None,
                    "role": o.role,
                    "radius": round(o.radius, 2),
                    "cell": list(o.cell),
                }
                for o in self.objects
            ],
            "sources": [s.truth() for s in self.sources],
            "events": [e.truth() for e in self.events],
            "seconds": self.seconds(),
        }

    # ------------------------------------------------------------ rendering
    def object_states(self) -> dict[str, np.ndarray]:
        """Per object, per base-grid frame: 0 idle, 1 active, 2 flash."""
        n = self.spec.n_frames
        states = {o.id: np.zeros(n, dtype=np.int8) for o in self.objects}
        for src in self.sources:
            if src.object_id is None:
                continue
            for a, b in src.frame_segments:
                states[src.object_id][a:b] = 1
        for ev in self.events:
            states[ev.object_id][ev.frame] = 2
        return states

    def frames(self) -> Iterator[np.ndarray]:
        """Every base-grid frame as uint8 [H, W, 3] (the same buffer is reused:
        consume each before asking for the next). Frames a VFR video drops are
        not drawn (the previous buffer is yielded again)."""
        spec = self.spec
        times = np.arange(spec.n_frames) / float(self.base_rate)
        sprites = {o.id: [_sprite(o, s) for s in range(3)] for o in self.objects}
        centres = {o.id: o.centres(times) for o in self.objects}
        states = self.object_states()
        buf = np.empty_like(self.background)
        for n in range(spec.n_frames):
            if self.keep[n]:
                np.copyto(buf, self.background)
                for o in self.objects:
                    mask, colours = sprites[o.id][int(states[o.id][n])]
                    h = o.half_extent
                    cx, cy = int(centres[o.id][0][n]), int(centres[o.id][1][n])
                    region = buf[cy - h : cy + h + 1, cx - h : cx + h + 1]
                    np.copyto(region, colours, where=mask[..., None])
            yield buf

    def audio(self) -> np.ndarray:
        """The soundtrack, float32 [n_samples, channels] in [-1, 1]."""
        spec = self.spec
        assert spec.sample_rate is not None and spec.channels is not None
        sr = spec.sample_rate
        n = int(round(spec.duration * sr))
        out = np.zeros((n, spec.channels), dtype=np.float64)
        if spec.kind == "silent_audio":
            return out.astype(np.float32)
        rng = rng_for(spec.seed, spec.index, STREAM_AUDIO)
        for ch in range(spec.channels):
            out[:, ch] += _pink_noise(rng, n) * 10 ** (self.noise_dbfs / 20)
        for src in self.sources:
            mono = self.source_audio(src, n, sr)
            out += mono[:, None] * _pan_gains(src.pan, spec.channels)[None, :]
        for ev in self.events:
            start = int(round(ev.time * sr))
            k = _knock(ev.params, sr)[: max(0, n - start)]
            out[start : start + len(k)] += k[:, None] * _pan_gains(ev.params["pan"], spec.channels)
        peak = float(np.max(np.abs(out))) if n else 0.0
        if peak > 0.95:
            out *= 0.95 / peak
        return out.astype(np.float32)

    @property
    def noise_dbfs(self) -> float:
        return float(rng_for(self.spec.seed, self.spec.index, STREAM_AUDIO + 10).uniform(-54, -46))

    def source_audio(self, src: Source, n: int, sr: int) -> np.ndarray:
        """One source alone (mono float64, before panning): zero outside its
        segments, so tests can compare a clean render with the decoded mix."""
        out = np.zeros(n, dtype=np.float64)
        amp = 10 ** (src.level_dbfs / 20)
        for k, (a, b) in enumerate(src.segments):
            s0, s1 = int(round(a * sr)), min(int(round(b * sr)), n)
            if s1 <= s0:
                continue
            seg_rng = np.random.default_rng([int(src.params["noise_seed"]), k])
            x = _class_signal(src.sound_class, src.params, s1 - s0, sr, seg_rng)
            x *= amp / max(float(np.sqrt(np.mean(x**2))), 1e-12)
            x *= _fades(s1 - s0, sr)
            out[s0:s1] = x
        return out


# --------------------------------------------------------------------------- #
# building a scene


def build_scene(spec: VideoSpec) -> Scene:
    """The deterministic scene of ``spec`` (same spec -> same scene)."""
    rng = rng_for(spec.seed, spec.index, STREAM_SCENE)
    keep = vfr_keep(spec.n_frames, spec.index, spec.seed) if spec.vfr else np.ones(spec.n_frames, bool)
    background, bg_kind = _background(rng, spec.width, spec.height)
    has_on = spec.mode in ("both", "onscreen")
    has_off = spec.mode in ("both", "offscreen")
    n_sources = int(rng.integers(1, 3)) if has_on else 0
    n_distractors = int(rng.integers(0, 3)) if has_on else int(rng.integers(1, 4))
    n_objects = min(4, n_sources + n_distractors)
    cells = _cells(spec.width, spec.height, n_objects)
    order = rng.permutation(n_objects)
    objects: list[MovingObject] = []
    for k in range(n_objects):
        role = "source" if k < n_sources else "distractor"
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        objects.append(_object(rng, f"obj{k}", shape, role, cells[int(order[k])], spec))
    kept = np.flatnonzero(keep)
    sources: list[Source] = []
    for k, obj in enumerate(o for o in objects if o.role == "source"):
        frame_segs = _onscreen_schedule(rng, spec, kept)
        base = spec.base_rate
        segs = tuple((float(Fraction(int(a)) / base), _end_time(int(b), spec)) for a, b in frame_segs)
        sources.append(
            Source(
                id=f"on{k}",
                screen="on",
                sound_class=SOUND_CLASS[obj.shape],
                visual_class=VISUAL_CLASS[obj.shape],
                object_id=obj.id,
                segments=segs,
                frame_segments=tuple(frame_segs),
                level_dbfs=float(rng.uniform(-20, -16)),
                pan=float(np.clip(((obj.cell[0] + obj.cell[2]) / 2 / spec.width) * 2 - 1, -0.8, 0.8)),
                params=_class_params(rng, SOUND_CLASS[obj.shape]),
            )
        )
    if has_off:
        for k in range(int(rng.integers(1, 3))):
            cls = OFFSCREEN_CLASSES[int(rng.integers(len(OFFSCREEN_CLASSES)))]
            sources.append(
                Source(
                    id=f"off{k}",
                    screen="off",
                    sound_class=cls,
                    visual_class=None,
                    object_id=None,
                    segments=_offscreen_schedule(rng, spec.duration),
                    frame_segments=(),
                    level_dbfs=float(rng.uniform(-27, -21)),
                    pan=float(rng.uniform(-1, 1)),
                    params=_class_params(rng, cls),
                )
            )
    events = _events(rng, spec, objects, sources, kept) if has_on else []
    return Scene(spec, keep, background, bg_kind, objects, sources, events)


def _end_time(frame: int, spec: VideoSpec) -> float:
    """Offset time of a segment ending at base-grid frame ``frame``."""
    return min(float(Fraction(frame) / spec.base_rate), spec.duration)


def _snap(kept: np.ndarray, base: Fraction, t: float) -> int | None:
    """The first kept frame whose timestamp is >= t (None past the end)."""
    n = int(math.ceil(t * float(base) - 1e-9))
    i = int(np.searchsorted(kept, n))
    return int(kept[i]) if i < len(kept) else None


def _onscreen_schedule(
    rng: np.random.Generator, spec: VideoSpec, kept: np.ndarray
) -> list[tuple[int, int]]:
    """Segments 1-4 s with mostly short gaps (0.3-1.2 s) and now and then a
    silence stretch (2.5-5 s), snapped to kept frames. ``(on, off)`` frame
    indices; ``off == n_frames`` means on until the end."""
    base = spec.base_rate
    segs: list[tuple[int, int]] = []
    t = float(rng.uniform(0.0, 1.5))
    while True:
        on_len = float(rng.uniform(1.0, 4.0))
        gap = float(rng.uniform(0.3, 1.2)) if rng.random() < 0.85 else float(rng.uniform(2.5, 5.0))
        a = _snap(kept, base, t)
        if a is None or spec.duration - float(Fraction(a) / base) < 0.5:
            break
        b = _snap(kept, base, t + on_len)
        segs.append((a, spec.n_frames if b is None else b))
        if b is None:
            break
        t = float(Fraction(b) / base) + gap
    return segs


def _offscreen_schedule(rng: np.random.Generator, duration: float) -> tuple[tuple[float, float], ...]:
    """Segments 1-6 s with gaps 0.5-6 s, in milliseconds (not tied to frames)."""
    segs = []
    t = float(rng.uniform(0.0, 4.0))
    while t < duration - 0.5:
        a = round(t, 3)
        b = round(min(t + float(rng.uniform(1.0, 6.0)), duration), 6)
        segs.append((a, b))
        t = b + float(rng.uniform(0.5, 6.0))
    return tuple(segs)


def _events(
    rng: np.random.Generator,
    spec: VideoSpec,
    objects: list[MovingObject],
    sources: list[Source],
    kept: np.ndarray,
) -> list[Event]:
    """Knocks: about one per 12 s, on any object, at least 0.2 s away from
    that object's own switches and from each other."""
    base = spec.base_rate
    switches: dict[str, list[float]] = {o.id: [] for o in objects}
    for s in sources:
        if s.object_id:
            switches[s.object_id] += [t for seg in s.segments for t in seg]
    events: list[Event] = []
    for _ in range(int(rng.poisson(spec.duration / 12.0))):
        obj = objects[int(rng.integers(len(objects)))]
        frame = _snap(kept, base, float(rng.uniform(0.2, max(0.3, spec.duration - 0.3))))
        params = {"freq": float(rng.uniform(150, 400)), "level": float(rng.uniform(-10, -6)),
                  "pan": float(rng.uniform(-0.5, 0.5))}
        if frame is None:
            continue
        t = float(Fraction(frame) / base)
        near = [x for x in switches[obj.id] if abs(x - t) < 0.2] + [
            e.time for e in events if abs(e.time - t) < 0.2
        ]
        if near or t + KNOCK_S > spec.duration:
            continue
        events.append(Event(t, frame, "knock", obj.id, params))
    return sorted(events, key=lambda e: e.time)


def _cells(w: int, h: int, n: int) -> list[tuple[int, int, int, int]]:
    if n <= 1:
        return [(0, 0, w, h)]
    if n == 2:
        if w >= h:
            return [(0, 0, w // 2, h), (w // 2, 0, w, h)]
        return [(0, 0, w, h // 2), (0, h // 2, w, h)]
    return [
        (0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2),
        (0, h // 2, w // 2, h), (w // 2, h // 2, w, h),
    ][:n]


def _object(
    rng: np.random.Generator, oid: str, shape: str, role: str, cell: tuple[int, int, int, int],
    spec: VideoSpec,
) -> MovingObject:
    cw, ch = cell[2] - cell[0], cell[3] - cell[1]
    r = float(rng.uniform(0.06, 0.12) * min(spec.width, spec.height))
    r = min(r, (min(cw, ch) / 2 - 3) / 1.3 - 1)
    if role == "source":
        base = np.array(CLASS_COLOUR[shape], dtype=float) * rng.uniform(0.85, 1.0)
        active = tuple(int(v) for v in np.clip(base, 0, 255))
        idle = tuple(int(v) for v in np.clip(base * 0.4 + 20, 0, 255))
    else:  # muted colour, never switches
        grey = rng.uniform(60, 140)
        tint = rng.uniform(-30, 30, size=3)
        idle = tuple(int(v) for v in np.clip(grey + tint, 0, 255))
        active = idle
    speed = rng.uniform(0.1, 0.5) * min(cw, ch)
    angle = rng.uniform(0, 2 * np.pi)
    return MovingObject(
        id=oid, shape=shape, role=role, radius=r, idle_colour=idle,  # type: ignore[arg-type]
        active_colour=active,  # type: ignore[arg-type]
        cell=cell,
        start=(float(rng.uniform(cell[0], cell[2])), float(rng.uniform(cell[1], cell[3]))),
        velocity=(float(speed * np.cos(angle)), float(speed * np.sin(angle))),
    )


def _sprite(o: MovingObject, state: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask [S, S], colours [S, S, 3]) of an object; state 0 idle, 1 active, 2 flash."""
    h = o.half_extent
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(np.float64)
    r = o.radius
    if o.shape == "circle" or o.shape == "face":
        body = xx**2 + yy**2 <= r**2
    elif o.shape == "square":
        body = np.maximum(np.abs(xx), np.abs(yy)) <= 0.85 * r
    else:  # triangle, apex up
        body = (yy >= -r) & (yy <= 0.5 * r) & (np.abs(xx) <= (yy + r) * 0.5774)
    colours = np.zeros((*xx.shape, 3), dtype=np.uint8)
    fill = {0: o.idle_colour, 1: o.active_colour, 2: (255, 255, 255)}[state]
    colours[body] = fill
    mask = body.copy()
    if state >= 1:
        ring = (xx**2 + yy**2 <= (1.3 * r) ** 2) & (xx**2 + yy**2 >= (1.15 * r) ** 2) & ~body
        colours[ring] = (255, 255, 255)
        mask |= ring
    if o.shape == "face":
        dark = (20, 20, 20)
        for ex in (-0.35 * r, 0.35 * r):
            colours[(xx - ex) ** 2 + (yy + 0.25 * r) ** 2 <= (0.12 * r) ** 2] = dark
        if state == 1:
            mouth = (xx / (0.4 * r)) ** 2 + ((yy - 0.4 * r) / (0.25 * r)) ** 2 <= 1
        else:
            mouth = (np.abs(xx) <= 0.4 * r) & (np.abs(yy - 0.45 * r) <= max(0.05 * r, 0.6))
        colours[mouth & body] = dark
    return mask, colours


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, str]:
    """A static background: linear gradient, sinusoidal texture or smooth noise."""
    kind = ("gradient", "texture", "noise")[int(rng.integers(3))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c1 = rng.uniform(30, 130, size=3)
    c2 = rng.uniform(30, 130, size=3)
    if kind == "gradient":
        ang = rng.uniform(0, 2 * np.pi)
        p = xx * np.cos(ang) + yy * np.sin(ang)
        u = (p - p.min()) / max(float(np.ptp(p)), 1.0)
    elif kind == "texture":
        u = np.zeros((h, w))
        for _ in range(3):
            f = rng.uniform(0.01, 0.06)
            ang = rng.uniform(0, np.pi)
            u += np.sin(2 * np.pi * f * (xx * np.cos(ang) + yy * np.sin(ang)) + rng.uniform(0, 6.3))
        u = (u - u.min()) / max(float(np.ptp(u)), 1e-9)
    else:
        gh, gw = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        grid = rng.random((gh + 1, gw + 1))
        gy, gx = yy / max(h - 1, 1) * gh, xx / max(w - 1, 1) * gw
        y0, x0 = np.minimum(gy.astype(int), gh - 1), np.minimum(gx.astype(int), gw - 1)
        fy, fx = gy - y0, gx - x0
        u = (grid[y0, x0] * (1 - fy) * (1 - fx) + grid[y0 + 1, x0] * fy * (1 - fx)
             + grid[y0, x0 + 1] * (1 - fy) * fx + grid[y0 + 1, x0 + 1] * fy * fx)
        u = u + rng.normal(0, 0.03, size=u.shape)
    img = c1[None, None, :] * (1 - u[..., None]) + c2[None, None, :] * u[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), kind


# --------------------------------------------------------------------------- #
# sounds


def _class_params(rng: np.random.Generator, cls: str) -> dict[str, float]:
    p: dict[str, float] = {"noise_seed": float(rng.integers(0, 2**31))}
    if cls == "tone":
        p["f0"] = float(np.exp(rng.uniform(np.log(220), np.log(880))))
    elif cls == "chirp":
        p.update(period=float(rng.uniform(0.2, 0.5)), f1=float(rng.uniform(400, 800)),
                 f2=float(rng.uniform(1500, 3000)))
    elif cls == "noise_burst":
        lo = float(rng.uniform(800, 3000))
        p.update(lo=lo, hi=lo + float(rng.uniform(800, 2500)))
    elif cls == "speech":
        p.update(f0=float(rng.uniform(100, 220)), rate=float(rng.uniform(3, 6)),
                 f1=float(rng.uniform(450, 800)), f2=float(rng.uniform(1100, 2000)))
    elif cls == "hum":
        p["f0"] = float(rng.uniform(90, 160))
    return p


def _class_signal(cls: str, p: dict[str, float], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of a sound class, starting at phase 0 at sample 0."""
    t = np.arange(n) / sr
    if cls == "tone":
        return sum(a * np.sin(2 * np.pi * k * p["f0"] * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
    if cls == "hum":
        return sum(np.sin(2 * np.pi * k * p["f0"] * t) / k for k in range(1, 6))
    if cls == "chirp":
        period = p["period"]
        tl = np.mod(t, period)
        sweep = 0.7 * period
        k = np.log(p["f2"] / p["f1"]) / sweep
        phase = 2 * np.pi * p["f1"] * (np.exp(k * np.minimum(tl, sweep)) - 1) / k
        return np.where(tl < sweep, np.sin(phase), 0.0)
    if cls == "noise_burst":
        return _bandpass(rng.normal(size=n), sr, [(p["lo"], p["hi"])])
    if cls == "speech":
        buzz = np.sign(np.sin(2 * np.pi * p["f0"] * t)) * 0.5 + rng.normal(scale=0.3, size=n)
        voiced = _bandpass(buzz, sr, [(p["f1"] * 0.8, p["f1"] * 1.2), (p["f2"] * 0.85, p["f2"] * 1.15),
                                      (2500.0, 3200.0)])
        env = 0.3 + 0.7 * np.abs(np.cos(np.pi * p["rate"] * t))
        return voiced * env
    raise ValueError(f"unknown sound class {cls!r}")


def _fft_len(n: int) -> int:
    """The power of two >= n: FFTs of awkward (near-prime) lengths are slow."""
    return 1 << max(0, (n - 1).bit_length())


def _bandpass(x: np.ndarray, sr: int, bands: list[tuple[float, float]]) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain (zero-padded FFT)."""
    m = _fft_len(len(x))
    spec = np.fft.rfft(x, n=m)
    f = np.fft.rfftfreq(m, 1 / sr)
    gain = np.zeros_like(f)
    for lo, hi in bands:
        gain[(f >= lo) & (f <= hi)] = 1.0
    y = np.fft.irfft(spec * gain, n=m)[: len(x)]
    return y if np.any(y) else x


def _fades(n: int, sr: int) -> np.ndarray:
    """2 ms raised-cosine fade-in from sample 0, 5 ms fade-out ending at n."""
    g = np.ones(n)
    a = min(n, max(1, int(round(ONSET_FADE_S * sr))))
    g[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a) + 1) / a)
    b = min(n - a, int(round(OFFSET_FADE_S * sr)))
    if b > 0:
        g[n - b :] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(b) + 1) / b)
    return g


def _knock(p: dict[str, float], sr: int) -> np.ndarray:
    n = int(round(KNOCK_S * sr))
    t = np.arange(n) / sr
    x = np.exp(-t / 0.008) * np.sin(2 * np.pi * p["freq"] * t)
    click = int(round(0.001 * sr))
    x[:click] += np.sin(2 * np.pi * 2000 * t[:click])
    return x / np.max(np.abs(x)) * 10 ** (p["level"] / 20)  # level = peak dBFS


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS pink-ish noise (1/f power), via one FFT."""
    if n == 0:
        return np.zeros(0)
    m = _fft_len(n)
    spec = np.fft.rfft(rng.normal(size=m))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n=m)[:n]
    return y / max(float(np.sqrt(np.mean(y**2))), 1e-12)


def _pan_gains(pan: float, channels: int) -> np.ndarray:
    if channels == 1:
        return np.ones(1)
    theta = (pan + 1) * np.pi / 4
    return np.array([np.cos(theta), np.sin(theta)])  # constant power

