"""`audioscope annotate pull`: votes and labels from the raters' projects.

Pull reads every rater's project (``projects.json``, each with that rater's
own token): what the server lists is read (the project's task and
annotation counts, or with ``--page-size`` the task ids), then the tasks
exported, the whole project in one request or ``--page-size`` ids at a time
(:func:`read_project`). The projects are read side by side, one per process
of the server (:func:`read_raters`; ``annotate server --processes``). An
export that gives fewer tasks than listed or fewer annotations than
counted is read again, then refused (:class:`ExportShrank`). Per clip and
rater, the **latest** annotation that is completed and not cancelled counts,
across all tasks of the clip in that rater's project:

* cancelled (skipped) annotations are dropped;
* an annotation without an answer to both questions is incomplete and
  dropped;
* an answer "can't tell / clip does not play" is not a vote: it goes to
  ``cant_tell.parquet`` (the next push gives the clip to one more rater);
* answers by another account than the project's rater, and answers to clips
  not assigned to that rater, are dropped; duplicate tasks are merged; each
  repair is counted in ``pull.json`` ("repairs") and printed by status.

It also reports what changed on the server that Label Studio cannot
prevent (settings, deleted tasks or projects, other projects): "problems"
in ``pull.json``. Votes of the last pull that are gone from the server stop
the pull unless ``allow_fewer``.

Outputs in ANNOTATION_DIR (written only after every project was read, each
atomically, so a pull cut short or refused leaves the previous outputs byte
for byte as they were):

    votes.parquet   one row per counted vote (schemas.tables.VOTES)
    labels.parquet  one row per assigned clip (schemas.tables.LABELS): the votes as
                    parallel lists, raters sorted by name, and the label
                    "onscreen_only" / "offscreen_only" when exactly three
                    raters voted and all agree, else null
    cant_tell.parquet  "can't tell" answers (CANT_TELL_SCHEMA)
    csv/<split>_onscreen_unanimous_clips.csv, csv/<split>_offscreen_unanimous_clips.csv
                    AudioScope clip lists (video path, start, end) per split
                    (train, validate, test)
    pull.json       counts, repairs, problems, labels per split
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa

from audioscope import storage
from audioscope.annotation.client import Client, LabelStudioError
from audioscope.schemas.annotations import AnnotationLayout
from audioscope.annotation.push import CANT_TELL, NO, Q_OFFSCREEN, Q_ONSCREEN, YES
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY, LABELS, VOTES, to_table
from audioscope.folders import another_steps_folder
from audioscope.shell import q

VOTES_PARQUET = "votes.parquet"
LABELS_PARQUET = "labels.parquet"
PULL_JSON = "pull.json"
CSV_DIR = "csv"
#: Raters per clip in the protocol (docs/recipe.md).
RATERS_PER_CLIP = 3


@dataclass
class PullCounts:
    tasks: int = 0
    annotations: int = 0
    counted: int = 0
    cancelled: int = 0
    incomplete: int = 0
    superseded: int = 0
    cant_tell: int = 0
    #: repairs: answers of an account that is not the project's rater, of clips not assigned to
    #: the rater or not in the pools, and tasks that were there twice for one clip
    foreign: int = 0
    unassigned: int = 0
    duplicate_tasks: int = 0


# --------------------------------------------------------------------------- one annotation


def answer(result: Iterable[Mapping[str, Any]], question: str) -> bool | None:
    """The yes/no answer to ``question`` in an annotation's result, None when absent (or "can't tell")."""
    for item in result or []:
        if item.get("from_name") != question:
            continue
        choices = (item.get("value") or {}).get("choices") or []
        if len(choices) == 1 and choices[0] in (YES, NO):
            return choices[0] == YES
    return None


def cant_tell(result: Iterable[Mapping[str, Any]]) -> bool:
    """True when any question was answered "can't tell / clip does not play"."""
    return any(CANT_TELL in ((item.get("value") or {}).get("choices") or []) for item in result or [])


def rater_id(annotation: Mapping[str, Any]) -> int | None:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("id")
    return int(who) if who is not None else None


def _latest_key(annotation: Mapping[str, Any]) -> tuple[str, int]:
    return (str(annotation.get("updated_at") or annotation.get("created_at") or ""), int(annotation.get("id") or 0))


def collect(
    tasks: Iterable[Mapping[str, Any]], users: Mapping[int, str], counts: PullCounts,
    clips: Mapping[str, Mapping[str, Any]] | None = None, only_user: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(votes, can't-tell answers) of ``tasks``: per clip and rater the latest usable annotation.

    Across tasks: two tasks of one clip give one vote per rater. ``clips``
    gives each clip's fields (else the task data's); ``only_user`` drops
    answers of any other account (counted as ``foreign``).
    """
    latest: dict[tuple[str, int], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    seen_clips: dict[str, int] = {}
    for task in tasks:
        data = task.get("data") or {}
        if "clip_id" not in data:
            continue
        clip = str(data["clip_id"])
        seen_clips[clip] = seen_clips.get(clip, 0) + 1
        for ann in task.get("annotations") or []:
            counts.annotations += 1
            if ann.get("was_cancelled"):
                counts.cancelled += 1
                continue
            uid = rater_id(ann)
            result = ann.get("result") or []
            if only_user is not None and uid is not None and uid != only_user:
                counts.foreign += 1
                continue
            usable = cant_tell(result) or (answer(result, Q_ONSCREEN) is not None and answer(result, Q_OFFSCREEN) is not None)
            if uid is None or not usable:
                counts.incomplete += 1
                continue
            key = (clip, uid)
            if key in latest:
                counts.superseded += 1
                if _latest_key(ann) <= _latest_key(latest[key][1]):
                    continue
            latest[key] = (task, ann)
    counts.duplicate_tasks += sum(n - 1 for n in seen_clips.values())
    votes, unsure = [], []
    for (clip, uid), (task, ann) in latest.items():
        fields = clips.get(clip) if clips is not None else clip_fields(task["data"])
        if fields is None:
            counts.unassigned += 1
            continue
        row = {
            **fields, "task_id": int(task["id"]), "annotation_id": int(ann["id"]),
            "rater": users.get(uid, f"user-{uid}"), "rater_id": uid,
            "lead_time": float(ann["lead_time"]) if ann.get("lead_time") is not None else None,
            "updated_at": str(ann.get("updated_at") or ann.get("created_at") or "") or None,
        }  # fmt: skip
        if cant_tell(ann["result"]):
            counts.cant_tell += 1
            unsure.append(row)
            continue
        counts.counted += 1
        votes.append({**row, "onscreen": answer(ann["result"], Q_ONSCREEN), "offscreen": answer(ann["result"], Q_OFFSCREEN)})
    return votes, unsure


def task_votes(task: Mapping[str, Any], users: Mapping[int, str], counts: PullCounts) -> list[dict[str, Any]]:
    """The counted votes of one task (module docstring), as VOTES rows; updates ``counts``."""
    return collect([task], users, counts)[0]


def clip_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """A clip's identity: the pools' columns that VOTES and LABELS repeat."""
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


def label_rows(clips: Iterable[Mapping[str, Any]], votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One LABELS row per clip (dicts with the clip's fields, source and licence), sorted by (video_id, start, clip_id)."""
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for v in votes:
        by_clip.setdefault(v["clip_id"], []).append(v)
    rows = {}
    for data in clips:
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


def _tables(votes: list[dict[str, Any]], clips: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    votes.sort(key=lambda v: (v["video_id"], v["start"], v["clip_id"], v["rater"]))
    return to_table(votes, VOTES).to_pandas(), to_table(label_rows(clips, votes), LABELS).to_pandas()


def aggregate(tasks: list[Mapping[str, Any]], users: Mapping[int, str]) -> tuple[pd.DataFrame, pd.DataFrame, PullCounts]:
    """(votes, labels, counts) from exported tasks whose data carries the clip's fields (one project)."""
    counts = PullCounts(tasks=len(tasks))
    votes, _ = collect(tasks, users, counts)
    clips = [t["data"] for t in tasks if "clip_id" in (t.get("data") or {})]
    v, labels = _tables(votes, clips)
    return v, labels, counts


# --------------------------------------------------------------------------- files

#: One row per "can't tell / clip does not play" answer (not a vote).
CANT_TELL_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("rater", pa.string(), nullable=False),
        pa.field("rater_name", pa.string(), nullable=False),
        pa.field("task_id", pa.int64(), nullable=False),
        pa.field("annotation_id", pa.int64(), nullable=False),
        pa.field("updated_at", pa.string()),
    ],
    metadata={b"audioscope.table": b"annotation_cant_tell"},
)


def _parquet(frame: pd.DataFrame, schema: Any) -> bytes:
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


def write_outputs(
    annotation_dir: str, votes: pd.DataFrame, labels: pd.DataFrame, summary: Mapping[str, Any],
    unsure: pd.DataFrame | None = None,
) -> dict[str, str]:
    """The CSVs, labels.parquet, votes.parquet, cant_tell.parquet and pull.json (in that order), each atomically."""
    from audioscope.curation.filter import audioscope_csv

    layout = AnnotationLayout(annotation_dir)
    files = {}
    for (split, label), name in csv_names().items():
        rows = labels[(labels["split"] == split) & (labels["label"] == label)]
        files[name] = layout.csv(name)
        storage.atomic_write(files[name], audioscope_csv(rows))
    files[LABELS_PARQUET] = layout.labels_parquet
    storage.atomic_write(files[LABELS_PARQUET], _parquet(labels, LABELS))
    files[VOTES_PARQUET] = layout.votes_parquet
    storage.atomic_write(files[VOTES_PARQUET], _parquet(votes, VOTES))
    if unsure is not None:
        files["cant_tell.parquet"] = layout.cant_tell_parquet
        storage.atomic_write(files["cant_tell.parquet"], _parquet(unsure, CANT_TELL_SCHEMA))
    files[PULL_JSON] = layout.pull_json
    layout.write_json(files[PULL_JSON], {**summary, "files": files})
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
            raise UserError(another_steps_folder(annotation_dir, "annotations", "--annotations") or
                            f"no {name} in {annotation_dir}: run `audioscope annotate pull --annotations {q(annotation_dir)}` first")
        with storage.open_file(path) as fh:
            out.append(validate(pq.read_table(fh), schema).to_pandas())
    return out[0], out[1]


def read_pull_summary(annotation_dir: str) -> dict[str, Any]:
    """pull.json of the last pull ({} before the first)."""
    layout = AnnotationLayout(annotation_dir)
    return layout.read_json(layout.pull_json) or {}


# --------------------------------------------------------------------------- the step


class ExportShrank(LabelStudioError):
    """The export gave fewer tasks or annotations than the server listed, every try."""


def read_project(
    client: Client, project_id: int, page_size: int, tries: int = 3, wait_s: float = 1.0,
    on_page: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Every task of one project with its annotations, checked against what the server lists.

    First what the server lists, then the export: with ``page_size`` 0 (the
    fastest) the project's own counts (``task_number``,
    ``total_annotations_number``: the project record, one request) and the
    whole project in one export request; with ``page_size`` N the task ids
    (the task list, paged) and the export of N ids at a time. Listing the
    ids of 10,000 tasks costs the server about 4.5 s, a third of the
    export itself (14 s; pages of 500 ids took about 2.7 times as long as
    one request), so the whole-project read compares counts: distinct task
    ids exported against the tasks counted, annotations against the
    annotations counted. An export with fewer tasks or annotations than
    listed is read again (``tries`` times in all, ``wait_s`` apart,
    doubling) and then refused with :class:`ExportShrank`: labels are never
    rewritten from a partial read.
    """
    for attempt in range(tries):
        info = client.project(project_id)
        expected = int(info.get("total_annotations_number") or 0)
        by_count = page_size <= 0 and info.get("task_number") is not None
        ids = [] if by_count else client.task_ids(project_id)
        listed = int(info["task_number"]) if by_count else len(ids)
        tasks: dict[int, dict[str, Any]] = {}
        pages = [client.export(project_id)] if page_size <= 0 else client.export_pages(project_id, ids, page_size)
        for page in pages:
            for t in page:
                tasks[int(t["id"])] = t
            if on_page:
                on_page(len(page), sum(len(t.get("annotations") or []) for t in page))
        got = sum(1 for t in tasks.values() for a in t.get("annotations") or [] if not a.get("was_cancelled"))
        missing = max(listed - len(tasks), 0) if by_count else len(set(ids) - set(tasks))
        if not missing and got >= expected:
            return [tasks[i] for i in sorted(tasks)]
        shortfall = f"{missing} of {listed} listed tasks missing, {got} of {expected} annotations"
        if attempt + 1 < tries:
            time.sleep(wait_s * 2**attempt)
    raise ExportShrank(
        f"Label Studio's export of project {project_id} gave less than it lists ({shortfall}) in {tries} tries; "
        "nothing was written (the previous labels are kept). Check the server's log and run pull again"
    )


@dataclass
class RaterRead:
    """What pull took from one rater's project: their votes, "can't tell" answers, counts and problems."""

    votes: list[dict[str, Any]]
    unsure: list[dict[str, Any]]
    counts: PullCounts
    notes: list[str]


def read_rater(
    client: Client, name: str, project: Any, user_id: int | None, email: str, mine: set[str],
    clips: Mapping[str, Mapping[str, Any]], page_size: int, on_page: Callable[[int, int], None] | None = None,
) -> RaterRead:
    """One rater's project: settings and other projects checked, tasks read (:func:`read_project`), votes collected.

    ``mine`` are the clips assigned to the rater, ``clips`` every pooled
    clip's fields (:func:`clip_fields`).
    """
    from audioscope.annotation.push import config_changed

    counts, notes = PullCounts(), []
    try:
        info = client.project(project.project_id)
    except LabelStudioError as e:
        if e.status != 404:
            raise
        notes.append(f"project {project.project_id} was deleted: its votes are lost; push again to make a new one")
        return RaterRead([], [], counts, notes)
    changed = config_changed(info)
    if changed:
        notes.append(f"settings changed on the server ({', '.join(changed)}); push again restores them")
    others = [p for p in client.projects() if int(p["id"]) != project.project_id]
    if others:
        notes.append(f"{len(others)} other project(s) made in this rater's organization")
    tasks = read_project(client, project.project_id, page_size, on_page=on_page)
    counts.tasks += len(tasks)
    have = {str((t.get("data") or {}).get("clip_id")) for t in tasks}
    lost = len(mine - have)
    if lost:
        notes.append(f"{lost} assigned clips have no task (deleted on the server?); push again re-imports them")
    fields = {c: clips[c] for c in have if c in mine and c in clips}
    votes, unsure = collect(tasks, {user_id or -1: email}, counts, fields, only_user=user_id)
    return RaterRead(votes, [{**x, "rater_name": name} for x in unsure], counts, notes)


def read_raters(
    url: str, readers: Sequence[str], jobs: Mapping[str, Callable[[Client], RaterRead]], tokens: Mapping[str, str],
) -> dict[str, RaterRead]:
    """Run every rater's job, side by side on the server's processes: one job per process at a time.

    ``url`` is the server, ``readers`` more processes of the same server
    (``annotate server --processes``). Label Studio's server process runs
    one request at a time on one core: three exports at once on one process
    took longer than one after another (56 s against 41 s for 3 x 10,000
    tasks), so each process gets one job at a time. Readers that do not
    answer their health check, or repeat a URL, are left out. The first
    error (in rater order) is raised once the running jobs have ended.
    """
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from audioscope.annotation.client import answers

    others = dict.fromkeys(r.rstrip("/") for r in readers if r.rstrip("/") != url.rstrip("/"))
    urls = [url, *(r for r in others if answers(r))]
    slots: queue.Queue[str] = queue.Queue()
    for u in urls[: max(len(jobs), 1)]:
        slots.put(u)

    def run(name: str) -> RaterRead:
        slot = slots.get()
        try:
            return jobs[name](Client(slot, tokens[name]))
        finally:
            slots.put(slot)

    if slots.qsize() <= 1:
        return {name: run(name) for name in sorted(jobs)}
    with ThreadPoolExecutor(slots.qsize(), thread_name_prefix="pull") as pool:
        futures = {name: pool.submit(run, name) for name in sorted(jobs)}
        try:
            return {name: futures[name].result() for name in sorted(jobs)}
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise


def _add(total: PullCounts, part: PullCounts) -> None:
    for k, v in asdict(part).items():
        setattr(total, k, getattr(total, k) + v)


def pull(
    url: str, secrets: Any, annotation_dir: str, page_size: int = 0,
    on_page: Callable[[int, int], None] | None = None, allow_fewer: bool = False, readers: Sequence[str] = (),
) -> dict[str, Any]:
    """Read every rater's project, merge, check and write (module docstring); returns the summary.

    ``readers``: more processes of the same server (``annotate server
    --processes``, their URLs in ``server.json``) that read the projects
    side by side (:func:`read_raters`).
    """
    import threading

    from audioscope.annotation.assign import check as check_assignment
    from audioscope.annotation.pools import read_pools
    from audioscope.annotation.push import not_pushed_yet, read_assignment, read_projects
    from audioscope.errors import UserError

    t0 = time.monotonic()
    projects = read_projects(annotation_dir)
    assignment = read_assignment(annotation_dir)
    if not projects or assignment is None:
        raise not_pushed_yet(annotation_dir)
    records = read_pools(annotation_dir).to_dict("records")
    pooled = {str(r["clip_id"]): r for r in records}
    fields = {c: clip_fields(r) for c, r in pooled.items()}
    assigned = set(zip(assignment["clip_id"], assignment["rater"]))
    for name, project in sorted(projects.items()):
        if secrets.raters.get(name) is None:
            raise UserError(f"the secrets file has no rater {name} (its project is {project.project_id}): restore the secrets file")
    lock = threading.Lock()

    def page_done(tasks: int, annotations: int) -> None:
        if on_page:
            with lock:
                on_page(tasks, annotations)

    def job(name: str) -> Callable[[Client], RaterRead]:
        account, mine = secrets.raters[name], {c for c, r in assigned if r == name}
        return lambda client: read_rater(
            client, name, projects[name], account.user_id, account.email, mine, fields, page_size, page_done
        )

    read = read_raters(url, readers, {n: job(n) for n in projects}, {n: secrets.raters[n].token for n in projects})
    counts = PullCounts()
    problems: dict[str, list[str]] = {}
    votes: list[dict[str, Any]] = []
    unsure: list[dict[str, Any]] = []
    for name in sorted(read):
        _add(counts, read[name].counts)
        votes += read[name].votes
        unsure += read[name].unsure
        if read[name].notes:
            problems[name] = read[name].notes
    t_read = time.monotonic() - t0
    previous = _previous_votes(annotation_dir)
    now = {(v["clip_id"], v["rater"]) for v in votes}
    gone = previous - now
    if gone and not allow_fewer:
        raise UserError(
            f"{len(gone)} votes of the last pull are no longer on the server (deleted annotations, tasks or "
            f"projects: {_who(gone)}). Nothing was written. Find out why, then run pull with --allow-fewer to accept it"
        )
    clip_rows = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in pooled[c].items()}
        for c in sorted(set(assignment["clip_id"])) if c in pooled
    ]  # fmt: skip
    votes_t, labels = _tables(votes, clip_rows)
    unsure_t = pd.DataFrame(unsure, columns=CANT_TELL_SCHEMA.names)
    by_split = {
        f"{split}/{label}": int(n)
        for (split, label), n in labels.dropna(subset=["label"]).groupby(["split", "label"]).size().items()
    }
    repairs = {k: getattr(counts, k) for k in ("superseded", "duplicate_tasks", "foreign", "unassigned")}
    problems_all = {k: v for k, v in problems.items() if v}
    for p in check_assignment(assignment):
        problems_all.setdefault("assignment", []).append(p)
    if gone:
        problems_all.setdefault("pull", []).append(f"{len(gone)} votes of the previous pull were gone (accepted)")
    summary = {
        "server": url,
        **asdict(counts),
        "raters": sorted(projects),
        "clips": int(len(labels)),
        "clips_with_3_votes": int((labels["n_votes"] == RATERS_PER_CLIP).sum()),
        "labels": {
            LABEL_ONSCREEN_ONLY: int((labels["label"] == LABEL_ONSCREEN_ONLY).sum()),
            LABEL_OFFSCREEN_ONLY: int((labels["label"] == LABEL_OFFSCREEN_ONLY).sum()),
        },
        "labels_by_split": by_split,
        "repairs": repairs,
        "problems": problems_all,
        "cant_tell_clips": sorted({x["clip_id"] for x in unsure}),
        "seconds_reading": round(t_read, 2),
        "seconds": round(time.monotonic() - t0, 2),
    }
    summary["files"] = write_outputs(annotation_dir, votes_t, labels, summary, unsure_t)
    return summary


def _previous_votes(annotation_dir: str) -> set[tuple[str, str]]:
    path = AnnotationLayout(annotation_dir).votes_parquet
    if not storage.exists(path):
        return set()
    votes, _ = read_tables(annotation_dir)
    return set(zip(votes["clip_id"].astype(str), votes["rater"].astype(str)))


def _who(pairs: set[tuple[str, str]]) -> str:
    per: dict[str, int] = {}
    for _, rater in pairs:
        per[rater] = per.get(rater, 0) + 1
    return ", ".join(f"{n} of {r}" for r, n in sorted(per.items()))
