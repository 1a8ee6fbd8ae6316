"""The coincidence model's exported contract: signature, export with model
card and content id, loading any SavedModel that meets it, and the metrics
its evaluations report.

The signature, the content id (``model_id``, which the score table
records) and the loader are the contract with the score step; they live in
:mod:`audioscope.schemas.coincidence_signature` (re-exported here). The model
directory also holds ``model_card.json`` / ``MODEL_CARD.md``.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from audioscope.metrics import roc_auc
from audioscope.models.coincidence_data import KIND_NAMES, OTHER_VIDEO, POSITIVE, SHIFTED, ExampleBatch
from audioscope.models.model_card import ModelCard
from audioscope.models.spine import publish_export
from audioscope.schemas.coincidence_signature import (  # noqa: F401 (re-exported: the contract)
    OUTPUT_KEY,
    SIGNATURE_INPUTS,
    SIGNATURE_NAME,
    SIGNATURE_OUTPUTS,
    CoincidencePredictor,
    SignatureError,
    check_signature,
    load_model,
    model_hash,
    signature_description,
)

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


