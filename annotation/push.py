"""`audioscope annotate push`: the Label Studio project and its tasks.

The project (created once, then updated; its id is kept in
``ANNOTATION_DIR/project.json``) has:

* a labeling config with the clip's video (played with its sound) and two
  required yes/no questions: ``onscreen`` (is there sound from something
  visible on screen?) and ``offscreen`` (sound from something not visible?);
* instructions with examples, shown before labeling;
* no skip button, no empty annotations, and ``maximum_annotations = 3``
  (each task is labeled by three raters; pull counts distinct raters).

Tasks are keyed by clip id (``data.clip_id``): push lists the clip ids the
project already has and imports only the others, in batches (one import
request per batch: one SQLite writer, few transactions), so re-running push
never duplicates a task. Only clips whose MP4 was rendered are pushed.

Media: a local MEDIA_DIR must lie inside the server's document root
(``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``); the project gets a local-files
import storage for ``MEDIA_DIR/clips`` and tasks point at
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
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote, urljoin

import pandas as pd

from audioscope import storage
from audioscope.annotation.client import Client

PROJECT_JSON = "project.json"
TASK_IDS_JSON = "task_ids.json"
DEFAULT_TITLE = "AudioScope: on-screen and off-screen sounds"
DEFAULT_BATCH = 1000
OVERLAP = 3
#: Names of the two questions in the labeling config (and in every annotation).
Q_ONSCREEN = "onscreen"
Q_OFFSCREEN = "offscreen"
YES, NO = "Yes", "No"

LABEL_CONFIG = f"""<View>
  <Header value="Watch and listen to the whole 5-second clip (sound on), then answer both questions."/>
  <Video name="video" value="$video" height="480"/>
  <Header value="1. Is there sound from something VISIBLE on screen?"/>
  <Choices name="{Q_ONSCREEN}" toName="video" choice="single-radio" required="true" showInline="true">
    <Choice value="{YES}" hotkey="1"/>
    <Choice value="{NO}" hotkey="2"/>
  </Choices>
  <Header value="2. Is there sound from something NOT visible (off screen)?"/>
  <Choices name="{Q_OFFSCREEN}" toName="video" choice="single-radio" required="true" showInline="true">
    <Choice value="{YES}" hotkey="3"/>
    <Choice value="{NO}" hotkey="4"/>
  </Choices>
</View>"""

INSTRUCTIONS = """<h3>What to do</h3>
<p>Each clip is 5 seconds of video <b>with sound</b>. Play it to the end with the sound on
(replay as often as you like), then answer both questions. Both answers are required.</p>
<ol>
<li><b>Sound from something visible on screen?</b> Answer <i>Yes</i> if, at any moment of the
clip, you hear a sound made by something you can see in the picture at that moment (a person
talking with moving lips, a dog barking in view, a guitar being played in view, a car passing
in view). Answer <i>No</i> otherwise.</li>
<li><b>Sound from something not visible?</b> Answer <i>Yes</i> if, at any moment, you hear a
sound whose source is not in the picture: narration or music added later, a voice of someone
off camera, traffic behind the camera, wind noise on the microphone. Answer <i>No</i> otherwise.</li>
</ol>
<h3>Examples</h3>
<ul>
<li>A person talks to the camera, nothing else is heard: <b>Yes / No</b>.</li>
<li>A landscape with background music: <b>No / Yes</b>.</li>
<li>A dog barks in view while someone off camera laughs: <b>Yes / Yes</b>.</li>
<li>A silent clip, or only a faint hum you cannot place: <b>No / No</b>.</li>
<li>A bird sings while it is visible for the first two seconds, then it flies away and the
singing goes on: <b>Yes / Yes</b> (both happened in the clip).</li>
</ul>
<p>Judge what you hear and see, not what you guess. If a sound is too faint to hear, ignore it.
There is no skip: if a clip does not play, tell the project owner.</p>"""


@dataclass(frozen=True)
class MediaPlace:
    """How tasks reach the MP4s: a URL per clip and the import storage that serves them."""

    url_of: Callable[[str], str]
    storage_kind: str  # "localfiles" or "gcs"
    storage_body: dict[str, Any]


def project_settings(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "label_config": LABEL_CONFIG,
        "expert_instruction": INSTRUCTIONS,
        "show_instruction": True,
        "show_skip_button": False,
        "enable_empty_annotation": False,
        "maximum_annotations": OVERLAP,
        "overlap_cohort_percentage": 100,
        "sampling": "Uniform sampling",
    }


# --------------------------------------------------------------------------- project


def read_project_id(annotation_dir: str) -> int | None:
    path = storage.join(annotation_dir, PROJECT_JSON)
    if not storage.exists(path):
        return None
    return int(json.loads(storage.read_text(path))["project_id"])


def find_project(client: Client, title: str) -> int | None:
    page = 1
    while True:
        body = client.get("/api/projects/", page=page, page_size=100)
        for p in body.get("results", []):
            if p.get("title") == title:
                return int(p["id"])
        if not body.get("next"):
            return None
        page += 1


def ensure_project(client: Client, annotation_dir: str, title: str) -> tuple[int, bool]:
    """(project id, created?): the folder's project, else one with ``title``, else a new one; settings applied."""
    from audioscope.annotation.client import LabelStudioError

    settings = project_settings(title)
    pid = read_project_id(annotation_dir)
    if pid is not None:
        try:
            client.get(f"/api/projects/{pid}/")
        except LabelStudioError as e:
            if e.status != 404:
                raise
            pid = None
    if pid is None:
        pid = find_project(client, title)
    created = pid is None
    if created:
        pid = int(client.post("/api/projects/", settings)["id"])
    else:
        client.patch(f"/api/projects/{pid}/", settings)
    storage.atomic_write(
        storage.join(annotation_dir, PROJECT_JSON),
        json.dumps({"project_id": pid, "title": title, "url": f"{client.url}/projects/{pid}/"}, indent=2) + "\n",
    )
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
    existing = client.get(f"/api/storages/{place.storage_kind}", project=project_id)
    for s in existing or []:
        if s.get(key) == place.storage_body[key] and s.get("bucket") == place.storage_body.get("bucket"):
            if creds and place.storage_kind == "gcs":
                client.patch(f"/api/storages/gcs/{s['id']}", {**creds, "project": project_id})
            return False
    client.post(f"/api/storages/{place.storage_kind}", {**place.storage_body, "project": project_id, **creds})
    return True


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
        r = client.session.get(urljoin(client.url + "/", video), allow_redirects=False, timeout=client.timeout_s)
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


def task_data(row: Any, url: str) -> dict[str, Any]:
    """The data of one task: the video URL and the clip's identity (what pull needs back)."""

    def text(v: Any) -> str | None:
        return None if v is None or (isinstance(v, float) and v != v) else str(v)

    return {
        "video": url, "clip_id": str(row.clip_id), "video_id": str(row.video_id),
        "start": float(row.start), "end": float(row.end), "split": text(row.split), "pool": str(row.pool),
        "source_uri": str(row.source_uri), "licence_name": text(row.licence_name), "licence_url": text(row.licence_url),
    }  # fmt: skip


def existing_tasks(client: Client, project_id: int) -> dict[str, int]:
    """clip id -> task id of the project's tasks."""
    return {
        str(t["data"]["clip_id"]): int(t["id"])
        for page in client.task_pages(project_id, "id,data")
        for t in page
        if isinstance(t.get("data"), dict) and "clip_id" in t["data"]
    }


def import_batches(
    client: Client, project_id: int, tasks: list[dict[str, Any]], batch: int, on_batch: Callable[[int], None] | None = None
) -> list[int]:
    """Import ``tasks`` in batches (one request each); the ids of the tasks the server created."""
    created: list[int] = []
    for i in range(0, len(tasks), batch):
        body = client.post(f"/api/projects/{project_id}/import?return_task_ids=true", tasks[i : i + batch]) or {}
        ids = [int(t) for t in body.get("task_ids") or []]
        created.extend(ids)
        if on_batch:
            on_batch(len(ids))
    return created


def write_task_ids(annotation_dir: str, project_id: int, task_ids: Iterable[int]) -> None:
    """``task_ids.json``: every task id of the project known here (lets pull skip listing them)."""
    body = {"project_id": project_id, "task_ids": sorted(set(int(t) for t in task_ids))}
    storage.atomic_write(storage.join(annotation_dir, TASK_IDS_JSON), json.dumps(body) + "\n")


def read_task_ids(annotation_dir: str, project_id: int) -> list[int] | None:
    path = storage.join(annotation_dir, TASK_IDS_JSON)
    if not storage.exists(path):
        return None
    body = json.loads(storage.read_text(path))
    return [int(t) for t in body["task_ids"]] if body.get("project_id") == project_id else None


def push(
    client: Client,
    annotation_dir: str,
    pools: pd.DataFrame,
    media_dir: str,
    document_root: str | None,
    title: str = DEFAULT_TITLE,
    batch: int = DEFAULT_BATCH,
    gcs_credentials: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Create/update the project, its media storage and the missing tasks; returns the summary."""
    from audioscope.pipelines.render import RenderLayout, rendered

    t0 = time.monotonic()
    place = media_place(media_dir, document_root)
    project_id, created = ensure_project(client, annotation_dir, title)
    storage_created = ensure_storage(client, project_id, place, gcs_credentials)
    have_media = rendered(RenderLayout(media_dir))
    have_task = existing_tasks(client, project_id)
    with_media = pools[pools["clip_id"].isin(have_media)]
    new = with_media[~with_media["clip_id"].isin(have_task.keys())]
    tasks = [{"data": task_data(row, place.url_of(str(row.clip_id)))} for row in new.itertuples(index=False)]
    imported_ids = import_batches(client, project_id, tasks, batch, on_batch)
    task_ids = [*have_task.values(), *imported_ids]
    write_task_ids(annotation_dir, project_id, task_ids)
    if place.storage_kind == "gcs" and task_ids:
        check_signed_url(client, min(task_ids), media_dir)
    imported = len(imported_ids)
    return {
        "project_id": project_id,
        "project_created": created,
        "project_url": f"{client.url}/projects/{project_id}/",
        "storage_created": storage_created,
        "pooled_clips": int(len(pools)),
        "without_media": int(len(pools) - len(with_media)),
        "already_there": int(len(with_media) - len(new)),
        "imported": imported,
        "seconds": round(time.monotonic() - t0, 2),
    }

