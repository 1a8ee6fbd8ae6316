"""FFmpeg: an in-process probe and one locked-down decode pass per video.

What a decoded video is
-----------------------
:func:`decode` runs **one** ffmpeg process per video and gets both outputs of
the AudioScope recipe from it:

* **Audio**: the first audio stream, downmixed to mono and resampled to
  16 kHz (``sample_rate``), as int16 PCM. The first sample is at time 0 of the
  media timeline: a stream that starts late is padded with silence at the
  start (``aresample=async=1:first_pts=0``), so audio and frames share one
  clock even when the container's streams do not start together; a
  negative start (codec priming) is left to the decoder (:func:`audio_filter`).
* **Frames**: one RGB frame of ``frame_size`` x ``frame_size`` per second.
  Frame ``k`` is the picture *displayed at time k + 0.5 s*, the centre of
  second ``k`` (the last frame whose timestamp is <= k + 0.5). Taking the
  centre rather than the start of each second keeps a shot change or an
  on/off switch that falls on a second boundary from deciding which picture
  represents the second. This works the same for constant and variable frame
  rates (29.97 fps, VFR phone video): it is defined on timestamps, not on
  frame counts. Rotation metadata is applied (ffmpeg's autorotate) and
  non-square pixels are made square before resizing.
* **Aspect** (``aspect``): ``pad`` (default) scales the picture to fit inside
  the square and letterboxes it with black, so all content is kept;
  ``crop`` scales it to cover the square and keeps the centre square;
  ``stretch`` scales both sides to the square, distorting shapes.

Clip windows exist only where both 5 s of audio and 5 frames exist: the
usable length of a video is ``min(len(audio) // sample_rate, len(frames))``
whole seconds (:attr:`Decoded.usable_seconds`).

Safety
------
Inputs are always local files (remote media is fetched first), so ffmpeg may
use only the ``file`` and ``pipe`` protocols (``-protocol_whitelist``), and
only the container demuxers in :data:`ALLOWED_FORMATS`
(``-format_whitelist``): playlists (HLS, concat, ffconcat), image sequences
and other demuxers that open further files by name are refused, so a crafted
"video" cannot make ffmpeg read other local files. :func:`probe` opens the
file in process (FFmpeg's libraries through PyAV) with the same two
whitelists. ffmpeg never reads stdin
(``-nostdin``), and every run has a timeout that kills its whole process
group.

Limits on hostile media
-----------------------
A file cannot make a worker decode more than the limits allow, whatever its
headers say:

* **Picture size** (``max_pixels``, default :data:`DEFAULT_MAX_PIXELS`, 8K
  UHD): FFmpeg's decoders refuse bigger pictures, in the probe (which so
  never decodes one) and in the decode (a stream that grows midway), so a
  5 MB file of 16000x16000 pictures is refused (``picture_too_large``)
  before any of its 768 MB RGB pictures exists.
* **Duration** (``max_duration_s``, default :data:`DEFAULT_MAX_DURATION_S`,
  1 hour): a container that says it is longer is refused at once
  (``too_long``). One that says it is shorter than its streams cannot force
  a full decode: ffmpeg reads at most the limit plus one second of input
  (``-t``), each output file stops at the bytes that span gives (``-fs``, a
  watchdog for timestamps that never advance), and a decode that reaches
  the limit is refused as ``too_long``.
* **Memory**: Python holds one video's decoded output, 16000 x 2 bytes of
  audio and one 128 x 128 x 3 frame per second (~80 KB per second of video,
  0.28 GB per hour; :func:`output_bytes_per_second`), so the duration limit
  bounds it; ffmpeg streams to files and holds a few pictures, bounded by
  ``max_pixels``. Measured by ``benchmarks/decode_memory.py``: a 2-hour
  video's decode peaked at 1.04x its output above the interpreter.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from audioscope.errors import MissingProgram, tool_failure
from audioscope.geometry import FRAME_SIZE, SAMPLE_RATE

Aspect = Literal["pad", "crop", "stretch"]
ASPECTS: tuple[str, ...] = ("pad", "crop", "stretch")

#: Demuxers ffmpeg may use (names as in ``ffmpeg -demuxers``). A probed
#: ``format_name`` such as ``mov,mp4,m4a,3gp,3g2,mj2`` is allowed when one of
#: its names is here. No playlist, concat, image or text demuxers.
ALLOWED_FORMATS: tuple[str, ...] = (
    "mov", "mp4", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "ogg",
    "asf", "dv", "mxf", "nut", "3gp",
)

#: Default limit for one ffmpeg/ffprobe run, in seconds.
DEFAULT_TIMEOUT_S = 600.0

#: Longest video decoded by default: 1 hour. Its decoded output is ~0.28 GB
#: and the whole per-video ingest of it peaked at ~1 GB (benchmarks/
#: decode_memory.py: 1.96 GB for 2 hours), so the two videos an ingest worker
#: holds at a time fit Dataflow's default worker (n1-standard-1, 3.75 GB).
DEFAULT_MAX_DURATION_S = 3600.0

#: Largest picture decoded by default, in pixels (8K UHD, 7680 x 4320).
DEFAULT_MAX_PIXELS = 7680 * 4320



def output_bytes_per_second(sample_rate: int = SAMPLE_RATE, frame_size: int = FRAME_SIZE) -> int:
    """Bytes of decoded output per second of video: mono int16 audio and one RGB frame."""
    return 2 * sample_rate + 3 * frame_size * frame_size

SAFE_INPUT_ARGS: tuple[str, ...] = (
    "-protocol_whitelist", "file,pipe",
    "-format_whitelist", ",".join(ALLOWED_FORMATS),
)


class MediaError(Exception):
    """A video that cannot give clips.

    ``kind`` is a short machine-readable reason (``no_audio``, ``no_video``,
    ``corrupt``, ``unsupported_format``, ``timeout``, ``too_long``,
    ``picture_too_large``), ``message`` says what happened in words.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ProbeInfo:
    """What ffprobe says about a file (only what the pipeline needs)."""

    format_name: str
    duration: float | None
    has_audio: bool
    has_video: bool
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotation: int = 0
    sample_rate: int | None = None
    channels: int | None = None
    video_stream: int | None = None
    audio_stream: int | None = None
    #: Where the audio stream starts on the media timeline, in seconds.
    #: Negative for codec priming (Opus pre-skip, AAC in some containers),
    #: which the decoder drops by itself.
    audio_start: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, object]) -> "ProbeInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decoded:
    """One decoded video: mono int16 audio and one square RGB frame per second."""

    audio: np.ndarray  # int16 [n_samples]
    frames: np.ndarray  # uint8 [n_seconds, frame_size, frame_size, 3]
    sample_rate: int
    duration_s: float  # length of the decoded audio, in seconds

    @property
    def usable_seconds(self) -> int:
        """Whole seconds that have both a second of audio and a frame."""
        return int(min(len(self.audio) // self.sample_rate, len(self.frames)))


# --------------------------------------------------------------------------- #
# subprocess with a hard timeout


#: Process groups of the tools this process runs now (:func:`stop_running_tools`).
_running_tools: set[int] = set()


def stop_running_tools() -> None:
    """Kill the tools this process runs now, with their children: each runs in a session of its own,
    which a process's own death does not end (an ingest pool process told to stop at once)."""
    for group in list(_running_tools):
        _kill_group(group)


def _kill_group(group: int) -> None:
    """SIGKILL to process group ``group``, if it is still there."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_tool(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` in its own process group; kill the whole group on timeout.

    A run that failed because the disk it writes to is full or read-only (or
    files ran out) raises that OSError (:func:`audioscope.errors.tool_failure`):
    every video after it would fail the same way, so it ends the run instead
    of being recorded as the video's fault.
    """
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        if e.filename == cmd[0]:
            raise MissingProgram(cmd[0]) from None
        raise
    _running_tools.add(proc.pid)
    try:
        return _finish_tool(cmd, proc, timeout_s)
    finally:
        _running_tools.discard(proc.pid)


def _finish_tool(cmd: list[str], proc: subprocess.Popen[bytes], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise MediaError("timeout", f"{cmd[0]} ran longer than {timeout_s:g} s and was stopped")
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    if proc.returncode != 0:  # a full or read-only disk under its output is not the input's fault
        failure = tool_failure(err.decode("utf-8", "replace"))
        if failure is not None:
            raise failure
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stderr_tail(stderr: bytes, n: int = 400) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text[-n:] if text else "(no message from ffmpeg)"


def _looks_like_text(path: str) -> bool:
    """True for playlists and other text files (which no media container is)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"#EXTM3U", b"ffconcat", b"#EXT", b"[playlist]", b"<?xml", b"<")):
        return True
    if not head:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


# --------------------------------------------------------------------------- #
# probe


def _rate(value: object) -> float | None:
    """A stream rate (a ``Fraction`` or None) as a positive float, else None."""
    try:
        rate = float(value) if value is not None else 0.0
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _seconds(ts: int | None, time_base: object) -> float | None:
    if ts is None or time_base is None:
        return None
    return float(ts * time_base)


def _first_frame_rotation(container: "av.container.InputContainer", stream: "av.video.stream.VideoStream") -> int:
    """The display rotation of the first picture (0 when unknown).

    Newer FFmpeg keeps rotation only as display-matrix side data, which the
    first decoded frame carries (a few milliseconds for one keyframe).
    """
    import av

    try:
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            return int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
    except (av.FFmpegError, ValueError):
        pass
    return 0


_MAX_PIXELS_RE = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")

#: PyAV's log level is process-wide: probes that capture FFmpeg's messages take turns.
_LOG_LOCK = threading.Lock()


def _too_large(width: int, height: int, max_pixels: int) -> MediaError:
    return MediaError(
        "picture_too_large",
        f"pictures are {width}x{height} ({width * height / 1e6:.1f} Mpixel), more than the limit of "
        f"{max_pixels / 1e6:.1f} Mpixel; such a video is not decoded",
    )


def _open_limited(path: str, options: dict[str, str], timeout_s: float, max_pixels: int) -> "av.container.InputContainer":
    """``av.open`` with decoders that refuse pictures over ``max_pixels``.

    Opening a file decodes its first picture to learn the pixel format
    (``avformat_find_stream_info``); the limit stops a huge one there. FFmpeg
    says so only in its log, which is captured (and kept off stderr) here.
    """
    import av
    import av.logging

    with _LOG_LOCK:
        level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
        av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)  # else a second look at the same file says nothing
        try:
            with av.logging.Capture(local=True) as logs:
                container = av.open(
                    "file:" + path, options={**options, "max_pixels": str(int(max_pixels))}, timeout=timeout_s,
                )
        finally:
            av.logging.set_skip_repeated(skip)
            av.logging.set_level(level)
    for _level, _name, message in logs:
        m = _MAX_PIXELS_RE.match(message)
        if m and "more times)" not in message:  # not the tally of an earlier file's repeats
            container.close()
            raise _too_large(int(m.group(1)), int(m.group(2)), max_pixels)
    return container


def probe(
    path: str | os.PathLike[str], *, timeout_s: float = 60.0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ProbeInfo:
    """Read a local media file's container and stream facts, in process.

    Uses FFmpeg's libraries through PyAV (no ``ffprobe`` process: its start-up
    cost more CPU than the facts), with the same protocol and demuxer
    whitelists as the decode. Stream choice matches ffmpeg's: the first video
    stream that is not an attached picture, the first audio stream.

    Raises :class:`MediaError` (``unsupported_format`` for playlists, text and
    containers outside :data:`ALLOWED_FORMATS`; ``corrupt`` for unreadable
    files; ``picture_too_large`` for pictures over ``max_pixels``, found
    without decoding one; or ``timeout`` when opening takes longer than
    ``timeout_s``).
    """
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError("corrupt", f"{path} is not a readable file")
    if os.path.getsize(path) == 0:
        raise MediaError("corrupt", "the file is empty")
    options = {"protocol_whitelist": "file,pipe", "format_whitelist": ",".join(ALLOWED_FORMATS)}
    try:
        container = _open_limited(path, options, timeout_s, max_pixels)
    except av.ExitError:
        raise MediaError("timeout", f"opening the file took longer than {timeout_s:g} s") from None
    except (av.FFmpegError, ValueError, OSError) as e:
        if _looks_like_text(path):
            raise MediaError(
                "unsupported_format",
                "the file is a playlist or text file, not a media container; "
                "only " + ", ".join(ALLOWED_FORMATS) + " containers are read",
            ) from None
        raise MediaError("corrupt", f"FFmpeg cannot read the file: {e}") from None
    with container:
        format_name = str(container.format.name or "")
        if not set(format_name.split(",")) & set(ALLOWED_FORMATS):
            raise MediaError("unsupported_format", f"container {format_name!r} is not allowed")
        attached = int(av.stream.Disposition.attached_pic)
        video = [s for s in container.streams.video if not int(s.disposition) & attached]
        audio = list(container.streams.audio)
        duration = container.duration / 1_000_000 if container.duration and container.duration > 0 else None
        info = ProbeInfo(format_name=format_name, duration=duration, has_audio=bool(audio), has_video=bool(video))
        if video:
            v = video[0]
            width, height = v.codec_context.width or 0, v.codec_context.height or 0
            if width * height > max_pixels:  # a decoder that does not check (none known)
                raise _too_large(width, height, max_pixels)
            info = dataclasses.replace(
                info,
                video_codec=v.codec_context.codec.canonical_name,
                width=v.codec_context.width or None,
                height=v.codec_context.height or None,
                fps=_rate(v.average_rate) or _rate(v.base_rate),
                video_stream=v.index,
                rotation=_first_frame_rotation(container, v),
            )
        if audio:
            a = audio[0]
            info = dataclasses.replace(
                info,
                audio_codec=a.codec_context.codec.canonical_name,
                sample_rate=a.codec_context.sample_rate or None,
                channels=a.codec_context.layout.nb_channels or None,
                audio_stream=a.index,
                audio_start=_seconds(a.start_time, a.time_base) or 0.0,
            )
    return info


# --------------------------------------------------------------------------- #
# decode


def video_filter(frame_size: int = FRAME_SIZE, aspect: Aspect | str = "pad") -> str:
    """The ffmpeg filter chain that picks one frame per second and squares it.

    ``setpts`` shifts time by -0.5 s and ``fps=1:round=up`` then emits, for
    output frame k, the last input frame with shifted time <= k, i.e. original
    time <= k + 0.5: the picture displayed at the centre of second k.
    ``start_time=0`` pins frame 0 to second 0 even if the video stream starts
    late (the first picture is repeated).
    """
    n = int(frame_size)
    pick = "setpts=PTS-0.5/TB,fps=fps=1:round=up:start_time=0"
    square = "scale=iw*sar:ih,setsar=1"
    if aspect == "pad":
        fit = (
            f"scale={n}:{n}:force_original_aspect_ratio=decrease:flags=area,"
            f"pad={n}:{n}:(ow-iw)/2:(oh-ih)/2:color=black"
        )
    elif aspect == "crop":
        fit = f"scale={n}:{n}:force_original_aspect_ratio=increase:flags=area,crop={n}:{n}"
    elif aspect == "stretch":
        fit = f"scale={n}:{n}:flags=area"
    else:
        raise ValueError(f"aspect must be one of {ASPECTS}, not {aspect!r}")
    return f"{pick},{square},{fit},setsar=1,format=rgb24"


def audio_filter(info: ProbeInfo, sample_rate: int) -> str:
    """The audio filter chain: keep sample n at time n / sample_rate.

    An audio stream that starts *late* (positive start time) is padded with
    silence at the start (``first_pts=0``) so that it shares the frames'
    clock. A negative start time is codec priming (Opus pre-skip, encoder
    delay signalled by the container) that the decoder already drops;
    re-anchoring it at 0 would shift the whole track late (7 ms for Opus),
    so it is left alone. MP3 in AVI has no way to signal its encoder delay
    (~25 ms at 44.1 kHz): that offset belongs to the file and stays.
    """
    anchor = "aresample=async=1:first_pts=0" if info.audio_start > 0 else "aresample=async=1"
    return f"{anchor},aresample={sample_rate}"


def shown_seconds(duration: float) -> int:
    """Frames that :func:`decode` keeps for a video of ``duration`` seconds: second k's frame is
    the picture shown at k + 0.5 s, so only the seconds whose middle is within the video count."""
    return int(np.floor(duration - 0.5 + 1e-6)) + 1 if duration >= 0.5 else 0


def usable_seconds_at_most(info: ProbeInfo) -> int | None:
    """An upper bound on the whole seconds with both audio and a frame that :func:`decode` gives
    for a file probed as ``info``: it keeps :func:`shown_seconds` frames of the container's
    duration. None when the container does not say how long it is."""
    return shown_seconds(info.duration) if info.duration else None


def check_decodable(
    info: ProbeInfo, *, max_duration_s: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> float:
    """Refuse, from the probe alone, what :func:`decode` refuses before it starts ffmpeg (no video,
    no audio, pictures over ``max_pixels``, longer than the duration limit): raises
    :class:`MediaError`. Returns the duration limit in seconds (``math.inf``: none)."""
    limit = DEFAULT_MAX_DURATION_S if max_duration_s is None else float(max_duration_s)
    if not limit > 0:
        raise ValueError(f"max_duration_s must be positive, not {max_duration_s!r}")
    if not info.has_video:
        raise MediaError("no_video", "the file has no video stream")
    if not info.has_audio:
        raise MediaError("no_audio", "the file has no audio stream, so it cannot give clips")
    if info.width and info.height and info.width * info.height > max_pixels:
        raise _too_large(info.width, info.height, max_pixels)
    if info.duration and info.duration > limit:
        raise MediaError(
            "too_long",
            f"the video lasts {info.duration:.0f} s, more than the limit of {limit:g} s",
        )
    return limit


def decode(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = SAMPLE_RATE,
    frame_size: int = FRAME_SIZE,
    aspect: Aspect | str = "pad",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_duration_s: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    info: ProbeInfo | None = None,
    threads: int = 1,
) -> Decoded:
    """Decode a local video in one ffmpeg pass (see the module docstring).

    ``info`` is the result of :func:`probe` when the caller already has it.
    ``threads`` caps ffmpeg's decoder and filter threads (0: ffmpeg decides).
    Ingest decodes one video per core at a time, and then ffmpeg's own
    threads only add overhead: one thread each uses ~25% less CPU per video
    (measured on the synthetic corpus with two videos at a time on two cores).
    ``max_duration_s`` (None: :data:`DEFAULT_MAX_DURATION_S`; ``math.inf``:
    no limit) and ``max_pixels`` are enforced while decoding (see "Limits on
    hostile media" above).
    Raises :class:`MediaError` for videos that cannot give clips.
    """
    path = os.fspath(path)
    info = info or probe(path, timeout_s=min(timeout_s, 60.0), max_pixels=max_pixels)
    limit = check_decodable(info, max_duration_s=max_duration_s, max_pixels=max_pixels)
    frame_bytes = frame_size * frame_size * 3
    read_limit: list[str] = []
    audio_cap: list[str] = []
    frames_cap: list[str] = []
    if math.isfinite(limit):
        # Read one second past the limit (so that reaching it shows), and cap
        # each output at what that span can give, should timestamps not advance.
        span = math.ceil(limit) + 1
        read_limit = ["-t", str(span)]
        audio_cap = ["-fs", str((span + 1) * sample_rate * 2)]
        frames_cap = ["-fs", str((span + 2) * frame_bytes)]
    vf = video_filter(frame_size, aspect)
    with tempfile.TemporaryDirectory(prefix="audioscope-decode-") as tmp:
        audio_out = os.path.join(tmp, "audio.s16le")
        frames_out = os.path.join(tmp, "frames.rgb24")
        cmd = [
            "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
            "-filter_threads", str(threads), "-threads", str(threads),
            *SAFE_INPUT_ARGS, "-max_pixels", str(int(max_pixels)), *read_limit,
            "-i", "file:" + path,
            "-map", f"0:{info.audio_stream}",
            "-af", audio_filter(info, sample_rate),
            "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-c:a", "pcm_s16le", *audio_cap,
            "file:" + audio_out,
            "-map", f"0:{info.video_stream}",
            "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", *frames_cap,
            "file:" + frames_out,
        ]
        res = run_tool(cmd, timeout_s)
        bomb = _MAX_PIXELS_RE.search(res.stderr.decode("utf-8", "replace"))
        if bomb:  # the stream grew past the limit after its first picture
            raise _too_large(int(bomb.group(1)), int(bomb.group(2)), max_pixels)
        if res.returncode != 0:
            raise MediaError("corrupt", f"ffmpeg could not decode the file: {stderr_tail(res.stderr)}")
        audio = np.fromfile(audio_out, dtype="<i2").astype(np.int16, copy=False)
        raw = np.fromfile(frames_out, dtype=np.uint8)
    n_frames = raw.size // frame_bytes
    if audio.size > (limit + 0.5) * sample_rate or n_frames > limit + 1:
        said = f"{info.duration:.0f} s" if info.duration else "no duration"
        raise MediaError(
            "too_long",
            f"the streams run past the limit of {limit:g} s (the container says {said}); "
            "decoding was stopped there",
        )
    frames = raw[: n_frames * frame_bytes].reshape(n_frames, frame_size, frame_size, 3)
    if info.duration:
        # fps=1 may repeat the last picture past the end; no picture is shown
        # at k + 0.5 when that is after the end of the video.
        frames = frames[: shown_seconds(info.duration)]
    if audio.size == 0:
        raise MediaError("no_audio", "the audio stream decoded to no samples")
    if len(frames) == 0:
        raise MediaError("corrupt", "the video stream decoded to no frames")
    return Decoded(
        audio=audio, frames=frames, sample_rate=sample_rate, duration_s=audio.size / sample_rate
    )
