"""Compiled loops of the clip codecs' decoders (numba), for the loader's hot path.

Schema 4's clip records undo their filters with running sums: along each row of
the frames (the Sub filter, then the green differences), along the audio (its
first differences, stored as two byte planes). A running sum is a chain; numpy
makes it of whole-array passes (shifted additions over the buffer, casts,
temporaries), each reading and writing the clip again. These loops do each
clip in one or two passes, without the GIL (the loader's decode threads run
them side by side), and write the float audio the models take without an int16
copy in between. numba compiles them on first use and caches the machine code
next to this file (or in its user cache when that folder is read-only); only
the loader imports this module (``records`` does, lazily).

Indices are unsigned on purpose: numba wraps negative signed indices around,
and that check keeps LLVM from vectorizing a loop.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

u64, u16, i16, i8, f32 = numba.uint64, numba.uint16, numba.int16, numba.int8, numba.float32
_jit = numba.njit(nogil=True, cache=True)


@_jit
def _row_step(x, y, base, step, width):
    # one shifted addition along one row: y = x + x shifted by ``step`` bytes, the row's start kept
    for j in range(step, width):
        y[base + j] = x[base + j] + x[base + j - step]
    for j in range(step):
        y[base + j] = x[base + j]


@_jit
def _add_green(out, f, after, red, before, blue):
    for i in range(out.size):
        out[i] = f[i] + (after[i] & red[i]) + (before[i] & blue[i])


@_jit
def _frames(data, other, out, rows, width, red, blue):
    # the running sum along each row, 3 bytes apart, in log2(width) shifted additions
    # ping-ponged between ``data`` and ``other`` (a row stays in L1), then red and blue get
    # their pixel's green back, from the buffer the sum ended in (never ``out``) into ``out``
    steps = 0
    for r in range(rows):
        base = u64(r) * u64(width)
        x, y = data, other
        step, steps = u64(3), 0
        while step < width:
            _row_step(x, y, base, step, u64(width))
            x, y = y, x
            step, steps = step * u64(2), steps + 1
    s = other if steps % 2 else data
    n = s.size
    _add_green(out[1 : n - 1], s[1 : n - 1], s[2:], red[1 : n - 1], s[: n - 2], blue[1 : n - 1])
    out[0] = s[0] + (s[1] & red[0])
    out[n - 1] = s[n - 1] + (s[n - 2] & blue[n - 1])


@_jit
def _audio(planes, out, n, scale):
    # sample i's difference is 256 h + l (h, l signed bytes: the planes' i-th and (n+i)-th), summed
    # modulo 2**16, times ``scale`` (1 for int16 ``out``: exact in float32)
    total = u16(0)
    for i in range(n):
        total = u16(total + u16((u16(planes[i]) << 8) + u16(i16(i8(planes[n + i])))))
        out[i] = f32(i16(total)) * scale


def row_steps(width: int) -> int:
    """How many shifted additions the running sum along a row of ``width`` bytes takes (3-byte pixels)."""
    steps, step = 0, 3
    while step < width:
        steps, step = steps + 1, step * 2
    return steps


@functools.cache
def green_masks(size: int) -> tuple[np.ndarray, np.ndarray]:
    """0xFF at the red bytes of ``size`` bytes of RGB pixels, 0 elsewhere; the same at the blue bytes."""
    red = np.zeros(size, np.uint8)
    blue = red.copy()
    red[0::3], blue[2::3] = 0xFF, 0xFF
    red.flags.writeable = blue.flags.writeable = False
    return red, blue


def frames_buffer(out: np.ndarray, scratch: np.ndarray, width: int) -> np.ndarray:
    """Where to put the Sub-filtered rows (``width`` bytes each) for :func:`unfilter_frames`:
    ``out`` or ``scratch``, whichever makes the running sum end in ``scratch``."""
    return out if row_steps(width) % 2 else scratch


def unfilter_frames(out: np.ndarray, scratch: np.ndarray, width: int) -> None:
    """Schema 4's frame filters undone: the Sub-filtered rows (``width`` bytes each, RGB pixels,
    the green differences) are in :func:`frames_buffer` (``out`` or ``scratch``: flat uint8 of one
    size); the pixels land in ``out``."""
    if out.shape != scratch.shape or out.size % width or width % 3:
        raise ValueError(f"frames of {out.size} bytes in rows of {width}, scratch {scratch.size}")
    red, blue = green_masks(out.size)
    start = frames_buffer(out, scratch, width)
    other = scratch if start is out else out
    _frames(start, other, out, out.size // width, width, red, blue)


def unfilter_audio(planes: np.ndarray, out: np.ndarray, scale: float = 1.0) -> None:
    """Schema 4's audio filter undone: ``planes`` (uint8, every high byte then every low byte of the
    first differences) into ``out``: int16 samples, or float32 samples times ``scale`` when ``out``
    is float32."""
    n = out.size
    if planes.size != 2 * n:
        raise ValueError(f"{planes.size} bytes of audio planes for {n} samples")
    if out.dtype == np.int16:
        _audio(planes, out, n, np.float32(1))
    elif out.dtype == np.float32:
        _audio(planes, out, n, np.float32(scale))
    else:
        raise TypeError(f"audio is decoded into int16 or float32, not {out.dtype}")
