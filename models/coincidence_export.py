"""The coincidence model's exported contract: signature, export with model
card and content id, loading any SavedModel that meets it, and the metrics
its evaluations report.

Exported signature (any SavedModel with this signature can be plugged in,
e.g. one trained on AudioSet elsewhere)::

    signature "serving_default"
      inputs:
        audio:  float32 [None, 80000]          16 kHz mono, in [-1, 1], 5 s
        frames: uint8   [None, 5, 128, 128, 3] RGB, frame i at clip start + i + 0.5 s
      outputs:
        probability: float32 [None]            P(audio and frames are aligned)

The model directory also holds ``model_card.json`` / ``MODEL_CARD.md`` and
its ``model_id``: SHA-256 over the variables files and a canonical
description of the signature (:func:`audioscope.models.spine.content_id`),
which the score table records.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE
from audioscope.metrics import roc_auc
from audioscope.models.coincidence_data import KIND_NAMES, OTHER_VIDEO, POSITIVE, SHIFTED, ExampleBatch
from audioscope.models.coincidence_model import OUTPUT_KEY
from audioscope.models.model_card import ModelCard
from audioscope.models.spine import content_id, publish_export

SIGNATURE_NAME = "serving_default"

#: The contract a plugged-in model must meet: name -> (dtype, shape).
SIGNATURE_INPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    "audio": (tf.float32, (None, CLIP_SAMPLES)),
    "frames": (tf.uint8, (None, CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3)),
}
SIGNATURE_OUTPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    OUTPUT_KEY: (tf.float32, (None,)),
}


# --------------------------------------------------------------------------- metrics


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.8) -> dict[str, float]:
    """ROC AUC plus precision/recall of ``score >= threshold`` for a binary question."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    kept = scores >= threshold
    n_kept = int(kept.sum())
    return {
        "n": int(len(labels)),
        "base_rate": float(labels.mean()) if len(labels) else float("nan"),
        "roc_auc": roc_auc(labels, scores),
        "threshold": float(threshold),
        "n_kept": n_kept,
        "precision": float(labels[kept].mean()) if n_kept else float("nan"),
        "recall": float(kept[labels].mean()) if labels.any() else float("nan"),
    }


def self_supervised_metrics(batch: ExampleBatch, probs: np.ndarray) -> dict[str, float]:
    """AUC of positives vs all negatives, and vs each negative kind."""
    out = {"auc": roc_auc(batch.label, probs)}
    for k in (OTHER_VIDEO, SHIFTED):
        m = (batch.kind == POSITIVE) | (batch.kind == k)
        out[f"auc_vs_{KIND_NAMES[k]}"] = roc_auc(batch.label[m], probs[m])
    out["mean_p_positive"] = float(probs[batch.kind == POSITIVE].mean())
    return out


# --------------------------------------------------------------------------- export / load


def signature_description() -> dict[str, Any]:
    """A canonical, JSON-able description of the exported signature."""
    def d(spec: Mapping[str, tuple[tf.DType, tuple[int | None, ...]]]) -> dict[str, Any]:
        return {k: {"dtype": t.name, "shape": list(s)} for k, (t, s) in sorted(spec.items())}

    return {"name": SIGNATURE_NAME, "inputs": d(SIGNATURE_INPUTS), "outputs": d(SIGNATURE_OUTPUTS)}


def model_hash(path: str | Path) -> str:
    """Stable model id: SHA-256 over the variables files and the signature
    (:func:`audioscope.models.spine.content_id`)."""
    return content_id(path, signature_description())


class _Exportable(tf.Module):
    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        self.model = model

    @tf.function(
        autograph=False,
        input_signature=[
            tf.TensorSpec(SIGNATURE_INPUTS["audio"][1], tf.float32, name="audio"),
            tf.TensorSpec(SIGNATURE_INPUTS["frames"][1], tf.uint8, name="frames"),
        ]
    )
    def serve(self, audio: tf.Tensor, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        prob = self.model({"audio": audio, "frames": frames}, training=False)
        return {OUTPUT_KEY: tf.reshape(tf.cast(prob, tf.float32), [-1])}


def export_model(model: keras.Model, out_dir: str | Path, card: ModelCard | None = None) -> str:
    """Export ``model`` as a SavedModel at ``out_dir`` atomically; return its model id.

    The spine's export convention (:func:`audioscope.models.spine.publish_export`):
    the model is written to a temporary sibling directory, the card (with
    the model id filled in) added, and the directory renamed into place. An
    existing ``out_dir`` is never overwritten.
    """
    model_id = ""

    def write(tmp: Path) -> None:
        nonlocal model_id
        module = _Exportable(model)
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE_NAME: module.serve})
        model_id = model_hash(tmp)
        if card is not None:
            card.model_id = model_id
            card.write(tmp)

    publish_export(out_dir, write)
    return model_id


class SignatureError(ValueError):
    """A SavedModel does not have the coincidence signature."""


def check_signature(fn: Any) -> list[str]:
    """Problems with a concrete signature function (empty list = fine)."""
    problems = []
    _, kwargs = fn.structured_input_signature
    for name, (dtype, shape) in SIGNATURE_INPUTS.items():
        spec = kwargs.get(name)
        if spec is None:
            problems.append(f"missing input {name!r} ({dtype.name} {list(shape)})")
            continue
        if spec.dtype != dtype:
            problems.append(f"input {name!r} is {spec.dtype.name}, expected {dtype.name}")
        if not tf.TensorShape(shape).is_compatible_with(spec.shape):
            problems.append(f"input {name!r} has shape {spec.shape}, expected {list(shape)}")
    extra = sorted(set(kwargs) - set(SIGNATURE_INPUTS))
    if extra:
        problems.append(f"unexpected inputs {extra} (the scorer only feeds audio and frames)")
    outputs = fn.structured_outputs
    if not isinstance(outputs, Mapping) or OUTPUT_KEY not in outputs:
        got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        problems.append(f"missing output {OUTPUT_KEY!r} (outputs: {got})")
    else:
        spec = outputs[OUTPUT_KEY]
        if spec.dtype != tf.float32:
            problems.append(f"output {OUTPUT_KEY!r} is {spec.dtype.name}, expected float32")
        if spec.shape.rank is not None and spec.shape.rank != 1:
            problems.append(f"output {OUTPUT_KEY!r} has shape {spec.shape}, expected [None]")
    return problems


class CoincidencePredictor:
    """``predictor(audio, frames) -> float32 probabilities [n]``, batched.

    Wraps any SavedModel with the coincidence signature. ``model_id`` is
    what the score table records.
    """

    def __init__(self, path: str | Path, fn: Any, batch_size: int) -> None:
        self.path = str(path)
        self._fn = fn
        self.batch_size = batch_size
        self.model_id = model_hash(path)

    def __call__(self, audio: np.ndarray, frames: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        frames = np.asarray(frames)
        if audio.ndim == 1:
            audio, frames = audio[None], frames[None]
        if frames.dtype != np.uint8:
            raise TypeError(f"frames must be uint8, got {frames.dtype}")
        if audio.shape[1:] != (CLIP_SAMPLES,) or frames.shape[1:] != (CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3):
            raise ValueError(
                f"expected audio [n, {CLIP_SAMPLES}] and frames [n, {CLIP_SECONDS}, {FRAME_SIZE}, "
                f"{FRAME_SIZE}, 3]; got {audio.shape} and {frames.shape}"
            )
        if len(audio) != len(frames):
            raise ValueError(f"{len(audio)} audio rows but {len(frames)} frame rows")
        out = np.empty(len(audio), np.float32)
        for i in range(0, len(audio), self.batch_size):
            res = self._fn(
                audio=tf.constant(audio[i : i + self.batch_size]),
                frames=tf.constant(frames[i : i + self.batch_size]),
            )
            out[i : i + self.batch_size] = np.asarray(res[OUTPUT_KEY]).reshape(-1)
        return out


def load_model(path: str | Path, *, batch_size: int = 64) -> CoincidencePredictor:
    """Load ANY SavedModel with the coincidence signature for batched scoring.

    Raises :class:`SignatureError` with every mismatch listed when the
    model does not meet the contract in this module's docstring.
    """
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise SignatureError(
            f"{path} is not a SavedModel directory (no saved_model.pb); "
            "pass the directory written by `train` or by tf.saved_model.save"
        )
    loaded = tf.saved_model.load(str(path))
    sigs = getattr(loaded, "signatures", {})
    if SIGNATURE_NAME not in sigs:
        raise SignatureError(
            f"{path} has no {SIGNATURE_NAME!r} signature (it has {sorted(sigs)}); "
            "export it with signatures={'serving_default': fn} where fn takes "
            "audio float32[None,80000] and frames uint8[None,5,128,128,3] and returns "
            "{'probability': float32[None]}"
        )
    fn = sigs[SIGNATURE_NAME]
    problems = check_signature(fn)
    if problems:
        raise SignatureError(
            f"{path}: the {SIGNATURE_NAME!r} signature does not match the coincidence contract: "
            + "; ".join(problems)
            + ". Expected inputs audio float32[None,80000], frames uint8[None,5,128,128,3] "
            "and output {'probability': float32[None]}."
        )
    predictor = CoincidencePredictor(path, fn, batch_size)
    predictor._loaded = loaded  # keep the trackable objects alive  # type: ignore[attr-defined]
    return predictor

