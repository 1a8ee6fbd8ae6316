"""The separation network: learned encoder/decoder with a TDCN++ masking network.

``mixture [B, T] -> sources [B, M, T]``, as in the AudioScope paper (after
Kavalerov et al., "Universal sound separation", 2019):

- **encoder**: the mixture is cut into frames of ``window_samples`` (2.5 ms
  at 16 kHz) every ``hop_samples`` and each frame is projected on a learned
  basis of ``basis_filters`` (a dense layer, then ReLU);
- **TDCN++ masking network**: a bottleneck projection, then ``repeats`` x
  ``blocks_per_repeat`` residual blocks (dense to ``hidden``, PReLU,
  feature-wise normalisation, depthwise convolution with dilation 2^b,
  PReLU, normalisation, dense back to ``bottleneck``). The "++" parts:
  normalisation per feature over the frames of the clip, a learnable scale
  on every block's residual (initialised to 0.9^k for block k), and dense
  skip-residual connections from the input of every earlier repeat to the
  input of each later repeat;
- **masks**: ``M`` sigmoid masks over the basis coefficients; each masked
  representation is decoded by a learned synthesis basis (dense to
  ``window_samples``) and overlap-added back into a waveform;
- **mixture consistency**: the sources are projected so that they sum to
  the mixture exactly, ``s_m + (x - sum_k s_k) / M`` (Wisdom et al., 2019).

Every layer takes any number of samples (>= one window), so training can use
cropped audio and evaluation whole clips. TensorFlow is imported at module
level: import this module lazily.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from audioscope.models.configs import AudioScopeConfig


def mixture_consistency(sources: tf.Tensor, mixture: tf.Tensor) -> tf.Tensor:
    """Project ``sources [B, M, T]`` so that they sum to ``mixture [B, T]``:
    the residual is shared out equally among the M sources."""
    residual = mixture - tf.reduce_sum(sources, axis=1)
    m = tf.cast(tf.shape(sources)[1], sources.dtype)
    return sources + residual[:, None, :] / m


class FeatureNorm(keras.layers.Layer):
    """Normalise every feature over the frames of each example, with a
    learned gain and bias per feature (TDCN++'s feature-wise normalisation).

    ``[B, F, C] -> [B, F, C]``; statistics over F for each (example, feature).
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        c = int(input_shape[-1])
        self.gain = self.add_weight(shape=(c,), initializer="ones", name="gain")
        self.bias = self.add_weight(shape=(c,), initializer="zeros", name="bias")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.epsilon) * self.gain + self.bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


class TDCNBlock(keras.layers.Layer):
    """One residual block: dense up, depthwise dilated conv, dense down, scaled residual."""

    def __init__(self, hidden: int, bottleneck: int, kernel_size: int, dilation: int,
                 residual_scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden, self.bottleneck = hidden, bottleneck
        self.kernel_size, self.dilation, self.residual_scale = kernel_size, dilation, residual_scale
        layers = keras.layers
        self.up = layers.Dense(hidden, name="up")
        self.act1 = layers.PReLU(shared_axes=[1], name="prelu1")
        self.norm1 = FeatureNorm(name="norm1")
        self.depthwise = layers.DepthwiseConv1D(
            kernel_size, dilation_rate=dilation, padding="same", name="depthwise"
        )
        self.act2 = layers.PReLU(shared_axes=[1], name="prelu2")
        self.norm2 = FeatureNorm(name="norm2")
        self.down = layers.Dense(bottleneck, name="down")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.residual_scale), name="residual_scale"
        )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        y = self.norm1(self.act1(self.up(x)))
        y = self.norm2(self.act2(self.depthwise(y)))
        return x + self.scale * self.down(y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "hidden": self.hidden, "bottleneck": self.bottleneck,
            "kernel_size": self.kernel_size, "dilation": self.dilation, "residual_scale": self.residual_scale,
        }


class SeparationNetwork(keras.layers.Layer):
    """``mixture [B, T] -> sources [B, M, T]`` (mixture-consistent)."""

    def __init__(self, config: AudioScopeConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        c = config
        layers = keras.layers
        self.analysis = layers.Dense(c.basis_filters, use_bias=False, activation="relu", name="encoder")
        self.input_norm = FeatureNorm(name="input_norm")
        self.to_bottleneck = layers.Dense(c.bottleneck, name="bottleneck")
        self.blocks = []
        # skip_layers[r * (r - 1) // 2 + q]: from the input of repeat q to repeat r (q < r).
        self.skip_layers = []
        k = 0
        for r in range(c.repeats):
            self.skip_layers += [layers.Dense(c.bottleneck, name=f"skip_{q}_to_{r}") for q in range(r)]
            for b in range(c.blocks_per_repeat):
                self.blocks.append(TDCNBlock(
                    c.hidden, c.bottleneck, c.kernel_size, 2**b, 0.9**k, name=f"block_{r}_{b}",
                ))  # fmt: skip
                k += 1
        self.mask_act = layers.PReLU(shared_axes=[1], name="mask_prelu")
        self.masks = layers.Dense(c.num_sources * c.basis_filters, activation="sigmoid", name="masks")
        self.synthesis = layers.Dense(c.window_samples, use_bias=False, name="decoder")

    def call(self, mixture: tf.Tensor) -> tf.Tensor:
        c = self.config
        n = tf.shape(mixture)[1]
        frames = self._frames(mixture)  # [B, F, W]
        coeffs = self.analysis(frames)  # [B, F, N]
        h = self.to_bottleneck(self.input_norm(coeffs))
        repeat_inputs: list[tf.Tensor] = []
        for r in range(c.repeats):
            for q in range(r):
                h = h + self.skip_layers[r * (r - 1) // 2 + q](repeat_inputs[q])
            repeat_inputs.append(h)
            for b in range(c.blocks_per_repeat):
                h = self.blocks[r * c.blocks_per_repeat + b](h)
        masks = self.masks(self.mask_act(h))  # [B, F, M * N]
        shape = tf.shape(masks)
        masks = tf.reshape(masks, [shape[0], shape[1], c.num_sources, c.basis_filters])
        masked = tf.transpose(masks * coeffs[:, :, None, :], [0, 2, 1, 3])  # [B, M, F, N]
        waves = tf.signal.overlap_and_add(self.synthesis(masked), c.hop_samples)  # [B, M, >= T]
        return mixture_consistency(waves[:, :, :n], mixture)

    def _frames(self, mixture: tf.Tensor) -> tf.Tensor:
        """``[B, T] -> [B, ceil(T / hop), window]``, zero-padded at the end so
        the overlap-add of the last frame reaches sample T."""
        c = self.config
        n = tf.shape(mixture)[1]
        n_frames = (n + c.hop_samples - 1) // c.hop_samples
        padded_len = (n_frames - 1) * c.hop_samples + c.window_samples
        padded = tf.pad(mixture, [[0, 0], [0, padded_len - n]])
        return tf.signal.frame(padded, c.window_samples, c.hop_samples)
