"""`audioscope annotate pull`: votes and labels from the Label Studio project.

Pull reads every task of the project with its annotations, in pages: the
JSON export of ``--page-size`` task ids at a time (the export serializes
tasks about 1.5 times as fast as the task list, measured here). The ids are those push recorded
in ``task_ids.json`` when the project has exactly that many tasks (listing
10,000 ids costs seconds), else they are listed from the server; ids that
turned out stale are listed and read again, so nothing is missed. Pull keeps,
per task and per rater (``completed_by``), the **latest** annotation that is
completed and not cancelled:

* cancelled (skipped) annotations are dropped;
* an annotation without a yes/no answer to both questions is incomplete and
  dropped;
* of one rater's remaining annotations on one task, the one with the latest
  ``updated_at`` (then the highest id) counts; the others are superseded.

Outputs in ANNOTATION_DIR (written only after every page was read, each
atomically, so a pull cut short by a stopped server leaves the previous
outputs as they were, and the next pull starts again from the first page):

    votes.parquet   one row per counted vote (schemas.tables.VOTES)
    labels.parquet  one row per task (schemas.tables.LABELS): the votes as
                    parallel lists, raters sorted by name, and the label
                    "onscreen_only" / "offscreen_only" when exactly three
                    raters voted and all agree, else null
    csv/<split>_onscreen_unanimous_clips.csv, csv/<split>_offscreen_unanimous_clips.csv
                    AudioScope clip lists (video path, start, end) per split
                    (train, validate, test)
    pull.json       counts: tasks, annotations, counted, cancelled,
                    incomplete, superseded, labels per split
    task_ids.json   the project's task ids (for the next pull)
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import pandas as pd

from audioscope import storage
from audioscope.annotation.client import Client
from audioscope.annotation.push import NO, Q_OFFSCREEN, Q_ONSCREEN, YES
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY, LABELS, VOTES, to_table

VOTES_PARQUET = "votes.parquet"
LABELS_PARQUET = "labels.parquet"
PULL_JSON = "pull.json"
CSV_DIR = "csv"
#: Raters per clip in the protocol (SPEC.md 2.5).
RATERS_PER_CLIP = 3


@dataclass
class PullCounts:
    tasks: int = 0
    annotations: int = 0
    counted: int = 0
    cancelled: int = 0
    incomplete: int = 0
    superseded: int = 0


# --------------------------------------------------------------------------- one annotation


def answer(result: Iterable[Mapping[str, Any]], question: str) -> bool | None:
    """The yes/no answer to ``question`` in an annotation's result, None when absent."""
    for item in result or []:
        if item.get("from_name") != question:
            continue
        choices = (item.get("value") or {}).get("choices") or []
        if len(choices) == 1 and choices[0] in (YES, NO):
            return choices[0] == YES
    return None


def rater_id(annotation: Mapping[str, Any]) -> int | None:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("id")
    return int(who) if who is not None else None


def _latest_key(annotation: Mapping[str, Any]) -> tuple[str, int]:
    return (str(annotation.get("updated_at") or annotation.get("created_at") or ""), int(annotation.get("id") or 0))


def task_votes(task: Mapping[str, Any], users: Mapping[int, str], counts: PullCounts) -> list[dict[str, Any]]:
    """The counted votes of one task (module docstring), as VOTES rows; updates ``counts``."""
    data = task.get("data") or {}
    by_rater: dict[int, list[Mapping[str, Any]]] = {}
    for ann in task.get("annotations") or []:
        counts.annotations += 1
        if ann.get("was_cancelled"):
            counts.cancelled += 1
            continue
        uid = rater_id(ann)
        result = ann.get("result") or []
        if uid is None or answer(result, Q_ONSCREEN) is None or answer(result, Q_OFFSCREEN) is None:
            counts.incomplete += 1
            continue
        by_rater.setdefault(uid, []).append(ann)
    rows = []
    for uid, anns in by_rater.items():
        latest = max(anns, key=_latest_key)
        counts.superseded += len(anns) - 1
        counts.counted += 1
        rows.append(
            {
                **clip_fields(data), "task_id": int(task["id"]), "annotation_id": int(latest["id"]),
                "rater": users.get(uid, f"user-{uid}"), "rater_id": uid,
                "onscreen": answer(latest["result"], Q_ONSCREEN), "offscreen": answer(latest["result"], Q_OFFSCREEN),
                "lead_time": float(latest["lead_time"]) if latest.get("lead_time") is not None else None,
                "updated_at": str(latest.get("updated_at") or latest.get("created_at") or "") or None,
            }
        )  # fmt: skip
    return rows


def clip_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The clip's identity as push stored it in the task data."""
    return {
        "clip_id": str(data["clip_id"]), "video_id": str(data["video_id"]),
        "start": float(data["start"]), "end": float(data["end"]), "split": data.get("split"),
        "pool": str(data["pool"]),
    }  # fmt: skip


# --------------------------------------------------------------------------- labels


def final_label(onscreen: list[bool], offscreen: list[bool]) -> str | None:
    """"onscreen_only" / "offscreen_only" when exactly three raters agree on it, else None."""
    if len(onscreen) != RATERS_PER_CLIP:
        return None
    if all(onscreen) and not any(offscreen):
        return LABEL_ONSCREEN_ONLY
    if not any(onscreen) and all(offscreen):
        return LABEL_OFFSCREEN_ONLY
    return None


def label_rows(tasks: Iterable[Mapping[str, Any]], votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One LABELS row per task with a clip id, sorted by (video_id, start, clip_id)."""
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for v in votes:
        by_clip.setdefault(v["clip_id"], []).append(v)
    rows = {}
    for task in tasks:
        data = task.get("data") or {}
        if "clip_id" not in data:
            continue
        clip = clip_fields(data)
        vs = sorted(by_clip.get(clip["clip_id"], []), key=lambda v: v["rater"])
        on = [bool(v["onscreen"]) for v in vs]
        off = [bool(v["offscreen"]) for v in vs]
        rows[clip["clip_id"]] = {
            **clip, "n_votes": len(vs), "raters": [v["rater"] for v in vs], "onscreen_votes": on,
            "offscreen_votes": off, "label": final_label(on, off), "source_uri": data.get("source_uri"),
            "licence_name": data.get("licence_name"), "licence_url": data.get("licence_url"),
        }  # fmt: skip
    return sorted(rows.values(), key=lambda r: (r["video_id"], r["start"], r["clip_id"]))


def aggregate(tasks: list[Mapping[str, Any]], users: Mapping[int, str]) -> tuple[pd.DataFrame, pd.DataFrame, PullCounts]:
    """(votes, labels, counts) from exported tasks: the pure part of pull."""
    counts = PullCounts(tasks=len(tasks))
    votes = [v for task in tasks if "clip_id" in (task.get("data") or {}) for v in task_votes(task, users, counts)]
    votes.sort(key=lambda v: (v["video_id"], v["start"], v["clip_id"], v["rater"]))
    labels = label_rows(tasks, votes)
    return (
        to_table(votes, VOTES).to_pandas(),
        to_table(labels, LABELS).to_pandas(),
        counts,
    )


# --------------------------------------------------------------------------- files


def _parquet(frame: pd.DataFrame, schema: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import validate

    table = validate(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def csv_names() -> dict[tuple[str, str], str]:
    """(split, label) -> the CSV file name (published spelling of the split)."""
    from audioscope.curation.splits import CSV_NAMES, SPLITS

    kinds = {LABEL_ONSCREEN_ONLY: "onscreen", LABEL_OFFSCREEN_ONLY: "offscreen"}
    return {(s, lab): f"{CSV_NAMES[s]}_{kind}_unanimous_clips.csv" for s in SPLITS for lab, kind in kinds.items()}


def write_outputs(annotation_dir: str, votes: pd.DataFrame, labels: pd.DataFrame, summary: Mapping[str, Any]) -> dict[str, str]:
    """The CSVs, labels.parquet, votes.parquet and pull.json (in that order), each atomically."""
    from audioscope.curation.filter import audioscope_csv

    files = {}
    for (split, label), name in csv_names().items():
        rows = labels[(labels["split"] == split) & (labels["label"] == label)]
        files[name] = storage.join(annotation_dir, CSV_DIR, name)
        storage.atomic_write(files[name], audioscope_csv(rows))
    files[LABELS_PARQUET] = storage.join(annotation_dir, LABELS_PARQUET)
    storage.atomic_write(files[LABELS_PARQUET], _parquet(labels, LABELS))
    files[VOTES_PARQUET] = storage.join(annotation_dir, VOTES_PARQUET)
    storage.atomic_write(files[VOTES_PARQUET], _parquet(votes, VOTES))
    files[PULL_JSON] = storage.join(annotation_dir, PULL_JSON)
    storage.atomic_write(files[PULL_JSON], json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return files


def read_tables(annotation_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(votes, labels) written by pull (UserError when missing)."""
    import pyarrow.parquet as pq

    from audioscope.errors import UserError
    from audioscope.schemas.tables import validate

    out = []
    for name, schema in ((VOTES_PARQUET, VOTES), (LABELS_PARQUET, LABELS)):
        path = storage.join(annotation_dir, name)
        if not storage.exists(path):
            raise UserError(f"no {name} in {annotation_dir}: run `audioscope annotate pull --annotations {annotation_dir}` first")
        with storage.open_file(path) as fh:
            out.append(validate(pq.read_table(fh), schema).to_pandas())
    return out[0], out[1]


# --------------------------------------------------------------------------- the step


def task_ids_to_read(client: Client, annotation_dir: str | None, project_id: int) -> tuple[list[int], bool]:
    """(task ids, known?): push's ``task_ids.json`` when it has as many ids as the project has tasks, else listed."""
    from audioscope.annotation.push import read_task_ids

    known = read_task_ids(annotation_dir, project_id) if annotation_dir else None
    if known is not None and int(client.get(f"/api/projects/{project_id}/").get("task_number", -1)) == len(known):
        return known, True
    return client.task_ids(project_id), False


def fetch_tasks(
    client: Client, project_id: int, page_size: int, on_page: Callable[[int, int], None] | None = None,
    annotation_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Every task of the project with its annotations, page by page; ``on_page(tasks, annotations)`` after each.

    With the ids push recorded (as many as the project's tasks), listing them
    is skipped; if any of them is gone the ids are listed after all and the
    tasks not read yet are read, so the result is the same either way.
    """

    def read(ids: list[int]) -> Iterator[dict[str, Any]]:
        for page in client.export_pages(project_id, ids, page_size):
            if on_page:
                on_page(len(page), sum(len(t.get("annotations") or []) for t in page))
            yield from page

    ids, known = task_ids_to_read(client, annotation_dir, project_id)
    tasks = {int(t["id"]): t for t in read(ids)}
    if known and set(tasks) != set(ids):
        listed = client.task_ids(project_id)
        current = set(listed)
        tasks = {i: t for i, t in tasks.items() if i in current}
        tasks.update({int(t["id"]): t for t in read([i for i in listed if i not in tasks])})
    return [tasks[i] for i in sorted(tasks)]


def pull(
    client: Client, annotation_dir: str, project_id: int, page_size: int = 500,
    on_page: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Read, aggregate and write (module docstring); returns the summary."""
    from audioscope.annotation.push import write_task_ids

    t0 = time.monotonic()
    tasks = fetch_tasks(client, project_id, page_size, on_page, annotation_dir)
    users = client.users()
    t_read = time.monotonic() - t0
    votes, labels, counts = aggregate(tasks, users)
    by_split = {
        f"{split}/{label}": int(n)
        for (split, label), n in labels.dropna(subset=["label"]).groupby(["split", "label"]).size().items()
    }
    summary = {
        "project_id": project_id,
        "server": client.url,
        **asdict(counts),
        "clips": int(len(labels)),
        "clips_with_3_votes": int((labels["n_votes"] == RATERS_PER_CLIP).sum()),
        "labels": {
            LABEL_ONSCREEN_ONLY: int((labels["label"] == LABEL_ONSCREEN_ONLY).sum()),
            LABEL_OFFSCREEN_ONLY: int((labels["label"] == LABEL_OFFSCREEN_ONLY).sum()),
        },
        "labels_by_split": by_split,
        "seconds_reading": round(t_read, 2),
        "seconds": round(time.monotonic() - t0, 2),
    }
    summary["files"] = write_outputs(annotation_dir, votes, labels, summary)
    write_task_ids(annotation_dir, project_id, [int(t["id"]) for t in tasks])
    return summary
