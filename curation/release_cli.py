"""`audioscope release`: publish, list, pull, verify and diff versioned dataset releases."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from audioscope.argtypes import positive_int
from audioscope.options import add_command

DESCRIPTION = """\
Named, versioned releases of the dataset that researchers can pull and trust.

A release root is a local folder or gs:// (s3://) prefix; a release lives in
ROOT/NAME/VERSION/ (VERSION: a semantic version such as 1.0.0) and holds the
training shards (train/), the evaluation sets and their pair lists (eval/),
the curated lists (curated/: Df, votes and labels), manifest.json (every file
with its size and SHA-256, example counts, schema versions, the configs and
seeds of every step, toolkit version and git commit, model ids), README.md
(the data card), LICENSES.csv (licence and attribution per clip) and
croissant.json (Croissant 1.1 metadata with its Responsible-AI fields, for
mlcroissant and dataset hubs).

Publishing writes everything under ROOT/NAME/.incomplete-VERSION-RANDOM/
first; on a local file system the folder is then renamed in one step, on an
object store the files are copied into VERSION/ and manifest.json is written
last: a version without a manifest does not exist. A version is never
overwritten. Pulls resume, and every file is checked against the manifest.

A release root is untrusted input: a manifest is validated before anything
is done, a pull never writes more bytes for a file than the manifest says,
never writes through a link or over a file it did not make, and two pulls
into one folder take turns. Loaders hash every file of a copy (SHA-256, in
parallel) in each process before reading it."""

EPILOG = """\
examples:
  audioscope release publish --mix mix --df df --labels labels \\
      --name audioscope --version 1.0.0 --root gs://bucket/releases
  audioscope release list --root gs://bucket/releases
  audioscope release pull audioscope:1.0.0 --root gs://bucket/releases --to data --only eval
  audioscope release verify data
  audioscope release diff audioscope:1.0.0 audioscope:1.1.0 --root gs://bucket/releases"""

PARTS_HELP = "only these parts: train, eval, curated (repeat or comma-separate; default: all)"


SubParsers = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: Each action: (one-line help, description).
ACTIONS: dict[str, tuple[str, str]] = {
    "publish": (
        "publish a new version from mixtures, Df and labels",
        "Publish ROOT/NAME/VERSION from a finished mixtures folder (`audioscope mix`), the Df folder it was made "
        "from (`audioscope filter`) and, optionally, the annotation folder. Refuses an existing version (bump "
        "it), examples whose licence is excluded, an empty Df, 0 examples, and mixtures made from another Df "
        "(unless --allow-mismatch).",
    ),
    "list": (
        "list published versions with sizes, dates and counts",
        "List the published versions in a release root (all names, or one), with their date, size, example "
        "counts and manifest SHA-256; versions whose manifest is not valid are shown as BAD with the reason; "
        "leftovers of killed publishes are reported.",
    ),
    "pull": (
        "download a version (or its evaluation sets) and verify it",
        "Download NAME:VERSION (NAME alone: the newest release) into a local folder. Files already there with "
        "the right size and SHA-256 are kept, so an interrupted pull resumes; every file is checked against "
        "the manifest and never written beyond its size there. A second pull into the same folder waits for "
        "the first; files the pull did not make are never overwritten or removed.",
    ),
    "verify": (
        "check a local copy file by file against its manifest",
        "Check the size and SHA-256 of every file of a local release copy (the parts that were pulled there), "
        "hashing several files at once, and name each missing or different file or symbolic link. Exits 1 "
        "when any file is bad.",
    ),
    "diff": (
        "what changed between two versions: files, counts, configs",
        "Compare two releases (NAME:VERSION in --root, or local release folders): files added, removed and "
        "changed, example counts, configs and seeds, schema versions, toolkit and models.",
    ),
}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "release",
        help="publish, list, pull, verify and diff versioned dataset releases",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="release_command", metavar="ACTION", title="actions")
    for add in (_publish_parser, _list_parser, _pull_parser, _verify_parser, _diff_parser):
        add(sub)
    p.set_defaults(func=lambda args: _help(p))
    return p


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _action(sub: SubParsers, name: str, func: Any) -> argparse.ArgumentParser:
    summary, description = ACTIONS[name]
    p = sub.add_parser(name, help=summary, description=description)
    p.set_defaults(func=func)
    return p


def _root(p: argparse.ArgumentParser, required: bool = True, what: str = "release root") -> None:
    p.add_argument(
        "--root", required=required, default=None, metavar="ROOT", help=f"{what}: a local folder, gs:// or s3:// prefix"
    )


#: Keep in step with curation.release.DEFAULT_JOBS (checked by a test); this
#: module imports only the standard library, so it cannot import it.
JOBS_DEFAULT = 8


def _jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs", type=positive_int, default=JOBS_DEFAULT, metavar="N",
        help=f"files transferred at the same time (default: {JOBS_DEFAULT}; more helps on gs:// and s3://)",
    )  # fmt: skip


def _publish_parser(sub: SubParsers) -> None:
    p = _action(sub, "publish", run_publish)
    p.add_argument(
        "--mix",
        required=True,
        metavar="MIX_DIR",
        help="mixtures folder written by `audioscope mix` (summary.json, examples.parquet, train/, eval/)",
    )
    p.add_argument(
        "--df",
        required=True,
        metavar="DF_DIR",
        help="Df folder written by `audioscope filter` (df.parquet, csv/, report.json)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="ANNOTATION_DIR",
        help="annotation folder (votes.parquet, labels.parquet, unanimous clip CSVs); default: none",
    )
    p.add_argument("--name", required=True, help="release name: letters, digits, '_', '.', '-' (e.g. audioscope)")
    p.add_argument("--version", required=True, help="semantic version MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 1.0.0")
    _root(p)
    p.add_argument(
        "--exclude-licence", action="append", default=[], metavar="TEXT",
        help="refuse examples whose licence name or URL contains TEXT (ignoring case), e.g. NoDerivs; "
        "curated-list clips under it are left out of LICENSES.csv (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--allow-mismatch", action="store_true",
        help="publish even when the mixtures use clips that are not in --df (made from another Df); the "
        "manifest records it (configs.df_check)",
    )  # fmt: skip
    _jobs(p)


def _list_parser(sub: SubParsers) -> None:
    p = _action(sub, "list", run_list)
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="only this release name (default: all)")
    _root(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _pull_parser(sub: SubParsers) -> None:
    p = _action(sub, "pull", run_pull)
    p.set_defaults(writes=("to", "release"))
    p.add_argument("spec", metavar="NAME:VERSION", help="the release, e.g. audioscope:1.0.0")
    _root(p)
    p.add_argument("--to", required=True, metavar="DIR", help="local folder to download into")
    p.add_argument("--only", action="append", default=None, metavar="PART", help=PARTS_HELP)
    _jobs(p)


def _verify_parser(sub: SubParsers) -> None:
    p = _action(sub, "verify", run_verify)
    p.add_argument(
        "directory", metavar="DIR", help="a folder made by `audioscope release pull` (or a published version)"
    )
    p.add_argument(
        "--only", action="append", default=None, metavar="PART", help=PARTS_HELP.replace("all", "what was pulled")
    )
    p.add_argument(
        "--jobs", type=positive_int, default=None, metavar="N",
        help="files hashed at the same time (default: one per core)",
    )  # fmt: skip


def _diff_parser(sub: SubParsers) -> None:
    p = _action(sub, "diff", run_diff)
    p.add_argument("a", metavar="A", help="the older release: NAME:VERSION or a local release folder")
    p.add_argument("b", metavar="B", help="the newer release: NAME:VERSION or a local release folder")
    _root(p, required=False, what="release root of NAME:VERSION arguments")
    p.add_argument(
        "--max-files", type=int, default=20, metavar="N", help="files shown per kind of change (default: 20)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


# --------------------------------------------------------------------------- actions


def _fmt_bytes(n: int) -> str:
    from audioscope.curation.manifest import fmt_bytes

    return fmt_bytes(n)


def run_publish(args: argparse.Namespace) -> int:
    from audioscope.curation.release import PublishRequest, publish
    from audioscope.progress import print_summary

    result = publish(
        PublishRequest(
            mix=args.mix, df=args.df, labels=args.labels, name=args.name, version=args.version, root=args.root,
            exclude_licences=tuple(args.exclude_licence), jobs=args.jobs, allow_mismatch=args.allow_mismatch,
        )
    )  # fmt: skip
    for w in result.warnings:
        print(f"audioscope release publish: warning: {w}", file=sys.stderr)
    for c in result.cleaned:
        print(
            f"audioscope release publish: removed {c} (left by a publish killed more than a day ago)", file=sys.stderr
        )
    m = result.manifest
    print_summary(
        "Release published",
        {
            "release": f"{m.name}:{m.version}",
            "location": result.uri,
            "files": f"{len(m.files) + 1} ({_fmt_bytes(m.total_bytes)})",
            "examples": f"{m.counts.get('examples', 0)} in {len(m.counts.get('shards', {}))} shards",
            "licences": ", ".join(f"{k}: {v}" for k, v in m.licences.get("by_licence", {}).items()) or "none",
            "Df check": _df_check(m.configs.get("df_check") or {}),
            "git commit": m.toolkit.get("git_commit"),
            "manifest sha256": result.manifest_sha256,
        },
    )
    return 0


def _df_check(check: dict) -> str:
    if not check.get("mismatch"):
        return f"every clip the mixtures draw from the Df is in it ({check.get('clips_checked', 0)} clips)"
    return f"{check.get('clips_not_in_df')} clips not in the Df (published with --allow-mismatch)"


def run_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from audioscope.curation.release import list_names, list_versions

    names = [args.name] if args.name else list_names(args.root)
    listings = {n: list_versions(args.root, n) for n in names}
    if args.json:
        print(json.dumps({n: asdict(v) for n, v in listings.items()}, indent=2))
        return 0
    rows = [v for listing in listings.values() for v in listing.versions]
    bad = [b for listing in listings.values() for b in listing.bad]
    if not rows and not bad:
        print(f"no published release in {args.root}" + (f" named {args.name!r}" if args.name else ""))
    else:
        print(f"{'release':<28} {'created':<21} {'size':>10} {'files':>6} {'train':>8} {'eval':>6}  manifest sha256")
        for v in rows:
            print(
                f"{v.name + ':' + v.version:<28} {v.created:<21} {_fmt_bytes(v.total_bytes):>10} {v.files:>6} "
                f"{v.train_examples:>8} {v.eval_examples:>6}  {v.manifest_sha256[:16]}"
            )
        for b in bad:
            print(f"{b.name + ':' + b.version:<28} BAD: {b.problem.splitlines()[0]}")
    if bad:
        print(
            f"audioscope release list: {len(bad)} version(s) have a manifest that is not valid (BAD above): they "
            "cannot be pulled; tell the owner of the release root",
            file=sys.stderr,
        )
    for listing in listings.values():
        for left in listing.leftovers:
            since = f", started {left.started}" if left.started else ""
            print(
                f"leftover: {left.path} ({left.kind}{since}); not a release: a later publish removes it once "
                "stale, or delete it when no publish is running",
                file=sys.stderr,
            )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from audioscope.curation.release import pull
    from audioscope.progress import print_summary

    r = pull(args.spec, root=args.root, dest=args.to, only=args.only, jobs=args.jobs)
    print_summary(
        "Pull finished (every file checked against the manifest)",
        {
            "release": f"{r.name}:{r.version}",
            "parts": "all" if r.groups is None else ", ".join(r.groups),
            "folder": r.directory,
            "transferred": f"{len(r.transferred)} files ({_fmt_bytes(r.bytes_transferred)})",
            "already there": f"{len(r.kept)} files",
            "manifest sha256": r.manifest_sha256,
        },
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from audioscope.curation.manifest import check_dir
    from audioscope.curation.release import parse_groups
    from audioscope.progress import Progress, print_summary

    groups = parse_groups(args.only)
    progress = Progress(f"verify {args.directory}", unit="files")
    report = check_dir(args.directory, groups, on_file=lambda entry, problem: progress.update(1), jobs=args.jobs)
    progress.close()
    for path, why in sorted(report.problems.items()):
        print(f"BAD {path}: {why}")
    for path in report.extra:
        print(f"note: {path} is not in the manifest (not checked)", file=sys.stderr)
    m = report.manifest
    print_summary(
        "Verification " + ("passed" if report.ok else "FAILED"),
        {
            "release": f"{m.name}:{m.version}",
            "parts": "all" if report.groups is None else ", ".join(report.groups),
            "checked": f"{len(report.checked)} files",
            "bad or missing": len(report.problems),
        },
    )
    if not report.ok:
        print(
            f"audioscope release verify: {len(report.problems)} bad file(s); pull the release again into "
            f"{args.directory} to repair them (only the bad files are transferred)",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value


def run_diff(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from audioscope.curation.release import diff, load_manifest

    a, label_a = load_manifest(args.a, args.root)
    b, label_b = load_manifest(args.b, args.root)
    d = diff(a, b, (label_a, label_b))
    if args.json:
        print(json.dumps(asdict(d), indent=2, default=str))
        return 0
    print(f"{label_a} -> {label_b}")
    print(f"files: {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed, {d.unchanged} unchanged")
    for sign, entries in (("+", d.added), ("-", d.removed)):
        for e in entries[: args.max_files]:
            print(f"  {sign} {e.path} ({_fmt_bytes(e.size)})")
        if len(entries) > args.max_files:
            print(f"  {sign} ... {len(entries) - args.max_files} more")
    for old, new in d.changed[: args.max_files]:
        print(f"  ~ {new.path} ({_fmt_bytes(old.size)} -> {_fmt_bytes(new.size)})")
    if len(d.changed) > args.max_files:
        print(f"  ~ ... {len(d.changed) - args.max_files} more")
    for title, changes in (("counts", d.counts), ("configs", d.configs), ("other", d.other)):
        print(f"{title}: {len(changes)} change(s)" if changes else f"{title}: unchanged")
        for key, old, new in changes:
            print(f"  {key}: {_show(old)} -> {_show(new)}")
    return 0
