"""Compiled loops of the clip codecs' decoders (numba), for the loader's hot path.

Schema 4's clip records undo their filters with running sums: along each row of
the frames (the Sub filter, then the green differences), along the audio (its
first differences, stored as two byte planes). A running sum is a chain; numpy
makes it of whole-array passes (shifted additions over the buffer, casts,
temporaries), each reading and writing the clip again. These loops do each
clip in one pass, without the GIL (the loader's decode threads run them side
by side), and write the float audio the models take without an int16 copy in
between. numba compiles them on first use and caches the machine code
next to this file (or in its user cache when that folder is read-only): once
per process, 0.6 s to compile both on 2 cores of an AMD EPYC, 0.3 s to load
them from the cache. Only the loader imports this module (``records`` does,
lazily).

Indices are unsigned on purpose: numba wraps negative signed indices around,
a test and a branch on every access.
"""

from __future__ import annotations

import numba
import numpy as np

u64, u16, u8, i16, i8, f32 = numba.uint64, numba.uint16, numba.uint8, numba.int16, numba.int8, numba.float32
_jit = numba.njit(nogil=True, cache=True)


@_jit
def _frames(data, rows, width):
    # in place, one pass: each row's running sum per channel (three chains in registers), and each
    # pixel's red and blue plus its green
    for r in range(rows):
        base = u64(r) * u64(width)
        red, green, blue = u8(0), u8(0), u8(0)
        for j in range(u64(0), u64(width), u64(3)):
            k = base + j
            red, green, blue = u8(red + data[k]), u8(green + data[k + u64(1)]), u8(blue + data[k + u64(2)])
            data[k], data[k + u64(1)], data[k + u64(2)] = u8(red + green), green, u8(blue + green)


@_jit
def _audio(planes, out, n, scale):
    # sample i's difference is 256 h + l (h, l signed bytes: the planes' i-th and (n+i)-th), summed
    # modulo 2**16, times ``scale`` (1 for int16 ``out``: exact in float32)
    total = u16(0)
    for i in range(u64(0), u64(n)):
        total = u16(total + u16((u16(planes[i]) << 8) + u16(i16(i8(planes[u64(n) + i])))))
        out[i] = f32(i16(total)) * scale


def unfilter_frames(data: np.ndarray, width: int) -> None:
    """Schema 4's frame filters undone in place: ``data`` (flat uint8) holds rows of ``width`` bytes
    of RGB pixels, Sub-filtered after red and blue lost their pixel's green."""
    if data.ndim != 1 or data.size % width or width % 3:
        raise ValueError(f"frames of {data.size} bytes cannot be rows of {width} bytes of RGB pixels")
    _frames(data, data.size // width, width)


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
