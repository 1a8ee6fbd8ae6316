"""Demo raters: accounts that label the tasks from the synthetic ground truth.

For the demo and the tests, the whole annotation loop has to run unattended
against the real server. Each demo rater is a real Label Studio account (made
by ``annotate server --raters``) and posts its annotations through the API
with its **own** token, as a person's browser would. Its answers:

* Q1 ``onscreen``: the clip has audible on-screen sound (some whole second s
  with start <= s < end has ``has_onscreen`` in the corpus's truth.parquet);
* Q2 ``offscreen``: the clip has audible off-screen sound (same with
  ``has_offscreen``);

each flipped with the rater's error rate, deterministically: the answer to a
question is flipped when ``first 8 bytes of sha256(f"{seed}:{rater}:{clip_id}:{question}") / 2**64``
is below the error rate. The seconds spent per task (``lead_time``) are drawn
the same way between 4 and 24 s.

Raters work one after another (Label Studio's SQLite database takes one
writer at a time). A rater skips tasks it already annotated, so running the
raters again resumes, and tasks that already have three raters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from audioscope.annotation.client import Client
from audioscope.annotation.credentials import Account
from audioscope.annotation.pull import RATERS_PER_CLIP, fetch_tasks, rater_id
from audioscope.annotation.push import NO, Q_OFFSCREEN, Q_ONSCREEN, YES


@dataclass(frozen=True)
class DemoRater:
    name: str
    account: Account
    error_rate: float

    def __repr__(self) -> str:
        return f"DemoRater({self.name!r}, error_rate={self.error_rate})"


def unit(*parts: object) -> float:
    """A number in [0, 1) from the sha256 of the parts joined by ':'."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def truth_answers(clips: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per clip (video_id, start, end): ``has_truth``, ``onscreen``, ``offscreen`` (audible anywhere in the clip)."""
    from audioscope.synth.truth import clip_labels

    on = clip_labels(clips, truth)
    if "has_offscreen" in truth.columns:
        as_on = truth[["video_id", "second", "has_offscreen"]].rename(columns={"has_offscreen": "has_onscreen"})
        off = clip_labels(clips, as_on)["onscreen"]
    else:
        off = pd.Series(False, index=clips.index)
    return pd.DataFrame({"has_truth": on["has_truth"], "onscreen": on["onscreen"], "offscreen": off}, index=clips.index)


def rater_answer(seed: int, rater: str, clip_id: str, question: str, truth: bool, error_rate: float) -> bool:
    flipped = unit(seed, rater, clip_id, question) < error_rate
    return bool(truth) != flipped


def annotation_body(on: bool, off: bool, lead_time: float) -> dict[str, Any]:
    def choice(name: str, yes: bool) -> dict[str, Any]:
        return {"from_name": name, "to_name": "video", "type": "choices", "value": {"choices": [YES if yes else NO]}}

    return {"result": [choice(Q_ONSCREEN, on), choice(Q_OFFSCREEN, off)], "lead_time": round(lead_time, 2)}


def _voters(task: Mapping[str, Any]) -> set[int]:
    return {
        uid for a in task.get("annotations") or []
        if not a.get("was_cancelled") and (uid := rater_id(a)) is not None
    }  # fmt: skip


def run_raters(
    admin: Client,
    project_id: int,
    raters: Sequence[DemoRater],
    truth: pd.DataFrame,
    seed: int = 0,
    on_vote: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Let every rater annotate the project's tasks (module docstring); returns counts per rater."""
    tasks = sorted(fetch_tasks(admin, project_id, 500), key=lambda t: int(t["id"]))
    clips = pd.DataFrame([t["data"] for t in tasks], columns=["clip_id", "video_id", "start", "end"])
    answers = truth_answers(clips, truth) if len(clips) else pd.DataFrame(columns=["has_truth", "onscreen", "offscreen"])
    voters = {int(t["id"]): _voters(t) for t in tasks}
    summary: dict[str, Any] = {"tasks": len(tasks), "without_truth": int((~answers["has_truth"].astype(bool)).sum()), "raters": {}}
    for rater in raters:
        client = Client(admin.url, rater.account.token)
        uid = rater.account.user_id
        counts = {"annotated": 0, "already_done": 0, "full": 0, "no_truth": 0, "flipped": 0}
        for i, task in enumerate(tasks):
            tid = int(task["id"])
            if uid in voters[tid]:
                counts["already_done"] += 1
                continue
            if len(voters[tid]) >= RATERS_PER_CLIP:
                counts["full"] += 1
                continue
            if not bool(answers["has_truth"].iloc[i]):
                counts["no_truth"] += 1
                continue
            clip_id = str(task["data"]["clip_id"])
            true_on, true_off = bool(answers["onscreen"].iloc[i]), bool(answers["offscreen"].iloc[i])
            on = rater_answer(seed, rater.name, clip_id, Q_ONSCREEN, true_on, rater.error_rate)
            off = rater_answer(seed, rater.name, clip_id, Q_OFFSCREEN, true_off, rater.error_rate)
            lead = 4.0 + 20.0 * unit(seed, rater.name, clip_id, "lead_time")
            client.post(f"/api/tasks/{tid}/annotations/", {**annotation_body(on, off, lead), "project": project_id})
            voters[tid].add(uid if uid is not None else -1)
            counts["annotated"] += 1
            counts["flipped"] += int(on != true_on) + int(off != true_off)
            if on_vote:
                on_vote(rater.name)
        summary["raters"][rater.name] = {"error_rate": rater.error_rate, **counts}
    return summary
