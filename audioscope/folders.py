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


@dataclass(frozen=True)
class FolderKind:
    """A step's output folder as the user knows it: the file only that step writes there."""

    marker: str
    name: str
    command: str


#: Every step's output folder, by the file that tells it apart (checked in this order).
FOLDER_KINDS: dict[str, FolderKind] = {
    "release": FolderKind("manifest.json", "a release copy", "audioscope release pull"),
    "store": FolderKind("store.json", "a clip store", "audioscope ingest"),
    "corpus": FolderKind("corpus.json", "a synthetic corpus", "audioscope synth"),
    "scores": FolderKind("scores.parquet", "a scores folder", "audioscope score"),
    "df": FolderKind("df.parquet", "a Df folder", "audioscope filter"),
    "annotations": FolderKind("pools.parquet", "an annotations folder", "audioscope annotate sample"),
    "mix": FolderKind("mix.json", "a mixtures folder", "audioscope mix"),
    "coincidence": FolderKind("model_card.json", "a coincidence model", "audioscope coincidence train"),
    "run": FolderKind("run.json", "a training run folder", "audioscope train"),
}


def folder_kind(root: str) -> str | None:
    """Which step's output folder ``root`` is (a key of :data:`FOLDER_KINDS`); None when none."""
    for key, kind in FOLDER_KINDS.items():
        try:
            if storage.exists(storage.join(root, kind.marker)):
                return key
        except (OSError, ValueError):
            return None
    return None


def another_steps_folder(root: str, wanted: str, option: str | None = None) -> str | None:
    """When ``root`` is the output folder of a step other than ``wanted``'s (a Df folder given
    as mixtures): one line saying what it is and what ``option`` takes; None otherwise."""
    found = folder_kind(root)
    if found is None or found == wanted:
        return None
    have, want = FOLDER_KINDS[found], FOLDER_KINDS[wanted]
    return (
        f"{root} is {have.name} (written by `{have.command}`), not {want.name}: "
        f"give {option + ' ' if option else ''}the folder that `{want.command}` wrote"
    )


def refuse_another_steps(root: str, wanted: str | None, option: str) -> None:
    """Refuse (:class:`UserError`, one line) to write a step's output into the output folder of
    another step (``score --out`` at a Df folder): its files would be mixed into that folder.
    ``wanted`` is the step's own kind (its folder is resumed), None for a step without one."""
    from audioscope.errors import UserError

    found = folder_kind(root)
    if found is None or found == wanted:
        return
    have = FOLDER_KINDS[found]
    raise UserError(
        f"{root} is {have.name} (written by `{have.command}`); {option} must not be another step's "
        "folder (this step's files would be mixed into it): give a new folder"
    )
