"""The scores folder written by ``audioscope score``, and its one owner: :class:`ScoresLayout`.

Free of Beam and TensorFlow, so that the steps that read scores (filter, the
report) import it cheaply. :mod:`audioscope.pipelines.score` writes the
folder; everyone else reads it through this layout, never by file name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from audioscope import storage
from audioscope.errors import UserError
from audioscope.folders import FolderLayout, another_steps_folder
from audioscope.ids import check_video_id, file_in
from audioscope.shards import ShardTemplate
from audioscope.shell import q

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Version of the scores folder's layout (``scores.json`` records it).
FORMAT_VERSION = 1

#: The merge chunks (one per parts/<prefix>/ folder).
MERGE_CHUNKS = ShardTemplate(stem="chunk", suffix=".parquet")


@dataclass(frozen=True)
class ScoresLayout(FolderLayout):
    """The one owner of a scores folder (local path or URI): every path, "finished?", the readers.

    Other steps read the scores through :meth:`read_scores` / :meth:`read_meta`,
    never by file name.
    """

    @property
    def scores_json(self) -> str:
        return self.path("scores.json")

    @property
    def scores_parquet(self) -> str:
        return self.path("scores.parquet")

    @property
    def summary_json(self) -> str:
        return self.path("summary.json")

    @property
    def invalid_ids(self) -> str:
        """``invalid-ids.jsonl``: index rows whose ids are not valid (never used as paths)."""
        return self.path("invalid-ids.jsonl")

    @property
    def work_dir(self) -> str:
        return self.path("work")

    @property
    def parts_dir(self) -> str:
        return self.path("parts")

    @property
    def failed_dir(self) -> str:
        return self.path("failed")

    @property
    def merge_dir(self) -> str:
        """Sorted chunks of the merge, one per parts/ prefix folder (removed once merged)."""
        return self.path("merge")

    def merge_chunk(self, i: int, n: int) -> str:
        return self.path("merge", MERGE_CHUNKS.name(i, n))

    def part(self, video_id: str) -> str:
        """``parts/<id[:2]>/<video_id>.parquet`` (:class:`~audioscope.ids.BadId` for an invalid id)."""
        check_video_id(video_id)
        return file_in(self.path("parts", video_id[:2]), video_id, ".parquet")

    def failed(self, video_id: str) -> str:
        check_video_id(video_id)
        return file_in(self.path("failed", video_id[:2]), video_id, ".json")

    # ------------------------------------------------------------------ state
    def scored_videos(self) -> set[str]:
        """The videos with a (complete) part: a part is written only whole."""
        return {video_id_of(p, ".parquet") for p in storage.list_files(self.parts_dir, ".parquet")}

    def failed_videos(self) -> set[str]:
        return {video_id_of(p, ".json") for p in storage.list_files(self.failed_dir, ".json")}

    def is_finished(self) -> bool:
        """True when the last run ended with every clip of the store's index accounted for."""
        if not storage.exists(self.summary_json) or not storage.exists(self.scores_parquet):
            return False
        try:
            return json.loads(storage.read_text(self.summary_json)).get("complete") is True
        except ValueError:
            return False

    # ------------------------------------------------------------------ readers
    def read_meta(self) -> dict[str, Any]:
        """``scores.json`` (model_id, model, store, batch_size, format_version); {} when absent."""
        if not storage.exists(self.scores_json):
            return {}
        try:
            meta = json.loads(storage.read_text(self.scores_json))
        except ValueError:
            raise UserError(f"{self.scores_json} is not valid JSON; re-run `audioscope score` to rewrite it") from None
        if not isinstance(meta, dict):
            raise UserError(f"{self.scores_json} is not a scores description; re-run `audioscope score`")
        return meta

    def read_summary(self) -> dict[str, Any]:
        return json.loads(storage.read_text(self.summary_json))

    def clips_per_video(self) -> dict[str, int]:
        """video id -> how many clips ``scores.parquet`` has of it (reads that one column)."""
        import pyarrow.parquet as pq

        if not storage.exists(self.scores_parquet):
            return {}
        with storage.open_file(self.scores_parquet) as fh:
            counts = pq.read_table(fh, columns=["video_id"]).group_by("video_id").aggregate([("video_id", "count")])
        return dict(zip(counts.column("video_id").to_pylist(), counts.column("video_id_count").to_pylist()))

    def read_scores(self, columns: Sequence[str] | None = None) -> "pd.DataFrame":
        """The scores table (``schemas.tables.SCORES``), validated; ``columns`` selects some.

        A missing, non-Parquet or wrong-schema file is a :class:`UserError`
        that names it and says what to do.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        from audioscope.schemas.tables import SCORES, SchemaError, validate

        path = self.scores_parquet
        if not storage.exists(path):
            raise UserError(
                another_steps_folder(self.root, "scores", "--scores") or
                f"no scores in {self.root} (scores.parquet is missing): score the clip store first with "
                f"`audioscope score --store STORE --model MODEL_DIR --out {q(self.root)}`"
            )
        try:
            with storage.open_file(path) as fh:
                table = validate(pq.read_table(fh), SCORES)
        except (pa.ArrowException, SchemaError, OSError) as e:
            raise UserError(
                f"{path} is not a scores table written by `audioscope score` ({e}); "
                "re-run `audioscope score` into a fresh --out"
            ) from None
        if columns is not None:
            table = table.select(list(columns))
        return table.to_pandas()


def video_id_of(path: str, suffix: str) -> str:
    """The video id of a part or failure marker path (``.../<id>.parquet``)."""
    return path.rsplit("/", 1)[-1][: -len(suffix)]
