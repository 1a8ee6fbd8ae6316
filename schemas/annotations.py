"""The annotation folder: one typed layout owns every file in it.

::

    pools.parquet, pools.json   `annotate sample`: the clips to label
    assignment.parquet          `annotate push`: the three raters of every clip
    projects.json               `annotate push`: each rater's project (id, organization, settings hash)
    votes.parquet               `annotate pull`: one row per counted vote
    labels.parquet              `annotate pull`: one row per clip, its votes and label
    cant_tell.parquet           `annotate pull`: "can't tell / does not play" answers (not votes)
    pull.json                   `annotate pull`: counts, repairs and what was found changed on the server
    csv/<split>_{onscreen,offscreen}_unanimous_clips.csv
    status.json, status.png     `annotate status`

Other steps read labels through :func:`audioscope.annotation.pull.read_tables`
and never open these files by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audioscope import storage
from audioscope.folders import FolderLayout, another_steps_folder
from audioscope.shell import q

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


POOLS_PARQUET = "pools.parquet"
POOLS_JSON = "pools.json"
LABELS_PARQUET = "labels.parquet"


@dataclass(frozen=True)
class AnnotationLayout(FolderLayout):
    """Where each file of an annotation folder lives (local path or URI)."""

    pools_parquet = property(lambda self: self.path(POOLS_PARQUET))
    pools_json = property(lambda self: self.path(POOLS_JSON))
    assignment_parquet = property(lambda self: self.path("assignment.parquet"))
    projects_json = property(lambda self: self.path("projects.json"))
    votes_parquet = property(lambda self: self.path("votes.parquet"))
    labels_parquet = property(lambda self: self.path(LABELS_PARQUET))
    cant_tell_parquet = property(lambda self: self.path("cant_tell.parquet"))
    pull_json = property(lambda self: self.path("pull.json"))
    status_json = property(lambda self: self.path("status.json"))
    status_png = property(lambda self: self.path("status.png"))
    csv_dir = property(lambda self: self.path("csv"))

    def csv(self, name: str) -> str:
        return self.path("csv", name)

    def is_pulled(self) -> bool:
        return storage.exists(self.pull_json) and storage.exists(self.labels_parquet)

    def read_json(self, path: str) -> dict[str, Any] | None:
        return json.loads(storage.read_text(path)) if storage.exists(path) else None

    def write_json(self, path: str, body: Any) -> None:
        storage.atomic_write(path, json.dumps(body, indent=2, sort_keys=True) + "\n")

    def read_pools(self) -> "pd.DataFrame":
        """``pools.parquet`` (:data:`audioscope.schemas.tables.ANNOTATION_POOLS`); UserError when missing."""
        import pyarrow.parquet as pq

        from audioscope.errors import UserError
        from audioscope.schemas.tables import ANNOTATION_POOLS, validate

        if not storage.exists(self.pools_parquet):
            raise UserError(
                another_steps_folder(self.root, "annotations", "--annotations") or f"no pools in {self.root}: draw them first with "
                f"`audioscope annotate sample --store STORE --df DF_DIR --annotations {q(self.root)}`"
            )
        import pyarrow as pa

        from audioscope.schemas.tables import SchemaError

        try:
            with storage.open_file(self.pools_parquet) as fh:
                return validate(pq.read_table(fh), ANNOTATION_POOLS).to_pandas()
        except (pa.ArrowException, SchemaError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"{self.pools_parquet} is not a pools table written by `audioscope annotate sample` ({reason}); "
                f"draw the pools again with `audioscope annotate sample --store STORE --df DF_DIR --annotations {q(self.root)}`"
            ) from None


def labels_table_path(path: str) -> str:
    """The labels table given as the annotation folder or as the file itself."""
    return path if path.endswith(".parquet") else AnnotationLayout(path).labels_parquet
