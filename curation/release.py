"""Named, versioned dataset releases: publish, list, pull, verify, diff, resolve.

This module is the front door: it re-exports the public names of the modules that do the work, one
job each:

* :mod:`~audioscope.curation.release_layout`: the one layout of a release folder, a root and a copy;
* :mod:`~audioscope.curation.manifest`: the manifest format (validated), checking a local copy;
* :mod:`~audioscope.curation.release_store`: the release root and moving bytes (capped, in parallel);
* :mod:`~audioscope.curation.release_publish`: publish (refuses an empty Df, 0 examples, a mismatch);
* :mod:`~audioscope.curation.release_list`: list versions (bad ones shown as bad), leftovers;
* :mod:`~audioscope.curation.release_pull`: pull (capped, locked, only its own files);
* :mod:`~audioscope.curation.release_resolve`: a verified copy for loaders (:func:`release_files`);
* :mod:`~audioscope.curation.release_diff`: what changed between two versions;
* :mod:`~audioscope.curation.croissant`: the Croissant metadata of a release.

Layout of a release root (a local folder or ``gs://``/``s3://``)::

    ROOT/<name>/<version>/            version: a semantic version (1.0.0, 1.1.0-rc.1)
        manifest.json                 every other file with size, SHA-256, group; counts,
                                      schema versions, configs and seeds, toolkit, models
        README.md                     the data card
        croissant.json                Croissant 1.1 metadata (generated from the manifest)
        LICENSES.csv                  one row per clip: licence and attribution
        summary.json, examples.parquet, train/<recipe>/*.tfrecord,
        eval/<split>/<set>/*.tfrecord, eval/<split>/<set>/*_pairs.csv   (as `audioscope mix` wrote them)
        curated/df/...                Df, its split CSVs and report (`audioscope filter`)
        curated/labels/...            votes, labels and unanimous clip lists (annotation), if given
    ROOT/<name>/.incomplete-<version>-<random>/   a publish in progress (or killed)

**Commit.** A publish writes every file under ``.incomplete-<version>-<random>/``
first. On a local file system the folder, manifest included, is then renamed
to ``<version>/`` in one atomic ``rename``; the rename fails when the version
exists, so a version is never overwritten. Object stores have no atomic
rename, so there the manifest is the commit marker: the files are copied
(server side) from the incomplete prefix to ``<version>/`` and
``manifest.json`` is written last, in one ``put`` (create-only where the
store supports preconditions, as GCS does). A version whose manifest is
absent does not exist: ``list`` does not show it, ``pull`` refuses it, and
the next publish of that version clears it. A publish that fails removes
what it wrote; one that is killed leaves a hidden ``.incomplete-*`` folder
that ``list`` reports and a later publish removes once it is older than a
day (a younger one may belong to a publish still running).

**Pull.** Files go to a partial of this pull in the hidden ``.audioscope-pull/``
folder of the copy, capped at the manifest's size, are checked by SHA-256
while they stream, and are renamed into place (never through a link, never
over a file no pull made); a lock in the folder makes a second pull wait;
files already present with the right size and hash are not transferred
again, so an interrupted pull resumes. The manifest is written last: a folder
with a manifest holds a complete copy of the groups recorded in
``.audioscope-release.json``. Two publishers of the same version to an
object store at the same moment are not fully protected (the copy step can
overlap); GCS's create-only manifest write makes one of them fail.
"""

from audioscope.curation.manifest import Manifest, ManifestError, VerificationError, release_files, verify_files
from audioscope.curation.release_diff import ReleaseDiff, diff, load_manifest
from audioscope.curation.release_layout import INCOMPLETE_PREFIX, CopyLayout
from audioscope.curation.release_list import (
    STALE_SECONDS,
    BadVersion,
    Leftover,
    Listing,
    VersionInfo,
    clean_leftovers,
    list_names,
    list_versions,
    pick_version,
    remote_manifest,
)
from audioscope.curation.release_publish import (
    PublishRequest,
    PublishResult,
    SourceFile,
    check_standing,
    df_sources,
    label_sources,
    mix_sources,
    prepare,
    publish,
    toolkit_info,
)
from audioscope.curation.release_pull import PullResult, copy_lock, parse_groups, pull
from audioscope.curation.release_resolve import default_cache, resolve, resolve_source
from audioscope.curation.release_store import (
    DEFAULT_JOBS,
    ReleaseRoot,
    TooLarge,
    copy_file,
    each_in_parallel,
    server_copy,
)

__all__ = [
    "DEFAULT_JOBS", "INCOMPLETE_PREFIX", "STALE_SECONDS", "BadVersion", "CopyLayout", "Leftover", "Listing",
    "Manifest", "ManifestError", "PublishRequest", "PublishResult", "PullResult", "ReleaseDiff", "ReleaseRoot",
    "SourceFile", "TooLarge", "VerificationError", "VersionInfo", "check_standing", "clean_leftovers",
    "copy_file", "copy_lock", "default_cache", "df_sources", "diff", "each_in_parallel", "label_sources",
    "list_names", "list_versions", "load_manifest", "mix_sources", "parse_groups", "pick_version", "prepare",
    "publish", "pull", "release_files", "remote_manifest", "resolve", "resolve_source", "server_copy",
    "toolkit_info", "verify_files",
]  # fmt: skip
