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
from typing import Any

from audioscope import storage


@dataclass(frozen=True)
class AnnotationLayout:
    root: str

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    pools_parquet = property(lambda self: self.path("pools.parquet"))
    pools_json = property(lambda self: self.path("pools.json"))
    assignment_parquet = property(lambda self: self.path("assignment.parquet"))
    projects_json = property(lambda self: self.path("projects.json"))
    votes_parquet = property(lambda self: self.path("votes.parquet"))
    labels_parquet = property(lambda self: self.path("labels.parquet"))
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
