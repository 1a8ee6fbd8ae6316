"""The contract between the coincidence model and `audioscope score`.

Any SavedModel with this signature can be plugged into the score step
(e.g. one trained on AudioSet elsewhere)::

    signature "serving_default"
      inputs:
        audio:  float32 [None, 80000]          16 kHz mono, in [-1, 1], 5 s
        frames: uint8   [None, 5, 128, 128, 3] RGB, frame i at clip start + i + 0.5 s
      outputs:
        probability: float32 [None]            P(audio and frames are aligned)

Its ``model_id`` (which the score table records) is :func:`model_hash`:
SHA-256 over the variables files and a canonical description of the
signature. The training side (:mod:`audioscope.models.coincidence_export`)
exports to this contract; the score step loads with :func:`load_model`.
It lives in ``schemas/`` because both sides depend on it and the score
step comes before the models in the import order.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE

#: The model's one output: the probability that audio and frames belong together.
OUTPUT_KEY = "probability"

SIGNATURE_NAME = "serving_default"

#: The contract a plugged-in model must meet: name -> (dtype, shape).
SIGNATURE_INPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    "audio": (tf.float32, (None, CLIP_SAMPLES)),
    "frames": (tf.uint8, (None, CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3)),
}
SIGNATURE_OUTPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    OUTPUT_KEY: (tf.float32, (None,)),
}


def signature_description() -> dict[str, Any]:
    """A canonical, JSON-able description of the exported signature."""
    def d(spec: Mapping[str, tuple[tf.DType, tuple[int | None, ...]]]) -> dict[str, Any]:
        return {k: {"dtype": t.name, "shape": list(s)} for k, (t, s) in sorted(spec.items())}

    return {"name": SIGNATURE_NAME, "inputs": d(SIGNATURE_INPUTS), "outputs": d(SIGNATURE_OUTPUTS)}


def model_hash(path: str | Path) -> str:
    """Stable model id: SHA-256 over the variables files and the signature (:func:`content_id`)."""
    return content_id(path, signature_description())


def content_id(path: str | Path, signature: Mapping[str, Any]) -> str:
    """A model's content id: SHA-256 over its variables files and a canonical
    description of its signature.

    ``saved_model.pb`` is left out on purpose: it embeds graph details that
    change with the TensorFlow version while the model (weights + contract)
    stays the same.
    """
    path = Path(path)
    h = hashlib.sha256()
    h.update(json.dumps(signature, sort_keys=True).encode())
    var_dir = path / "variables"
    files = sorted(p for p in var_dir.rglob("*") if p.is_file()) if var_dir.exists() else []
    if not files:
        raise ValueError(f"{path} has no variables/ files; is it a SavedModel directory?")
    for p in files:
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


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


_NOT_FOR_SCORE = (
    " (from `audioscope train`; `audioscope evaluate` takes it): scoring takes a coincidence model, the "
    "folder written by `audioscope coincidence train`"
)


def load_model(path: str | Path, *, batch_size: int = 64) -> CoincidencePredictor:
    """Load ANY SavedModel with the coincidence signature for batched scoring.

    Raises :class:`SignatureError` with every mismatch listed when the
    model does not meet the contract in this module's docstring.
    """
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        if (path / "export" / "saved_model.pb").exists():  # the run folder of `audioscope train`
            raise SignatureError(f"{path} is the run folder of an AudioScope model{_NOT_FOR_SCORE}")
        raise SignatureError(
            f"{path} is not a SavedModel directory (no saved_model.pb); "
            "pass the folder written by `audioscope coincidence train` (or by tf.saved_model.save)"
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
    if problems and "mixture" in fn.structured_input_signature[1]:
        raise SignatureError(f"{path} is an AudioScope model{_NOT_FOR_SCORE}")
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
