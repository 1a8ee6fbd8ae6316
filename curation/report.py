"""One offline HTML report of a run folder (`audioscope report DIR`).

A run folder holds the outputs of the steps side by side (``make demo``
writes ``df/``, ``annotation/``, ``mix/``, ``releases/``, ``evaluation/``...).
Each step's folder is recognised by what its owner says a finished folder
holds, whatever it is called, and becomes one section:

* **Df** (:mod:`audioscope.schemas.df`): counts, the score histogram
  (coloured by ground truth when the filter had it), a precision/recall curve
  and, per score band, a few example clips as playable video, cut from the
  clip store through its reader and encoded with ffmpeg (H.264 + AAC, MP4);
* **annotation**: progress per pool, agreement (Fleiss' kappa placed in the
  Landis & Koch bands, pairwise agreement, unanimity), time per rater, and
  the votes of a few sample clips;
* **mixtures**: examples per recipe and type, evaluation examples per set;
* **release**: per published version, files and bytes per group, examples,
  licences;
* **evaluation**: the table with a definition of every column, the targets,
  and the example WAVs as audio players with spectrograms.

A section whose folder is missing says which command makes it. The page
needs no network: it and its media are written to ``OUT`` (default
``DIR/report/``): ``report.html`` plus ``media/`` with relative links, so the
folder can be copied or zipped as a whole.
"""

from __future__ import annotations

import html
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from audioscope import storage
from audioscope.schemas.df import DfLayout, DfReport, read_report
from audioscope.errors import UserError
from audioscope.shell import q

REPORT_HTML = "report.html"
MEDIA_DIR = "media"
#: Score bands of the example clips, and clips shown per band.
SCORE_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
CLIPS_PER_BAND = 2
#: Sample clips whose votes are shown.
SAMPLE_VOTES = 8
#: Evaluation examples (per set) shown as players.
EVAL_EXAMPLES_PER_SET = 1
#: Landis & Koch (1977) bands of a kappa statistic.
KAPPA_BANDS: tuple[tuple[float, str], ...] = (
    (0.0, "poor (< 0)"), (0.2, "slight (0-0.20)"), (0.4, "fair (0.21-0.40)"), (0.6, "moderate (0.41-0.60)"),
    (0.8, "substantial (0.61-0.80)"), (1.01, "almost perfect (0.81-1)"),
)  # fmt: skip
#: What each column of the evaluation table means.
EVAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("set", "the evaluation set: on-screen or off-screen first mixture; single mixture or MoM "
     "(mixture of mixtures: the first mixture plus a second, off-screen one)."),
    ("examples", "examples evaluated in the set."),
    ("SI-SNR x_on", "median scale-invariant signal-to-noise ratio (dB) of the on-screen estimate x_on "
     "(the sources weighted by their on-screen probabilities) against the on-screen reference; higher is better."),
    ("input SI-SNR", "median SI-SNR (dB) of the input mixture itself against the on-screen reference "
     "(MoM sets only: a single mixture is its own reference)."),
    ("median SI-SNRi", "median over examples of the improvement, SI-SNR x_on minus input SI-SNR (dB). "
     "It is not the difference of the two medians, which the target line uses."),
    ("OSR", "off-screen suppression ratio (dB): how much quieter x_on is than the input on an off-screen "
     "set; higher means off-screen sound is removed better."),
    ("MixIT remix", "median SI-SNR (dB) of the best MixIT remix of the separated sources against the "
     "on-screen reference: the sources are assigned to the two mixtures in the best way, so this "
     "measures separation alone, whatever the on-screen classifier says."),
    ("AUC", "ROC AUC of the on-screen probabilities of the sources, each source weighted by its share "
     "of the mixture's power."),
    ("mean p", "power-weighted mean on-screen probability of the sources (near 1 on on-screen sets and "
     "near 0 on off-screen sets is right)."),
)  # fmt: skip


# --------------------------------------------------------------------------- finding the folders


@dataclass(frozen=True)
class RunFolders:
    """The step folders found in a run folder (None: not there)."""

    root: str
    df: str | None = None
    annotation: str | None = None
    mix: str | None = None
    releases: str | None = None
    evaluation: str | None = None


def _is_annotation(path: Path) -> bool:
    from audioscope.schemas.annotations import AnnotationLayout

    layout = AnnotationLayout(str(path))
    return Path(layout.labels_parquet).is_file() or Path(layout.status_json).is_file()


def _is_mix(path: Path) -> bool:
    from audioscope.pipelines.mix_layout import MixLayout

    layout = MixLayout(str(path))
    summary = read_json_file(Path(layout.summary_json))
    return summary is not None and "counts" in summary and Path(layout.examples_parquet).is_file()


def _release_versions(path: Path) -> list[Path]:
    from audioscope.curation.manifest import MANIFEST_JSON

    return sorted(p.parent for p in path.glob(f"*/*/{MANIFEST_JSON}"))


def _is_evaluation(path: Path) -> bool:
    f = path / "report.json"
    if not f.is_file():
        return False
    try:
        return "sets" in json.loads(f.read_text())
    except ValueError:
        return False


def find_run_folders(run_dir: str) -> RunFolders:
    """Each step folder directly inside ``run_dir`` (first by name when a kind is found twice)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{run_dir} is not a folder: give the folder a run wrote into (e.g. demo-output)")
    found: dict[str, str] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        kinds = (
            ("df", lambda p: DfLayout(str(p)).is_finished()), ("annotation", _is_annotation), ("mix", _is_mix),
            ("releases", lambda p: bool(_release_versions(p))), ("evaluation", _is_evaluation),
        )  # fmt: skip
        for kind, test in kinds:
            if kind not in found and test(sub):
                found[kind] = str(sub)
                break
    return RunFolders(root=str(root), **found)


# --------------------------------------------------------------------------- small readers


def read_json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_annotation(folder: str) -> tuple[dict[str, Any] | None, Any]:
    """``status.json`` (or None) and the labels table (or None) of an annotation folder."""
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import LABELS, SchemaError, validate

    from audioscope.schemas.annotations import AnnotationLayout

    layout = AnnotationLayout(str(folder))
    status = read_json_file(Path(layout.status_json))
    labels = None
    if Path(layout.labels_parquet).is_file():
        try:
            labels = validate(pq.read_table(layout.labels_parquet), LABELS).to_pandas()
        except (SchemaError, OSError, ValueError):
            labels = None
    return status, labels


def _resolve(path: str | None, run_dir: str) -> str | None:
    """A path recorded by a step, found as given, or under the run folder by its last component."""
    if not path:
        return None
    if not storage.is_local(path):
        return path
    candidates = [path, os.path.join(run_dir, os.path.basename(path.rstrip("/")))]
    return next((c for c in candidates if os.path.exists(c)), None)


# --------------------------------------------------------------------------- media


class Media:
    """Files written next to the report (``media/``), linked relatively."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / MEDIA_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: set[str] = set()

    def add(self, name: str, data: bytes) -> str:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        storage.atomic_write(str(self.dir / safe), data)
        self.names.add(safe)
        return f"{MEDIA_DIR}/{safe}"

    def copy(self, name: str, source: Path) -> str:
        return self.add(name, source.read_bytes())


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _figure(w: float = 6.0, h: float = 3.6) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def pr_curve_png(curve: Sequence[Mapping[str, Any]], threshold: float | None) -> bytes:
    """Precision against recall over the thresholds of the filter's curve; the chosen threshold marked."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    pts = [(r["recall"], r["precision"], r["threshold"]) for r in curve
           if r.get("recall") is not None and r.get("precision") is not None]  # fmt: skip
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color="#0072B2")
        if threshold is not None:
            best = min(pts, key=lambda p: abs(p[2] - threshold))
            ax.plot([best[0]], [best[1]], marker="o", color="#D55E00", markersize=9,
                    label=f"threshold {best[2]:g}: precision {best[1]:.2f}, recall {best[0]:.2f}")  # fmt: skip
            ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (share of clips with on-screen sound kept)")
    ax.set_ylabel("precision (share of kept clips\nwith on-screen sound)")
    ax.set_title("Df against ground truth, threshold from 0 to 1", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def spectrogram_png(audio: np.ndarray, sample_rate: int, title: str) -> bytes:
    """A log-power spectrogram (32 ms windows, 8 ms hop) as PNG bytes."""
    fig = _figure(5.0, 2.0)
    ax = fig.add_subplot(1, 1, 1)
    n, hop = int(0.032 * sample_rate), int(0.008 * sample_rate)
    x = np.asarray(audio, np.float64)
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    db = 10 * np.log10(power + 1e-10)
    top = float(db.max()) if db.size else 0.0
    ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
              extent=(0, x.size / sample_rate, 0, sample_rate / 2000))  # fmt: skip
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("kHz", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as w:
        rate, n, width = w.getframerate(), w.getnframes(), w.getsampwidth()
        data = w.readframes(n)
    if width != 2:
        raise ValueError(f"{path}: only 16-bit WAV is read")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0, rate


def clip_video(audio: np.ndarray, frames: np.ndarray, sample_rate: int) -> bytes:
    """An MP4 (H.264 + AAC, constant 5 frames/s, faststart) of a clip's frames and audio, made with ffmpeg."""
    from audioscope.media import MediaError, run_tool, stderr_tail

    frames = np.ascontiguousarray(frames, np.uint8)
    n, h, w, _ = frames.shape
    pcm = (np.clip(np.asarray(audio, np.float64), -1, 1) * 32767).round().astype("<i2")
    with tempfile.TemporaryDirectory(prefix="audioscope-report-") as tmp:
        vpath, apath, out = (os.path.join(tmp, f) for f in ("frames.rgb", "audio.s16", "clip.mp4"))
        Path(vpath).write_bytes(frames.tobytes())
        Path(apath).write_bytes(pcm.tobytes())
        cmd = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "1", "-i", vpath,
            "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", apath,
            "-vf", "fps=5,scale=256:256:flags=neighbor", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-profile:v", "baseline", "-c:a", "aac", "-b:a", "96k", "-ar", "44100",
            "-movflags", "+faststart", "-shortest", out,
        ]  # fmt: skip
        try:
            proc = run_tool(cmd, timeout_s=120)
        except MediaError as e:
            raise RuntimeError(f"ffmpeg could not encode a clip: {e}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not encode a clip: {stderr_tail(proc.stderr)}")
        return Path(out).read_bytes()


# --------------------------------------------------------------------------- HTML helpers


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = "".join(
            f"<td class=\"{'num' if i >= numeric_from else ''}\">{c if isinstance(c, Raw) else esc(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw(str):
    """HTML that :func:`table` puts in a cell unescaped."""


def pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def num(x: Any, places: int = 2) -> str:
    return "n/a" if x is None else f"{float(x):.{places}f}"


def missing(what: str, command: str) -> str:
    return f"<p class=\"missing\">No {esc(what)} in this run folder. Make it with <code>{esc(command)}</code>.</p>"


@dataclass
class Section:
    key: str
    title: str
    body: str
    media: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sections


def df_section(folder: str | None, run_dir: str, media: Media, videos: bool = True) -> Section:
    if folder is None:
        return Section("df", "Filtered subset Df", missing(
            "Df folder", "audioscope filter --scores SCORES_DIR --store STORE --out DIR/df"))
    layout = DfLayout(folder)
    report = read_report(layout)
    parts = [_df_counts(report)]
    if Path(layout.histogram_png).is_file():
        src = media.copy("score_histogram.png", Path(layout.histogram_png))
        parts.append(f"<figure><img src=\"{src}\" alt=\"score histogram\" width=\"750\">"
                     f"<figcaption>{esc(_histogram_caption(report))}</figcaption></figure>")  # fmt: skip
    t = report.truth_metrics
    if t and t.get("pr_curve"):
        src = media.add("pr_curve.png", pr_curve_png(t["pr_curve"], report.selection.get("threshold")))
        parts.append(
            f"<figure><img src=\"{src}\" alt=\"precision/recall curve\" width=\"600\"><figcaption>"
            f"Label: {esc(t.get('label'))}. Base rate {pct(t.get('base_rate'))}, ROC AUC "
            f"{num(t.get('roc_auc'), 3)}.</figcaption></figure>"
        )
    elif t:
        rows = [(f"{r['threshold']:.2f}", r["clips"], pct(r["precision"]), pct(r["recall"]))
                for r in t.get("threshold_table", [])]  # fmt: skip
        parts.append(table(("threshold", "clips", "precision", "recall"), rows))
    else:
        parts.append("<p>No ground truth: precision and recall are unknown (real videos have none; "
                     "the synthetic corpus of <code>audioscope synth</code> has it).</p>")  # fmt: skip
    if videos:
        parts.append(_band_examples(report, run_dir, media))
    return Section("df", "Filtered subset Df", "\n".join(parts))


def _df_counts(report: DfReport) -> str:
    rows = [
        ("in the store", report.get("store", {}).get("clips"), report.get("store", {}).get("videos")),
        ("scored", report.get("scored", {}).get("clips"), report.get("scored", {}).get("videos")),
        ("kept in Df", report.kept.get("clips"), report.kept.get("videos")),
    ]
    from audioscope.curation.splits import SPLITS

    splits = report.get("splits") or {}
    rows += [(f"of which {s}", splits[s].get("clips"), splits[s].get("videos")) for s in SPLITS if s in splits]
    sel = report.selection.get("description", "")
    return f"<p>Selection: <b>{esc(sel)}</b>.</p>" + table(("", "clips", "videos"), rows)


def _histogram_caption(report: DfReport) -> str:
    from audioscope.curation.filter import largest_bin_lines

    text = "Coincidence probability of every scored clip"
    text += ", stacked by ground truth; kept clips outlined." if report.histogram.get("by_class") else \
        "; kept clips in blue."
    return " ".join([text, *largest_bin_lines(report.histogram.get("largest_bin"))]).strip()


def _band_examples(report: DfReport, run_dir: str, media: Media) -> str:
    """A few clips per score band as <video>, cut from the clip store."""
    import pandas as pd

    from audioscope.pipelines.score_layout import ScoresLayout

    scores_dir = _resolve(report.inputs.get("scores"), run_dir)
    store_dir = _resolve(report.store, run_dir)
    head = "<h3>Example clips per score band</h3>"
    if not scores_dir or not store_dir:
        return head + missing("scores or clip store named by the Df report",
                              "audioscope score --store STORE --out SCORES_DIR")  # fmt: skip
    from audioscope.clipstore.reader import ClipStore

    try:
        with storage.open_file(ScoresLayout(scores_dir).scores_parquet) as fh:  # local, gs:// or s3://
            scores = pd.read_parquet(fh, columns=["clip_id", "probability"])
        store = ClipStore.open(store_dir)
    except Exception as e:  # noqa: BLE001 - the report says what could not be read, and goes on
        return head + f"<p class=\"missing\">The example clips could not be read ({esc(e)}).</p>"
    scores = scores.sort_values(["probability", "clip_id"], kind="mergesort").reset_index(drop=True)
    rows = []
    for lo, hi in SCORE_BANDS:
        p = scores["probability"]
        band = scores[(p >= lo) & ((p < hi) if hi < 1 else (p <= hi))]
        if band.empty:
            rows.append(f"<div class=\"band\"><h4>probability {lo:.2f}-{hi:.2f} (0 clips)</h4></div>")
            continue
        picks = band.iloc[np.unique(np.linspace(0, len(band) - 1, CLIPS_PER_BAND).round().astype(int))]
        cells = []
        for clip_id, prob in zip(picks["clip_id"], picks["probability"]):
            try:
                clip = store.clip(str(clip_id))
                video = clip_video(clip.audio, clip.frames, store.params.sample_rate)
            except (KeyError, OSError, RuntimeError, ValueError) as e:  # one clip's failure is shown, the rest go on
                cells.append(f"<figure><p class=\"missing\">{esc(clip_id)}: could not be cut ({esc(e)})</p></figure>")
                continue
            src = media.add(f"clip_{clip_id}.mp4", video)
            cells.append(
                f"<figure><video controls preload=\"auto\" width=\"256\" height=\"256\" src=\"{src}\"></video>"
                f"<figcaption>{esc(clip_id)}<br>probability {float(prob):.3f}</figcaption></figure>"
            )
        rows.append(f"<div class=\"band\"><h4>probability {lo:.2f}-{hi:.2f} ({len(band)} clips)</h4>"
                    f"{''.join(cells)}</div>")  # fmt: skip
    return head + "<p>Frames at 1 per second (as the model sees them), with the clip's audio.</p>" + "".join(rows)


def kappa_band(k: float | None) -> str:
    if k is None:
        return "undefined"
    return next(name for upper, name in KAPPA_BANDS if k < upper)


def annotation_section(folder: str | None) -> Section:
    title = "Annotation"
    if folder is None:
        return Section("annotation", title, missing(
            "annotation folder", "audioscope annotate sample/push/pull/status --annotations DIR/annotation"))
    status, labels = read_annotation(folder)
    parts = []
    if status is None:
        parts.append(missing("status", f"audioscope annotate status --annotations {q(folder)}"))
    else:
        pools = status.get("pools") or {}
        parts.append("<h3>Progress per pool</h3>" + table(
            ("pool", "tasks", "0 votes", "1 vote", "2 votes", "3 votes"),
            [(p, c.get("tasks"), c.get("0"), c.get("1"), c.get("2"), c.get("3")) for p, c in pools.items()],
        ))  # fmt: skip
        agreement = status.get("agreement") or {}
        kappa = agreement.get("kappa") or {}
        parts.append(
            "<h3>Agreement</h3><p>Fleiss' kappa over the clips with three votes, placed in the reference bands "
            "of Landis &amp; Koch (1977): below 0 poor, 0-0.20 slight, 0.21-0.40 fair, 0.41-0.60 moderate, "
            "0.61-0.80 substantial, 0.81-1 almost perfect.</p>"
            + table(("question", "clips", "Fleiss' kappa", "band"), [
                (q, v.get("clips"), num(v.get("fleiss_kappa"), 3), kappa_band(v.get("fleiss_kappa")))
                for q, v in kappa.items()
            ])
        )  # fmt: skip
        u = agreement.get("unanimity") or {}
        parts.append(
            f"<p>Unanimity: of {esc(u.get('clips_with_3_votes'))} clips with three votes, {pct(u.get('unanimous'))} "
            f"got the same answers from all three raters on both questions; {pct(u.get('onscreen_only'))} are "
            f"labeled on-screen sound only and {pct(u.get('offscreen_only'))} off-screen sound only.</p>"
        )
        pairs = agreement.get("pairwise") or []
        if pairs:
            parts.append("<h4>Pairwise agreement (share of equal answers)</h4>" + table(
                ("raters", "clips in common", "on-screen question", "off-screen question"),
                [(" & ".join(p.get("raters", [])), p.get("clips"), pct(p.get("onscreen")), pct(p.get("offscreen")))
                 for p in pairs],
            ))  # fmt: skip
        raters = status.get("raters") or {}
        parts.append("<h3>Raters</h3>" + table(
            ("rater", "votes", "median seconds per task"),
            [(r, v.get("votes"), num(v.get("median_seconds_per_task"), 1)) for r, v in sorted(raters.items())],
        ))  # fmt: skip
    if labels is not None and len(labels):
        sample = labels[labels["n_votes"] >= 3].head(SAMPLE_VOTES)
        if sample.empty:
            sample = labels.head(SAMPLE_VOTES)

        def votes(raters: Any, on: Any, off: Any) -> Raw:
            items = [f"{esc(r)}: {'on' if a else '-'}/{'off' if b else '-'}" for r, a, b in zip(raters, on, off)]
            return Raw("<br>".join(items))

        parts.append(
            "<h3>Votes of sample clips</h3><p>Each rater answers two questions: is there on-screen sound "
            "(on) and is there off-screen sound (off). A clip gets a label only when all three agree.</p>"
            + table(("clip", "pool", "votes (on-screen / off-screen)", "label"), [
                (r.clip_id, r.pool, votes(r.raters, r.onscreen_votes, r.offscreen_votes),
                 r.label if isinstance(r.label, str) and r.label else "none (not unanimous)")
                for r in sample.itertuples()
            ], numeric_from=9)
        )  # fmt: skip
    return Section("annotation", title, "\n".join(parts))


def mix_section(folder: str | None) -> Section:
    from audioscope.pipelines.mix_layout import MixLayout

    title = "Mixtures"
    if folder is None:
        return Section("mix", title, missing(
            "mixtures folder", "audioscope mix --store STORE --df DF_DIR --labels ANNOTATION_DIR --out DIR/mix"))
    summary = read_json_file(Path(MixLayout(folder).summary_json)) or {}
    counts = summary.get("counts") or {}
    types = ("NOn", "SOff", "LOn", "LOff")
    train = [(recipe, c.get("total"), *(c.get(t, 0) for t in types), c.get("mom", ""), c.get("single", ""))
             for recipe, c in sorted((counts.get("train") or {}).items())]  # fmt: skip
    ev = counts.get("eval") or {}
    sets = sorted({s for split in ev.values() for s in split})
    return Section("mix", title, (
        "<p>Training examples per recipe and type. NOn: noisy on-screen (frames and audio of the same Df "
        "clip); SOff: synthetic off-screen (frames of one Df clip, audio of another video); LOn / LOff: "
        "labeled on-screen / off-screen (unanimous human labels); MoM: mixture of mixtures; single: one "
        "mixture.</p>"
        + table(("recipe", "examples", *types, "MoM", "single"), train)
        + "<h3>Evaluation sets</h3>"
        + table(("set", "validation", "test"), [(s, ev.get("validation", {}).get(s, 0), ev.get("test", {}).get(s, 0))
                                                 for s in sets])  # fmt: skip
    ))


def release_section(folder: str | None) -> Section:
    from audioscope.curation.manifest import fmt_bytes, read_local_manifest

    title = "Release"
    if folder is None:
        return Section("release", title, missing(
            "release", "audioscope release publish --mix MIX --df DF --name NAME --version 1.0.0 --root DIR/releases"))
    parts = []
    for version_dir in _release_versions(Path(folder)):
        try:
            m = read_local_manifest(str(version_dir))
        except UserError as e:
            parts.append(f"<p class=\"missing\">{esc(e)}</p>")
            continue
        groups: dict[str, list[int]] = {}
        for f in m.files:
            groups.setdefault(f.group, []).append(f.size)
        lic = (m.licences or {}).get("by_licence") or {}
        parts.append(
            f"<h3>{esc(m.name)} {esc(m.version)}</h3><p>Published {esc(m.created)}; {len(m.files)} files, "
            f"{esc(fmt_bytes(m.total_bytes))}; {esc((m.counts or {}).get('examples', 'n/a'))} examples in shards. "
            "Every file is listed with its size and SHA-256 in its manifest.</p>"
            + table(("group", "files", "bytes"), [(g, len(s), fmt_bytes(sum(s))) for g, s in sorted(groups.items())])
            + table(("licence", "clips"), sorted(lic.items()))
        )
    return Section("release", title, "".join(parts))


def evaluation_section(folder: str | None, media: Media) -> Section:
    title = "Evaluation"
    if folder is None:
        return Section("evaluation", title, missing(
            "evaluation", "audioscope evaluate --model RUN_DIR --data MIX_DIR --out DIR/evaluation"))
    report = read_json_file(Path(folder) / "report.json") or {}
    sets = report.get("sets") or {}

    def med(r: Mapping[str, Any], key: str) -> str:
        v = r.get(key)
        return v.get("median_text", "") if isinstance(v, Mapping) else ""

    rows = [(name, r.get("examples"), med(r, "si_snr"), med(r, "input_si_snr"), med(r, "si_snr_improvement"),
             med(r, "osr"), med(r, "mixit_remix_si_snr"), num(r.get("auc"), 3),
             num(r.get("power_weighted_mean_probability"), 3)) for name, r in sets.items()]  # fmt: skip
    parts = [table(tuple(c for c, _ in EVAL_COLUMNS), rows)]
    parts.append("<dl>" + "".join(f"<dt>{esc(c)}</dt><dd>{esc(d)}</dd>" for c, d in EVAL_COLUMNS) + "</dl>")
    pooled = report.get("auc_pooled")
    targets = report.get("targets") or {}
    lines = [f"Power-weighted ROC AUC over all sets: {num(pooled, 3)}."]
    for key, t in targets.items():
        value = t.get("value")
        shown = f"{value:.2f} dB" if isinstance(value, (int, float)) else str(value)
        lines.append(f"Target {key.replace('_', ' ')}: {shown} (at least {t.get('target')} dB): "
                     f"{'met' if t.get('met') else 'not met'}, from {t.get('first_clips', 'n/a')} first clips.")  # fmt: skip
    parts.append("<p>" + "<br>".join(esc(x) for x in lines) + "</p><p>The on-screen MoM target is the difference "
                 "of the two medians (SI-SNR x_on minus input SI-SNR); the table's SI-SNRi column is the median of "
                 "the per-example differences, so the two can differ.</p>")  # fmt: skip
    parts.append(_eval_examples(Path(folder) / "examples", media))
    return Section("evaluation", title, "\n".join(parts))


def _eval_examples(examples: Path, media: Media) -> str:
    if not examples.is_dir():
        return "<p>No example WAVs (evaluate with <code>--examples-per-set 2</code> to write them).</p>"
    out = ["<h3>Example audio</h3><p>The first example of each set: the input mixture, the on-screen "
           "reference (audio1), the off-screen mixture (audio2, MoMs only), the on-screen estimate x_on, and "
           "every separated source with its on-screen probability p.</p>"]  # fmt: skip
    for set_dir in sorted(p for p in examples.iterdir() if p.is_dir()):
        for ex in sorted(p for p in set_dir.iterdir() if p.is_dir())[:EVAL_EXAMPLES_PER_SET]:
            clip = (ex / "clip.txt").read_text().strip() if (ex / "clip.txt").is_file() else ""
            cells = []
            order = {"mixture": 0, "audio1": 1, "audio2": 2, "on_screen_estimate": 3}
            for wav in sorted(ex.glob("*.wav"), key=lambda w: (order.get(w.stem, 9), w.stem)):
                stem = f"{set_dir.name}_{ex.name}_{wav.stem}"
                audio, rate = read_wav(wav)
                spec = media.add(f"{stem}.png", spectrogram_png(audio, rate, wav.stem))
                src = media.copy(f"{stem}.wav", wav)
                cells.append(
                    f"<figure class=\"audio\"><img src=\"{spec}\" alt=\"spectrogram of {esc(wav.stem)}\" width=\"400\">"
                    f"<audio controls preload=\"auto\" src=\"{src}\"></audio><figcaption>{esc(wav.stem)}</figcaption>"
                    "</figure>"
                )  # fmt: skip
            out.append(f"<h4>{esc(set_dir.name)} example {esc(ex.name)}{f' (clip {esc(clip)})' if clip else ''}</h4>"
                       f"<div class=\"players\">{''.join(cells)}</div>")  # fmt: skip
    return "\n".join(out)


# --------------------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#20324a;color:#fff;padding:12px 24px}header a{color:#cde;margin-right:14px}
main{padding:8px 24px;max-width:1200px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 20px 16px;margin:16px 0}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}
th{background:#eef}td.num{text-align:right}
figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}figcaption{font-size:12px;max-width:750px}
.band{margin:8px 0}.missing{color:#8a4b00}dt{font-weight:bold;margin-top:4px}dd{margin-left:16px}
.players figure{width:410px}audio{width:400px;display:block}
"""


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """What `audioscope report` needs: the run folder, where to write, and whether to cut example videos."""

    run_dir: str
    out: str | None = None
    videos: bool = True


@dataclass
class ReportResult:
    html: str
    sections: dict[str, bool]
    media: int


def report(config: ReportConfig) -> ReportResult:
    """Write ``report.html`` and its ``media/`` for a run folder (see the module docstring)."""
    folders = find_run_folders(config.run_dir)
    out_dir = Path(config.out or os.path.join(config.run_dir, "report"))
    if out_dir.exists():
        shutil.rmtree(out_dir / MEDIA_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    media = Media(out_dir)
    sections = [
        df_section(folders.df, config.run_dir, media, videos=config.videos),
        annotation_section(folders.annotation),
        mix_section(folders.mix),
        release_section(folders.releases),
        evaluation_section(folders.evaluation, media),
    ]
    present = {
        "df": folders.df is not None, "annotation": folders.annotation is not None, "mix": folders.mix is not None,
        "release": folders.releases is not None, "evaluation": folders.evaluation is not None,
    }  # fmt: skip
    nav = "".join(f"<a href=\"#{s.key}\">{esc(s.title)}</a>" for s in sections)
    body = "".join(f"<section id=\"{s.key}\"><h2>{esc(s.title)}</h2>{s.body}</section>" for s in sections)
    name = os.path.basename(os.path.abspath(config.run_dir))
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>AudioScope run report: {esc(name)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>AudioScope run report: {esc(name)}</h1><nav>{nav}</nav></header>"
        f"<main>{body}</main></body></html>\n"
    )
    path = out_dir / REPORT_HTML
    storage.atomic_write(str(path), page)
    return ReportResult(html=str(path), sections=present, media=len(media.names))
