"""Audio and video embeddings, audio-visual attention and the on-screen classifier.

As in the AudioScope paper:

- **audio embedding**, one per separated source: log-mel (computed in the
  graph, :mod:`audioscope.models.features`) -> a MobileNet-v1-style stack
  (a 3x3 stem, then depthwise-separable blocks) -> mean over frequency ->
  attention pooling over time (a learned softmax weighting of the frames)
  -> dense to ``embedding_dim``;
- **video embedding**: each of the 5 frames (pooled to ``frame_size``;
  with ``video_input="motion"``, minus the mean of the five first)
  through a MobileNet-v1-style stack; the ``5 x h x w`` cells of the last
  feature maps, each plus a learned position embedding, are the *local*
  spatio-temporal embeddings; their mean and max, through a dense layer,
  the *global* embedding;
- **audio-visual attention** per source:
  ``attend(q, K, V) = softmax(f_K(K) f_q(q)^T)^T f_V(V)`` with the source's
  audio embedding as the query and the local video embeddings as keys and
  values (dot products scaled by 1/sqrt(attention_dim));
- **classifier**: ``[global video, source audio, audio-visual]`` -> dense
  (ReLU) -> dense -> one logit per source; ``p_m = sigmoid(logit_m)``.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from audioscope.models.configs import CLASSIFIER_INPUTS, AudioScopeConfig
from audioscope.models.features import LogMelConfig, log_mel

from audioscope.geometry import CLIP_SECONDS as FRAMES
from audioscope.geometry import FRAME_SIZE as FRAME_INPUT_SIZE


def mobilenet_stack(stem: int, blocks: Sequence[tuple[int, int]], name: str) -> keras.Sequential:
    """A MobileNet-v1-style image stack: a strided 3x3 conv stem, then
    depthwise-separable blocks ``(filters, stride)``, each conv followed by
    batch normalisation and ReLU. ``[N, H, W, C] -> [N, H', W', filters]``."""
    layers = keras.layers
    out: list[keras.layers.Layer] = [
        layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name=f"{name}_stem"),
        layers.BatchNormalization(momentum=0.9, name=f"{name}_stem_bn"),
        layers.ReLU(name=f"{name}_stem_relu"),
    ]
    for i, (filters, stride) in enumerate(blocks):
        out += [
            layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw{i}"),
            layers.BatchNormalization(momentum=0.9, name=f"{name}_dw{i}_bn"),
            layers.ReLU(name=f"{name}_dw{i}_relu"),
            layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw{i}"),
            layers.BatchNormalization(momentum=0.9, name=f"{name}_pw{i}_bn"),
            layers.ReLU(name=f"{name}_pw{i}_relu"),
        ]
    return keras.Sequential(out, name=name)


class AudioEmbedding(keras.layers.Layer):
    """``sources [B, M, T] -> embeddings [B, M, embedding_dim]``."""

    def __init__(self, config: AudioScopeConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.log_mel_config = LogMelConfig(n_mels=config.mel_bins)
        self.stack = mobilenet_stack(config.audio_stem, config.audio_channels, "audio_stack")
        width = config.audio_channels[-1][0] if config.audio_channels else config.audio_stem
        self.attention_hidden = keras.layers.Dense(width, activation="tanh", name="pool_hidden")
        self.attention_logit = keras.layers.Dense(1, name="pool_logit")
        self.project = keras.layers.Dense(config.embedding_dim, activation="relu", name="audio_embedding")

    def call(self, sources: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        shape = tf.shape(sources)
        flat = tf.reshape(sources, [shape[0] * shape[1], shape[2]])
        mel = log_mel(flat, self.log_mel_config)[..., None]  # [B*M, frames, mels, 1]
        h = tf.reduce_mean(self.stack(mel, training=training), axis=2)  # [B*M, frames', C]
        weights = tf.nn.softmax(self.attention_logit(self.attention_hidden(h)), axis=1)  # [B*M, frames', 1]
        pooled = tf.reduce_sum(weights * h, axis=1)  # [B*M, C]
        emb = self.project(pooled)
        return tf.reshape(emb, [shape[0], shape[1], self.config.embedding_dim])


class VideoEmbedding(keras.layers.Layer):
    """``frames uint8 [B, 5, 128, 128, 3] -> (global [B, D], local [B, L, D])``
    with ``L = 5 * h * w`` cells of the last feature maps."""

    def __init__(self, config: AudioScopeConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.pool = FRAME_INPUT_SIZE // config.frame_size
        self.stack = mobilenet_stack(config.video_stem, config.video_channels, "video_stack")
        self.local_project = keras.layers.Dense(config.embedding_dim, name="local_embedding")
        self.global_project = keras.layers.Dense(config.embedding_dim, activation="relu", name="global_embedding")
        size = config.frame_size // 2  # the stem's stride
        for _, stride in config.video_channels:
            size = -(-size // stride)
        self.cells = FRAMES * size * size

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.position = self.add_weight(
            shape=(self.cells, self.config.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )

    def call(self, frames: tf.Tensor, training: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        b = tf.shape(frames)[0]
        x = tf.cast(frames, tf.float32) / 127.5 - 1.0  # [B, 5, H, W, 3]
        if self.config.video_input == "motion":
            x = x - tf.reduce_mean(x, axis=1, keepdims=True)
        x = tf.reshape(x, [-1, FRAME_INPUT_SIZE, FRAME_INPUT_SIZE, 3])
        if self.pool > 1:
            x = tf.nn.avg_pool2d(x, self.pool, self.pool, "VALID")
        h = self.stack(x, training=training)  # [B*5, h, w, C]
        c = h.shape[-1]
        cells = tf.reshape(h, [b, self.cells, c])
        global_emb = self.global_project(tf.concat([tf.reduce_mean(cells, 1), tf.reduce_max(cells, 1)], -1))
        local = self.local_project(cells) + self.position[None]
        return global_emb, local


class AudioVisualAttention(keras.layers.Layer):
    """``(queries [B, M, D], local [B, L, D]) -> [B, M, attention_dim]``:
    ``softmax(f_K(K) f_q(q)^T)^T f_V(V)``, the softmax over the L cells."""

    def __init__(self, attention_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attention_dim = attention_dim
        self.f_q = keras.layers.Dense(attention_dim, use_bias=False, name="f_q")
        self.f_k = keras.layers.Dense(attention_dim, use_bias=False, name="f_k")
        self.f_v = keras.layers.Dense(attention_dim, name="f_v")

    def call(self, queries: tf.Tensor, local: tf.Tensor) -> tf.Tensor:
        scores = tf.matmul(self.f_k(local), self.f_q(queries), transpose_b=True)  # [B, L, M]
        weights = tf.nn.softmax(scores / self.attention_dim**0.5, axis=1)
        return tf.matmul(weights, self.f_v(local), transpose_a=True)  # [B, M, A]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "attention_dim": self.attention_dim}


class OnScreenClassifier(keras.layers.Layer):
    """``(global [B, D], audio [B, M, D], audio-visual [B, M, A]) -> logits [B, M]``."""

    def __init__(self, hidden: int, inputs: tuple[str, ...] = CLASSIFIER_INPUTS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = hidden
        self.inputs = tuple(inputs)
        self.hidden = keras.layers.Dense(hidden, activation="relu", name="hidden")
        self.logit = keras.layers.Dense(1, name="logit")

    def call(self, global_emb: tf.Tensor, audio: tf.Tensor, av: tf.Tensor) -> tf.Tensor:
        m = tf.shape(audio)[1]
        parts = {"global": lambda: tf.tile(global_emb[:, None, :], [1, m, 1]), "audio": lambda: audio, "av": lambda: av}
        x = tf.concat([parts[name]() for name in self.inputs], axis=-1)
        return tf.squeeze(self.logit(self.hidden(x)), -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden": self.hidden_units, "inputs": list(self.inputs)}
