#!/usr/bin/env python
"""Annotation benchmark: push N tasks, pull and aggregate 3 N annotations, on a real server.

Starts its own Label Studio server (``.venv-labelstudio``, SQLite, a
temporary folder, port chosen free) and measures, in one run:

  push            `annotate push`'s code: N pooled clips (placeholder MP4
                  files, as push only checks that the media exist) into a
                  new project: project, storage, listing existing tasks,
                  batched imports.
  push again      the same push once more (lists N tasks, imports none).
  raw import      baseline: the same N tasks posted straight to the import
                  endpoint in the same batches, into another new project.
  pull            `annotate pull`'s code on a project of N tasks with 3
                  annotations each (3 N annotations, imported in bulk
                  beforehand, not timed): paged export, dedup,
                  votes/labels/CSVs written; the task ids come from
                  task_ids.json as push leaves it. Measured again without
                  that file (the ids listed from the server first).
  raw export      baseline: one request exporting the whole project as JSON.

It prints seconds and the ratios push / raw import and pull / raw export
(how much the toolkit adds to what the server itself costs), against the
issue's targets (push 10,000 tasks < 60 s, pull 30,000 annotations < 30 s
on 2 cores).

    .venv/bin/python benchmarks/annotation.py --tasks 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from audioscope.progress import print_summary


def fake_pools(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "clip_id": [f"bench{i // 100:05d}-{(i % 100) * 1000:07d}" for i in range(n)],
        "video_id": [f"bench{i // 100:05d}" for i in range(n)],
        "start": [float(i % 100) for i in range(n)], "end": [float(i % 100 + 5) for i in range(n)],
        "split": ["train"] * n, "pool": ["filtered_train"] * n, "source_uri": [f"/v/bench{i // 100:05d}.mp4" for i in range(n)],
        "licence_name": ["CC0 1.0"] * n, "licence_url": [None] * n,
    })  # fmt: skip


def placeholder_media(media: Path, pools: pd.DataFrame) -> None:
    clips = media / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for c in pools["clip_id"]:
        (clips / f"{c}.mp4").write_bytes(b"")


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def annotated_tasks(pools: pd.DataFrame, user_ids: list[int], url_of: Any) -> list[dict[str, Any]]:
    """Tasks with one annotation per rater (bulk import payload; the setup of the pull benchmark)."""
    from audioscope.annotation.push import task_data
    from audioscope.annotation.raters import annotation_body

    tasks = []
    for i, row in enumerate(pools.itertuples(index=False)):
        anns = [
            {**annotation_body(bool((i + k) % 3), bool(i % 2), 5.0 + k), "completed_by": uid}
            for k, uid in enumerate(user_ids)
        ]
        tasks.append({"data": task_data(row, url_of(row.clip_id)), "annotations": anns})
    return tasks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10_000, help="tasks to push; the pull reads 3x as many annotations")
    ap.add_argument("--batch-size", type=int, default=1000, help="tasks per import request (default 1000)")
    ap.add_argument("--keep", action="store_true", help="keep the server folder (printed) instead of deleting it")
    args = ap.parse_args()

    from audioscope.annotation.client import Client
    from audioscope.annotation.pull import pull
    from audioscope.annotation.push import (
        TASK_IDS_JSON, ensure_project, import_batches, media_place, push, task_data, write_task_ids,
    )
    from audioscope.annotation.server import ServerSettings, free_port, start, stop

    root = Path(tempfile.mkdtemp(prefix="bench-annotation-"))
    settings = ServerSettings(
        data_dir=str(root / "server"), port=free_port(), document_root=str(root), raters=("rater1", "rater2", "rater3")
    )
    t_start, server = timed(lambda: start(settings))
    try:
        client = Client(server.url, server.secrets.admin.token)
        pools = fake_pools(args.tasks)
        media = root / "media"
        placeholder_media(media, pools)
        place = media_place(str(media), str(root))

        t_push, summary = timed(lambda: push(client, str(root / "push"), pools, str(media), str(root), "bench push", args.batch_size))
        assert summary["imported"] == args.tasks, summary
        t_again, again = timed(lambda: push(client, str(root / "push"), pools, str(media), str(root), "bench push", args.batch_size))
        assert again["imported"] == 0, again

        raw_pid, _ = ensure_project(client, str(root / "raw"), "bench raw import")
        raw = [{"data": task_data(r, place.url_of(r.clip_id))} for r in pools.itertuples(index=False)]
        t_raw, raw_ids = timed(lambda: import_batches(client, raw_pid, raw, args.batch_size))
        assert len(raw_ids) == args.tasks

        pull_pid, _ = ensure_project(client, str(root / "pull"), "bench pull")
        uids = [a.user_id for _, a in sorted(server.secrets.raters.items())]
        t_setup, ids = timed(lambda: import_batches(client, pull_pid, annotated_tasks(pools, uids, place.url_of), args.batch_size))
        write_task_ids(str(root / "pull"), pull_pid, ids)  # as push leaves them
        t_pull, pulled = timed(lambda: pull(client, str(root / "pull"), pull_pid))
        assert pulled["counted"] == 3 * args.tasks, pulled
        (root / "pull" / TASK_IDS_JSON).unlink()
        t_listed, listed = timed(lambda: pull(client, str(root / "pull"), pull_pid))
        assert listed["counted"] == 3 * args.tasks, listed
        t_export, exported = timed(
            lambda: client.get(f"/api/projects/{pull_pid}/export", exportType="JSON", download_all_tasks="true")
        )
        assert len(exported) == args.tasks
    finally:
        stop(settings.data_dir)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    cores = len(os.sched_getaffinity(0))
    print_summary(
        "annotation benchmark",
        {
            "server start": f"{t_start:8.2f} s  (first start: database migrations)",
            "usable cores": cores,
            f"push {args.tasks} tasks": f"{t_push:8.2f} s  target < 60 s: {'met' if t_push < 60 else 'NOT met'}",
            "push again (no new task)": f"{t_again:8.2f} s",
            "raw import (baseline)": f"{t_raw:8.2f} s",
            "push / raw import": f"{t_push / t_raw:8.2f}x",
            f"pull {3 * args.tasks} annotations": f"{t_pull:8.2f} s  target < 30 s: {'met' if t_pull < 30 else 'NOT met'}",
            "  of which reading": f"{pulled['seconds_reading']:8.2f} s  (task ids from push's task_ids.json)",
            "pull, task ids listed": f"{t_listed:8.2f} s  (no task_ids.json: ids listed from the server first)",
            "raw export (baseline)": f"{t_export:8.2f} s  (one request, whole project)",
            "pull / raw export": f"{t_pull / t_export:8.2f}x",
            "setup: bulk import of the annotations": f"{t_setup:8.2f} s (not part of the pull)",
        },
    )
    if args.keep:
        print(f"\nkept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
