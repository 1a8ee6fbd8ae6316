"""The AudioScope model: separation, embeddings, attention and on-screen classifier.

``{mixture [B, T], frames uint8 [B, 5, 128, 128, 3]} -> {sources [B, M, T], logits [B, M]}``

The separation network (:mod:`audioscope.models.separation`) splits the
mixture into M mixture-consistent sources; each source gets an audio
embedding, the frames a global and local video embeddings, each source an
audio-visual attention read of the local embeddings
(:mod:`audioscope.models.embeddings`), and the classifier gives the
probability ``p_m = sigmoid(logit_m)`` that source m is on screen. The
on-screen estimate is ``x_on = sum_m p_m s_m``.

Export (:func:`export_model`) writes a SavedModel with one signature, so
evaluation (and anyone else) needs neither this code nor the configuration::

    signature "serving_default"
      inputs:
        mixture: float32 [None, None]          16 kHz mono in [-1, 1], any length >= 2.5 ms
        frames:  uint8   [None, 5, 128, 128, 3] RGB, frame i at clip start + i + 0.5 s
      outputs:
        sources:       float32 [None, M, None]  separated sources (sum = mixture)
        probabilities: float32 [None, M]        P(source m is on screen)
        on_screen:     float32 [None, None]     x_on = sum_m p_m s_m

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

from audioscope.models.configs import AudioScopeConfig
from audioscope.models.embeddings import (
    FRAME_INPUT_SIZE,
    FRAMES,
    AudioEmbedding,
    AudioVisualAttention,
    OnScreenClassifier,
    VideoEmbedding,
)
from audioscope.models.separation import SeparationNetwork

SIGNATURE_NAME = "serving_default"
MODEL_INFO = "model.json"


class AudioScopeModel(keras.Model):
    """The whole AudioScope network (see the module docstring)."""

    def __init__(self, config: AudioScopeConfig, **kwargs: Any) -> None:
        super().__init__(name=kwargs.pop("name", "audioscope"), **kwargs)
        self.config = config
        self.separation = SeparationNetwork(config, name="separation")
        self.audio_embedding = AudioEmbedding(config, name="audio_embedding")
        self.video_embedding = VideoEmbedding(config, name="video_embedding")
        self.attention = AudioVisualAttention(config.attention_dim, name="av_attention")
        self.classifier = OnScreenClassifier(config.classifier_hidden, config.classifier_inputs, name="classifier")

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        mixture = tf.convert_to_tensor(inputs["mixture"], tf.float32)
        sources = self.separation(mixture)
        heard = sources if self.config.classifier_trains_separation else tf.stop_gradient(sources)
        audio = self.audio_embedding(heard, training=training)
        logits = self.classify(audio, inputs["frames"], training=training)
        return {"sources": sources, "logits": logits, "audio_embeddings": audio}

    def classify(self, audio: tf.Tensor, frames: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """On-screen logits ``[B, M]`` of sources whose audio embeddings are ``audio`` against ``frames``."""
        global_emb, local = self.video_embedding(frames, training=training)
        return self.classifier(global_emb, audio, self.attention(audio, local))


def on_screen_estimate(sources: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """``x_on = sum_m p_m s_m``: ``sources [B, M, T]``, ``probabilities [B, M]`` -> ``[B, T]``."""
    return tf.reduce_sum(sources * probabilities[:, :, None], axis=1)


def build_model(config: AudioScopeConfig, samples: int = 16_000) -> AudioScopeModel:
    """A model with its weights created (one call on zeros of ``samples`` samples), which depend on
    ``config.seed`` only."""
    from audioscope.models.spine import private_default_seeds

    with private_default_seeds(config.seed):
        model = AudioScopeModel(config)
        model(dummy_inputs(1, samples), training=False)
    return model


def dummy_inputs(batch: int, samples: int) -> dict[str, tf.Tensor]:
    """Zeros shaped like a batch of model inputs."""
    return {
        "mixture": tf.zeros([batch, samples], tf.float32),
        "frames": tf.zeros([batch, FRAMES, FRAME_INPUT_SIZE, FRAME_INPUT_SIZE, 3], tf.uint8),
    }


class _Exportable(tf.Module):
    def __init__(self, model: AudioScopeModel) -> None:
        super().__init__()
        self.model = model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="mixture"),
            tf.TensorSpec([None, FRAMES, FRAME_INPUT_SIZE, FRAME_INPUT_SIZE, 3], tf.uint8, name="frames"),
        ]
    )
    def serve(self, mixture: tf.Tensor, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self.model({"mixture": mixture, "frames": frames}, training=False)
        probabilities = tf.sigmoid(out["logits"])
        return {
            "sources": out["sources"],
            "probabilities": probabilities,
            "on_screen": on_screen_estimate(out["sources"], probabilities),
        }


def signature_description(num_sources: int | None = None) -> dict[str, Any]:
    """A canonical, JSON-able description of the exported signature (part of the model id)."""
    m = num_sources
    return {
        "name": SIGNATURE_NAME,
        "inputs": {"frames": {"dtype": "uint8", "shape": [None, FRAMES, FRAME_INPUT_SIZE, FRAME_INPUT_SIZE, 3]},
                   "mixture": {"dtype": "float32", "shape": [None, None]}},
        "outputs": {"on_screen": {"dtype": "float32", "shape": [None, None]},
                    "probabilities": {"dtype": "float32", "shape": [None, m]},
                    "sources": {"dtype": "float32", "shape": [None, m, None]}},
    }  # fmt: skip


def export_model(
    model: AudioScopeModel, out_dir: str | Path, info: Mapping[str, Any], *, data: Mapping[str, Any] | None = None
) -> str:
    """Write ``model`` as a SavedModel at ``out_dir`` with ``model.json``
    (``info`` plus the ``model_id``) and a model card; return the model id.

    The spine's export convention (:func:`audioscope.models.spine.publish_export`):
    written to a temporary sibling and renamed into place; an earlier export
    of the same run is replaced only once the new one is complete.
    """
    from audioscope.models.model_card import ModelCard
    from audioscope.models.spine import publish_export
    from audioscope.schemas.coincidence_signature import content_id

    model_id = ""

    def write(tmp: Path) -> None:
        nonlocal model_id
        module = _Exportable(model)
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE_NAME: module.serve})
        signature = signature_description(model.config.num_sources)
        model_id = content_id(tmp, signature)
        (tmp / MODEL_INFO).write_text(json.dumps({**dict(info), "model_id": model_id}, indent=2, sort_keys=True) + "\n")
        training = {k: v for k, v in info.items() if k not in ("config", "model")}
        ModelCard(
            model_id=model_id, model_name="audioscope", signature=signature, training_data=dict(data or {}),
            training=training, config=dict(info.get("config", {})), validation={},
            notes=["`audioscope evaluate` measures this model on a release's evaluation set."],
        ).write(tmp)  # fmt: skip

    publish_export(out_dir, write, replace_own=True)
    return model_id


#: The inputs and outputs of an exported AudioScope model's signature (module docstring).
SIGNATURE_INPUTS = ("mixture", "frames")
SIGNATURE_OUTPUTS = ("sources", "probabilities", "on_screen")


def _serving_function(loaded: Any, path: Path) -> Any:
    """The serving signature of a loaded SavedModel, refused (one line saying what the
    folder is instead) unless it is an AudioScope model's."""
    from audioscope.errors import UserError

    signature = getattr(loaded, "signatures", {}).get(SIGNATURE_NAME)
    inputs = set(signature.structured_input_signature[1]) if signature is not None else set()
    outputs = signature.structured_outputs if signature is not None else {}
    outputs = set(outputs) if isinstance(outputs, Mapping) else set()
    if inputs == set(SIGNATURE_INPUTS) and set(SIGNATURE_OUTPUTS) <= outputs:
        return signature
    if {"audio", "frames"} <= inputs and "probability" in outputs:
        what = "a coincidence model (from `audioscope coincidence train`; `audioscope score` takes it)"
    else:
        what = f"not an AudioScope model (its {SIGNATURE_NAME!r} signature takes {sorted(inputs)} and gives {sorted(outputs)})"
    raise UserError(
        f"{path} is {what}: give the run folder of `audioscope train` (or its export/ folder), whose model "
        f"takes {' and '.join(SIGNATURE_INPUTS)} and gives {', '.join(SIGNATURE_OUTPUTS)}"
    )


class ExportedModel:
    """An exported AudioScope model: ``model(mixture, frames)`` in numpy, batched."""

    def __init__(self, path: str | Path, batch_size: int = 16) -> None:
        path = Path(path)
        if not (path / "saved_model.pb").exists():
            raise FileNotFoundError(f"{path} is not an exported AudioScope model (no saved_model.pb)")
        self.path = path
        self.batch_size = batch_size
        self._loaded = tf.saved_model.load(str(path))
        self._fn = _serving_function(self._loaded, path)
        info = path / MODEL_INFO
        self.info: dict[str, Any] = json.loads(info.read_text()) if info.exists() else {}

    def __call__(self, mixture: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``mixture [n, T]`` float, ``frames [n, 5, 128, 128, 3]`` uint8 ->
        ``sources [n, M, T]``, ``probabilities [n, M]``, ``on_screen [n, T]``."""
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(mixture), self.batch_size):
            out = self._fn(
                mixture=tf.constant(np.asarray(mixture[i : i + self.batch_size], np.float32)),
                frames=tf.constant(np.asarray(frames[i : i + self.batch_size], np.uint8)),
            )
            for k, v in out.items():
                parts.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}
