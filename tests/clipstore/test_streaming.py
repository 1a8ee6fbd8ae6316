"""Reading a big store in bounded memory: index shards merged as streams, one shard per clip lookup."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from audioscope import cli, storage
from audioscope.clipstore.format import Layout, StoreParams, index_shard_of, init_store
from audioscope.clipstore.reader import ClipStore
from audioscope.schemas.tables import CLIP_INDEX, STATUS, to_table


def _store(tmp_path, n_videos: int = 40, n_shards: int = 3):
    layout = Layout(str(tmp_path / "store"))
    init_store(layout, StoreParams())
    shards: list[list[dict]] = [[] for _ in range(n_shards)]
    for v in range(n_videos):
        vid = f"vid{v:03d}"
        for k in range(3):
            shards[index_shard_of(vid, n_shards)].append({
                "clip_id": f"{vid}-{k * 1000:07d}", "video_id": vid, "start": float(k), "end": float(k + 5),
                "split": None, "licence_name": "CC BY", "licence_url": None, "source_uri": f"/m/{vid}.mp4",
                "video_duration": 9.0,
            })
    names = []
    for i, rows in enumerate(shards):
        rows.sort(key=lambda r: (r["video_id"], r["start"]))
        buf = io.BytesIO()
        pq.write_table(to_table(rows, CLIP_INDEX), buf)
        storage.atomic_write(layout.index_shard(i, n_shards), buf.getvalue())
        names.append(layout.index_shard(i, n_shards).rsplit("/", 1)[-1])
    status = [{"video_id": f"vid{v:03d}", "source": "s", "origin": "o", "status": "ok", "n_clips": 3,
               "media_bytes": 1, "media_seconds": 7, "clips_requested": 3, "clips_produced": 3} for v in range(n_videos)]
    buf = io.BytesIO()
    pq.write_table(to_table(status, STATUS), buf)
    storage.atomic_write(layout.status_table, buf.getvalue())
    storage.atomic_write(layout.summary_json, json.dumps({"index_files": names}))
    return layout


def test_index_rows_merge_into_the_global_order(tmp_path):
    layout = _store(tmp_path)
    cs = ClipStore.open(layout.root)
    rows = list(cs.iter_index_rows(["clip_id", "video_id", "start"]))
    assert len(rows) == 120
    assert rows == sorted(rows, key=lambda r: (r[1], r[2]))
    assert [r[0] for r in rows] == cs.index["clip_id"].tolist()
    assert [r[0] for r in cs.iter_index_rows(["clip_id"], video_id="vid007")] == [
        "vid007-0000000", "vid007-0001000", "vid007-0002000"]


def test_clips_list_streams_without_the_whole_index(tmp_path, capsys, monkeypatch):
    layout = _store(tmp_path)
    expected = ClipStore.open(layout.root).index
    monkeypatch.setattr(ClipStore, "index", property(lambda self: pytest.fail("the whole index was loaded")))
    assert cli.main(["clips", "list", "--store", layout.root, "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "clip_id,video_id,start,end,split,licence_name,source"
    assert [line.split(",")[0] for line in out[1:]] == expected["clip_id"].tolist()
    assert cli.main(["clips", "list", "--store", layout.root, "--limit", "4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 5 and table[0].split() == ["clip_id", "video_id", "start", "end", "split", "licence_name", "source"]
    assert table[1].split()[0] == "vid000-0000000"
    assert cli.main(["clips", "list", "--status", "--store", layout.root, "--video", "vid003"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_one_clip_reads_one_index_shard(tmp_path, monkeypatch):
    layout = _store(tmp_path)
    cs = ClipStore.open(layout.root)
    monkeypatch.setattr(ClipStore, "index", property(lambda self: pytest.fail("the whole index was loaded")))
    rows = cs._rows_of("vid012-0001000")
    assert rows["video_id"].tolist() == ["vid012"] and rows["start"].tolist() == [1.0]
    assert cs._rows_of("vid012-0009000").empty
