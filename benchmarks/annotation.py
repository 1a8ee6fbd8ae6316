#!/usr/bin/env python
"""Annotation benchmark: push N tasks, pull and aggregate 3 N annotations, on a real server.

Starts its own Label Studio server (``.venv-labelstudio``, SQLite, a
temporary folder, port chosen free) and measures, in one run:

  push            `annotate push`'s code: N pooled clips (placeholder MP4
                  files, as push only checks that the media exist), each
                  assigned to 3 of 3 raters: 3 rater projects of N tasks
                  (project, storage, listing existing tasks, batched imports).
  push again      the same push once more (lists 3 N tasks, imports none).
  raw import      baseline: N tasks posted straight to the import endpoint
                  (SDK) in the same batches, into another new project.
  pull            `annotate pull`'s code after each rater answered each of
                  their tasks (3 N annotations, made beforehand, not timed):
                  per project its counts read, one export checked against them,
                  dedup, votes/labels/CSVs written; the three projects are read
                  side by side on the server's processes (--processes, as
                  `annotate server --processes`; 1: one after another).
  raw export      baseline: one request exporting one rater's project (the
                  first process).

It prints seconds and the ratios push / raw import and pull / raw export
(how much the toolkit adds to what the server itself costs; below 1 when
the projects are read side by side), against the issue's targets (push
10,000 tasks < 60 s, pull 30,000 annotations < 30 s on 2 cores).

    .venv/bin/python benchmarks/annotation.py --tasks 10000
    .venv/bin/python benchmarks/annotation.py --tasks 10000 --processes 1   # the server of one process
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


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far (/proc; 0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu_timed(fn: Any, pids: list[int]) -> tuple[float, float, float, Any]:
    """(wall seconds, CPU seconds of the server processes ``pids``, CPU seconds of this process, result)."""
    s0, c0 = cpu_seconds(pids), time.process_time()
    wall, out = timed(fn)
    return wall, cpu_seconds(pids) - s0, time.process_time() - c0, out


def server_pids(data_dir: str) -> list[int]:
    """The pids of a server's processes: the first and its readers (server.json)."""
    import json

    d = json.loads((Path(data_dir) / "server.json").read_text())
    return [int(d["pid"]), *(int(r["pid"]) for r in d.get("readers") or [])]


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
    ap.add_argument("--server-dir", default=None, help="use the running server of `annotate server --data-dir DIR` (3 raters)")
    ap.add_argument("--keep", action="store_true", help="keep the server folder (printed) instead of deleting it")
    ap.add_argument(
        "--processes", type=int, default=3,
        help="Label Studio processes of the server started here (default 3, as `annotate server`); with --server-dir, its own",
    )
    args = ap.parse_args()

    from audioscope.annotation.client import Client
    from audioscope.annotation.pull import pull
    from audioscope.annotation.push import ensure_project, import_batches, media_place, push, task_data
    from audioscope.annotation.server import ServerSettings, free_port, start, stop

    from types import SimpleNamespace

    from audioscope.annotation.client import ServerInfo
    from audioscope.annotation.credentials import read_secrets

    if args.server_dir:  # a running server of `annotate server` (its document root holds the placeholder media)
        info = ServerInfo.read(args.server_dir)
        assert info is not None and info.document_root, f"no server.json in {args.server_dir}"
        root = Path(tempfile.mkdtemp(prefix="bench-annotation-", dir=info.document_root))
        settings = None
        t_start, server = 0.0, SimpleNamespace(
            url=info.url, secrets=read_secrets(str(Path(args.server_dir) / "secrets.json")), readers=info.readers
        )
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-annotation-"))
        settings = ServerSettings(
            data_dir=str(root / "server"), port=free_port(), document_root=str(root), raters=("rater1", "rater2", "rater3"),
            processes=args.processes,
        )
        t_start, server = timed(lambda: start(settings))
    pids = server_pids(args.server_dir or settings.data_dir)
    try:
        secrets = server.secrets
        secrets = SimpleNamespace(raters=dict(sorted(secrets.raters.items())[:3]))  # 3 raters: each clip to all three
        pools = fake_pools(args.tasks)
        media = root / "media"
        placeholder_media(media, pools)
        place = media_place(str(media), str(root))
        (root / "push").mkdir()
        pools.to_parquet(root / "push" / "pools.parquet")

        def run_push() -> dict:
            return push(server.url, secrets, str(root / "push"), pools, str(media), str(root), f"bench push {root.name}", args.batch_size)

        t_push, summary = timed(run_push)
        assert summary["imported"] == 3 * args.tasks, summary
        t_again, again = timed(run_push)
        assert again["imported"] == 0, again

        client = Client(server.url, secrets.raters["rater1"].token)
        raw_pid, _ = ensure_project(client, None, f"bench raw import {root.name}")
        raw = [{"data": task_data(c, place.url_of(c), 30.0)} for c in pools["clip_id"]]
        t_raw, raw_ids = timed(lambda: import_batches(client, raw_pid, raw, args.batch_size))
        assert len(raw_ids) == args.tasks

        # the pull: 3 rater projects of N tasks, each task with its rater's answer (bulk import, not timed)
        from audioscope.annotation.assign import assign
        from audioscope.annotation.push import RaterProject, write_assignment, write_projects
        from audioscope.annotation.raters import annotation_body

        ann = root / "pull"
        ann.mkdir()
        pools.to_parquet(ann / "pools.parquet")
        write_assignment(str(ann), assign(pools["clip_id"], list(secrets.raters)))
        projects = {}
        t_setup = 0.0
        for k, (name, acc) in enumerate(sorted(secrets.raters.items())):
            rc = Client(server.url, acc.token)
            pid, _ = ensure_project(rc, None, f"bench pull {root.name}")
            tasks = [
                {"data": task_data(c, place.url_of(c), 30.0),
                 "annotations": [{**annotation_body(bool((i + k) % 3), bool(i % 2), 5.0 + k), "completed_by": acc.user_id}]}
                for i, c in enumerate(pools["clip_id"])
            ]  # fmt: skip
            dt, _ = timed(lambda: import_batches(rc, pid, tasks, args.batch_size))
            t_setup += dt
            projects[name] = RaterProject(name, acc.email, acc.user_id, acc.organization_id, pid)
        write_projects(str(ann), server.url, f"bench pull {root.name}", projects)
        t_pull, cpu_pull, own_pull, pulled = cpu_timed(lambda: pull(server.url, secrets, str(ann), readers=server.readers), pids)
        assert pulled["counted"] == 3 * args.tasks, pulled
        pid1 = projects["rater1"].project_id
        t_export, cpu_export, _, exported = cpu_timed(lambda: client.export(pid1), pids)
        assert len(exported) == args.tasks
    finally:
        if settings is not None:
            stop(settings.data_dir)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    cores = len(os.sched_getaffinity(0))
    print_summary(
        "annotation benchmark",
        {
            "server start": f"{t_start:8.2f} s  (first start: database migrations; 0: --server-dir)",
            "usable cores": cores,
            "server processes": f"{1 + len(server.readers)} (pull reads the 3 projects on them side by side)",
            f"push {args.tasks} clips (3 tasks each)": f"{t_push:8.2f} s  target < 60 s: {'met' if t_push < 60 else 'NOT met'}",
            "push again (no new task)": f"{t_again:8.2f} s",
            "raw import of N tasks (baseline)": f"{t_raw:8.2f} s  (one project, SDK import only)",
            "push / (3 x raw import)": f"{t_push / (3 * t_raw):8.2f}x",
            f"pull {3 * args.tasks} annotations": f"{t_pull:8.2f} s  target < 30 s: {'met' if t_pull < 30 else 'NOT met'}",
            "  of which reading": f"{pulled['seconds_reading']:8.2f} s  (3 projects: counts, one export each, check)",
            "  CPU: server, pull itself": f"{cpu_pull:8.2f} s, {own_pull:.2f} s",
            "raw export of one project (baseline)": f"{t_export:8.2f} s  (one request, N tasks; server CPU {cpu_export:.2f} s)",
            "pull / (3 x raw export)": f"{t_pull / (3 * t_export):8.2f}x  (server CPU: {cpu_pull / (3 * max(cpu_export, 1e-9)):.2f}x)",
            "setup: the raters' annotations": f"{t_setup:8.2f} s (bulk import of tasks with answers, not part of the pull)",
        },
    )
    if args.keep:
        print(f"\nkept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
