"""audioscope.schemas.kernels: the compiled decoders of schemas 4 and 5's clip codecs, against plain numpy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from audioscope.schemas import kernels, records
from audioscope.schemas.records import AUDIO_SAMPLES, FRAMES_SHAPE


def reference_frames(filtered: np.ndarray, width: int) -> np.ndarray:
    """The filters undone the obvious way: a running sum along each row per channel, then red and
    blue plus their pixel's green (all modulo 256)."""
    rows = filtered.reshape(-1, width // 3, 3)
    pixels = np.cumsum(rows, axis=1, dtype=np.uint8)
    pixels[..., 0] += pixels[..., 1]
    pixels[..., 2] += pixels[..., 1]
    return pixels.reshape(-1)


def reference_prediction(payload: np.ndarray) -> np.ndarray:
    """Schema 5's audio decoded the obvious way: time step by time step, every block at once, in int64."""
    blocks, order = kernels.LPC_BLOCKS, kernels.LPC_ORDER
    shifts = payload[:blocks].astype(np.int64)
    coefs = payload[blocks : kernels.LPC_HEADER].view("<i2").astype(np.int64).reshape(order, blocks)
    planes = payload[kernels.LPC_HEADER :]
    residuals = (planes[:AUDIO_SAMPLES].view(np.int8).astype(np.int64) * 256
                 + planes[AUDIO_SAMPLES:].view(np.int8)).reshape(-1, blocks)  # fmt: skip
    x = np.zeros((residuals.shape[0] + order, blocks), np.int64)  # zeros before each block starts
    for t in range(residuals.shape[0]):
        prediction = (coefs * x[t + order - 1 :: -1][:order]).sum(axis=0) >> shifts  # x[t-1], x[t-2], ...
        x[t + order] = (residuals[t] + prediction + 32768) % 65536 - 32768
    return x[order:].T.reshape(-1).astype(np.int16)


def predicted_payload(rng: np.random.Generator, coefficient_sum: int) -> np.ndarray:
    """Random residual bytes under random predictors whose coefficients sum (in absolute value) to
    ``coefficient_sum`` in every block, shifts 0 to 15."""
    blocks, order = kernels.LPC_BLOCKS, kernels.LPC_ORDER
    weights = rng.random((order, blocks)) * rng.choice([-1, 1], (order, blocks))
    coefs = np.trunc(weights / np.abs(weights).sum(axis=0) * coefficient_sum).astype(np.int64)
    coefs[0] += np.sign(coefs[0] + 0.5).astype(np.int64) * (coefficient_sum - np.abs(coefs).sum(axis=0))  # exact sum
    assert np.abs(coefs).max() < 1 << 15  # int16, as stored
    shifts = rng.integers(0, 16, blocks).astype(np.uint8)
    planes = rng.integers(0, 256, 2 * AUDIO_SAMPLES, dtype=np.uint8)
    return np.concatenate([shifts, coefs.astype("<i2").view(np.uint8).reshape(-1), planes])


@pytest.mark.parametrize("coefficient_sum", [kernels.LPC_COEFFICIENT_SUM - 1, 4096, 0])
def test_the_prediction_kernel_decodes_any_residuals_as_plain_numpy_does(coefficient_sum):
    # the largest predictors the format allows (a prediction near the int32 limit), ordinary ones,
    # none; random residuals wrap int16 all the time
    payload = predicted_payload(np.random.default_rng(coefficient_sum), coefficient_sum)
    want = reference_prediction(payload)
    pcm, floats = np.empty(AUDIO_SAMPLES, np.int16), np.empty(AUDIO_SAMPLES, np.float32)
    kernels.unpredict_audio(payload, pcm)
    np.testing.assert_array_equal(pcm, want)
    kernels.unpredict_audio(payload, floats, 1 / 32768)
    np.testing.assert_array_equal(floats, want.astype(np.float32) / np.float32(32768))


def test_the_prediction_kernel_refuses_a_predictor_outside_the_format():
    payload = predicted_payload(np.random.default_rng(1), 1000)
    out = np.empty(AUDIO_SAMPLES, np.int16)
    bad = payload.copy()
    bad[3] = 16
    with pytest.raises(ValueError, match="shift above 15"):
        kernels.unpredict_audio(bad, out)
    bad = payload.copy()
    coefs = bad[kernels.LPC_BLOCKS : kernels.LPC_HEADER].view("<i2").reshape(kernels.LPC_ORDER, kernels.LPC_BLOCKS)
    coefs[:, 5] = [-32768, 32767, 1, 0, 0, 0, 0, 0]  # sums to 65,536: could overflow int32
    with pytest.raises(ValueError, match="coefficients summing to 65536 or more"):
        kernels.unpredict_audio(bad, out)
    with pytest.raises(ValueError, match="bytes of predicted audio"):
        kernels.unpredict_audio(payload[:-1], out)
    with pytest.raises(TypeError, match="int16 or float32"):
        kernels.unpredict_audio(payload, np.empty(AUDIO_SAMPLES, np.float64))


def reference_audio(planes: np.ndarray) -> np.ndarray:
    n = planes.size // 2
    steps = planes[:n].view(np.int8).astype(np.int64) * 256 + planes[n:].view(np.int8)
    return np.cumsum(steps).astype(np.uint16).view(np.int16)  # modulo 2**16


@pytest.mark.parametrize("pixels", [128, 5, 1])
def test_the_frame_kernel_undoes_any_bytes_as_the_running_sum_does(pixels):
    rng = np.random.default_rng(pixels)
    width = 3 * pixels
    filtered = rng.integers(0, 256, 7 * width, dtype=np.uint8)
    data = filtered.copy()
    kernels.unfilter_frames(data, width)
    np.testing.assert_array_equal(data, reference_frames(filtered, width))
    with pytest.raises(ValueError, match="cannot be rows"):
        kernels.unfilter_frames(data, width + 1)


def test_the_audio_kernel_wraps_as_int16_and_scales_exactly():
    rng = np.random.default_rng(3)
    for planes in (rng.integers(0, 256, 2 * AUDIO_SAMPLES, dtype=np.uint8), np.full(2 * AUDIO_SAMPLES, 0x7F, np.uint8),
                   np.resize(np.array([0x80, 0x7F, 0xFF, 0x00], np.uint8), 2 * AUDIO_SAMPLES)):  # fmt: skip
        want = reference_audio(planes)
        pcm = np.empty(AUDIO_SAMPLES, np.int16)
        kernels.unfilter_audio(planes, pcm)
        np.testing.assert_array_equal(pcm, want)
        floats = np.empty(AUDIO_SAMPLES, np.float32)
        kernels.unfilter_audio(planes, floats, 1 / 32768)
        np.testing.assert_array_equal(floats, want.astype(np.float32) / np.float32(32768))


def test_the_audio_kernel_refuses_a_wrong_size_or_type():
    with pytest.raises(ValueError, match="bytes of audio planes"):
        kernels.unfilter_audio(np.zeros(10, np.uint8), np.empty(4, np.int16))
    with pytest.raises(TypeError, match="int16 or float32"):
        kernels.unfilter_audio(np.zeros(8, np.uint8), np.empty(4, np.float64))


def test_clips_decode_alike_on_many_threads_at_once():
    # the kernels run without the GIL in the loader's decode threads, each on its own scratch
    rng = np.random.default_rng(5)
    clips = [(rng.integers(0, 256, FRAMES_SHAPE, dtype=np.uint8),
              rng.integers(-32768, 32768, AUDIO_SAMPLES, dtype=np.int16)) for _ in range(8)]  # fmt: skip
    stored = [(records.clip_frames_bytes(f), records.clip_audio_bytes(a), records.delta_audio_bytes(a)) for f, a in clips]

    def decode(k: int) -> bool:
        frames, audio = np.empty(FRAMES_SHAPE, np.uint8), np.empty(AUDIO_SAMPLES, np.float32)
        for i in range(6):
            records.clip_frames_into(5, stored[k][0], frames)
            records.clip_audio_into(5 - i % 2, stored[k][1 + i % 2], audio)  # schemas 5 and 4 in turn
            if not (np.array_equal(frames, clips[k][0]) and np.array_equal(audio, clips[k][1] / np.float32(32768))):
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(decode, range(8)))


@pytest.mark.parametrize("version", [3, 4, 5])
def test_clip_audio_decodes_to_float_as_int16_over_32768(version):
    audio = np.random.default_rng(version).integers(-32768, 32768, AUDIO_SAMPLES, dtype=np.int16)
    stored = records.CLIP_CODECS[version][1](audio)
    pcm, floats = np.empty(AUDIO_SAMPLES, np.int16), np.empty(AUDIO_SAMPLES, np.float32)
    records.clip_audio_into(version, stored, pcm)
    records.clip_audio_into(version, stored, floats)
    np.testing.assert_array_equal(pcm, audio)
    np.testing.assert_array_equal(floats, audio / np.float32(records.AUDIO_SCALE))


def test_the_encoders_integer_loops_equal_plain_numpy_in_exact_integers():
    # schema 5's encoder takes the autocorrelation and the residuals from compiled loops: they must
    # give numpy's exact integers (the bytes a shard holds may not depend on which computed them)
    rng = np.random.default_rng(9)
    blocks, span, order = kernels.LPC_BLOCKS, AUDIO_SAMPLES // kernels.LPC_BLOCKS, kernels.LPC_ORDER
    for x in (rng.integers(-32768, 32768, (blocks, span)), np.full((blocks, span), -32768), np.full((blocks, span), 32767),
              (20000 * np.sin(np.arange(blocks * span) * 0.01)).astype(np.int64).reshape(blocks, span)):  # fmt: skip
        x = x.astype(np.int32)
        t = np.arange(span, dtype=np.int64)
        w = x.astype(np.int64) * (4 * t * (span - 1 - t)) // ((span - 1) ** 2)  # Welch, integer floor division
        want = np.stack([(w[:, : span - i] * w[:, i:]).sum(axis=1) for i in range(order + 1)], axis=1)
        np.testing.assert_array_equal(kernels.autocorrelation(x, order), want)
        for coefficient_sum in (kernels.LPC_COEFFICIENT_SUM - 1, 5000):
            coefs = predicted_payload(rng, coefficient_sum)[blocks : kernels.LPC_HEADER].view("<i2").reshape(order, blocks)
            coefs = coefs.T.astype(np.int32)
            shifts = rng.integers(0, 16, blocks).astype(np.int32)
            padded = np.concatenate([np.zeros((blocks, order), np.int32), x], axis=1)
            acc = np.zeros_like(x)
            for k in range(order):
                acc += coefs[:, k : k + 1] * padded[:, order - 1 - k : order - 1 - k + span]  # int32, as stored
            np.testing.assert_array_equal(kernels.residuals(x, coefs, shifts), x - (acc >> shifts[:, None]))
