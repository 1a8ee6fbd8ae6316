"""Log-mel features computed in TensorFlow, inside the model.

Why in the graph: the exported SavedModel then takes raw 16 kHz audio, so a
scorer (and any model brought from elsewhere) has one input contract, and
features can never drift between training and scoring.

The frame layout is chosen so that whole seconds map to whole frame blocks:
a hop of 10 ms gives exactly 100 frames per second, and ``pad_end`` makes a
5 s clip exactly 500 frames, which the coincidence model reshapes into
``[5, 100, n_mels]`` for its per-second audio embeddings.

This module imports TensorFlow; import it only where TensorFlow is wanted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

from audioscope.geometry import SAMPLE_RATE


@dataclass(frozen=True, kw_only=True)
class LogMelConfig:
    """Parameters of the log-mel spectrogram (defaults: 25 ms / 10 ms / 64 bins)."""

    sample_rate: int = SAMPLE_RATE
    window_samples: int = 400  # 25 ms
    hop_samples: int = 160  # 10 ms -> 100 frames per second
    fft_length: int = 512
    n_mels: int = 64
    fmin_hz: float = 125.0
    fmax_hz: float = 7_500.0
    # Offset added before the log, as in VGGish: keeps silence finite and
    # compresses the very quiet end where only noise lives.
    log_offset: float = 0.01

    @property
    def frames_per_second(self) -> int:
        if self.sample_rate % self.hop_samples:
            raise ValueError("hop_samples must divide sample_rate so seconds map to whole frames")
        return self.sample_rate // self.hop_samples

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` of audio (``pad_end=True``)."""
        return -(-n_samples // self.hop_samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mel_matrix(config: LogMelConfig) -> tf.Tensor:
    """The ``[fft_length // 2 + 1, n_mels]`` linear-to-mel weight matrix (HTK mel scale)."""
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=config.n_mels,
        num_spectrogram_bins=config.fft_length // 2 + 1,
        sample_rate=config.sample_rate,
        lower_edge_hertz=config.fmin_hz,
        upper_edge_hertz=config.fmax_hz,
    )


def log_mel(audio: tf.Tensor, config: LogMelConfig = LogMelConfig()) -> tf.Tensor:
    """``[..., n_samples]`` float audio -> ``[..., n_frames, n_mels]`` log-mel.

    Magnitude STFT with a periodic Hann window, mel-warped, then
    ``log(mel + log_offset)``.
    """
    audio = tf.convert_to_tensor(audio, dtype=tf.float32)
    stft = tf.signal.stft(
        audio,
        frame_length=config.window_samples,
        frame_step=config.hop_samples,
        fft_length=config.fft_length,
        window_fn=tf.signal.hann_window,
        pad_end=True,
    )
    magnitude = tf.abs(stft)
    mel = tf.tensordot(magnitude, mel_matrix(config), axes=1)
    return tf.math.log(mel + config.log_offset)


def make_log_mel_layer(config: LogMelConfig = LogMelConfig()) -> Any:
    """A Keras layer wrapping :func:`log_mel` (no weights), for use inside models."""
    import keras

    class LogMel(keras.layers.Layer):
        """Raw audio ``[B, n_samples]`` -> log-mel ``[B, n_frames, n_mels]``."""

        def call(self, audio: tf.Tensor) -> tf.Tensor:
            return log_mel(audio, config)

        def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
            n = input_shape[-1]
            frames = config.n_frames(n) if n is not None else None
            return (*input_shape[:-1], frames, config.n_mels)

    return LogMel(name="log_mel")
