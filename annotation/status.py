"""`audioscope annotate status`: progress and agreement from the pulled votes.

Computed from ``labels.parquet`` and ``votes.parquet`` (written by pull):

* **progress per pool**: tasks with 0, 1, 2 and 3 counted votes (more than
  three is shown as 3+; the server counts annotations, not people);
* **per rater**: votes and the median seconds per task (``lead_time``);
* **Fleiss' kappa per question** over the clips with exactly three votes
  (every subject rated by the same number of raters, as Fleiss' kappa wants):
  with n = 3 raters, N clips and n_ij raters putting clip i in category j,
  P_i = (sum_j n_ij^2 - n) / (n (n - 1)), P_bar = mean_i P_i,
  p_j = sum_i n_ij / (N n), P_e = sum_j p_j^2,
  kappa = (P_bar - P_e) / (1 - P_e) (undefined, null, when P_e = 1);
* **pairwise agreement**: for each pair of raters, over the clips both voted
  on, the share of equal answers per question;
* **unanimity**: among clips with three votes, the share where all three
  agree on both questions, and the shares labeled on-screen only and
  off-screen only.

Outputs: ``status.json`` and ``status.png`` in ANNOTATION_DIR.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from audioscope import storage
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY, POOLS

STATUS_JSON = "status.json"
STATUS_PNG = "status.png"
QUESTIONS: tuple[str, ...] = ("onscreen", "offscreen")
N_RATERS = 3


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an [N subjects, k categories] count matrix with the same raters per subject.

    NaN when there are no subjects or P_e = 1 (every rating in one category).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return float("nan")
    n = counts.sum(axis=1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    n0 = float(n[0])
    p_i = ((counts**2).sum(axis=1) - n0) / (n0 * (n0 - 1.0))
    p_j = counts.sum(axis=0) / (counts.shape[0] * n0)
    p_e = float((p_j**2).sum())
    if p_e >= 1.0 - 1e-12:
        return float("nan")
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def complete_votes(votes: pd.DataFrame, n: int = N_RATERS) -> pd.DataFrame:
    """The votes of clips with exactly ``n`` counted votes."""
    per_clip = votes.groupby("clip_id")["rater"].transform("size")
    return votes[per_clip == n]


def question_kappa(votes: pd.DataFrame, question: str) -> tuple[float, int]:
    """(Fleiss' kappa of ``question`` over clips with three votes, how many clips)."""
    done = complete_votes(votes)
    if done.empty:
        return float("nan"), 0
    yes = done.groupby("clip_id")[question].sum().to_numpy(np.float64)
    counts = np.stack([yes, N_RATERS - yes], axis=1)
    return fleiss_kappa(counts), int(len(counts))


def pairwise_agreement(votes: pd.DataFrame) -> list[dict[str, Any]]:
    """Per pair of raters (sorted): clips both voted on and the share of equal answers per question."""
    out = []
    by_rater = {r: g.set_index("clip_id") for r, g in votes.groupby("rater")}
    for a, b in itertools.combinations(sorted(by_rater), 2):
        common = by_rater[a].index.intersection(by_rater[b].index)
        row: dict[str, Any] = {"raters": [a, b], "clips": int(len(common))}
        for q in QUESTIONS:
            same = (by_rater[a].loc[common, q].to_numpy() == by_rater[b].loc[common, q].to_numpy())
            row[q] = _num(float(same.mean())) if len(common) else None
        out.append(row)
    return out


def pool_progress(labels: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per pool: tasks with 0, 1, 2 and 3+ votes, and in all."""
    out = {}
    for pool in POOLS:
        n = labels.loc[labels["pool"] == pool, "n_votes"].to_numpy()
        out[pool] = {
            "tasks": int(len(n)), "0": int((n == 0).sum()), "1": int((n == 1).sum()),
            "2": int((n == 2).sum()), "3": int((n >= 3).sum()),
        }  # fmt: skip
    return out


def rater_stats(votes: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out = {}
    for rater, g in votes.groupby("rater"):
        lead = g["lead_time"].dropna().to_numpy(np.float64)
        out[str(rater)] = {"votes": int(len(g)), "median_seconds_per_task": _num(float(np.median(lead))) if lead.size else None}
    return out


def unanimity(labels: pd.DataFrame) -> dict[str, Any]:
    done = labels[labels["n_votes"] == N_RATERS]
    if done.empty:
        return {"clips_with_3_votes": 0, "unanimous": None, LABEL_ONSCREEN_ONLY: None, LABEL_OFFSCREEN_ONLY: None}

    def same(values: Any) -> bool:
        return len(set(bool(v) for v in values)) == 1

    both = [same(on) and same(off) for on, off in zip(done["onscreen_votes"], done["offscreen_votes"])]
    return {
        "clips_with_3_votes": int(len(done)),
        "unanimous": float(np.mean(both)),
        LABEL_ONSCREEN_ONLY: float((done["label"] == LABEL_ONSCREEN_ONLY).mean()),
        LABEL_OFFSCREEN_ONLY: float((done["label"] == LABEL_OFFSCREEN_ONLY).mean()),
    }


def compute_status(votes: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    kappa = {}
    for q in QUESTIONS:
        k, n = question_kappa(votes, q)
        kappa[q] = {"fleiss_kappa": _num(k), "clips": n}
    return {
        "pools": pool_progress(labels),
        "raters": rater_stats(votes),
        "agreement": {"kappa": kappa, "pairwise": pairwise_agreement(votes), "unanimity": unanimity(labels)},
        "votes": int(len(votes)),
        "clips": int(len(labels)),
    }


# --------------------------------------------------------------------------- picture


def _short(name: str) -> str:
    return name.split("@", 1)[0]


def status_png(status: Mapping[str, Any]) -> bytes:
    """Four panels: tasks by votes per pool, votes and seconds per rater, kappa and unanimity, pairwise agreement."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3, ax4 = fig.subplots(1, 4)
    pools = list(status["pools"])
    x = np.arange(len(pools))
    bottom = np.zeros(len(pools))
    colours = {"0": "#d9d9d9", "1": "#fdd49e", "2": "#fc8d59", "3": "#2b8cbe"}
    names = {"0": "no vote", "1": "1 vote", "2": "2 votes", "3": "3 votes"}
    for k, colour in colours.items():
        values = np.array([status["pools"][p][k] for p in pools], dtype=float)
        ax1.bar(x, values, bottom=bottom, color=colour, label=names[k])
        bottom += values
    ax1.set_xticks(x, [p.replace("_", "\n") for p in pools], fontsize=8)
    ax1.set_ylabel("clips")
    ax1.set_title("clips by counted votes, per pool")
    ax1.set_ylim(0, max(1.0, float(bottom.max(initial=0.0))) * 1.3)  # room for the legend above the bars
    ax1.legend(fontsize=8, ncol=2, loc="upper center")
    raters = list(status["raters"])
    xr = np.arange(len(raters))
    ax2.bar(xr, [status["raters"][r]["votes"] for r in raters], color="#74a9cf")
    ax2.set_xticks(xr, [_short(r) for r in raters], fontsize=8, rotation=30, ha="right")
    ax2.set_ylabel("votes")
    ax2.set_ylim(0, max([1] + [status["raters"][r]["votes"] for r in raters]) * 1.15)
    ax2.set_title("votes per rater (median s per task)")
    for i, r in enumerate(raters):
        sec = status["raters"][r]["median_seconds_per_task"]
        ax2.text(i, status["raters"][r]["votes"], "n/a" if sec is None else f"{sec:.0f} s", ha="center", va="bottom", fontsize=8)
    kappa = status["agreement"]["kappa"]
    u = status["agreement"]["unanimity"]
    labels = ["kappa\non-screen", "kappa\noff-screen", "unanimous\n(3 votes)"]
    raw = [kappa[q]["fleiss_kappa"] for q in QUESTIONS] + [u["unanimous"]]
    values = [v if v is not None else 0.0 for v in raw]
    ax3.bar(np.arange(3), values, color=["#31a354", "#31a354", "#756bb1"])
    ax3.set_xticks(np.arange(3), labels, fontsize=8)
    ax3.set_ylim(min(0.0, *values) - 0.05, 1.1)
    ax3.set_ylabel("Fleiss' kappa / share of clips")
    ax3.set_title("agreement (clips with 3 votes)")
    for i, v in enumerate(raw):
        ax3.text(i, max(values[i], 0.0) + 0.02, "n/a" if v is None else f"{v:.2f}", ha="center", fontsize=9)
    pairs = status["agreement"]["pairwise"]
    if pairs:
        xp = np.arange(len(pairs))
        w = 0.4
        for j, (q, colour) in enumerate(zip(QUESTIONS, ("#2b8cbe", "#fc8d59"))):
            ax4.bar(xp + (j - 0.5) * w, [p[q] if p[q] is not None else 0.0 for p in pairs], w, color=colour, label=q)
        ax4.set_xticks(xp, [" & ".join(_short(r) for r in p["raters"]) for p in pairs], fontsize=7, rotation=30, ha="right")
        ax4.legend(fontsize=8, ncol=2, loc="upper center")
    ax4.set_ylim(0, 1.25)
    ax4.set_ylabel("share of common clips answered alike")
    ax4.set_title("pairwise agreement")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_status(annotation_dir: str) -> dict[str, Any]:
    """Compute the status from the pulled tables; write status.json and status.png."""
    from audioscope.annotation.pull import read_tables

    from audioscope.annotation.pull import read_pull_summary

    votes, labels = read_tables(annotation_dir)
    status = compute_status(votes, labels)
    last = read_pull_summary(annotation_dir)
    status["repairs"] = last.get("repairs") or {}
    status["problems"] = last.get("problems") or {}
    status["cant_tell_clips"] = len(last.get("cant_tell_clips") or [])
    storage.atomic_write(storage.join(annotation_dir, STATUS_PNG), status_png(status))
    storage.atomic_write(
        storage.join(annotation_dir, STATUS_JSON), json.dumps(status, indent=2, sort_keys=True, allow_nan=False) + "\n"
    )
    return status
