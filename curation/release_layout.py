"""The one typed layout of a release folder: where every file of a version, of a release root and of a
local copy lives, and whether a copy is finished.

Standard library only (the numpy loader and :mod:`audioscope.curation.manifest` use it without
pandas, Beam or TensorFlow). Other modules never spell these names themselves.

A release root (a local folder, ``gs://`` or ``s3://``)::

    ROOT/<name>/<version>/                 a published version (exists once manifest.json does)
        manifest.json                      every other file with size, SHA-256 and group
        README.md, LICENSES.csv,           the data card, licence per clip,
        croissant.json                     Croissant 1.1 metadata (mlcommons.org/croissant)
        summary.json, examples.parquet, train/..., eval/...   (as `audioscope mix` wrote them)
        curated/df/..., curated/labels/...                    (`audioscope filter`, annotation)
    ROOT/<name>/.incomplete-<version>-<random>/   a publish in progress (or killed)

A local copy (``audioscope release pull --to DIR``)::

    DIR/manifest.json                      written last: a finished copy
    DIR/.audioscope-release.json           which release, root and groups the copy holds
    DIR/.audioscope-pull.lock              held by the pull (or resolve) that writes the copy
    DIR/.audioscope-pull/                  partial downloads of the running pull (only ours)
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from dataclasses import dataclass

from audioscope.pipelines import mix_layout as _mix

MANIFEST_JSON = "manifest.json"
README_MD = "README.md"
LICENSES_CSV = "LICENSES.csv"
CROISSANT_JSON = "croissant.json"
#: Hidden file a pull writes next to the files: which release and groups the copy holds.
PULL_STATE = ".audioscope-release.json"
#: Held (flock) by the process writing a local copy; a second pull into the same folder waits.
PULL_LOCK = ".audioscope-pull.lock"
#: Partial downloads of a pull; nothing else in the copy is ever removed by a pull.
PARTIAL_DIR = ".audioscope-pull"
PARTIAL_SUFFIX = ".part"
_PARTIAL_NAME = re.compile(r"[0-9a-f]{12}-[0-9a-f]{8}\.part")

#: File groups: ``meta`` (manifest, data card, licences, summary, example table) is always pulled.
GROUPS: tuple[str, ...] = ("train", "eval", "curated", "meta")
SELECTABLE_GROUPS: tuple[str, ...] = ("train", "eval", "curated")

#: Under ROOT/<name>/: a publish in progress, and the marker file inside it.
INCOMPLETE_PREFIX = ".incomplete-"
PUBLISH_MARKER = ".publish.json"

#: Mixture-folder entries a release carries (besides train/ and eval/), and the
#: working files of `audioscope mix` that a release leaves out silently: the
#: mixtures folder's layout says which are which.
MIX_TOP_FILES = _mix.TOP_FILES
MIX_WORK = ("mix.json", *_mix.WORK_FOLDERS)
#: Where the Df folder and the annotation folder go inside a release.
CURATED_DF = "curated/df"
CURATED_LABELS = "curated/labels"


def group_of(path: str) -> str:
    """The group of a release-relative path (``train/...`` -> ``train`` and so on)."""
    head = path.split("/", 1)[0]
    return head if head in SELECTABLE_GROUPS and "/" in path else "meta"


def staging_name(version: str) -> str:
    """A fresh name for the hidden folder a publish of ``version`` writes into."""
    return f"{INCOMPLETE_PREFIX}{version}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class CopyLayout:
    """A local release copy (a folder made by ``release pull``, or a published version on a local disk)."""

    directory: str

    @property
    def manifest(self) -> str:
        return os.path.join(self.directory, MANIFEST_JSON)

    @property
    def state(self) -> str:
        return os.path.join(self.directory, PULL_STATE)

    @property
    def lock(self) -> str:
        return os.path.join(self.directory, PULL_LOCK)

    @property
    def partial_dir(self) -> str:
        return os.path.join(self.directory, PARTIAL_DIR)

    def finished(self) -> bool:
        """True when the copy has its manifest (a pull writes it last)."""
        return os.path.isfile(self.manifest) and not os.path.islink(self.manifest)

    def file(self, rel: str) -> str:
        """The local path of the release file ``rel`` (a checked release-relative path)."""
        return os.path.join(self.directory, *rel.split("/"))

    def rel(self, path: str) -> str:
        """The release-relative path of a local path inside the copy; ``ValueError`` outside it."""
        path = os.fspath(path)
        if os.path.isabs(path):
            rel = os.path.relpath(path, self.directory)
            if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
                raise ValueError(f"{path} is not inside the release copy {self.directory}")
            path = rel
        return path.replace(os.sep, "/")

    def new_partial(self) -> str:
        """A fresh temporary path for one download (in :data:`PARTIAL_DIR`, named by this pull only)."""
        return os.path.join(self.partial_dir, f"{uuid.uuid4().hex[:12]}-{os.getpid() & 0xFFFFFFFF:08x}{PARTIAL_SUFFIX}")

    def stale_partials(self) -> list[str]:
        """Partial downloads left by killed pulls (only names a pull makes, only in :data:`PARTIAL_DIR`)."""
        try:
            names = os.listdir(self.partial_dir)
        except OSError:
            return []
        return [os.path.join(self.partial_dir, n) for n in sorted(names) if _PARTIAL_NAME.fullmatch(n)]

    def link_in_path(self, rel: str) -> str | None:
        """The first component of ``rel`` (inside the copy) that is a symbolic link, or None.

        A copy holds real files: a link could make a check pass on bytes that live elsewhere, or a pull
        write outside its folder. ``directory`` itself may be a link (a cache on another disk).
        """
        here = self.directory
        for part in rel.split("/"):
            here = os.path.join(here, part)
            if os.path.islink(here):
                return posixpath.join(*self.rel(here).split("/"))
        return None
