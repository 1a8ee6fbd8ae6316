"""Compiled loops of the clip codecs (numba): the decoders of the loader's hot path, and the
integer loops of schema 5's audio encoder.

Schema 4's clip records undo their filters with running sums: along each row of
the frames (the Sub filter, then the green differences), along the audio (its
first differences, stored as two byte planes). A running sum is a chain; numpy
makes it of whole-array passes (shifted additions over the buffer, casts,
temporaries), each reading and writing the clip again. These loops do each
clip in one pass, without the GIL (the loader's decode threads run them side
by side), and write the float audio the models take without an int16 copy in
between. numba compiles them on first use and caches the machine code
next to this file (or in its user cache when that folder is read-only):
compiling them all took ~3 s on 2 cores of an AMD EPYC (once; measured with
``NUMBA_CACHE_DIR`` pointed at an empty folder), loading them from the cache
~0.7 s a process, most of it numba's own import. ``records`` imports this
module lazily: the loaders decode with it, and the mix step's schema-5 audio
encoder takes its integer loops (the autocorrelation and the residuals)
from it.

Indices are unsigned on purpose: numba wraps negative signed indices around,
a test and a branch on every access.

Schema 5's audio is a linear prediction per block (:func:`unpredict_audio`).
A prediction needs the samples decoded just before it, so one block is a
chain of 2,500 steps of 8 multiply-adds; the 32 blocks of a clip are
independent chains, decoded side by side: the stored residuals are
interleaved (time step by time step, a block per lane), the inner loop runs
across the blocks and is compiled to vector instructions (8 lanes of int32),
and the decoded samples go back to time order tile by tile through a small
buffer that stays in the first-level cache.
"""

from __future__ import annotations

import numba
import numpy as np

from audioscope.geometry import AUDIO_SAMPLES

u64, u16, u8, i32, i16, i8, f32 = numba.uint64, numba.uint16, numba.uint8, numba.int32, numba.int16, numba.int8, numba.float32
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


#: Schema 5's audio predictor: blocks per clip, prediction order, the largest coefficient shift.
LPC_BLOCKS, LPC_ORDER, LPC_MAX_SHIFT = 32, 8, 15
#: Bytes of a clip's predictor ahead of its residuals: a shift per block, then the coefficients
#: (int16, little endian) ``k`` major: coefficient ``k`` of every block, ``k`` = 1..order.
LPC_HEADER = LPC_BLOCKS + 2 * LPC_ORDER * LPC_BLOCKS
#: The coefficients of one block sum (in absolute value) to less than this, so that a prediction of
#: int16 samples never leaves int32: 65,535 * 32,768 < 2**31.
LPC_COEFFICIENT_SUM = 1 << 16
_LPC_SPAN = AUDIO_SAMPLES // LPC_BLOCKS  # samples of one block
_LPC_TILE = 64  # time steps decoded before they are put back in time order (9 kB of int32 history)


@_jit
def _lpc_audio(payload, out, scale):
    # returns 0, or 1 for a shift out of range, 2 for coefficients that could overflow int32
    B, P, T, L, N, H = LPC_BLOCKS, LPC_ORDER, _LPC_TILE, _LPC_SPAN, AUDIO_SAMPLES, LPC_HEADER
    shifts = np.empty(B, np.int32)
    coefs = np.empty(P * B, np.int32)
    for b in range(B):
        shifts[b] = payload[b]
        if shifts[b] > LPC_MAX_SHIFT:
            return 1
    for j in range(P * B):
        coefs[j] = i16(u16(payload[B + 2 * j]) | (u16(payload[B + 2 * j + 1]) << 8))
    for b in range(B):
        total = 0
        for k in range(P):
            total += abs(coefs[k * B + b])
        if total >= LPC_COEFFICIENT_SUM:
            return 2
    # rows of B lanes: the P rows before the tile (zeros before a block starts), then the tile's
    history = np.zeros((T + P) * B, np.int32)
    for t0 in range(0, L, T):
        n = min(T, L - t0)
        for u in range(n):
            for b in range(B):  # the vectorised loop: one block per lane
                i = H + (t0 + u) * B + b
                residual = i32(i16((u16(payload[i]) << 8) + u16(i16(i8(payload[N + i])))))
                acc = i32(0)
                for k in range(P):
                    acc = i32(acc + i32(coefs[k * B + b] * history[(u + P - 1 - k) * B + b]))
                # ``& 31`` (shifts are <= 15): it tells LLVM the shift stays within int32, else numba's
                # int64 arithmetic keeps the shift in 64-bit lanes (75 us a clip instead of 57)
                history[(u + P) * B + b] = i32(i16(residual + i32(acc >> (shifts[b] & 31))))  # modulo 2**16
        for b in range(B):
            for u in range(n):
                out[b * L + t0 + u] = f32(history[(u + P) * B + b]) * scale
        for j in range(P * B):
            history[j] = history[n * B + j]
    return 0


def unpredict_audio(payload: np.ndarray, out: np.ndarray, scale: float = 1.0) -> None:
    """Schema 5's audio prediction undone: ``payload`` (uint8: :data:`LPC_HEADER` bytes of
    predictor, then every residual's high byte, then every low byte, interleaved by block) into
    ``out``: int16 samples, or float32 samples times ``scale`` when ``out`` is float32.

    Raises ValueError for a predictor outside the format (a shift above 15, or a block whose
    coefficients could overflow): stored bytes are checked, not trusted."""
    if out.size != AUDIO_SAMPLES or payload.size != LPC_HEADER + 2 * AUDIO_SAMPLES:
        raise ValueError(f"{payload.size} bytes of predicted audio for {out.size} samples")
    if out.dtype == np.int16:
        scale = 1.0
    elif out.dtype != np.float32:
        raise TypeError(f"audio is decoded into int16 or float32, not {out.dtype}")
    code = _lpc_audio(payload, out, np.float32(scale))
    if code:
        raise ValueError("the audio's predictor is out of range" + (" (a shift above 15)" if code == 1 else
                         f" (coefficients summing to {LPC_COEFFICIENT_SUM} or more)"))


@_jit
def _autocorrelation(x, order, out):
    # out[b, i] = sum_t w[t] w[t+i], w = x[b] under a Welch window, exact: |w| <= 2**15, so each
    # product fits int32 and the sums int64 (integer sums vectorise in any order)
    n_blocks, span = x.shape
    w = np.empty(span, np.int32)
    window = np.empty(span, np.float64)
    scale = np.float64((span - 1) * (span - 1))
    for t in range(span):
        window[t] = np.float64(4 * t * (span - 1 - t))
    for b in range(n_blocks):
        xb = x[b]
        for t in range(span):
            # floor(x q / d) of integers: x q < 2**38 is exact in float64, the quotient correctly
            # rounded, and a quotient that is not an integer lies >= 1/d from one (d ~ 2**22), far
            # more than its rounding error (< 2**-35): the floor is integer division's, without a
            # division instruction per sample (which cost 0.8 ms a clip)
            w[t] = i32(np.floor(np.float64(xb[t]) * window[t] / scale))
        for i in range(order + 1):
            total = np.int64(0)
            for t in range(span - i):
                total += np.int64(i32(w[t] * w[t + i]))
            out[b, i] = total


def autocorrelation(blocks: np.ndarray, order: int) -> np.ndarray:
    """int64 [blocks, order + 1]: each block's autocorrelation at lags 0..order under a Welch window
    (``x[t] * 4t(L-1-t) // (L-1)**2``), in exact integers: the same on every machine."""
    x = np.ascontiguousarray(blocks, np.int32)
    out = np.empty((x.shape[0], order + 1), np.int64)
    _autocorrelation(x, order, out)
    return out


@_jit
def _residuals(x, coefs, shifts, out):
    # out[b, t] = x[b, t] - (sum_k coefs[b, k] x[b, t-1-k] >> shifts[b]), zeros before the block starts;
    # in int32 as numpy's int32 arrays would wrap (the coefficient sums keep the sum within int32)
    n_blocks, span = x.shape
    order = coefs.shape[1]
    acc = np.empty(span, np.int32)
    for b in range(n_blocks):
        xb, ob = x[b], out[b]
        acc[:] = 0
        for k in range(order):
            c = coefs[b, k]
            # vectorised along the block; through a view that starts at the sum's first index (written
            # as ``acc[t + 1 + k]`` it stayed scalar: 0.55 ms a clip instead of 0.055)
            dst = acc[1 + k :]
            for t in range(span - 1 - k):
                dst[t] = i32(dst[t] + i32(c * xb[t]))
        s = shifts[b] & 31
        for t in range(span):
            ob[t] = i32(xb[t] - i32(acc[t] >> s))


def residuals(blocks: np.ndarray, coefs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """int32 [blocks, samples]: each sample minus its prediction from the block's samples before it
    (zeros before the block starts); ``coefs`` [blocks, order] whose absolute sums keep every
    prediction within int32, ``shifts`` [blocks]. The encoder's half of :func:`unpredict_audio`."""
    x = np.ascontiguousarray(blocks, np.int32)
    out = np.empty(x.shape, np.int32)
    _residuals(x, np.ascontiguousarray(coefs, np.int32), np.ascontiguousarray(shifts, np.int32), out)
    return out
