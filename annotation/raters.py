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

Each rater labels the tasks of their own project (the clips assigned to
them, see ``annotation/assign.py``), with their own token, one rater after
another (Label Studio's SQLite database takes one writer at a time). A rater
skips tasks it already annotated, so running the raters again resumes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from audioscope.annotation.client import Client
from audioscope.annotation.credentials import Account
from audioscope.annotation.pull import rater_id, read_project
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


def run_raters(
    url: str,
    projects: Mapping[str, Any],
    raters: Sequence[DemoRater],
    pools: pd.DataFrame,
    truth: pd.DataFrame,
    seed: int = 0,
    on_vote: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Let every rater annotate the tasks of their own project (module docstring); returns counts per rater."""
    clips_by_id = pools.set_index("clip_id", drop=False)
    summary: dict[str, Any] = {"raters": {}, "tasks": 0}
    for rater in raters:
        client = Client(url, rater.account.token)
        project_id = projects[rater.name].project_id
        tasks = read_project(client, project_id, 0)
        summary["tasks"] += len(tasks)
        ids = [str(t["data"]["clip_id"]) for t in tasks]
        known = [c for c in ids if c in clips_by_id.index]
        frame = clips_by_id.loc[known, ["clip_id", "video_id", "start", "end"]].reset_index(drop=True)
        answers = truth_answers(frame, truth).set_index(frame["clip_id"]) if len(frame) else None
        counts = {"annotated": 0, "already_done": 0, "no_truth": 0, "flipped": 0}
        done_clips: set[str] = set()
        for task in tasks:
            clip_id = str(task["data"]["clip_id"])
            mine = [a for a in task.get("annotations") or [] if not a.get("was_cancelled") and rater_id(a) == rater.account.user_id]
            if mine or clip_id in done_clips:
                counts["already_done"] += 1
                continue
            if answers is None or clip_id not in answers.index or not bool(answers.loc[clip_id, "has_truth"]):
                counts["no_truth"] += 1
                continue
            true_on, true_off = bool(answers.loc[clip_id, "onscreen"]), bool(answers.loc[clip_id, "offscreen"])
            on = rater_answer(seed, rater.name, clip_id, Q_ONSCREEN, true_on, rater.error_rate)
            off = rater_answer(seed, rater.name, clip_id, Q_OFFSCREEN, true_off, rater.error_rate)
            lead = 4.0 + 20.0 * unit(seed, rater.name, clip_id, "lead_time")
            client.annotate(int(task["id"]), {**annotation_body(on, off, lead), "project": project_id})
            done_clips.add(clip_id)
            counts["annotated"] += 1
            counts["flipped"] += int(on != true_on) + int(off != true_off)
            if on_vote:
                on_vote(rater.name)
        summary["raters"][rater.name] = {"error_rate": rater.error_rate, **counts}
    return summary
