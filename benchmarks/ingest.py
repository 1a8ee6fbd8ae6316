#!/usr/bin/env python
"""Ingest benchmark: our pipeline against the two baselines that matter.

Measured in one run on the same synthetic corpus (at least ``--minutes`` of
video, broken files left out so every tool sees the same inputs):

  ours        `audioscope ingest` end to end (CLI, Beam's local runner,
              fetch, one decode per video, clip store written, index built).
  per-clip    the way existing tools cut clips: one ffmpeg run per clip
              (seek to the start, decode 5 s, write 16 kHz mono audio and
              5 frames of 128x128), over exactly the clips ours produced.
  bare decode one ffmpeg decode pass per video to 16 kHz mono audio and
              1 fps 128x128 RGB frames, output discarded: the physical
              limit of this design. It runs twice: as plain ffmpeg (the
              target's baseline) and with one decoder and filter thread per
              video, as ours runs ffmpeg when every core has its own video
              (ffmpeg's threads only add overhead then; printed as b'').

Both baselines run on ``--workers`` processes, the same parallelism ours
gets. It prints (a) per-clip / ours (speed-up, target >= 8), (b) ours / bare
decode (overhead, target <= 1.5), (b'') ours / the one-thread bare decode
(target <= 1.25, judged when ``--workers`` equals the cores this process
may use) and (c) clip-store bytes per clip-second against the naive store
(float32 audio + raw frames per clip, target <= 1/8).
It also measures ours on an empty list (interpreter, Beam and pipeline
start-up, which a 200,000-video run pays once) and prints (a) and (b) for
the per-video work alone, with that start-up taken out.

    .venv/bin/python benchmarks/ingest.py --workdir /tmp/bench-ingest

On a shared machine, compare within one run: ``--baseline-bin`` times
another `audioscope` executable (an older commit's) on the same corpus,
alternating with ours, ``--repeat`` keeps the best of several runs, and the
CPU seconds of ours and of the one-thread bare pass (every child process)
show the work done whatever the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audioscope.progress import print_summary

SAMPLE_RATE = 16_000
FRAME = 128
NAIVE_BYTES_PER_CLIP = 80_000 * 4 + 5 * FRAME * FRAME * 3
VF = (
    f"fps=1,scale={FRAME}:{FRAME}:force_original_aspect_ratio=decrease,"
    f"pad={FRAME}:{FRAME}:(ow-iw)/2:(oh-ih)/2"
)


#: The default corpus: enough video per worker that the run's fixed part (the start-up, the index,
#: the last video) weighs on many cores about as it does on two. At 16 workers a 20-minute corpus
#: decodes in under a second of one-thread ffmpeg per core, less than the start-up alone.
MINUTES_PER_WORKER = 10.0
MIN_MINUTES = 20.0


def audioscope_bin() -> str:
    exe = Path(sys.executable).with_name("audioscope")
    return str(exe) if exe.exists() else "audioscope"


def make_corpus(workdir: Path, minutes: float, seed: int) -> tuple[Path, list[dict]]:
    """Synthesize videos until the good ones add up to ``minutes`` of video."""
    corpus = workdir / "corpus"
    n = max(12, int(minutes * 60 / 25))
    if (corpus / "corpus.json").exists():  # a corpus of an earlier run: start at its size (synth resumes it)
        n = max(n, len(json.loads((corpus / "corpus.json").read_text())["videos"]))
    while True:
        subprocess.run(
            [audioscope_bin(), "synth", "--out", str(corpus), "--videos", str(n),
             "--seed", str(seed), "--no-broken"],
            check=True, stdout=subprocess.DEVNULL,
        )
        manifest = json.loads((corpus / "corpus.json").read_text())
        videos = [v for v in manifest["videos"] if v["expected"] == "ok"]
        total = sum(v["duration"] for v in videos)
        if total >= minutes * 60:
            return corpus, videos
        shutil.rmtree(corpus)
        n = int(n * (minutes * 60) / max(total, 1.0)) + 2


def real_corpus(workdir: Path, sources: list[str], minutes: float) -> tuple[Path, list[dict]]:
    """A corpus of real videos: ``sources`` taken in turn (hard links, or copies across file
    systems) until they add up to ``minutes``; each copy is a video of its own to every contestant."""
    from audioscope.media import probe

    corpus = workdir / "corpus-real"
    shutil.rmtree(corpus, ignore_errors=True)
    (corpus / "videos").mkdir(parents=True)
    lengths = [probe(s).duration or 0.0 for s in sources]
    if not all(lengths):
        raise SystemExit("every --videos file must be a video whose container gives its duration")
    videos: list[dict] = []
    total = 0.0
    while total < minutes * 60:
        i = len(videos)
        src = sources[i % len(sources)]
        name = f"videos/real{i:05d}{Path(src).suffix}"
        try:
            os.link(src, corpus / name)
        except OSError:
            shutil.copyfile(src, corpus / name)
        videos.append({"stem": f"real{i:05d}", "file": name, "duration": lengths[i % len(sources)]})
        total += lengths[i % len(sources)]
    (corpus / "list.csv").write_text("uri,video_id\n" + "".join(f"{v['file']},{v['stem']}\n" for v in videos))
    return corpus, videos


def run_ours(corpus: Path, store: Path, workers: int, exe: str | None = None) -> float:
    """Wall time of `audioscope ingest CORPUS/list.csv` into ``store`` (``exe``: another `audioscope`)."""
    cmd = [exe or audioscope_bin(), "ingest", str(corpus / "list.csv"), "--media-root", str(corpus),
           "--out", str(store), "--workers", str(workers)]
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=installed_env())
    CPU[exe or "ours"] = CPU.get(exe or "ours", []) + [children_cpu() - c0]
    return time.perf_counter() - t0


def installed_env() -> dict[str, str]:
    """This environment without ``PYTHONDONTWRITEBYTECODE``: the CLI runs as installed, its modules'
    bytecode cached (with the variable set, as in some sandboxes, every run compiled the launcher's and
    the pool's modules again: ~0.1 s at the start and ~0.1 s at the end of each run, measured on 2 cores)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


#: The modules an ingest run imports (the launcher's, the pipeline's, the pool's), compiled before any timed run.
INGEST_MODULES = ("audioscope.cli", "audioscope.pipelines.ingest_cli", "audioscope.pipelines.ingest",
                  "audioscope.pipelines.ingest_beam", "audioscope.clipstore.writer", "audioscope.clipstore.summary")


def cache_bytecode(*executables: str | None) -> None:
    """Write the bytecode of :data:`INGEST_MODULES` for our CLI and each other one's (a first timed run
    would otherwise pay the compiling)."""
    for exe in (audioscope_bin(), *(e for e in executables if e)):
        python = Path(exe).with_name("python")
        subprocess.run([str(python) if python.exists() else sys.executable, "-c", f"import {', '.join(INGEST_MODULES)}"],
                       check=True, env=installed_env())  # fmt: skip


#: CPU seconds (user + system, every child process) of each timed run, by contestant.
CPU: dict[str, list[float]] = {}


def children_cpu() -> float:
    """CPU seconds used so far by this script's finished child processes (ffmpeg, the CLI and theirs)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _ffmpeg(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def per_clip_cut(video: str, start: float, outdir: str) -> None:
    """One ffmpeg run per clip, writing its audio and its 5 frames."""
    _ffmpeg(["-ss", f"{start:.3f}", "-t", "5", "-i", video,
             "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le",
             os.path.join(outdir, "audio.raw"),
             "-map", "0:v:0", "-vf", VF, "-frames:v", "5", "-f", "rawvideo",
             "-pix_fmt", "rgb24", os.path.join(outdir, "frames.raw")])


def bare_decode(video: str, threads: tuple[str, ...] = ()) -> None:
    """One decode pass over the whole video, both outputs discarded."""
    _ffmpeg([*threads, "-i", video, "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE),
             "-f", "s16le", os.devnull,
             "-map", "0:v:0", "-vf", VF, "-f", "rawvideo", "-pix_fmt", "rgb24", os.devnull])


def timed_pool(jobs: list, fn, workers: int, name: str | None = None) -> float:
    t0, c0 = time.perf_counter(), children_cpu()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads wait on ffmpeg processes
        for f in [pool.submit(fn, *j) for j in jobs]:
            f.result()
    if name:
        CPU[name] = CPU.get(name, []) + [children_cpu() - c0]
    return time.perf_counter() - t0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_READ_LIST = """
import resource, sys, time
from audioscope.clipstore.format import Layout, StoreParams, init_store
from audioscope.pipelines.ingest import write_requests
layout = Layout(sys.argv[2])
init_store(layout, StoreParams())
t = time.time()
written = write_requests(layout, sys.argv[1], None, "/media", workdir=sys.argv[3])
written.ids.close()
print(written.requested, written.bad_rows, round(time.time() - t, 1),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def list_memory(megabytes: float, workdir: str | None) -> int:
    """Peak RSS of the launcher's list step (read, group, write request shards) on a big clip list.

    The list names 40 clips per video, rows of one video spread over the
    whole file (the worst case for grouping). The same step on an empty
    list is the baseline (interpreter and imports).
    """
    import random

    root = Path(workdir or tempfile.mkdtemp(prefix="bench-list-"))
    root.mkdir(parents=True, exist_ok=True)
    big, small = root / "filtered_train_clips.csv", root / "empty_train_clips.csv"
    rng = random.Random(5)
    n_videos = max(1, int(megabytes * 1e6 / 80 / 40))
    keys = ["%032x" % rng.getrandbits(128) for _ in range(n_videos)]
    with open(big, "w") as f:
        for k in range(40):
            f.write("".join(f"data/videos/mp4/{h[:3]}/{h[3:6]}/{h}.mp4,{5 * k}.0,{5 * k + 5}.0\n" for h in keys))
    small.write_text("")
    out = {}
    for name, path in (("empty list", small), ("big list", big)):
        store = root / f"store-{path.stem}"
        shutil.rmtree(store, ignore_errors=True)
        res = subprocess.run([sys.executable, "-c", _READ_LIST, str(path), str(store), str(root)],
                             capture_output=True, text=True, check=True)
        req, bad, secs, peak = res.stdout.split()
        out[name] = (int(req), float(secs), int(peak))
    size = big.stat().st_size
    base, peak = out["empty list"][2], out["big list"][2]
    print_summary("ingest list memory", {
        "list": f"{size / 1e6:.0f} MB, {n_videos * 40:,} clip rows, {n_videos:,} videos",
        "read + group + write requests": f"{out['big list'][1]:.1f} s",
        "peak RSS, empty list": f"{base / 1e6:.0f} MB (interpreter and imports)",
        "peak RSS, big list": f"{peak / 1e6:.0f} MB",
        "peak / list size": f"{peak / size:.2f}x",
        "above the empty list": f"{(peak - base) / 1e6:.0f} MB",
    })
    if not workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="where to put the corpus and stores (default: a temp dir, removed after)")
    ap.add_argument(
        "--minutes", type=float, default=None,
        help=f"minutes of video in the corpus (default: {MINUTES_PER_WORKER:g} per worker, at least "
        f"{MIN_MINUTES:g}: 160 at --workers 16)",
    )
    ap.add_argument("--seed", type=int, default=90210, help="corpus seed (default 90210)")
    ap.add_argument(
        "--videos", nargs="+", default=None, metavar="V",
        help="real videos to use instead of the synthetic corpus: each is taken in turn (as a new video "
        "each time) until --minutes are reached",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="parallel workers for every contestant (default: CPU count)")
    ap.add_argument(
        "--list-mb", type=float, default=None, metavar="MB",
        help="instead: measure the launcher's peak memory reading a generated clip list of about MB megabytes",
    )
    ap.add_argument(
        "--baseline-bin", default=None, metavar="EXE",
        help="also time this `audioscope` executable (e.g. an older commit's) on the same corpus, "
        "alternating with ours, and print ours / it",
    )
    ap.add_argument("--repeat", type=int, default=1, help="time ours (and --baseline-bin) this many times, alternating; the best run counts (default 1)")
    ap.add_argument("--no-per-clip", action="store_true", help="skip the per-clip cutting baseline (the slowest part)")
    args = ap.parse_args()
    if args.minutes is None:
        args.minutes = max(MIN_MINUTES, MINUTES_PER_WORKER * args.workers)
    if args.list_mb is not None:
        return list_memory(args.list_mb, args.workdir)

    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-ingest-")
        workdir = Path(tmp)
    try:
        if args.videos:
            corpus, videos = real_corpus(workdir, args.videos, args.minutes)
        else:
            corpus, videos = make_corpus(workdir, args.minutes, args.seed)
        minutes = sum(v["duration"] for v in videos) / 60

        store = workdir / "store"
        cache_bytecode(args.baseline_bin)
        ours_runs: list[float] = []
        base_runs: list[float] = []
        for _ in range(max(1, args.repeat)):
            if args.baseline_bin:
                shutil.rmtree(workdir / "store-baseline", ignore_errors=True)
                base_runs.append(run_ours(corpus, workdir / "store-baseline", args.workers, args.baseline_bin))
            shutil.rmtree(store, ignore_errors=True)
            ours_runs.append(run_ours(corpus, store, args.workers))
        t_ours = min(ours_runs)
        empty = workdir / "empty"
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir()
        (empty / "list.csv").write_text((corpus / "list.csv").read_text().splitlines()[0] + "\n")
        t_startup = run_ours(empty, workdir / "empty-store", args.workers)
        shutil.rmtree(workdir / "empty-store", ignore_errors=True)

        import pandas as pd  # after ours ran, so its import time is not in any measurement

        from audioscope.clipstore import ClipStore

        index = ClipStore.open(str(store)).index
        by_id = {v["stem"]: str(corpus / v["file"]) for v in videos}
        clips = [(by_id[r.video_id], float(r.start)) for r in index.itertuples() if r.video_id in by_id]
        decodable = sorted({c[0] for c in clips})

        cut_root = Path(tempfile.mkdtemp(prefix="cuts-", dir=workdir))
        dirs = []
        for i in range(len(clips)):
            d = cut_root / f"{i:06d}"
            d.mkdir()
            dirs.append(str(d))
        t_cut = (float("nan") if args.no_per_clip
                 else timed_pool([(v, s, d) for (v, s), d in zip(clips, dirs)], per_clip_cut, args.workers))
        shutil.rmtree(cut_root)
        one_thread = ("-threads", "1", "-filter_threads", "1")
        t_bare = t_bare1 = float("inf")
        for _ in range(max(1, args.repeat)):  # best of as many as ours got
            t_bare = min(t_bare, timed_pool([(v,) for v in decodable], bare_decode, args.workers))
            t_bare1 = min(t_bare1, timed_pool([(v, one_thread) for v in decodable], bare_decode, args.workers, "bare1"))

        media_bytes = dir_bytes(store / "media")
        clip_seconds = 5 * len(index)
        ours_bpcs = media_bytes / clip_seconds
        naive_bpcs = NAIVE_BYTES_PER_CLIP / 5

        cores = len(os.sched_getaffinity(0))  # as the other benchmarks count the usable cores
        speedup = t_cut / t_ours
        overhead = t_ours / t_bare
        t_work = max(t_ours - t_startup, 1e-9)
        size_ratio = ours_bpcs / naive_bpcs
        rows = [
            ("corpus", f"{len(decodable)} videos with audio, {minutes:.1f} min, {len(index)} clips, workers={args.workers}"),
            ("ours (audioscope ingest)", f"{t_ours:8.1f} s" + (f"   (best of {', '.join(f'{t:.1f}' for t in ours_runs)})" if len(ours_runs) > 1 else "")),
            *([("baseline executable", f"{min(base_runs):8.1f} s   (best of {', '.join(f'{t:.1f}' for t in base_runs)}): ours / it = {t_ours / min(base_runs):.2f}x; "
                f"it / bare at 1 thread = {min(base_runs) / t_bare1:.2f}x")] if base_runs else []),
            ("ours on an empty list", f"{t_startup:8.1f} s   (start-up, paid once per run)"),
            *([] if args.no_per_clip else [("per-clip ffmpeg cutting", f"{t_cut:8.1f} s")]),
            ("bare decode pass", f"{t_bare:8.1f} s"),
            ("bare decode, 1 ffmpeg thread", f"{t_bare1:8.1f} s   (ffmpeg threads as ours sets them)"),
            ("(a) per-clip / ours", "     n/a    (--no-per-clip: not measured)" if args.no_per_clip
             else f"{speedup:8.2f}x   target >= 8     {'PASS' if speedup >= 8 else 'MISS'}"),
            ("(b) ours / bare decode", f"{overhead:8.2f}x   target <= 1.5   {'PASS' if overhead <= 1.5 else 'MISS'}"),
            *([] if args.no_per_clip else [("(a') per-clip / ours, start-up out", f"{t_cut / t_work:8.2f}x   (per-video work only)")]),
            ("(b') ours / bare, start-up out", f"{t_work / t_bare:8.2f}x   (per-video work only)"),
            ("(b'') ours / bare at 1 thread", f"{t_ours / t_bare1:8.2f}x   target <= 1.25 with a worker per core   "
             + (("PASS" if t_ours / t_bare1 <= 1.25 else "MISS") if args.workers == cores
                else f"not judged: {args.workers} workers on {cores} cores")),
            *([("CPU seconds: ours / bare at 1 thread",
                f"{min(CPU['ours'][:len(ours_runs)]):8.1f} / {min(CPU['bare1']):.1f} s = {min(CPU['ours'][:len(ours_runs)]) / min(CPU['bare1']):.2f}x"
                + (f"; baseline executable {min(CPU[args.baseline_bin]):.1f} s" if args.baseline_bin else "")
                + "   (work done, whatever the load)")] if "bare1" in CPU else []),
            ("(c) bytes per clip-second", f"{ours_bpcs:8.0f} B vs naive {naive_bpcs:.0f} B = 1/{1 / size_ratio:.1f}   target <= 1/8   {'PASS' if size_ratio <= 1 / 8 else 'MISS'}"),
        ]
        print_summary("ingest benchmark", dict(rows))
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
