"""Evaluating an AudioScope model on the four evaluation sets.

For every example the exported model gives the separated sources ``s_m``,
the on-screen probabilities ``p_m`` and the on-screen estimate
``x_on = sum_m p_m s_m``. Per set (:mod:`audioscope.models.separation_metrics`):

- on-screen sets: SI-SNR of ``x_on`` against the on-screen reference
  (``audio1``); for MoMs also the input's SI-SNR (the mixture against
  ``audio1``) and the improvement (a single mixture is its own reference);
- off-screen sets: OSR, how much quieter ``x_on`` is than the input;
- MoM sets: the SI-SNR of the best MixIT remix of the sources against
  ``audio1`` (how well the sources separate, whatever the classifier says);
- every set: the power-weighted ROC AUC of ``p_m``, sources labelled
  on screen when they come from an on-screen first mixture (all sources of
  an on-screen single mixture, the sources MixIT assigns to ``audio1`` of an
  on-screen MoM), and the same pooled over all sets.

Medians are reported (values can be +-inf). The report is ``report.json``
and ``report.md`` in the output folder, the table is printed, and the first
few examples of each set are written as WAV files (mixture, references,
``x_on`` and every source with its probability in the name).

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import io
import json
import math
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf

from audioscope import storage
from audioscope.models import separation_metrics as sm
from audioscope.models.losses import best_assignment
from audioscope.schemas import records

EVAL_SETS: tuple[str, ...] = records.EVAL_SETS
SAMPLE_RATE = records.SAMPLE_RATE
#: The issue's acceptance targets, checked in every report.
TARGET_OSR_DB = 6.0
TARGET_IMPROVEMENT_DB = 3.0
#: A target's median over fewer distinct first clips than this is flagged as
#: too few to judge (a small corpus's test split can hold one on-screen clip).
MIN_TARGET_CLIPS = 10

Predict = Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]
"""``predict(mixture [n, T], frames [n, 5, 128, 128, 3])`` -> sources, probabilities, on_screen."""


@dataclass
class SetAccumulator:
    """Per-example values of one evaluation set, gathered batch by batch."""

    name: str
    si_snr: list[float] = field(default_factory=list)
    input_si_snr: list[float] = field(default_factory=list)
    remix_si_snr: list[float] = field(default_factory=list)
    osr: list[float] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    examples: int = 0
    first_clips: set = field(default_factory=set)

    @property
    def onscreen(self) -> bool:
        return self.name.startswith("onscreen")

    @property
    def mom(self) -> bool:
        return self.name.endswith("_mom")

    def add(self, batch: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        audio1, audio2 = batch["audio1"], batch["audio2"]
        mixture = audio1 + audio2
        sources, probs, x_on = out["sources"], out["probabilities"], out["on_screen"]
        refs = np.stack([audio1, audio2], axis=1)
        assignment = best_assignment(tf.constant(refs, tf.float32), tf.constant(sources, tf.float32)).numpy()
        self.examples += len(mixture)
        clips = batch.get("clip_id1")
        self.first_clips.update(range(self.examples - len(mixture), self.examples) if clips is None else clips.tolist())
        if self.onscreen:
            self.si_snr += sm.si_snr(audio1, x_on).tolist()
        else:
            self.osr += sm.off_screen_suppression(mixture, x_on).tolist()
        if self.mom:
            # (a single mixture is its own reference: its input SI-SNR is +inf)
            if self.onscreen:
                self.input_si_snr += sm.si_snr(audio1, mixture).tolist()
            remix = np.einsum("bm,bmt->bt", assignment[:, 0, :], sources)
            self.remix_si_snr += sm.si_snr(audio1, remix).tolist()
        self.labels.append(sm.source_labels(self.name, assignment[:, 0, :]))
        self.scores.append(probs)
        self.weights.append(sm.power_weights(sources, mixture))

    def auc_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate(x) if x else np.zeros(0) for x in (self.labels, self.scores, self.weights))  # type: ignore[return-value]

    def report(self) -> dict[str, Any]:
        labels, scores, weights = self.auc_parts()
        out: dict[str, Any] = {"examples": self.examples, "auc": _none_if_nan(sm.weighted_roc_auc(labels, scores, weights))}
        if self.onscreen:
            out["si_snr"] = sm.summarize(self.si_snr)
        if self.input_si_snr:
            out["input_si_snr"] = sm.summarize(self.input_si_snr)
            out["si_snr_improvement"] = sm.summarize(np.subtract(self.si_snr, self.input_si_snr))
        if not self.onscreen:
            out["osr"] = sm.summarize(self.osr)
        if self.remix_si_snr:
            out["mixit_remix_si_snr"] = sm.summarize(self.remix_si_snr)
        total = float(weights.sum())
        out["power_weighted_mean_probability"] = float(np.sum(scores * weights) / total) if total > 0 else None
        return out


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def evaluate_sets(
    predict: Predict,
    sets: Mapping[str, Iterable[Mapping[str, np.ndarray]]],
    *,
    examples_dir: str | Path | None = None,
    examples_per_set: int = 2,
    progress: Any = None,
) -> dict[str, Any]:
    """Run ``predict`` over batches of every set and build the report dict.

    ``sets`` maps a set name to batches of loader dicts (numpy). The first
    ``examples_per_set`` examples of each set are written to ``examples_dir``.
    """
    accs: dict[str, SetAccumulator] = {}
    for name, batches in sets.items():
        acc = accs[name] = SetAccumulator(name)
        for batch in batches:
            out = predict(batch["audio1"] + batch["audio2"], batch["frames"])
            if examples_dir is not None and acc.examples < examples_per_set:
                write_examples(Path(examples_dir) / name, batch, out, acc.examples, examples_per_set - acc.examples)
            acc.add(batch, out)
            if progress is not None:
                progress.update(len(batch["audio1"]))
    per_set = {name: acc.report() for name, acc in accs.items()}
    pooled = sm.pooled_auc({n: a.auc_parts() for n, a in accs.items()})
    return {"sets": per_set, "auc_pooled": _none_if_nan(pooled), "targets": check_targets(accs)}


def check_targets(accs: Mapping[str, SetAccumulator]) -> dict[str, Any]:
    """The issue's two targets: median OSR on off-screen single mixtures >= 6 dB,
    and median SI-SNR of x_on on on-screen MoMs >= 3 dB above the input's.
    Each says from how many distinct first clips its median comes."""
    out: dict[str, Any] = {}
    off = accs.get("offscreen_single")
    if off and off.examples:
        osr = sm.median(off.osr)
        out["offscreen_single_median_osr_db"] = {
            "value": _jsonable(osr), "target": TARGET_OSR_DB, "met": bool(osr >= TARGET_OSR_DB),
            "first_clips": len(off.first_clips),
        }  # fmt: skip
    on = accs.get("onscreen_mom")
    if on and on.examples:
        # The same statistic as the table's "median SI-SNRi" column: the
        # median over examples of each example's improvement. (The
        # difference of the two medians, which an earlier report used, is
        # kept for comparison; the two differ when the examples do.)
        gain = sm.median(np.subtract(on.si_snr, on.input_si_snr))
        out["onscreen_mom_median_si_snr_minus_input_db"] = {
            "value": _jsonable(gain), "target": TARGET_IMPROVEMENT_DB, "met": bool(gain >= TARGET_IMPROVEMENT_DB),
            "first_clips": len(on.first_clips), "statistic": "median of per-example SI-SNR improvements",
            "difference_of_medians": _jsonable(sm.median(on.si_snr) - sm.median(on.input_si_snr)),
        }  # fmt: skip
    return out


#: What each column of the table means (printed under it and kept in report.md).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("set", "onscreen_single: one clip with on-screen sound; offscreen_single: one clip whose sound is off "
     "screen; onscreen_mom / offscreen_mom: a mixture of mixtures (MoM), the on-screen (or off-screen) clip's "
     "audio plus the audio of another, off-screen clip"),
    ("SI-SNR x_on", "scale-invariant signal-to-noise ratio (dB) of the on-screen estimate x_on = sum_m p_m s_m "
     "against the on-screen clip's own audio (higher is better)"),
    ("input SI-SNR", "the same for the input mixture itself, before separation (MoMs only)"),
    ("median SI-SNRi", "SI-SNR improvement: the median over examples of (SI-SNR x_on - input SI-SNR)"),
    ("OSR", "off-screen suppression ratio, 10 log10(power of the input / power of x_on), dB: how much quieter "
     "x_on is than an input with no on-screen sound (higher is better)"),
    ("MixIT remix", "SI-SNR of the best MixIT remix of the separated sources against the first clip's audio: "
     "how well the sources separate, whatever the on-screen classifier says"),
    ("AUC", "ROC AUC of the on-screen probabilities p_m, each source weighted by its share of the input's power"),
    ("mean p", "power-weighted mean on-screen probability p_m: near 1 is right on on-screen sets, near 0 on "
     "off-screen sets"),
)


def _jsonable(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    return x if math.isfinite(x) else ("+inf" if x > 0 else "-inf")


def format_table(report: Mapping[str, Any]) -> str:
    """The report as an aligned text table (also valid Markdown)."""
    head = ("set", "examples", "SI-SNR x_on", "input SI-SNR", "median SI-SNRi", "OSR", "MixIT remix", "AUC", "mean p")
    rows = [head, tuple("---" for _ in head)]
    for name, r in report["sets"].items():
        def med(key: str) -> str:
            return r[key]["median_text"] if key in r else ""

        auc = "" if r.get("auc") is None else f"{r['auc']:.3f}"
        mean_p = "" if r.get("power_weighted_mean_probability") is None else f"{r['power_weighted_mean_probability']:.3f}"
        rows.append((name, str(r["examples"]), med("si_snr"), med("input_si_snr"), med("si_snr_improvement"),
                     med("osr"), med("mixit_remix_si_snr"), auc, mean_p))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    pooled = report.get("auc_pooled")
    lines.append("")
    lines.append("Medians over the examples of each set (values can be +-inf). Columns:")
    lines += [f"- {name}: {meaning}" for name, meaning in COLUMNS]
    lines.append("")
    lines.append(f"power-weighted ROC AUC of p_m over all sets: {'n/a' if pooled is None else f'{pooled:.3f}'}")
    for key, t in report.get("targets", {}).items():
        value = t["value"]
        shown = f"{value:.2f} dB" if isinstance(value, float) else str(value)
        line = f"target {key}: {shown} (>= {t['target']:g} dB): {'met' if t['met'] else 'NOT met'}"
        if key.startswith("onscreen_mom"):
            line += " (the table's median SI-SNRi on onscreen_mom"
            line += (f"; the difference of the two medians is {t['difference_of_medians']:.2f} dB)"
                     if isinstance(t.get("difference_of_medians"), float) else ")")  # fmt: skip
        else:
            line += " (the table's OSR on offscreen_single)"
        clips = t.get("first_clips")
        if clips is not None and clips < MIN_TARGET_CLIPS:
            line += (f" (from only {clips} clip{'s' if clips != 1 else ''}: too few to judge; "
                     "more videos give a larger test split: DEMO_VIDEOS for make demo)")  # fmt: skip
        lines.append(line)
    written = report.get("examples_written")
    if written:
        lines.append("")
        lines.append(
            f"example audio: {sum(written.values())} WAV files under examples/<set>/<n>/ in the report folder "
            "(mixture, audio1 = on-screen or first clip, audio2 = the other clip, on_screen_estimate = x_on, "
            "and every separated source with its p in the file name)"
        )
    return "\n".join(lines)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV of float audio in [-1, 1] (clipped)."""
    pcm = (np.clip(np.asarray(audio, np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_examples(
    folder: Path, batch: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], first_index: int, count: int
) -> None:
    """WAV files of the first ``count`` examples of a batch under ``folder/NNN/``."""
    for i in range(min(count, len(batch["audio1"]))):
        d = folder / f"{first_index + i:03d}"
        files = {"mixture": batch["audio1"][i] + batch["audio2"][i], "audio1": batch["audio1"][i],
                 "on_screen_estimate": out["on_screen"][i]}  # fmt: skip
        if np.any(batch["audio2"][i]):
            files["audio2"] = batch["audio2"][i]
        for m, (src, p) in enumerate(zip(out["sources"][i], out["probabilities"][i])):
            files[f"source{m}_p{p:.2f}"] = src
        for stem, audio in files.items():
            storage.atomic_write(str(d / f"{stem}.wav"), wav_bytes(audio))
        clip = batch.get("clip_id1")
        if clip is not None:
            value = clip[i]
            storage.atomic_write(str(d / "clip.txt"), (value.decode() if isinstance(value, bytes) else str(value)) + "\n")


def find_sets(eval_dir: str, split: str = "test") -> dict[str, str]:
    """The folders of the evaluation sets under ``eval_dir``: the sets
    themselves, or a mixtures directory's ``eval/<split>/``."""
    for base in (eval_dir, storage.join(eval_dir, "eval", split), storage.join(eval_dir, split)):
        found = {s: storage.join(base, s) for s in EVAL_SETS if storage.list_files(storage.join(base, s), ".tfrecord")}
        if found:
            return found
    return {}


def evaluate(
    model_dir: str | Path,
    eval_dir: str,
    out_dir: str | Path,
    *,
    split: str = "test",
    batch_size: int = 16,
    examples_per_set: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the exported model of a run directory (or an export folder
    itself) on the evaluation sets under ``eval_dir``; write the report."""
    from audioscope.models.audioscope_model import ExportedModel
    from audioscope.models.data import load_dataset
    from audioscope.progress import Progress

    if progress:
        print(f"loading the model {export_path(model_dir)}", file=sys.stderr)
    model = ExportedModel(export_path(model_dir), batch_size=batch_size)
    set_dirs = find_sets(eval_dir, split)
    if not set_dirs:
        raise FileNotFoundError(
            f"no evaluation sets under {eval_dir} (looked for {', '.join(EVAL_SETS)} folders with .tfrecord "
            f"shards, also under eval/{split}/)"
        )
    sets = {name: load_dataset(path, batch_size=batch_size).as_numpy_iterator() for name, path in set_dirs.items()}
    out = Path(out_dir)
    bar = Progress("evaluating", unit="examples") if progress else None
    report = evaluate_sets(model, sets, examples_dir=out / "examples", examples_per_set=examples_per_set, progress=bar)
    if bar:
        bar.close()
    report["examples_written"] = {
        name: len(list((out / "examples" / name).rglob("*.wav"))) for name in set_dirs if (out / "examples" / name).is_dir()
    }
    report = {
        "model": str(model_dir), "model_info": {k: model.info.get(k) for k in ("step", "train_seconds")},
        "config": model.info.get("config", {}).get("name"), "data": {n: p for n, p in set_dirs.items()},
        "missing_sets": [s for s in EVAL_SETS if s not in set_dirs], **report,
    }  # fmt: skip
    storage.atomic_write(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    storage.atomic_write(str(out / "report.md"), "# AudioScope evaluation\n\n" + format_table(report) + "\n")
    return report


def export_path(model_dir: str | Path) -> Path:
    """The SavedModel folder of a run directory (``RUN_DIR/export``) or the folder itself."""
    p = Path(model_dir)
    return p / "export" if (p / "export" / "saved_model.pb").exists() else p
