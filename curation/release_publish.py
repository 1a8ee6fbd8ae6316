"""Publishing a release: read and check the step outputs, write every file under a hidden staging
folder, and commit the version in one step (see :mod:`audioscope.curation.release` for the protocol).

Publishing refuses what it cannot stand behind: an empty Df, a release of 0 examples, and mixtures
whose unsupervised examples use clips that are not in the given Df (made from another Df) unless
``allow_mismatch`` is set, which the manifest then records (``configs.df_check``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from audioscope import __version__, storage
from audioscope.curation import croissant
from audioscope.curation import release_store as store
from audioscope.curation.manifest import (
    FORMAT_VERSION,
    FileEntry,
    Manifest,
    check_name,
    latest,
    parse_version,
)
from audioscope.curation.release_layout import (
    CROISSANT_JSON,
    CURATED_DF,
    CURATED_LABELS,
    LICENSES_CSV,
    MANIFEST_JSON,
    MIX_TOP_FILES,
    MIX_WORK,
    PUBLISH_MARKER,
    README_MD,
    group_of,
    staging_name,
)
from audioscope.curation.release_list import clean_leftovers, list_versions
from audioscope.curation.release_store import ReleaseRoot
from audioscope.errors import UserError
from audioscope.progress import Progress


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
    from audioscope.curation.datacard import DF_FILES  # the Df files a release carries

    tree = _tree(df_dir)
    wanted = [r for r in sorted(tree) if r in DF_FILES or (r.startswith("csv/") and r.endswith(".csv"))]
    return [SourceFile(rel=f"{CURATED_DF}/{r}", size=tree[r], uri=storage.join(df_dir, *r.split("/"))) for r in wanted]


def label_sources(labels_dir: str) -> list[SourceFile]:
    """The top-level tables, lists and status of an annotation folder, under ``curated/labels/``."""
    from audioscope.curation.datacard import LABEL_SUFFIXES

    tree = _tree(labels_dir)
    wanted = [r for r in sorted(tree) if "/" not in r and r.endswith(LABEL_SUFFIXES)]
    return [SourceFile(rel=f"{CURATED_LABELS}/{r}", size=tree[r], uri=storage.join(labels_dir, r)) for r in wanted]


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
    jobs: int = store.DEFAULT_JOBS  # files uploaded at the same time
    #: Publish even when the mixtures use clips that are not in the Df (recorded in the manifest).
    allow_mismatch: bool = False


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
    limitations: list[str] = field(default_factory=list)


#: Example types whose clips all come from the Df (frames, audio and second mixture); in the others
#: (LOn, LOff, evaluation sets) only the second mixture of a training example does.
_DF_TYPES = ("NOn", "SOff")


def _column(frame: Any, name: str) -> list[str]:
    if name not in frame.columns:
        return []
    return [str(v) for v in frame[name].tolist() if isinstance(v, str) and v]


def check_standing(req: PublishRequest, summary: Mapping[str, Any], df: Any, examples: Any) -> dict[str, Any]:
    """Refuse what a release cannot stand behind; what was checked, for ``configs.df_check``.

    * an empty Df, or a release of 0 examples: :class:`UserError`;
    * mixtures made from another Df: clips of the unsupervised examples
      (NOn, SOff: every clip) and the second mixtures of the training examples
      must all be in the Df; otherwise :class:`UserError` unless
      ``req.allow_mismatch``.
    """
    if df is None or len(df) == 0:
        raise UserError(
            f"the Df in {req.df} holds no clips: there is nothing to release. Re-run `audioscope filter` with a "
            "lower --threshold (or on more scored clips) and make the mixtures from that Df"
        )
    shards = summary.get("shards") or []
    examples_n = sum(int(s.get("examples", 0) or 0) for s in shards if isinstance(s, Mapping))
    if examples_n <= 0 or len(examples) == 0:
        raise UserError(
            f"the mixtures in {req.mix} hold 0 examples: a release needs at least one. Check the mix summary's "
            "notes (`audioscope mix` prints what it left out) and re-run it with a Df that has clips"
        )
    known = set(_column(df, "clip_id"))
    used: set[str] = set()
    if "type" in examples.columns:
        unsup = examples[examples["type"].isin(_DF_TYPES)]
        for col in ("clip_id1", "clip_id2", "frames_clip_id"):
            used.update(_column(unsup, col))
    if "split" in examples.columns:
        used.update(_column(examples[examples["split"] == "train"], "clip_id2"))
    missing = sorted(used - known)
    check = {
        "clips_checked": len(used), "clips_not_in_df": len(missing), "examples_not_in_df": missing[:20],
        "mismatch": bool(missing), "allowed": bool(missing) and req.allow_mismatch,
    }  # fmt: skip
    if missing and not req.allow_mismatch:
        raise UserError(
            f"the mixtures in {req.mix} were not made from the Df in {req.df}: {len(missing)} of the "
            f"{len(used)} clips their training examples draw from the Df are not in it (e.g. {missing[0]}). "
            "Give the Df folder the mixtures were made from with --df, or publish anyway with --allow-mismatch "
            "(the manifest records it)"
        )
    return check


def _load_inputs(req: PublishRequest) -> Any:
    """The step outputs (:func:`datacard.load_inputs`); a table that is not Parquet is named in one line."""
    import pyarrow as pa

    from audioscope.curation import datacard
    from audioscope.pipelines.mix_layout import MixLayout
    from audioscope.schemas.annotations import labels_table_path
    from audioscope.schemas.df import DfLayout

    try:
        return datacard.load_inputs(req.mix, req.df, req.labels)
    except (pa.ArrowException, OSError, EOFError) as e:
        tables = [
            (MixLayout(req.mix).examples_parquet, "`audioscope mix`"),
            (DfLayout.of(req.df).df_parquet, "`audioscope filter`"),
        ] + ([(labels_table_path(req.labels), "the annotation pull")] if req.labels else [])
        for uri, step in tables:
            if _unreadable_parquet(uri):
                raise UserError(f"{uri} is not a readable Parquet table: re-run {step} to write it again") from None
        raise UserError(f"cannot read the inputs of the release ({e}); re-run the step that wrote them") from None


def _unreadable_parquet(uri: str) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with storage.open_file(uri) as fh:
            pq.read_metadata(fh)
    except FileNotFoundError:
        return False
    except (pa.ArrowException, OSError, EOFError):
        return True
    return False


def prepare(req: PublishRequest) -> Prepared:
    """Read and check the inputs; build LICENSES.csv, README.md and the manifest fields (no upload)."""
    from audioscope.curation import datacard

    inputs = _load_inputs(req)
    df_check = check_standing(req, inputs.summary, inputs.df_table, inputs.examples)
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
    if df_check["allowed"]:
        warnings.append(
            f"{df_check['clips_not_in_df']} clips of the mixtures are not in the Df (published with "
            "--allow-mismatch; recorded in the manifest as configs.df_check)"
        )
    sources = mix_sources(req.mix, inputs.summary, warnings) + df_sources(req.df)
    sources += label_sources(req.labels) if req.labels else []
    toolkit = toolkit_info()
    group_bytes: dict[str, int] = {}
    for s in sources:
        g = group_of(s.rel)
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
            "df_check": df_check,
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
    return Prepared(
        sources=sources, fields=fields, warnings=warnings, limitations=datacard.limitations(inputs, licences)
    )


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
    staging = staging_name(req.version)
    progress = (
        Progress(f"publish {req.name}:{req.version}", total=len(prepared.sources) + 1, unit="files")
        if show_progress
        else None
    )
    try:
        entries = _upload(root, req.name, staging, prepared.sources, progress, req.jobs)
        created = store.now()
        draft = Manifest(name=req.name, version=req.version, created=created, files=entries, **prepared.fields)
        doc = croissant.to_bytes(croissant.build(draft, limitations=prepared.limitations))
        entries += _upload(
            root, req.name, staging, [SourceFile(CROISSANT_JSON, len(doc), data=doc)], progress, 1, marker=False
        )
        manifest = Manifest(name=req.name, version=req.version, created=created, files=entries, **prepared.fields)
        manifest_sha256 = _commit(root, req.name, req.version, staging, entries, manifest)
    except BaseException:
        root.remove_tree(req.name, staging)  # a killed publish leaves it: list reports it, a later publish removes it
        raise
    finally:
        if progress is not None:
            progress.close()
    return PublishResult(
        name=req.name, version=req.version, uri=root.display(req.name, req.version), manifest=manifest,
        manifest_sha256=manifest_sha256, warnings=prepared.warnings, cleaned=cleaned,
    )  # fmt: skip


def _upload(
    root: ReleaseRoot, name: str, staging: str, sources: Sequence[SourceFile], progress: Progress | None,
    jobs: int = store.DEFAULT_JOBS, marker: bool = True,
) -> list[FileEntry]:
    """Write every source under ``ROOT/<name>/<staging>/`` (``jobs`` at a time); their manifest entries.

    ``marker``: first write the staging folder's marker (when it started, where), for ``list``.
    """
    if marker:
        info = {"started": store.now(), "host": socket.gethostname(), "pid": os.getpid()}
        store.write_bytes(root.fs, root.p(name, staging, PUBLISH_MARKER), json.dumps(info).encode(), root.local)

    def upload(s: SourceFile) -> FileEntry:
        dst = root.p(name, staging, *s.rel.split("/"))
        if s.data is not None:
            store.write_bytes(root.fs, dst, s.data, root.local)
            size, sha = len(s.data), store.sha(s.data)
        else:
            src_fs, src_path = storage.url_to_fs(str(s.uri))
            size, sha = store.copy_file(src_fs, src_path, root.fs, dst, root.local)
        if size != s.size:
            raise UserError(
                f"{s.uri} changed while it was being published ({s.size} -> {size} bytes); publish again once "
                "the step that writes it has finished"
            )
        return FileEntry(s.rel, size, sha)

    return store.each_in_parallel(sources, upload, jobs, lambda _: progress.update(1) if progress is not None else None)


def _exists_error(root: ReleaseRoot, name: str, version: str) -> UserError:
    return UserError(
        f"{name}:{version} was published to {root.uri} while this publish ran, and a release is never "
        f"overwritten: bump the version (e.g. --version {_bump(version)}) and publish again"
    )


def _commit(
    root: ReleaseRoot, name: str, version: str, staging: str, entries: Sequence[FileEntry], manifest: Manifest
) -> str:
    """Make the staged release visible as ``ROOT/<name>/<version>/`` (module docstring, "Commit").

    Returns the SHA-256 of ``manifest.json``. On a local disk the manifest is
    streamed to its file (a release of millions of files is never one string
    in memory); an object store gets it in one create-only ``put``.
    """
    if root.local:
        return _commit_local(root, name, version, staging, manifest)
    data = manifest.to_json().encode("utf-8")
    _commit_object_store(root, name, version, staging, entries, data)
    return store.sha(data)


def _commit_local(root: ReleaseRoot, name: str, version: str, staging: str, manifest: Manifest) -> str:
    stage, final = root.p(name, staging), root.p(name, version)
    os.remove(os.path.join(stage, PUBLISH_MARKER))
    digest = store.write_pieces(os.path.join(stage, MANIFEST_JSON), (p.encode("utf-8") for p in manifest.iter_json()))
    store.fsync_dir(stage)
    try:
        os.rename(stage, final)  # atomic; fails when `final` exists and is not an empty folder
    except OSError:
        if os.path.exists(os.path.join(final, MANIFEST_JSON)):
            raise _exists_error(root, name, version) from None
        raise UserError(
            f"{final} exists but is not a release (it has no {MANIFEST_JSON}); move it away or choose another version"
        ) from None
    store.fsync_dir(root.p(name))
    return digest


def _commit_object_store(
    root: ReleaseRoot, name: str, version: str, staging: str, entries: Sequence[FileEntry], manifest: bytes
) -> None:
    root.refresh()
    if root.read(name, version, MANIFEST_JSON) is not None:
        raise _exists_error(root, name, version)
    root.remove_tree(name, version)  # debris of a publish killed while copying (it has no manifest)
    try:
        store.server_copy(
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


