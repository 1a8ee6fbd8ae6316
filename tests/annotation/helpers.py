"""Small real inputs for the annotation tests: a synthetic corpus (real videos
and truth.parquet), a clip store index over it and a Df made by the real
filter from seeded scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from audioscope import cli
from audioscope.clipstore.format import clip_id

from ..curation.helpers import make_store, rng_probabilities, write_scores


def corpus_index(corpus: Path) -> pd.DataFrame:
    """A clip index over the corpus's readable videos (clip k covers [k, k+5), within the video)."""
    manifest = json.loads((corpus / "corpus.json").read_text())
    rows = []
    for v in manifest["videos"]:
        if v["expected"] != "ok" or not v.get("duration"):
            continue
        for k in range(int(math.floor(v["duration"])) - 4):
            rows.append({
                "clip_id": clip_id(v["stem"], k), "video_id": v["stem"], "start": float(k), "end": float(k + 5),
                "split": None, "licence_name": "CC0 1.0", "licence_url": "https://creativecommons.org/publicdomain/zero/1.0/",
                "source_uri": str(corpus / v["file"]), "video_duration": float(v["duration"]),
            })  # fmt: skip
    return pd.DataFrame(rows)


def make_inputs(root: Path, videos: int = 6, seed: int = 5) -> dict[str, Path]:
    """corpus/, store/, scores/ and df/ under ``root`` (the real synth and filter commands)."""
    corpus, store, scores, df = (root / n for n in ("corpus", "store", "scores", "df"))
    assert cli.main([
        "synth", "--out", str(corpus), "--videos", str(videos), "--seed", str(seed), "--no-broken",
        "--min-duration", "8", "--max-duration", "14", "--jobs", "2",
    ]) == 0  # fmt: skip
    index = corpus_index(corpus)
    make_store(store, index)
    write_scores(scores, index, rng_probabilities(len(index), seed))
    assert cli.main([
        "filter", "--scores", str(scores), "--store", str(store), "--out", str(df), "--threshold", "0.3",
        "--split-ratios", "0.5,0.25,0.25",
    ]) == 0  # fmt: skip
    return {"corpus": corpus, "store": store, "scores": scores, "df": df}
