"""The clip store: every second of every ingested video stored once, plus an index of clips.

Designed for 200,000 videos / 7.2 M clips on GCS as for a laptop: one object
per video for media and status (written in parallel by stateless workers,
never appended to), and a few Parquet files for the index, rebuilt from the
status records at the end of each run.

Layout (``STORE`` is a local path, ``gs://...`` or ``s3://...``)::

    STORE/store.json                        format version + parameters, fixed at creation
    STORE/requests/requests-NNNNN-of-MMMMM.jsonl
                                            the normalised video list of the last run
                                            (VideoRequest JSON lines), read by the pipeline
    STORE/bad_rows/<list hash>.jsonl        list rows that could not be read, per list
    STORE/media/<id[:2]>/<video_id>.npz     one shard per video: each second once
    STORE/status/<id[:2]>/<video_id>.json   per-video status record, written AFTER its media
    STORE/index/clips-NNNNN-of-MMMMM.parquet clip index (schemas.tables.CLIP_INDEX)
    STORE/index/status.parquet              per-video status table (schemas.tables.STATUS)
    STORE/index/parts/status-<prefix>.parquet
                                            the status rows of one status/<prefix>/ folder
                                            (merged into status.parquet)
    STORE/conflicts/<id[:2]>/<id>--<hash>.json
                                            a request naming a stored id with another source
    STORE/ingest.lock                       held by the one ingest writing the store
    STORE/summary.json                      counts, failures by kind, clips requested and not
                                            produced by reason, bytes, index file list

**Media shards.** A zip of ``.npy`` members, readable with
``numpy.load(path, allow_pickle=False)`` and never with pickle: ``audio``
(int16 mono at 16 kHz, deflated), ``frame_data`` (the second-centre frames,
each a PNG, concatenated) and ``frame_offsets`` (n+1 byte offsets), plus
``meta.json``. Overlapping clips share the seconds they have in common, so a
clip costs about one second of storage, not five. Frames are PNG (lossless)
by default: int16 audio (32 kB/s) plus a 128x128 PNG (~10-40 kB) stays under
1/8 of the naive store (float32 audio + raw frames per clip: 565,760 bytes
per 5-s clip); ``frame_codec="jpeg"`` (quality 95, no chroma subsampling) is
there for stores where frames do not compress well losslessly.
``audioscope clips stats`` reports the measured ratio.

**Completion and resume.** A video is finished when its status record exists;
status is written with an atomic write after the media shard, so a run killed
at any point leaves either a finished video or one that is redone. Transient
failures (network) are retried by the next run; permanent ones (corrupt
media, no audio) only with ``--retry-failed``. The index, status table and
``summary.json`` are written last (index shards, then the status table, then
the summary that names the shards), deterministically (rows sorted by
``(video_id, start)`` within each shard; a video's shard is a stable hash of
its id), from *all* status records in the store, so re-running gives the
same index.

**A store that grows.** Lists ingested one after the other add to the
store: a later list naming new spans of a stored video gets them (the video
is decoded again and its shard holds the clips of every list); spans past a
stored video's known length are recorded without a download; the same
video id from another source is a recorded ``conflict`` (the stored video is
kept). One ingest at a time writes a store (:mod:`audioscope.clipstore.lock`).

**Sparse shards.** When a list names clips, a shard stores only the seconds
those clips cover (a ``seconds`` member lists them; media version 2), not
every second up to the last clip.

**Clip windows.** Clip k covers [k, k+5) s while k + 5 <= the whole seconds
that have both audio and a frame (``floor(D - 5) + 1`` clips for D whole
seconds); when the list gives spans, exactly those clips (spans that do not
fit are recorded on the video's status). ``clip_id`` is
``f"{video_id}-{start_ms:07d}"``.

Reading::

    store = ClipStore.open("gs://bucket/store")
    store.index                    # pandas DataFrame, one row per clip (all in memory)
    for frame in store.iter_index():  # the same rows, one index shard batch at a time
    clip = store.clip(store.index.clip_id[0])
    clip.audio                     # float32 [80000] in [-1, 1]
    clip.frames                    # uint8 [5, 128, 128, 3]
    for clip in store.iter_clips():  # (video_id, start) order, one shard read per video
        ...
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Clip", "ClipStore", "Layout", "StoreError", "StoreParams"]

_WHERE = {
    "Clip": "reader",
    "ClipStore": "reader",
    "Layout": "format",
    "StoreError": "format",
    "StoreParams": "format",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that `audioscope clips --help` (audioscope.clipstore.cli)
    # imports only the standard library.
    if name in _WHERE:
        return getattr(importlib.import_module(f"audioscope.clipstore.{_WHERE[name]}"), name)
    raise AttributeError(name)
