"""Log-mel features: shapes, and values against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models.features import LogMelConfig, log_mel  # noqa: E402


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def test_shapes_give_100_frames_per_second() -> None:
    cfg = LogMelConfig()
    out = log_mel(np.zeros((3, 80_000), np.float32), cfg)
    assert tuple(out.shape) == (3, 500, 64)
    assert cfg.frames_per_second == 100
    assert cfg.n_frames(80_000) == 500


def test_silence_is_log_offset() -> None:
    cfg = LogMelConfig()
    out = log_mel(np.zeros((16_000,), np.float32), cfg).numpy()
    np.testing.assert_allclose(out, np.log(cfg.log_offset), rtol=1e-6)


@pytest.mark.parametrize("freq", [500.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_peaks_in_its_mel_bin(freq: float) -> None:
    cfg = LogMelConfig()
    t = np.arange(16_000) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    spec = log_mel(tone, cfg).numpy()
    # Independent: band centres equally spaced on the HTK mel scale.
    edges = np.linspace(_hz_to_mel(cfg.fmin_hz), _hz_to_mel(cfg.fmax_hz), cfg.n_mels + 2)
    expected = int(np.argmin(np.abs(edges[1:-1] - _hz_to_mel(freq))))
    peak = np.argmax(spec[5:-5].mean(axis=0))
    assert abs(int(peak) - expected) <= 1, (peak, expected)
    # and the tone stands far above the quietest bands
    assert spec[5:-5, peak].mean() - spec[5:-5].mean(axis=0).min() > 3.0


def test_magnitude_matches_numpy_stft_energy() -> None:
    """Total mel energy of a frame equals numpy's |rfft| of the same Hann-windowed frame
    pushed through the same (TF) mel matrix: checks framing, window and FFT size."""
    cfg = LogMelConfig()
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, 4_000).astype(np.float32)
    ours = np.exp(log_mel(x, cfg).numpy()) - cfg.log_offset
    n = 7  # an inner frame
    frame = x[n * cfg.hop_samples : n * cfg.hop_samples + cfg.window_samples]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.window_samples) / cfg.window_samples)
    mag = np.abs(np.fft.rfft(frame * window, n=cfg.fft_length))
    from audioscope.models.features import mel_matrix

    ref = mag @ mel_matrix(cfg).numpy()
    np.testing.assert_allclose(ours[n], ref, rtol=1e-3, atol=1e-4)
