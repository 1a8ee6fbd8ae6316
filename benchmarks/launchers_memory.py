#!/usr/bin/env python
"""Peak memory and time of the launchers that read a whole clip index, on a metadata-only store.

Builds (once per size, under --workdir) a clip store with only its index, at the
users' shape (YFCC100M: ~36 clips per video; one index shard per 10,000 videos
as ingest writes them), a scores folder as `audioscope score` writes it, and a Df;
then runs each step in a fresh interpreter and reads its VmHWM:

  baseline     the interpreter with the steps' modules imported
  filter       audioscope.curation.filter.filter (threshold 0.8, no truth)
  sample       audioscope.annotation.pools.sample (three pools of 10,000)
  score-work   the score launcher's work units: the index read per video and
               written as work shards (what `audioscope score` does before Beam)
  render-src   render's source check (audioscope.pipelines.render.source_policy)
               for the videos of 10,000 clips, from a store without a status table

It runs at two sizes and prints each peak, the growth per 100,000 clips
between them, and the peak extrapolated linearly to the full size (7.2 M
clips): a step that streams grows little.
--code-root DIR runs the steps with the package of another checkout (e.g. a
`git worktree` of an older commit) to measure before/after in one session:

    .venv/bin/python benchmarks/launchers_memory.py --videos 5000,20000 --workdir /tmp/bench-launchers
    git worktree add /tmp/old 4143cac   # the commit before the launchers streamed
    .venv/bin/python benchmarks/launchers_memory.py --videos 5000,20000 --workdir /tmp/bench-launchers --code-root /tmp/old
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

MB = 1024 * 1024
FULL_CLIPS = 7_200_000

_REPORT_PEAK = """
with open("/proc/self/status") as _f:
    _hwm = int(next(l for l in _f if l.startswith("VmHWM")).split()[1]) * 1024
print("PEAK", _hwm)
"""

# Imports the package from another checkout: its folders mapped as pyproject.toml maps them.
_CODE_ROOT = """
import importlib.util, sys
_ROOT = {root!r}
_MAP = {{"audioscope": "audioscope", "audioscope.pipelines": "pipelines", "audioscope.curation": "curation",
        "audioscope.annotation": "annotation", "audioscope.schemas": "schemas", "audioscope.models": "models"}}
class _Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name in _MAP:
            d = _ROOT + "/" + _MAP[name]
            return importlib.util.spec_from_file_location(name, d + "/__init__.py", submodule_search_locations=[d])
        return None
sys.meta_path.insert(0, _Finder)
"""

_IMPORTS = """
import audioscope.curation.filter, audioscope.annotation.pools, audioscope.pipelines.score, audioscope.pipelines.render
"""

STEPS = {
    "baseline": "",
    "filter": """
        from audioscope.curation.filter import FilterConfig, filter
        filter(FilterConfig(scores={scores!r}, store={store!r}, out={out!r}, use_truth=False))
    """,
    "sample": """
        from audioscope.annotation.pools import PoolSizes, sample
        sample({store!r}, {df!r}, {out!r}, PoolSizes())
    """,
    "score-work": """
        from audioscope import storage
        from audioscope.clipstore.reader import ClipStore
        from audioscope.pipelines import score as s
        from audioscope.pipelines.work import write_work_shards
        store = ClipStore.open({store!r})
        clips, invalid, n = s.read_index_clips(store)
        todo = sorted(clips)
        if hasattr(s, "todo_work_lines"):
            lines = s.todo_work_lines(store, set(todo))
        else:
            lines = (s.work_line(v, clips[v]) for v in todo)
        write_work_shards({out!r}, lines, per_shard=s.VIDEOS_PER_WORK_SHARD, total=len(todo))
    """,
    "render-src": """
        import json
        from audioscope.pipelines.render import source_policy
        videos = set(json.load(open({videos!r})))
        policy = source_policy({ann!r}, None, videos)
        assert len(policy.recorded) == len(videos)
    """,
}


def peak_of(code: str, code_root: str | None) -> tuple[int, float]:
    """(peak bytes, seconds) of ``code`` in a fresh interpreter."""
    prefix = _CODE_ROOT.format(root=code_root) if code_root else ""
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", prefix + _IMPORTS + textwrap.dedent(code) + _REPORT_PEAK],
        capture_output=True, text=True,
    )  # fmt: skip
    if res.returncode != 0:
        sys.exit(f"step failed:\n{res.stderr[-3000:]}")
    return int(res.stdout.strip().splitlines()[-1].split()[1]), time.monotonic() - t0


def build(root: Path, n_videos: int, clips_per_video: int, seed: int = 0) -> dict[str, str]:
    """A metadata-only store, its scores and a Df under ``root`` (kept: built once per size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope import storage
    from audioscope.clipstore.format import Layout, StoreParams, index_shard_count, index_shard_of, init_store
    from audioscope.schemas.tables import CLIP_INDEX, SCORES, validate

    paths = {"store": str(root / "store"), "scores": str(root / "scores"), "df": str(root / "df")}
    if (root / "ready").exists():
        return paths
    print(f"building a store of {n_videos} videos x {clips_per_video} clips in {root} (once) ...", file=sys.stderr)
    rng = np.random.default_rng(seed)
    layout = Layout(paths["store"])
    init_store(layout, StoreParams())
    n_shards = index_shard_count(n_videos)
    videos = [f"{int(x):016x}" for x in rng.integers(0, 2**63, n_videos)]
    by_shard: dict[int, list[str]] = {}
    for v in videos:
        by_shard.setdefault(index_shard_of(v, n_shards), []).append(v)
    names, score_parts = [], []
    for i in range(n_shards):
        vids = sorted(by_shard.get(i, []))
        vid = np.repeat(np.array(vids, dtype=object), clips_per_video)
        k = np.tile(np.arange(clips_per_video), len(vids))
        start = k.astype(np.float64)
        cols = {
            "clip_id": [f"{v}-{j:07d}" for v, j in zip(vid, k)], "video_id": vid.tolist(),
            "start": start, "end": start + 5.0, "split": [None] * len(vid),
            "licence_name": ["Attribution License"] * len(vid),
            "licence_url": ["http://creativecommons.org/licenses/by/2.0/"] * len(vid),
            "source_uri": [f"gs://yfcc100m-videos/data/{v}.mp4" for v in vid],
            "video_duration": np.full(len(vid), clips_per_video + 4.0),
        }  # fmt: skip
        table = validate(pa.table(cols, schema=CLIP_INDEX), CLIP_INDEX)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        path = layout.index_shard(i, n_shards)
        storage.atomic_write(path, buf.getvalue())
        names.append(path.rsplit("/", 1)[-1])
        score_parts.append(table.select(["clip_id", "video_id", "start", "end"]))
    storage.atomic_write(layout.summary_json, json.dumps(
        {"index_files": names, "clips": n_videos * clips_per_video, "videos": n_videos}
    ))  # fmt: skip
    scores = pa.concat_tables(score_parts).sort_by([("video_id", "ascending"), ("start", "ascending")])
    n = scores.num_rows
    scores = scores.append_column("probability", pa.array(rng.beta(2, 3, n).astype(np.float32)))
    scores = scores.append_column("model_id", pa.array(["sha256:bench"] * n, pa.string()))
    Path(paths["scores"]).mkdir(parents=True, exist_ok=True)
    pq.write_table(validate(scores.select(SCORES.names).cast(SCORES), SCORES), Path(paths["scores"]) / "scores.parquet")
    (Path(paths["scores"]) / "scores.json").write_text(json.dumps({"model_id": "sha256:bench", "store": paths["store"]}))
    from audioscope.curation.filter import FilterConfig, filter

    filter(FilterConfig(scores=paths["scores"], store=paths["store"], out=paths["df"], use_truth=False))
    (root / "ready").write_text("")
    return paths


def measure(args: argparse.Namespace, n_videos: int) -> dict[str, tuple[int, float]]:
    """Each step's (peak bytes, seconds) on a store of ``n_videos`` videos."""
    root = Path(args.workdir) / f"videos-{n_videos}x{args.clips_per_video}"
    paths = build(root, n_videos, args.clips_per_video)
    import pyarrow.parquet as pq

    df = pq.read_table(Path(paths["df"]) / "df.parquet", columns=["video_id"]).column(0).to_pylist()
    videos = sorted(set(df[:10_000]))
    ann = root / "ann-render"
    ann.mkdir(exist_ok=True)
    (ann / "pools.json").write_text(json.dumps({"store": paths["store"]}))
    (ann / "videos.json").write_text(json.dumps(videos))
    run = Path(args.workdir) / f"run-{time.time_ns()}"
    out = {}
    for step in args.steps.split(","):
        code = STEPS[step].format(
            store=paths["store"], scores=paths["scores"], df=paths["df"], out=str(run / step), ann=str(ann),
            videos=str(ann / "videos.json"),
        )  # fmt: skip
        out[step] = peak_of(code, args.code_root)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default="5000,20000",
                    help="two store sizes in videos, comma-separated (full size: 200,000); the growth "
                    "between them is extrapolated to 7.2 M clips")  # fmt: skip
    ap.add_argument("--clips-per-video", type=int, default=36, help="clips per video (YFCC100M: ~36)")
    ap.add_argument("--workdir", default="/tmp/bench-launchers")
    ap.add_argument("--code-root", default=None, help="run the steps with the package of this checkout")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps to run (baseline first)")
    args = ap.parse_args()
    small, big = (int(v) for v in args.videos.split(","))
    print(f"code: {args.code_root or 'this checkout'}; stores of {small} and {big} videos x {args.clips_per_video} clips")
    a, b = measure(args, small), measure(args, big)
    n_a, n_b = small * args.clips_per_video, big * args.clips_per_video
    print(f"{'step':<12} {'peak MB':>9} {'peak MB':>9} {'MB per 100k clips':>18} {'s':>6} {'s':>6} {'at 7.2 M clips':>15}")
    print(f"{'':<12} {f'{n_a} cl':>9} {f'{n_b} cl':>9} {'(growth)':>18} {'':>6} {'':>6} {'GB (linear)':>15}")
    for step in b:
        (pa_, sa), (pb, sb) = a[step], b[step]
        slope = max(pb - pa_, 0) / (n_b - n_a)
        full = (pb + slope * (FULL_CLIPS - n_b)) / 1024**3
        print(f"{step:<12} {pa_ / MB:>9.0f} {pb / MB:>9.0f} {slope * 100_000 / MB:>18.1f} {sa:>6.1f} {sb:>6.1f} {full:>15.2f}")


if __name__ == "__main__":
    main()
