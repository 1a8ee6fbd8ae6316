"""Named, versioned dataset releases: publish, list, pull, verify, diff, resolve.

Layout of a release root (a local folder or ``gs://``/``s3://``)::

    ROOT/<name>/<version>/            version: a semantic version (1.0.0, 1.1.0-rc.1)
        manifest.json                 every other file with size, SHA-256, group; counts,
                                      schema versions, configs and seeds, toolkit, models
        README.md                     the data card
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

**Pull.** Files go to a hidden temporary name next to their place, are
checked by size and SHA-256 while they stream, and are renamed into place;
files already present with the right size and hash are not transferred
again, so an interrupted pull resumes. The manifest is written last: a folder
with a manifest holds a complete copy of the groups recorded in
``.audioscope-release.json``. Two publishers of the same version to an
object store at the same moment are not fully protected (the copy step can
overlap); GCS's create-only manifest write makes one of them fail.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import posixpath
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from audioscope import __version__, storage
from audioscope.errors import UserError
from audioscope.curation.manifest import (
    CHUNK,
    FORMAT,
    FORMAT_VERSION,
    LICENSES_CSV,
    MANIFEST_JSON,
    PULL_STATE,
    README_MD,
    SELECTABLE_GROUPS,
    FileEntry,
    Manifest,
    VerificationError,
    check_dir,
    check_relative_path,
    check_name,
    file_problem,
    latest,
    parse_spec,
    parse_version,
    pulled_groups,
    read_local_manifest,
    verify_files,
)
from audioscope.progress import Progress

__all__ = [
    "Manifest", "ReleaseRoot", "VerificationError", "diff", "list_versions", "load_manifest", "publish",
    "pull", "resolve", "resolve_source", "verify_files",
]  # fmt: skip

INCOMPLETE_PREFIX = ".incomplete-"
MARKER = ".publish.json"
#: A leftover ``.incomplete-*`` folder older than this is removed by the next publish.
STALE_SECONDS = 24 * 3600
#: Mixture-folder entries a release carries (besides train/ and eval/).
MIX_TOP_FILES = ("summary.json", "examples.parquet")
#: Working files of `audioscope mix` that a release leaves out silently.
MIX_WORK = ("mix.json", "work", "failed")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the release root


class ReleaseRoot:
    """A release root (local folder or object store) and the fsspec calls on it."""

    def __init__(self, root: str) -> None:
        self.uri = os.fspath(root).rstrip("/") or "/"
        self.fs, path = storage.url_to_fs(self.uri)
        self.path = path.rstrip("/")
        self.local = storage.is_local(self.uri)

    def p(self, *parts: str) -> str:
        """The file-system path of ``ROOT/parts...``."""
        return posixpath.join(self.path, *parts)

    def display(self, *parts: str) -> str:
        """``ROOT/parts...`` as the user wrote the root."""
        return posixpath.join(self.uri, *parts)

    def refresh(self) -> None:
        """Forget cached listings (another process may have written since)."""
        self.fs.invalidate_cache()

    def children(self, *parts: str) -> list[tuple[str, str]]:
        """(basename, type) of the entries directly under ``ROOT/parts``; hidden names included."""
        path = self.p(*parts)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            base = posixpath.basename(str(e["name"]).rstrip("/"))
            if base and str(e["name"]).rstrip("/") != path.rstrip("/"):
                out.append((base, str(e.get("type"))))
        return sorted(out)

    def read(self, *parts: str) -> bytes | None:
        """The bytes of ``ROOT/parts`` or None when it does not exist."""
        try:
            return bytes(self.fs.cat_file(self.p(*parts)))
        except FileNotFoundError:
            return None

    def remove_tree(self, *parts: str) -> None:
        """Delete ``ROOT/parts`` and everything under it (nothing when absent)."""
        path = self.p(*parts)
        if self.local:
            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- moving bytes


def _open_write(fs: Any, path: str, local: bool) -> Any:
    if local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")
    return fs.open(path, "wb")


def copy_file(src_fs: Any, src: str, dst_fs: Any, dst: str, dst_local: bool) -> tuple[int, str]:
    """Stream one file from ``src`` to ``dst`` and return (bytes, SHA-256 of what was written).

    A local destination is flushed to disk (fsync) before returning. This is
    the one place bytes move between stores (publish and pull).
    """
    h = hashlib.sha256()
    n = 0
    with src_fs.open(src, "rb") as fin, _open_write(dst_fs, dst, dst_local) as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            n += len(chunk)
        if dst_local:
            fout.flush()
            os.fsync(fout.fileno())
    return n, h.hexdigest()


#: Files moved at the same time by publish and pull (``--jobs``). An object
#: store answers each request after a round trip, so several transfers at
#: once keep the link busy; on a local disk a few at once cost nothing.
DEFAULT_JOBS = 8


def each_in_parallel(
    items: Sequence[Any], fn: Callable[[Any], Any], jobs: int, on_done: Callable[[Any], None]
) -> list[Any]:
    """``fn(item)`` for every item, ``jobs`` at a time; the results in item order.

    ``on_done(result)`` runs in the calling thread as each one finishes (for
    progress). The first error cancels the items not started yet, waits for
    the running ones (so that nothing writes after the caller cleans up) and
    is raised.
    """
    if jobs <= 1 or len(items) <= 1:
        results = []
        for item in items:
            results.append(fn(item))
            on_done(results[-1])
        return results
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="release-transfer")
    futures = [pool.submit(fn, item) for item in items]
    try:
        for future in as_completed(futures):
            on_done(future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return [f.result() for f in futures]


def server_copy(fs: Any, sources: list[str], targets: list[str]) -> None:
    """Copy objects inside an object store, concurrently (GCS: server-side rewrites; no bytes pass through here)."""
    fs.copy(sources, targets)


def _write_bytes(fs: Any, path: str, data: bytes, local: bool) -> None:
    with _open_write(fs, path, local) as f:
        f.write(data)
        if local:
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- what goes in


@dataclass(frozen=True)
class SourceFile:
    """One file of a release to be: its release path and where its bytes come from."""

    rel: str
    size: int
    uri: str | None = None  # a file to copy
    data: bytes | None = None  # or generated content


def _tree(uri: str) -> dict[str, int]:
    """Relative path -> size of every visible file under ``uri`` (hidden names and folders skipped)."""
    fs, base = storage.url_to_fs(uri)
    base = base.rstrip("/")
    if not fs.exists(base):
        return {}
    out = {}
    for p, info in fs.find(base, detail=True).items():
        rel = p[len(base) :].lstrip("/")
        if rel and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = int(info.get("size") or 0)
    return out


def mix_sources(mix: str, summary: Mapping[str, Any], warnings: list[str]) -> list[SourceFile]:
    """The files of a mixtures folder a release carries, checked against summary.json's shard list."""
    tree = _tree(mix)
    kept = {r: s for r, s in tree.items() if r in MIX_TOP_FILES or r.split("/", 1)[0] in ("train", "eval")}
    others = sorted(r for r in set(tree) - set(kept) if r.split("/", 1)[0] not in MIX_WORK)
    if others:
        warnings.append(f"{len(others)} unknown files of {mix} are not released (e.g. {others[0]})")
    shards = {str(s["path"]): int(s.get("bytes", -1)) for s in summary.get("shards", [])}
    found = {r for r in kept if r.endswith(".tfrecord")}
    fix = "re-run `audioscope mix` into a fresh folder and publish that"
    if missing := sorted(set(shards) - found):
        raise UserError(f"{len(missing)} shards named in {mix}/summary.json are missing (e.g. {missing[0]}); {fix}")
    if extra := sorted(found - set(shards)):
        raise UserError(
            f"{len(extra)} shards in {mix} are not in its summary.json (e.g. {extra[0]}): leftovers of another "
            f"run? remove them or {fix}"
        )
    if wrong := sorted(r for r, b in shards.items() if b >= 0 and kept[r] != b):
        raise UserError(f"{wrong[0]} has {kept[wrong[0]]} bytes but summary.json says {shards[wrong[0]]}; {fix}")
    return [SourceFile(rel=r, size=s, uri=storage.join(mix, *r.split("/"))) for r, s in sorted(kept.items())]


def df_sources(df_dir: str) -> list[SourceFile]:
    """Df, its CSVs, report and histogram, under ``curated/df/``."""
    from audioscope.curation.datacard import DF_FILES

    tree = _tree(df_dir)
    wanted = [r for r in sorted(tree) if r in DF_FILES or (r.startswith("csv/") and r.endswith(".csv"))]
    return [SourceFile(rel=f"curated/df/{r}", size=tree[r], uri=storage.join(df_dir, *r.split("/"))) for r in wanted]


def label_sources(labels_dir: str) -> list[SourceFile]:
    """The top-level tables, lists and status of an annotation folder, under ``curated/labels/``."""
    from audioscope.curation.datacard import LABEL_SUFFIXES

    tree = _tree(labels_dir)
    wanted = [r for r in sorted(tree) if "/" not in r and r.endswith(LABEL_SUFFIXES)]
    return [SourceFile(rel=f"curated/labels/{r}", size=tree[r], uri=storage.join(labels_dir, r)) for r in wanted]


# --------------------------------------------------------------------------- toolkit


def toolkit_info() -> dict[str, Any]:
    """The toolkit version, the git commit of its source (None outside a git checkout), and local changes."""
    here = os.path.dirname(os.path.abspath(sys.modules["audioscope"].__file__ or "."))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": __version__, "git_commit": commit, "git_modified": None if status is None else bool(status)}


def _schema_versions(summary: Mapping[str, Any]) -> dict[str, Any]:
    from audioscope.schemas import tables

    return {
        "manifest": FORMAT_VERSION,
        "mixtures": summary.get("schema_versions", {}),
        "tables": getattr(tables, "SCHEMA_VERSIONS", {"tables": tables.SCHEMA_VERSION}),
    }


# --------------------------------------------------------------------------- publish


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    """What to publish, and where."""

    mix: str
    df: str
    name: str
    version: str
    root: str
    labels: str | None = None
    exclude_licences: tuple[str, ...] = ()
    jobs: int = DEFAULT_JOBS  # files uploaded at the same time


@dataclass
class PublishResult:
    """A published version: where it is, its manifest and the SHA-256 of manifest.json (the release's id)."""

    name: str
    version: str
    uri: str
    manifest: Manifest
    manifest_sha256: str
    warnings: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """A release ready to upload: its files, the generated ones, and the manifest fields."""

    sources: list[SourceFile]
    fields: dict[str, Any]
    warnings: list[str]


def prepare(req: PublishRequest) -> Prepared:
    """Read and check the inputs; build LICENSES.csv, README.md and the manifest fields (no upload)."""
    from audioscope.curation import datacard

    inputs = datacard.load_inputs(req.mix, req.df, req.labels)
    clips = datacard.clip_table(inputs)
    if bad := datacard.offending_examples(inputs, clips, req.exclude_licences):
        flags = " ".join(f"--exclude-licence {p!r}" for p in req.exclude_licences)
        raise UserError(
            f"examples in {req.mix} use excluded licences: {', '.join(bad)}. Re-run the mixtures without "
            f"them (`audioscope mix ... {flags} --out NEW_MIX_DIR`) and publish NEW_MIX_DIR"
        )
    rows, left_out = datacard.licence_rows(clips, req.exclude_licences)
    licences = datacard.licence_summary(rows, left_out, req.exclude_licences)
    labels = datacard.label_statistics(inputs.labels_table)
    warnings = list(inputs.warnings)
    sources = mix_sources(req.mix, inputs.summary, warnings) + df_sources(req.df)
    sources += label_sources(req.labels) if req.labels else []
    toolkit = toolkit_info()
    group_bytes: dict[str, int] = {}
    for s in sources:
        g = FileEntry(s.rel, s.size, "").group
        group_bytes[g] = group_bytes.get(g, 0) + s.size
    readme = datacard.render_readme(
        name=req.name, version=req.version, root=req.root, inputs=inputs, group_bytes=group_bytes,
        licences=licences, labels=labels, toolkit=toolkit,
    ).encode("utf-8")  # fmt: skip
    lic = datacard.licences_csv(rows)
    sources += [SourceFile(README_MD, len(readme), data=readme), SourceFile(LICENSES_CSV, len(lic), data=lic)]
    summary, report = inputs.summary, inputs.filter_report
    fields = {
        "counts": {
            **summary.get("counts", {}),
            "shards": {str(s["path"]): int(s.get("examples", 0)) for s in summary.get("shards", [])},
            "examples": int(sum(int(s.get("examples", 0)) for s in summary.get("shards", []))),
            "df": {"kept": report.get("kept"), "splits": report.get("splits")},
        },
        "schema_versions": _schema_versions(summary),
        "configs": {
            "sources": {"mix": req.mix, "df": req.df, "labels": req.labels},
            "mix": summary.get("config", {}),
            "mix_inputs": summary.get("inputs", {}),
            "mix_toolkit_version": summary.get("toolkit_version"),
            "filter": report.get("inputs", {}),
            "annotation": inputs.annotation,
            "coincidence_model": inputs.model_card,
        },
        "models": {
            "coincidence": {
                "model_id": inputs.model_id,
                "model": (report.get("inputs", {}).get("scores_json") or {}).get("model"),
                "card_found": inputs.model_card is not None,
            }
        },
        "toolkit": toolkit,
        "licences": licences,
        "labels": labels,
    }
    return Prepared(sources=sources, fields=fields, warnings=warnings)


def _check_request(req: PublishRequest) -> PublishRequest:
    try:
        check_name(req.name)
        version = str(parse_version(req.version))
    except ValueError as e:
        raise UserError(str(e)) from None
    if not all(p.strip() for p in req.exclude_licences):
        raise UserError("--exclude-licence needs a non-empty text, e.g. --exclude-licence NoDerivs")
    return replace(req, version=version)


def _refuse_existing(root: ReleaseRoot, name: str, version: str) -> None:
    """Refuse a version that exists (or one of the same precedence), or a local folder in its way."""
    if root.local and root.children(name, version) and root.read(name, version, MANIFEST_JSON) is None:
        raise UserError(
            f"{root.p(name, version)} exists but is not a release (it has no {MANIFEST_JSON}); "
            "move it away or choose another version"
        )
    have = [v.version for v in list_versions(root.uri, name).versions]
    same = [v for v in have if parse_version(v).key() == parse_version(version).key()]
    if same:
        newest = latest(have)
        raise UserError(
            f"{name}:{same[0]} already exists in {root.uri} and a release is never overwritten: bump the "
            f"version (the newest is {newest}), e.g. --version {_bump(newest or version)}"
        )


def _bump(version: str) -> str:
    """The next patch version (the release of a pre-release)."""
    v = parse_version(version)
    return f"{v.major}.{v.minor}.{v.patch + 1}" if not v.prerelease else f"{v.major}.{v.minor}.{v.patch}"


def publish(req: PublishRequest, *, show_progress: bool = True) -> PublishResult:
    """Publish a release (see the module docstring for the commit protocol)."""
    req = _check_request(req)
    root = ReleaseRoot(req.root)
    root.refresh()
    if not root.local and not root.fs.exists(root.path.split("/", 1)[0]):
        raise UserError(
            f"the bucket of {root.uri} does not exist (or these credentials cannot see it): create it or fix --root"
        )
    _refuse_existing(root, req.name, req.version)
    prepared = prepare(req)
    cleaned = clean_leftovers(root, req.name)
    staging = f"{INCOMPLETE_PREFIX}{req.version}-{uuid.uuid4().hex[:12]}"
    progress = (
        Progress(f"publish {req.name}:{req.version}", total=len(prepared.sources), unit="files")
        if show_progress
        else None
    )
    try:
        entries = _upload(root, req.name, staging, prepared.sources, progress, req.jobs)
        manifest = Manifest(name=req.name, version=req.version, created=_now(), files=entries, **prepared.fields)
        data = manifest.to_json().encode("utf-8")
        _commit(root, req.name, req.version, staging, entries, data)
    except BaseException:
        root.remove_tree(req.name, staging)  # a killed publish leaves it: list reports it, a later publish removes it
        raise
    finally:
        if progress is not None:
            progress.close()
    return PublishResult(
        name=req.name, version=req.version, uri=root.display(req.name, req.version), manifest=manifest,
        manifest_sha256=_sha(data), warnings=prepared.warnings, cleaned=cleaned,
    )  # fmt: skip


def _upload(
    root: ReleaseRoot, name: str, staging: str, sources: Sequence[SourceFile], progress: Progress | None,
    jobs: int = DEFAULT_JOBS,
) -> list[FileEntry]:
    """Write every source under ``ROOT/<name>/<staging>/`` (``jobs`` at a time); their manifest entries."""
    marker = {"started": _now(), "host": socket.gethostname(), "pid": os.getpid()}
    _write_bytes(root.fs, root.p(name, staging, MARKER), json.dumps(marker).encode(), root.local)

    def upload(s: SourceFile) -> FileEntry:
        dst = root.p(name, staging, *s.rel.split("/"))
        if s.data is not None:
            _write_bytes(root.fs, dst, s.data, root.local)
            size, sha = len(s.data), _sha(s.data)
        else:
            src_fs, src_path = storage.url_to_fs(str(s.uri))
            size, sha = copy_file(src_fs, src_path, root.fs, dst, root.local)
        if size != s.size:
            raise UserError(
                f"{s.uri} changed while it was being published ({s.size} -> {size} bytes); publish again once "
                "the step that writes it has finished"
            )
        return FileEntry(s.rel, size, sha)

    return each_in_parallel(sources, upload, jobs, lambda _: progress.update(1) if progress is not None else None)


def _exists_error(root: ReleaseRoot, name: str, version: str) -> UserError:
    return UserError(
        f"{name}:{version} was published to {root.uri} while this publish ran, and a release is never "
        f"overwritten: bump the version (e.g. --version {_bump(version)}) and publish again"
    )


def _commit(
    root: ReleaseRoot, name: str, version: str, staging: str, entries: Sequence[FileEntry], manifest: bytes
) -> None:
    """Make the staged release visible as ``ROOT/<name>/<version>/`` (module docstring, "Commit")."""
    if root.local:
        _commit_local(root, name, version, staging, manifest)
    else:
        _commit_object_store(root, name, version, staging, entries, manifest)


def _commit_local(root: ReleaseRoot, name: str, version: str, staging: str, manifest: bytes) -> None:
    stage, final = root.p(name, staging), root.p(name, version)
    os.remove(os.path.join(stage, MARKER))
    _write_bytes(root.fs, os.path.join(stage, MANIFEST_JSON), manifest, True)
    _fsync_dir(stage)
    try:
        os.rename(stage, final)  # atomic; fails when `final` exists and is not an empty folder
    except OSError:
        if os.path.exists(os.path.join(final, MANIFEST_JSON)):
            raise _exists_error(root, name, version) from None
        raise UserError(
            f"{final} exists but is not a release (it has no {MANIFEST_JSON}); move it away or choose another version"
        ) from None
    _fsync_dir(root.p(name))


def _commit_object_store(
    root: ReleaseRoot, name: str, version: str, staging: str, entries: Sequence[FileEntry], manifest: bytes
) -> None:
    root.refresh()
    if root.read(name, version, MANIFEST_JSON) is not None:
        raise _exists_error(root, name, version)
    root.remove_tree(name, version)  # debris of a publish killed while copying (it has no manifest)
    try:
        server_copy(
            root.fs, [root.p(name, staging, *e.path.split("/")) for e in entries],
            [root.p(name, version, *e.path.split("/")) for e in entries],
        )  # fmt: skip
        root.refresh()
        found = {
            p[len(root.p(name, version)) :].lstrip("/"): int(info.get("size") or 0)
            for p, info in root.fs.find(root.p(name, version), detail=True).items()
        }
        if bad := [e.path for e in entries if found.get(e.path) != e.size]:
            raise OSError(f"{len(bad)} files did not arrive whole in {root.display(name, version)} (e.g. {bad[0]})")
        _put_create(root, root.p(name, version, MANIFEST_JSON), manifest)
    except FileExistsError:
        raise _exists_error(root, name, version) from None
    except BaseException:
        if root.read(name, version, MANIFEST_JSON) is None:
            root.remove_tree(name, version)
        raise
    root.remove_tree(name, staging)


def _put_create(root: ReleaseRoot, path: str, data: bytes) -> None:
    """One ``put`` of a whole object, create-only where the store supports it (GCS: ifGenerationMatch=0)."""
    try:
        root.fs.pipe_file(path, data, mode="create")
    except TypeError:  # a file system without exclusive create
        root.fs.pipe_file(path, data)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class VersionInfo:
    """One published version, as ``list`` shows it."""

    name: str
    version: str
    created: str
    files: int
    total_bytes: int
    train_examples: int
    eval_examples: int
    manifest_sha256: str


@dataclass(frozen=True)
class Leftover:
    """Something under a release name that is not a version: a killed publish, a version without manifest."""

    path: str
    kind: str
    started: str | None = None


@dataclass
class Listing:
    """The versions of one release name, and the leftovers beside them."""

    versions: list[VersionInfo] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)


def _examples(counts: Mapping[str, Any], part: str) -> int:
    values = (counts.get(part) or {}).values()
    if part == "train":
        return int(sum(int(c.get("total", 0)) for c in values if isinstance(c, Mapping)))
    return int(sum(int(n) for split in values if isinstance(split, Mapping) for n in split.values()))


def _version_info(name: str, version: str, data: bytes) -> VersionInfo:
    m = Manifest.from_json(data)
    return VersionInfo(
        name=name, version=version, created=m.created, files=len(m.files) + 1, total_bytes=m.total_bytes + len(data),
        train_examples=_examples(m.counts, "train"), eval_examples=_examples(m.counts, "eval"),
        manifest_sha256=_sha(data),
    )  # fmt: skip


def _started(root: ReleaseRoot, name: str, entry: str) -> str | None:
    data = root.read(name, entry, MARKER)
    try:
        return str(json.loads(data)["started"]) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def list_names(root_uri: str) -> list[str]:
    """Release names under a root."""
    root = ReleaseRoot(root_uri)
    root.refresh()
    return [b for b, t in root.children() if t == "directory" and not b.startswith(".")]


def list_versions(root_uri: str, name: str) -> Listing:
    """Published versions of ``name`` (sorted by precedence) and leftovers of failed publishes."""
    root = ReleaseRoot(root_uri)
    root.refresh()
    out = Listing()
    for base, kind in root.children(name):
        if kind != "directory":
            continue
        if base.startswith(INCOMPLETE_PREFIX):
            out.leftovers.append(Leftover(root.display(name, base), "incomplete publish", _started(root, name, base)))
            continue
        try:
            parse_version(base)
        except ValueError:
            continue
        data = root.read(name, base, MANIFEST_JSON)
        if data is None:
            out.leftovers.append(Leftover(root.display(name, base), "version without manifest (not published)"))
            continue
        try:
            out.versions.append(_version_info(name, base, data))
        except ValueError as e:
            out.leftovers.append(Leftover(root.display(name, base), f"unreadable manifest ({e})"))
    out.versions.sort(key=lambda v: parse_version(v.version).key())
    return out


def _age_seconds(started: str | None) -> float | None:
    if not started:
        return None
    try:
        t = _dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (_dt.datetime.now(_dt.timezone.utc) - t).total_seconds()


def clean_leftovers(root: ReleaseRoot, name: str, stale_seconds: float = STALE_SECONDS) -> list[str]:
    """Remove ``.incomplete-*`` folders of ``name`` whose publish started more than ``stale_seconds`` ago."""
    removed = []
    for base, kind in root.children(name):
        if kind != "directory" or not base.startswith(INCOMPLETE_PREFIX):
            continue
        age = _age_seconds(_started(root, name, base))
        if age is None and root.local:
            age = _dt.datetime.now().timestamp() - os.path.getmtime(root.p(name, base))
        if age is None or age > stale_seconds:
            root.remove_tree(name, base)
            removed.append(root.display(name, base))
    return removed


# --------------------------------------------------------------------------- pull


@dataclass
class PullResult:
    """What a pull did: files transferred and files already there (both checked), bytes moved."""

    name: str
    version: str
    directory: str
    groups: tuple[str, ...] | None
    transferred: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    manifest_sha256: str = ""


def parse_groups(only: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``None`` (everything) or the selected groups, from ``"eval"``, ``"eval,curated"`` or a list."""
    if only is None:
        return None
    items = [only] if isinstance(only, str) else list(only)
    groups = {g.strip() for item in items for g in item.split(",") if g.strip()}
    unknown = sorted(groups - set(SELECTABLE_GROUPS))
    if unknown:
        raise UserError(f"unknown part(s) {unknown}: --only takes {', '.join(SELECTABLE_GROUPS)} (comma-separated)")
    return None if groups >= set(SELECTABLE_GROUPS) else tuple(g for g in SELECTABLE_GROUPS if g in groups)


def _pick_version(root: ReleaseRoot, spec: str) -> tuple[str, str]:
    try:
        name, version = parse_spec(spec)
    except ValueError as e:
        raise UserError(f"{e}; give NAME:VERSION such as audioscope:1.0.0") from None
    if version is None:
        version = latest(v.version for v in list_versions(root.uri, name).versions)
        if version is None:
            raise UserError(
                f"no published version of {name!r} in {root.uri}; see `audioscope release list --root {root.uri}`"
            )
    return name, version


def remote_manifest(root: ReleaseRoot, name: str, version: str) -> tuple[Manifest, bytes]:
    """The manifest of a published version; :class:`UserError` when the version is not published."""
    data = root.read(name, version, MANIFEST_JSON)
    if data is None:
        have = [v.version for v in list_versions(root.uri, name).versions]
        raise UserError(
            f"{name}:{version} is not published in {root.uri} (versions: {', '.join(have) or 'none'}); "
            f"see `audioscope release list {name} --root {root.uri}`"
        )
    try:
        manifest = Manifest.from_json(data)
    except ValueError as e:
        raise UserError(f"{root.display(name, version, MANIFEST_JSON)}: {e}") from None
    if (manifest.name, manifest.version) != (name, version):
        raise UserError(
            f"{root.display(name, version, MANIFEST_JSON)} describes {manifest.name}:{manifest.version}, "
            f"not {name}:{version}: the release root was changed by hand; ask its owner to fix it"
        )
    return manifest, data


_PARTIAL_SUFFIX = ".part"


def _remove_partials(directory: str) -> None:
    """Remove temporary files of an interrupted pull (``.NAME.<12 hex>.part``)."""
    for dirpath, _, filenames in os.walk(directory):
        for fn in filenames:
            if fn.startswith(".") and fn.endswith(_PARTIAL_SUFFIX):
                os.remove(os.path.join(dirpath, fn))


def _check_dest(dest: str, manifest: Manifest, data: bytes) -> None:
    path = os.path.join(dest, MANIFEST_JSON)
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        have = f.read()
    if have != data:
        try:
            other = Manifest.from_json(have)
            what = f"{other.name}:{other.version}"
        except ValueError:
            what = "another release"
        raise UserError(
            f"{dest} already holds {what}, not this {manifest.name}:{manifest.version}: pull into an empty "
            "folder (or the folder of an earlier pull of the same release to resume it)"
        )


def _download(root: ReleaseRoot, name: str, version: str, entry: FileEntry, dest: str) -> str | None:
    """Fetch one file to a temporary name, check it, rename it into place; a problem or None."""
    local = os.path.join(dest, *entry.path.split("/"))
    tmp = os.path.join(os.path.dirname(local), f".{os.path.basename(local)}.{uuid.uuid4().hex[:12]}{_PARTIAL_SUFFIX}")
    try:
        size, sha = copy_file(root.fs, root.p(name, version, *entry.path.split("/")), None, tmp, True)
        if (size, sha) != (entry.size, entry.sha256):
            return (
                f"the copy in the release root has {size} bytes and SHA-256 {sha[:12]}..., not what the manifest says"
            )
        os.replace(tmp, local)
        return None
    except FileNotFoundError:
        return "missing from the release root"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_state(dest: str, manifest: Manifest, data: bytes, groups: tuple[str, ...] | None, root: str) -> None:
    previous = pulled_groups(dest) if os.path.isfile(os.path.join(dest, MANIFEST_JSON)) else ()
    if groups is not None and previous is not None:
        groups = tuple(g for g in SELECTABLE_GROUPS if g in set(groups) | set(previous))
    state = {
        "name": manifest.name, "version": manifest.version, "root": root, "manifest_sha256": _sha(data),
        "groups": list(SELECTABLE_GROUPS if groups is None else groups), "pulled": _now(),
    }  # fmt: skip
    storage.atomic_write(os.path.join(dest, PULL_STATE), json.dumps(state, indent=2, sort_keys=True) + "\n")


def pull(
    spec: str, *, root: str, dest: str, only: str | Iterable[str] | None = None, show_progress: bool = True,
    jobs: int = DEFAULT_JOBS,
) -> PullResult:
    """Copy a published version (or some of its groups) into the local folder ``dest``, verified.

    Files already in ``dest`` with the right size and SHA-256 are kept; the
    others stream to a temporary name, are checked, and are renamed into
    place. ``manifest.json`` is written last. Raises
    :class:`VerificationError` naming files whose copy in the root does not
    match the manifest.
    """
    if not storage.is_local(dest):
        raise UserError(f"--to {dest}: a pull needs a local folder")
    groups = parse_groups(only)
    rroot = ReleaseRoot(root)
    rroot.refresh()
    name, version = _pick_version(rroot, spec)
    manifest, data = remote_manifest(rroot, name, version)
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    _check_dest(dest, manifest, data)
    _remove_partials(dest)
    entries = manifest.select(groups)
    result = PullResult(name=name, version=version, directory=dest, groups=groups, manifest_sha256=_sha(data))
    problems: dict[str, str] = {}
    progress = Progress(f"pull {name}:{version}", total=len(entries), unit="files") if show_progress else None

    def fetch(entry: FileEntry) -> tuple[FileEntry, str, str | None]:
        if file_problem(dest, entry) is None:
            return entry, "kept", None
        return entry, "transferred", _download(rroot, name, version, entry, dest)

    def done(outcome: tuple[FileEntry, str, str | None]) -> None:
        if progress is not None:
            progress.update(1, **{outcome[1]: 1})

    try:
        for entry, what, problem in each_in_parallel(entries, fetch, jobs, done):  # in manifest order
            if what == "kept":
                result.kept.append(entry.path)
                continue
            if problem is not None:
                problems[entry.path] = problem
            result.transferred.append(entry.path)
            result.bytes_transferred += entry.size
    finally:
        if progress is not None:
            progress.close()
    if problems:
        raise VerificationError(
            rroot.display(name, version),
            problems,
            "The published copy is damaged: tell the owner of the release root, or pull another version",
        )
    _write_state(dest, manifest, data, groups, rroot.uri)
    storage.atomic_write(os.path.join(dest, MANIFEST_JSON), data)
    return result


# --------------------------------------------------------------------------- resolve (for the loader)


def default_cache(name: str, version: str) -> str:
    """Where :func:`resolve` keeps pulled releases.

    ``$AUDIOSCOPE_RELEASE_CACHE/<name>/<version>``, by default under ``~/.cache/audioscope/releases``.
    """
    base = os.environ.get("AUDIOSCOPE_RELEASE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "audioscope", "releases"
    )
    return os.path.join(base, name, version)


def _complete_copy(dest: str, name: str, version: str, groups: tuple[str, ...] | None) -> bool:
    """True when ``dest`` holds a finished pull of ``name:version`` covering ``groups``."""
    if not os.path.isfile(os.path.join(dest, MANIFEST_JSON)):
        return False
    m = read_local_manifest(dest)
    if (m.name, m.version) != (name, version):
        raise UserError(f"{dest} holds {m.name}:{m.version}, not {name}:{version}: give another destination")
    have = pulled_groups(dest)
    return have is None or (groups is not None and set(groups) <= set(have))


def _verified(directory: str, groups: tuple[str, ...] | None) -> str:
    report = check_dir(directory, groups, use_cache=True)
    if report.problems:
        raise VerificationError(
            directory,
            report.problems,
            f"Pull the release again to repair it (`audioscope release pull NAME:VERSION --root ROOT --to {directory}` "
            "transfers only the bad files)",
        )
    return directory


def resolve(spec: str, *, root: str | None, dest: str | None = None, only: str | Iterable[str] | None = None) -> str:
    """A verified local folder holding the release ``spec`` (``NAME:VERSION``, or a local release folder).

    A finished local copy (in ``dest``, default :func:`default_cache`) is
    checked file by file (size and SHA-256) and refused with a
    :class:`VerificationError` naming each bad file; without one the release
    is pulled from ``root`` (resuming an interrupted pull). ``only`` limits
    it to groups (``"eval"``).
    """
    groups = parse_groups(only)
    if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, MANIFEST_JSON)):
        return _verified(os.path.abspath(spec), groups)
    if root is None:
        raise UserError(f"{spec!r} is not a local release folder: give the release root it is published in")
    rroot = ReleaseRoot(root)
    name, version = _pick_version(rroot, spec)
    dest = os.path.abspath(dest or default_cache(name, version))
    if _complete_copy(dest, name, version, groups):
        return _verified(dest, groups)
    pull(f"{name}:{version}", root=root, dest=dest, only=groups, show_progress=False)
    return dest


def _is_release_manifest(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _enclosing_copy(path: str, max_up: int = 8) -> str | None:
    """The nearest folder at or above ``path`` that holds a release manifest (a local release copy).

    A ``manifest.json`` of something else (not an audioscope release) is passed over.
    """
    here = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
    for _ in range(max_up):
        if _is_release_manifest(os.path.join(here, MANIFEST_JSON)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return None


def resolve_source(source: str, *, root: str | None = None, dest: str | None = None) -> str:
    """What a loader should read for ``source``, verified when it belongs to a release.

    * With ``root``: ``source`` is ``NAME:VERSION`` optionally followed by a
      path inside the release (``audioscope:1.0.0/eval/test/onscreen_mom``);
      the release (only the group of that path) is resolved with
      :func:`resolve` and the local path returned.
    * A local path inside a release copy (a folder with ``manifest.json`` at
      or above it): the release files under it are verified (size and
      SHA-256) and ``source`` is returned; a bad file raises
      :class:`VerificationError` naming it.
    * Anything else (a mixtures folder, ``gs://``, a glob) is returned as it is.
    """
    if root is not None:
        spec, _, sub = source.partition("/")
        sub = check_relative_path(sub.rstrip("/")) if sub.strip("/") else ""
        group = sub.split("/", 1)[0] if sub.split("/", 1)[0] in SELECTABLE_GROUPS else None
        base = resolve(spec, root=root, dest=dest, only=group)
        return os.path.join(base, *sub.split("/")) if sub else base
    if not storage.is_local(source) or not os.path.exists(source):
        return source
    copy = _enclosing_copy(source)
    if copy is None:
        return source
    rel = os.path.relpath(os.path.abspath(source), copy).replace(os.sep, "/")
    prefix = "" if rel == "." else rel
    entries = read_local_manifest(copy).select(pulled_groups(copy))
    wanted = [e.path for e in entries if not prefix or e.path == prefix or e.path.startswith(prefix + "/")]
    verify_files(copy, wanted, use_cache=True)
    return source


# --------------------------------------------------------------------------- diff


def load_manifest(spec: str, root: str | None) -> tuple[Manifest, str]:
    """A manifest and a label for it, from a local release folder or ``NAME:VERSION`` in ``root``."""
    if os.path.isdir(spec):
        m = read_local_manifest(spec)
        return m, f"{m.name}:{m.version} ({spec})"
    if root is None:
        raise UserError(f"{spec!r} is not a local release folder; give --root to read it from a release root")
    rroot = ReleaseRoot(root)
    rroot.refresh()
    name, version = _pick_version(rroot, spec)
    return remote_manifest(rroot, name, version)[0], f"{name}:{version}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: value}


Change = tuple[str, Any, Any]


def _changes(a: Any, b: Any, prefix: str) -> list[Change]:
    fa, fb = _flatten(a, prefix), _flatten(b, prefix)
    missing = object()
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k, missing) != fb.get(k, missing)]


@dataclass
class ReleaseDiff:
    """What changed from release ``a`` to release ``b``."""

    a: str
    b: str
    added: list[FileEntry] = field(default_factory=list)
    removed: list[FileEntry] = field(default_factory=list)
    changed: list[tuple[FileEntry, FileEntry]] = field(default_factory=list)
    unchanged: int = 0
    counts: list[Change] = field(default_factory=list)
    configs: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)


def diff(a: Manifest, b: Manifest, labels: tuple[str, str] = ("a", "b")) -> ReleaseDiff:
    """Files added, removed and changed (by SHA-256), and changed counts, configs and other fields."""
    fa, fb = a.by_path(), b.by_path()
    out = ReleaseDiff(a=labels[0], b=labels[1])
    out.added = [fb[p] for p in sorted(set(fb) - set(fa))]
    out.removed = [fa[p] for p in sorted(set(fa) - set(fb))]
    both = sorted(set(fa) & set(fb))
    out.changed = [(fa[p], fb[p]) for p in both if (fa[p].sha256, fa[p].size) != (fb[p].sha256, fb[p].size)]
    out.unchanged = len(both) - len(out.changed)
    out.counts = _changes(a.counts, b.counts, "counts")
    out.configs = _changes(a.configs, b.configs, "configs")
    for key in ("schema_versions", "models", "toolkit", "licences", "labels"):
        out.other += _changes(getattr(a, key), getattr(b, key), key)
    return out
