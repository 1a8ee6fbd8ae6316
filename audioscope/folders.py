"""The base of every step's typed layout: a root folder and the paths under it.

A step owns its output folder through one layout class (paths, shard
names, "is it finished", readers of its tables); each such class starts
from :class:`FolderLayout`. The root is a local path or a URI (``gs://``,
``s3://``); a URI loses its trailing slash so that ``x`` and ``x/`` name
the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from audioscope import storage


@dataclass(frozen=True)
class FolderLayout:
    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.rstrip("/") if "://" in self.root else self.root)

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)
