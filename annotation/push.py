"""`audioscope annotate push`: one Label Studio project per rater, three raters per clip.

Isolation (why one project per rater, each in an organization of its own)
-------------------------------------------------------------------------
Label Studio Community has no roles: every member of an organization sees
every project of it, opens any task's other answers ("Compare All"),
exports all answers and may change or delete anything; and it puts every
account in one organization. Three votes are only independent if no rater
can see another's. So ``annotate server`` puts each rater alone in an
organization of their own (``ls_provision.py``), and push gives each rater a
project of their own there, made and filled with that rater's own personal
access token. A rater then sees (checked on server 1.23 in the tests, in the
API and in chromium): their project, the tasks of the clips assigned to them
and their own answers; not the other raters' projects, tasks, answers or
accounts. A task holds only the video URL, the clip's frame rate and its id:
not its pool, split, scores or source path (pull takes those from
pools.parquet). Local media are served only from the project's storage
folder (MEDIA_DIR/clips); the server's document root should be MEDIA_DIR.

What Label Studio cannot prevent, a rater can still do to their **own**
project: change its settings or instructions, delete tasks or answers,
export their own answers, make other projects in their organization, add an
import storage under the document root. Pull and status report each of these
(settings compared with ours, assigned clips without a task, other projects,
votes of the last pull that are gone) and push restores settings and
re-imports deleted tasks. Label Studio itself refuses a labeling config that
drops a question that has answers.

Distinctness: each rendered clip is assigned to exactly three distinct
raters (``annotation/assign.py``: balanced, deterministic, stable), and
imported into those raters' projects only. A rater may still answer a task
twice or be given two tasks of one clip; pull keeps one vote per clip and
rater (the latest) and reports what it repaired.

A project has a labeling config with the clip's video (played with its sound
at the clip's own frame rate, ``$fps``) and two required questions,
``onscreen`` and ``offscreen``, each answered Yes, No or "Can't tell / clip
does not play" (not a vote: the next push gives the clip to one more
rater); instructions with examples, shown before labeling; no skip button,
no empty annotations, ``maximum_annotations = 1``.

Push lists the clip ids each project has and imports only the missing ones,
in batches (one request per batch), so re-running never duplicates a task.
Ids are kept in ``projects.json``, the assignment in ``assignment.parquet``.

Media: a local MEDIA_DIR must lie inside the server's document root
(``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``); each project gets a
local-files import storage for ``MEDIA_DIR/clips`` and tasks point at
``/data/local-files/?d=<path under the root>``. A ``gs://`` MEDIA_DIR gets a
GCS import storage with presigned URLs (signed with the service-account key
of ``--gcs-credentials-file``) and tasks point at the ``gs://`` URI; push
then checks that Label Studio redirects one task's video to a signed URL
(:func:`check_signed_url`). The storage is never synced: tasks come from the
pools, and a sync would read every MP4 as a task file. Tested against a GCS
emulator (tests/annotation/test_gcs_media.py).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import quote, urljoin

import pandas as pd

from audioscope import storage
from audioscope.annotation.client import Client, LabelStudioError
from audioscope.schemas.annotations import AnnotationLayout

DEFAULT_TITLE = "AudioScope: on-screen and off-screen sounds"
DEFAULT_BATCH = 1000
#: Names of the two questions in the labeling config (and in every annotation).
Q_ONSCREEN = "onscreen"
Q_OFFSCREEN = "offscreen"
YES, NO = "Yes", "No"
#: The third answer: recorded, never a vote (pull keeps it in cant_tell.parquet, push re-queues the clip).
CANT_TELL = "Can't tell / clip does not play"
#: Frame rate given to the player when a clip's MP4 cannot be read (Label Studio's own default is 24).
DEFAULT_FPS = 30.0

LABEL_CONFIG = f"""<View>
  <Header value="Watch and listen to the whole 5-second clip (sound on), then answer both questions."/>
  <Video name="video" value="$video" height="480" frameRate="$fps"/>
  <Header value="1. Is there sound from something VISIBLE on screen?"/>
  <Choices name="{Q_ONSCREEN}" toName="video" choice="single-radio" required="true" showInline="true">
    <Choice value="{YES}" hotkey="1"/>
    <Choice value="{NO}" hotkey="2"/>
    <Choice value="{CANT_TELL}" hotkey="3"/>
  </Choices>
  <Header value="2. Is there sound from something NOT visible (off screen)?"/>
  <Choices name="{Q_OFFSCREEN}" toName="video" choice="single-radio" required="true" showInline="true">
    <Choice value="{YES}" hotkey="4"/>
    <Choice value="{NO}" hotkey="5"/>
    <Choice value="{CANT_TELL}" hotkey="6"/>
  </Choices>
</View>"""

# Label Studio strips style attributes and its stylesheet hides list markers inside the
# instructions (checked in chromium): each item carries its own number or bullet as text.
_OL = _UL = 'class="audioscope-list"'
_LI = ""
INSTRUCTIONS = f"""<h3>What to do</h3>
<p>Each clip is 5 seconds of video <b>with sound</b>. Play it to the end with the sound on
(replay as often as you like), then answer both questions. Both answers are required.</p>
<ol {_OL}>
<li>1. <b>Sound from something visible on screen?</b> Answer <i>Yes</i> if, at any moment of the
clip, you hear a sound made by something you can see in the picture at that moment (a person
talking with moving lips, a dog barking in view, a guitar being played in view, a car passing
in view). Answer <i>No</i> otherwise.</li>
<li>2. <b>Sound from something not visible?</b> Answer <i>Yes</i> if, at any moment, you hear a
sound whose source is not in the picture: narration or music added later, a voice of someone
off camera, traffic behind the camera, wind noise on the microphone. Answer <i>No</i> otherwise.</li>
</ol>
<h3>Examples</h3>
<ul {_UL}>
<li>&bull; A person talks to the camera, nothing else is heard: <b>Yes / No</b>.</li>
<li>&bull; A landscape with background music: <b>No / Yes</b>.</li>
<li>&bull; A dog barks in view while someone off camera laughs: <b>Yes / Yes</b>.</li>
<li>&bull; A silent clip, or only a faint hum you cannot place: <b>No / No</b>.</li>
<li>&bull; A bird sings while it is visible for the first two seconds, then it flies away and the
singing goes on: <b>Yes / Yes</b> (both happened in the clip).</li>
</ul>
<p>Judge what you hear and see, not what you guess. If a sound is too faint to hear, ignore it.
If the clip does not play, has no sound, or you really cannot decide, answer
<b>{CANT_TELL}</b>: that is not counted as a vote, and the clip goes to another rater.</p>"""


@dataclass(frozen=True)
class MediaPlace:
    """How tasks reach the MP4s: a URL per clip and the import storage that serves them."""

    url_of: Callable[[str], str]
    storage_kind: str  # "localfiles" or "gcs"
    storage_body: dict[str, Any]


def project_settings(title: str) -> dict[str, Any]:
    """A rater's project: one annotation per task (theirs), no skip, no empty answers, instructions first."""
    return {
        "title": title,
        "label_config": LABEL_CONFIG,
        "expert_instruction": INSTRUCTIONS,
        "show_instruction": True,
        "show_skip_button": False,
        "enable_empty_annotation": False,
        "maximum_annotations": 1,
        "overlap_cohort_percentage": 100,
        "sampling": "Uniform sampling",
        "show_collab_predictions": False,
    }


def config_changed(project: Mapping[str, Any]) -> list[str]:
    """What of our settings differs on the server (a rater may change their project; Label Studio cannot stop it)."""

    def squash(x: Any) -> str:
        return re.sub(r">\s+<", "><", str(x or "")).strip()

    ours = project_settings(str(project.get("title") or ""))
    changed = []
    for key in ("label_config", "expert_instruction", "show_skip_button", "enable_empty_annotation", "maximum_annotations"):
        if key in project and squash(project[key]) != squash(ours[key]):
            changed.append(key)
    return changed


# --------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class RaterProject:
    """One rater's project: in that rater's own organization, reached with that rater's token."""

    rater: str
    email: str
    user_id: int | None
    organization_id: int | None
    project_id: int

    def to_json(self) -> dict[str, Any]:
        return {"email": self.email, "user_id": self.user_id, "organization_id": self.organization_id, "project_id": self.project_id}


def read_projects(annotation_dir: str) -> dict[str, RaterProject]:
    """rater name -> their project, as push recorded them (empty before the first push)."""
    body = AnnotationLayout(annotation_dir).read_json(AnnotationLayout(annotation_dir).projects_json) or {}
    return {
        name: RaterProject(name, str(d["email"]), d.get("user_id"), d.get("organization_id"), int(d["project_id"]))
        for name, d in (body.get("raters") or {}).items()
    }


def not_pushed_yet(annotation_dir: str) -> Exception:
    """The error for a command that needs the raters' projects of ``annotation_dir`` before any push
    made them (or for another step's folder given as ``--annotations``)."""
    from audioscope.errors import UserError
    from audioscope.folders import another_steps_folder
    from audioscope.shell import q

    return UserError(another_steps_folder(annotation_dir, "annotations", "--annotations") or
                     f"no projects for {annotation_dir} yet: run `audioscope annotate push --annotations {q(annotation_dir)} ...` first")  # fmt: skip


def write_projects(annotation_dir: str, url: str, title: str, projects: Mapping[str, RaterProject]) -> None:
    layout = AnnotationLayout(annotation_dir)
    body = {"server": url, "title": title, "raters": {n: p.to_json() for n, p in sorted(projects.items())}}
    layout.write_json(layout.projects_json, body)


def ensure_project(client: Client, known: int | None, title: str) -> tuple[int, bool]:
    """(project id, created?): the recorded project, else the account's one titled ``title``, else a new one."""
    settings = project_settings(title)
    pid = known
    if pid is not None:
        try:
            client.project(pid)
        except LabelStudioError as e:
            if e.status != 404:
                raise
            pid = None
    if pid is None:
        pid = next((int(p["id"]) for p in client.projects() if p.get("title") == title), None)
    created = pid is None
    if pid is None:
        pid = client.create_project(settings)
    else:
        client.update_project(pid, settings)
    return pid, created


# --------------------------------------------------------------------------- media


def media_place(media_dir: str, document_root: str | None, presign_ttl_min: int = 60) -> MediaPlace:
    """Where the clips are served from (see the module docstring); UserError when unreachable."""
    from audioscope.errors import UserError

    if media_dir.startswith("gs://"):
        bucket, _, prefix = media_dir[len("gs://") :].partition("/")
        clips_prefix = "/".join(p for p in (prefix.rstrip("/"), "clips") if p)
        body = {
            "bucket": bucket, "prefix": clips_prefix, "presign": True, "presign_ttl": presign_ttl_min,
            "use_blob_urls": False, "regex_filter": r".*\.mp4$", "title": f"audioscope clips gs://{bucket}/{clips_prefix}",
        }  # fmt: skip
        return MediaPlace(lambda c: f"gs://{bucket}/{clips_prefix}/{c}.mp4", "gcs", body)
    if not storage.is_local(media_dir):
        raise UserError(f"{media_dir}: Label Studio serves clips from a local folder or gs:// only")
    if document_root is None:
        raise UserError(
            "the server's document root is unknown: give --document-root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
            "of the server) or --server-dir of a server started by `audioscope annotate server`"
        )
    clips = os.path.realpath(os.path.join(media_dir, "clips"))
    root = os.path.realpath(document_root)
    rel = os.path.relpath(clips, root)
    if rel == "." or rel.startswith(".."):
        raise UserError(
            f"the clips in {clips} are not inside the server's document root {root}: render them into a folder "
            f"under {root} (`audioscope annotate render --media {root}/...`), or start the server with "
            "--document-root set to a parent of the media folder"
        )
    body = {"path": clips, "use_blob_urls": False, "regex_filter": r".*\.mp4$", "title": "audioscope clips"}
    return MediaPlace(lambda c: f"/data/local-files/?d={quote(f'{rel}/{c}.mp4')}", "localfiles", body)


def ensure_storage(client: Client, project_id: int, place: MediaPlace, gcs_credentials: str | None = None) -> bool:
    """Create the project's import storage for the media unless it has it; True when created.

    Credentials given for a GCS storage that exists already replace its own
    (how a push without ``--gcs-credentials-file`` is repaired).
    """
    key = "path" if place.storage_kind == "localfiles" else "prefix"
    creds = {"google_application_credentials": gcs_credentials} if gcs_credentials else {}
    for s in client.storages(place.storage_kind, project_id):
        if s.get(key) == place.storage_body[key] and s.get("bucket") == place.storage_body.get("bucket"):
            if creds and place.storage_kind == "gcs":
                client.update_storage("gcs", int(s["id"]), {**creds, "project": project_id})
            return False
    client.create_storage(place.storage_kind, {**place.storage_body, "project": project_id, **creds})
    return True


def foreign_storages(client: Client, project_id: int, place: MediaPlace) -> int:
    """Import storages of the project that push did not make (a rater may add one to read other files)."""
    key = "path" if place.storage_kind == "localfiles" else "prefix"
    n = 0
    for kind in ("localfiles", "gcs"):
        for s in client.storages(kind, project_id):
            n += int(not (kind == place.storage_kind and s.get(key) == place.storage_body[key]))
    return n


def check_signed_url(client: Client, task_id: int, media_dir: str) -> None:
    """Label Studio must turn the task's ``gs://`` video into a redirect to a presigned URL.

    Otherwise raters get a player that plays nothing (the server answers 404
    and logs why, e.g. "you need a private key to sign credentials" when its
    storage has no service-account key). Only the redirect is checked: the
    signed URL itself is not fetched.
    """
    from audioscope.errors import UserError

    video = str(client.get(f"/api/tasks/{task_id}/")["data"]["video"])
    status = None
    if not video.startswith("gs://"):
        headers = {"Authorization": client._authorization()}
        r = client.session.get(urljoin(client.url + "/", video), allow_redirects=False, timeout=client.timeout_s, headers=headers)
        if r.is_redirect and r.headers.get("Location"):
            return
        status = r.status_code
    what = f"answered {status} for" if status else "did not resolve"
    raise UserError(
        f"Label Studio {what} the video of task {task_id} ({media_dir}): raters would see nothing. Presigned "
        "URLs need a service-account key: run push again with --gcs-credentials-file KEY.json (a key of an "
        "account that can read the bucket); the server's log says more"
    )


# --------------------------------------------------------------------------- tasks


def mp4_fps(data: bytes) -> float | None:
    """The frame rate of the first video track of an MP4 (its ``mdhd`` time scale over the first ``stts`` delta).

    Reads only boxes (``moov`` comes first in our faststart MP4s); None when
    the bytes hold no readable video track.
    """

    def boxes(buf: bytes, start: int, end: int):
        i = start
        while i + 8 <= end:
            size, kind = struct.unpack(">I4s", buf[i : i + 8])
            head = 8
            if size == 1 and i + 16 <= end:
                size, head = struct.unpack(">Q", buf[i + 8 : i + 16])[0], 16
            elif size == 0:
                size = end - i
            if size < head or i + size > end:
                return
            yield kind, i + head, i + size
            i += size

    for kind, a, b in boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for kind2, a2, b2 in boxes(data, a, b):
            if kind2 != b"trak":
                continue
            scale = delta = None
            is_video = False
            stack = [(a2, b2)]
            while stack:
                x, y = stack.pop()
                for k, p, q in boxes(data, x, y):
                    if k in (b"mdia", b"minf", b"stbl"):
                        stack.append((p, q))
                    elif k == b"hdlr" and q - p >= 12:
                        is_video = data[p + 8 : p + 12] == b"vide"
                    elif k == b"mdhd" and q - p >= 24:
                        version = data[p]
                        scale = struct.unpack(">I", data[p + (20 if version == 1 else 12) : p + (24 if version == 1 else 16)])[0]
                    elif k == b"stts" and q - p >= 16 and struct.unpack(">I", data[p + 4 : p + 8])[0] > 0:
                        delta = struct.unpack(">I", data[p + 12 : p + 16])[0]
            if is_video and scale and delta:
                return round(scale / delta, 3)
    return None


def clip_fps(media_dir: str, clip_id: str) -> float:
    """The frame rate of a rendered clip (the player needs it: Label Studio assumes 24 fps), else DEFAULT_FPS."""
    from audioscope.pipelines.render import RenderLayout

    try:
        with storage.open_file(RenderLayout(media_dir).clip(clip_id)) as fh:
            return mp4_fps(fh.read(1 << 20)) or DEFAULT_FPS
    except (OSError, ValueError):
        return DEFAULT_FPS


def task_data(clip_id: str, url: str, fps: float) -> dict[str, Any]:
    """The data a rater's task shows: the video and its frame rate, and the clip id pull keys votes by.

    Nothing else: the pool, split, scores and source path would suggest an
    answer (pull takes the clip's fields from pools.parquet).
    """
    return {"video": url, "clip_id": str(clip_id), "fps": float(fps)}


def existing_tasks(client: Client, project_id: int) -> dict[str, list[int]]:
    """clip id -> task ids of the project (more than one when a task was duplicated)."""
    out: dict[str, list[int]] = {}
    for page in client.task_pages(project_id, "id,data"):
        for t in page:
            if isinstance(t.get("data"), dict) and "clip_id" in t["data"]:
                out.setdefault(str(t["data"]["clip_id"]), []).append(int(t["id"]))
    return out


def import_batches(
    client: Client, project_id: int, tasks: list[dict[str, Any]], batch: int, on_batch: Callable[[int], None] | None = None
) -> list[int]:
    """Import ``tasks`` in batches (one request each); the ids of the tasks the server created."""
    created: list[int] = []
    for i in range(0, len(tasks), batch):
        ids = client.import_tasks(project_id, tasks[i : i + batch])
        created.extend(ids)
        if on_batch:
            on_batch(len(ids))
    return created


def read_assignment(annotation_dir: str) -> pd.DataFrame | None:
    import pyarrow.parquet as pq

    from audioscope.annotation.assign import ASSIGNMENT_SCHEMA
    from audioscope.schemas.tables import validate

    path = AnnotationLayout(annotation_dir).assignment_parquet
    if not storage.exists(path):
        return None
    with storage.open_file(path) as fh:
        return validate(pq.read_table(fh), ASSIGNMENT_SCHEMA).to_pandas()


def write_assignment(annotation_dir: str, assignment: pd.DataFrame) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.annotation.assign import ASSIGNMENT_SCHEMA, COLUMNS

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(assignment[COLUMNS], schema=ASSIGNMENT_SCHEMA, preserve_index=False), buf)
    storage.atomic_write(AnnotationLayout(annotation_dir).assignment_parquet, buf.getvalue())


def cant_tell_pairs(annotation_dir: str) -> list[tuple[str, str]]:
    """(clip, rater) pairs the last pull found answered "can't tell" (re-queued by the next push)."""
    path = AnnotationLayout(annotation_dir).cant_tell_parquet
    if not storage.exists(path):
        return []
    with storage.open_file(path) as fh:
        frame = pd.read_parquet(fh)
    return list(zip(frame["clip_id"].astype(str), frame["rater_name"].astype(str)))


#: Held by the push writing an annotation folder (:class:`audioscope.locks.FolderLock`).
PUSH_LOCK = "push.lock"


def push(
    url: str,
    secrets: Any,
    annotation_dir: str,
    pools: pd.DataFrame,
    media_dir: str,
    document_root: str | None,
    title: str = DEFAULT_TITLE,
    batch: int = DEFAULT_BATCH,
    gcs_credentials: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Assign every rendered clip to 3 raters and import it into their projects (module docstring); the summary."""
    from audioscope.annotation.assign import assign
    from audioscope.locks import FolderLock
    from audioscope.pipelines.render import RenderLayout, rendered

    # One push at a time per annotation folder: two would both create a rater's project and import its tasks twice.
    with FolderLock(AnnotationLayout(annotation_dir).path(PUSH_LOCK), activity="push",
                    subject=f"the annotation folder {annotation_dir}", what=f"pools to {url}"):  # fmt: skip
        t0 = time.monotonic()
        place = media_place(media_dir, document_root)
        have_media = rendered(RenderLayout(media_dir))
        with_media = pools[pools["clip_id"].isin(have_media)]
        raters = {name: acc for name, acc in secrets.raters.items()}
        assignment = assign(with_media["clip_id"], list(raters), read_assignment(annotation_dir), cant_tell_pairs(annotation_dir), seed)
        write_assignment(annotation_dir, assignment)
        known = read_projects(annotation_dir)
        projects: dict[str, RaterProject] = dict(known)
        per_rater: dict[str, dict[str, int]] = {}
        created_any, first_task = False, None
        for name in sorted(raters):
            acc = raters[name]
            client = Client(url, acc.token)
            pid, created = ensure_project(client, known[name].project_id if name in known else None, title)
            created_any |= created
            projects[name] = RaterProject(name, acc.email, acc.user_id, acc.organization_id, pid)
            write_projects(annotation_dir, url, title, projects)
            ensure_storage(client, pid, place, gcs_credentials)
            have = existing_tasks(client, pid)
            mine = assignment.loc[assignment["rater"] == name, "clip_id"]
            missing = [c for c in mine if c not in have]
            tasks = [{"data": task_data(c, place.url_of(c), clip_fps(media_dir, c))} for c in missing]
            ids = import_batches(client, pid, tasks, batch, on_batch)
            per_rater[name] = {"assigned": int(len(mine)), "imported": len(ids), "already_there": int(len(mine) - len(missing))}
            if place.storage_kind == "gcs" and first_task is None and (ids or have):
                first_task = (client, min(ids or [min(v) for v in have.values()]))
        if first_task is not None:
            check_signed_url(first_task[0], first_task[1], media_dir)
        imported = sum(r["imported"] for r in per_rater.values())
        return {
            "projects_created": created_any,
            "raters": per_rater,
            "pooled_clips": int(len(pools)),
            "without_media": int(len(pools) - len(with_media)),
            "assigned_clips": int(assignment["clip_id"].nunique()),
            "imported": imported,
            "already_there": sum(r["already_there"] for r in per_rater.values()),
            "seconds": round(time.monotonic() - t0, 2),
        }
