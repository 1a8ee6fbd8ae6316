"""`audioscope annotate`: three-rater on/off-screen annotation in Label Studio.

Subcommands, in the order of the loop: server, onboard, sample, render,
push, demo-raters (demo and tests only), pull, status. Standard library only at
import time; each ``run_*`` imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from audioscope.argtypes import positive_int
from audioscope.options import add_command, add_runner_options, add_store_option
from audioscope.shell import q

DEFAULT_SERVER_DIR = "labelstudio"
#: `annotate server --processes`: one per rater project of the three a clip needs
DEFAULT_PROCESSES = 3

DESCRIPTION = """\
Label clips as "on-screen only" / "off-screen only" with three independent
raters per clip in Label Studio (docs/recipe.md), end to end:

  server       run Label Studio on 127.0.0.1 from its own virtualenv
               (`make labelstudio`), with admin and rater accounts (each
               rater alone in an organization of their own)
  onboard      write each rater's login into an owner-only file
  sample       draw the pools: unfiltered train, filtered train, filtered
               validation/test clips (deterministic, no clip twice)
  render       a 5-second MP4 per sampled clip (Beam pipeline)
  push         give each clip to 3 distinct raters and import it into their
               own projects (idempotent)
  demo-raters  let demo accounts label from the synthetic ground truth
  pull         votes and labels (unanimous of 3), AudioScope CSVs per split
  status       progress, per-rater counts, Fleiss' kappa, agreement, picture

Isolation: a rater sees only their own project (their clips, their own
answers): never another rater's answers, the pools, splits or source paths.

Secrets (admin password, access tokens, rater passwords) come from the
environment or the secrets file (mode 0600) that `annotate server` writes;
they are never command-line arguments and never printed."""

EPILOG = """\
example (the demo's loop):
  audioscope annotate server --data-dir ls --document-root ann/media --raters rater1,rater2,rater3,rater4,rater5 --detach
  audioscope annotate onboard --server-dir ls
  audioscope annotate sample --store clipstore --df df --annotations ann --unfiltered-train 40 \\
      --filtered-train 40 --filtered-eval 40
  audioscope annotate render --annotations ann --media ann/media
  audioscope annotate push --annotations ann --media ann/media --server-dir ls
  audioscope annotate demo-raters --annotations ann --server-dir ls --error-rates 0.05,0.1,0.15,0.05,0.1
  audioscope annotate pull --annotations ann --server-dir ls
  audioscope annotate status --annotations ann
  audioscope annotate server --data-dir ls --stop"""

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser(sub: Any, name: str, help_text: str, description: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    return add_command(sub, name, help=help_text, description=description, func=func)


def _annotations_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--annotations", required=True, metavar="ANNOTATION_DIR",
        help="the annotation folder: pools, project id, votes, labels, CSVs and status live here",
    )


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server-dir", default=DEFAULT_SERVER_DIR, metavar="DIR",
        help=f"the --data-dir of `annotate server`: its server.json gives the URL and document root, its "
        f"secrets.json the admin token (default: {DEFAULT_SERVER_DIR})",
    )
    p.add_argument("--url", default=None, metavar="URL", help="Label Studio URL (default: LABEL_STUDIO_URL, else server.json)")
    p.add_argument(
        "--secrets-file", default=None, metavar="FILE",
        help="secrets file with the admin token (default: SERVER_DIR/secrets.json; LABEL_STUDIO_API_KEY wins)",
    )


def register(subparsers: Sub) -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "annotate",
        help="three-rater on/off-screen annotation in Label Studio: server, sample, render, push, pull, status",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="annotate_command", metavar="SUBCOMMAND", title="subcommands")
    _register_server(sub)
    _register_sample(sub)
    _register_render(sub)
    _register_push(sub)
    _register_demo_raters(sub)
    _register_pull(sub)
    _register_status(sub)
    _register_onboard(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


# --------------------------------------------------------------------------- server

SERVER_DESCRIPTION = """\
Run Label Studio (installed by `make labelstudio` into .venv-labelstudio) on
127.0.0.1, SQLite by default. Creates the admin account and the rater
accounts asked for (--raters), each rater alone in an organization of their
own (they see only their own project and answers), writes their passwords
and personal access tokens into the secrets file (mode 0600), prints the
URL. The signup form is closed: only these accounts can log in. Runs in the foreground until Ctrl-C
unless --detach, which returns once the server answers (pid in
DATA_DIR/server.pid; stop it with --stop). Starting a server that runs
already only adds missing rater accounts.

Secrets: AUDIOSCOPE_LS_ADMIN_PASSWORD and AUDIOSCOPE_LS_ADMIN_TOKEN set the
admin's password and token when the server is first created; otherwise they
are generated. They are passed to Label Studio through its environment only.

PostgreSQL (--postgres): Label Studio reads POSTGRE_NAME, POSTGRE_USER,
POSTGRE_PASSWORD, POSTGRE_HOST and POSTGRE_PORT from the environment.

Files in DATA_DIR: labelstudio/ (database, Label Studio data), secrets.json,
server.json (URL, document root), server.pid, server.log."""


HOST_WARNING = """\
annotate server: warning: listening on {host}, so anyone who reaches port {port} of this machine gets:
  - the login page (sign-up stays closed: only the accounts made here can log in);
  - Label Studio's pages and API, over plain HTTP: passwords and tokens cross the network unencrypted
    (put an HTTPS proxy in front, or keep 127.0.0.1 and reach it through an SSH tunnel);
  - for each rater who logs in: their own project, its clips (the MP4s) and their own answers, which
    they may also change, export or delete (Label Studio Community has no roles; pull reports it)."""


def _register_server(sub: Sub) -> None:
    p = _parser(sub, "server", "run Label Studio on 127.0.0.1 with admin and rater accounts", SERVER_DESCRIPTION, run_server)
    p.add_argument("--data-dir", default=DEFAULT_SERVER_DIR, metavar="DIR", help=f"server folder (default: {DEFAULT_SERVER_DIR})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.add_argument(
        "--document-root", default=None, metavar="DIR",
        help="folder the server may serve local media from: the rendered clips' MEDIA_DIR, nothing more (a rater can "
        "read any file under it through a storage of their own project; default: the current folder)",
    )
    p.add_argument("--admin-email", default="admin@audioscope.local", metavar="EMAIL", help="the admin account's email")
    p.add_argument(
        "--raters", default="", metavar="NAME[,NAME...]",
        help="rater accounts to create (NAME becomes NAME@audioscope.local unless it is an email), e.g. rater1,rater2,rater3",
    )
    p.add_argument("--postgres", action="store_true", help="use PostgreSQL (settings from POSTGRE_* variables) instead of SQLite")
    p.add_argument(
        "--secrets-file", default=None, metavar="FILE",
        help="where the accounts' secrets are read and written (default: DATA_DIR/secrets.json)",
    )
    p.add_argument("--detach", action="store_true", help="start in the background and return once it answers")
    p.add_argument("--stop", action="store_true", help="stop the server of --data-dir")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait for the server to answer (default: 300)")
    p.add_argument(
        "--processes", type=positive_int, default=DEFAULT_PROCESSES, metavar="N",
        help=f"Label Studio processes (default: {DEFAULT_PROCESSES}): the first serves everyone on --port, the others "
        "(on free ports of 127.0.0.1, listed in server.json) serve `annotate pull`, which reads the raters' projects "
        "side by side, one per process (a Label Studio process works on one core; each takes about 0.4 GB of memory)",
    )


def run_server(args: argparse.Namespace) -> int:
    from audioscope.annotation.credentials import SecretsError
    from audioscope.annotation.server import ServerError, ServerSettings, serve_foreground, start, stop
    from audioscope.errors import UserError

    if args.stop:
        stopped = stop(args.data_dir)
        print(f"Label Studio of {args.data_dir} {'stopped' if stopped else 'was not running'}")
        return 0
    raters = tuple(r.strip() for r in args.raters.split(",") if r.strip())
    settings = ServerSettings(
        data_dir=args.data_dir, host=args.host, port=args.port, document_root=args.document_root,
        admin_email=args.admin_email, raters=raters, postgres=args.postgres, secrets_file=args.secrets_file,
        timeout_s=args.timeout, processes=args.processes,
    )  # fmt: skip
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(HOST_WARNING.format(host=args.host, port=args.port), file=sys.stderr)
    print(f"annotate server: starting Label Studio in {args.data_dir} (about 30 s the first time)", file=sys.stderr)
    try:
        server = start(settings)
    except (ServerError, SecretsError) as e:
        raise UserError(str(e)) from None
    from audioscope.progress import print_summary

    print_summary(
        "Label Studio is running",
        {
            "url": server.url, "admin": settings.admin_email, "raters": ", ".join(sorted(server.secrets.raters)) or "none",
            "secrets": f"{settings.secrets_path} (mode 0600: passwords and API tokens)",
            "document root": settings.root, "database": "PostgreSQL" if settings.postgres else "SQLite",
            "started in": f"{server.seconds:.1f} s" if server.process else "was running already",
            "processes": f"{1 + len(server.readers)} (pull reads from {', '.join(server.readers)} too)" if server.readers else 1,
            "stop with": f"audioscope annotate server --data-dir {q(args.data_dir)} --stop",
        },
    )  # fmt: skip
    if args.detach:
        return 0
    print("\nPress Ctrl-C to stop.", file=sys.stderr)
    return serve_foreground(server, args.data_dir)


def connect(args: argparse.Namespace) -> tuple[str, Any, str | None]:
    """(server URL, the accounts' secrets, document root) from the connection options."""
    from audioscope.annotation.client import LabelStudioError, connection_settings
    from audioscope.annotation.credentials import SecretsError, read_secrets
    from audioscope.errors import UserError

    try:
        url, secrets_path, root = connection_settings(args.server_dir, args.url, args.secrets_file)
        secrets = read_secrets(secrets_path)
    except (LabelStudioError, SecretsError) as e:
        raise UserError(str(e)) from None
    if len(secrets.raters) < 3:
        raise UserError(f"{secrets_path} has {len(secrets.raters)} rater accounts: start the server with --raters rater1,rater2,rater3[,...]")
    return url, secrets, root


def server_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; Label Studio errors become UserErrors that say what to do."""
    from audioscope.annotation.client import LabelStudioError, ServerUnreachable
    from audioscope.errors import UserError

    try:
        return fn()
    except ServerUnreachable as e:
        raise UserError(
            f"{e}. {what} did not finish and wrote nothing new; start the server "
            "(`audioscope annotate server ... --detach`) and run the same command again"
        ) from None
    except LabelStudioError as e:
        raise UserError(f"{e}; {what} did not finish, run it again once this is fixed") from None


# --------------------------------------------------------------------------- sample

SAMPLE_DESCRIPTION = """\
Draw the three annotation pools (docs/recipe.md) from a clip store and its Df:
unfiltered_train (clips of train videos of the whole store), filtered_train
(Df train clips) and filtered_eval (Df validation and test clips). A fourth
pool, unfiltered_eval (clips of validation and test videos of the whole
store; 0 unless --unfiltered-eval is given), is ours: a precise Df holds
almost no off-screen-only clips, which the off-screen evaluation sets need.
Deterministic: each clip's rank is the first 8 bytes of
sha256("SEED:CLIP_ID"); each pool, in that order, takes its lowest ranks that
no earlier pool took, so no clip is in two pools and a larger size only adds
clips. Splits of unfiltered clips: published, else Df's, else the per-video
hash with the ratios and seed of DF_DIR/report.json.

Writes ANNOTATION_DIR/pools.parquet (clip_id, video_id, start, end, split,
pool, source_uri, licence_name, licence_url) and pools.json."""


def _register_sample(sub: Sub) -> None:
    p = _parser(sub, "sample", "draw the annotation pools (deterministic, no clip twice)", SAMPLE_DESCRIPTION, run_sample)
    p.set_defaults(writes=("annotations", "annotations"))
    add_store_option(p)
    p.add_argument("--df", required=True, metavar="DF_DIR", help="the Df folder written by `audioscope filter`")
    _annotations_arg(p)
    for pool in ("unfiltered-train", "filtered-train", "filtered-eval"):
        p.add_argument(f"--{pool}", type=int, default=10_000, metavar="N", help=f"clips in the {pool} pool (default: 10000)")
    p.add_argument(
        "--unfiltered-eval", type=int, default=0, metavar="N",
        help="clips in the unfiltered-eval pool (validation and test clips of the whole store, drawn last; "
        "default: 0, as in the recipe, docs/recipe.md)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (default: 0)")


def run_sample(args: argparse.Namespace) -> int:
    from audioscope.annotation.pools import PoolSizes, sample
    from audioscope.errors import UserError
    from audioscope.progress import print_summary
    from audioscope.schemas.tables import POOLS

    sizes = PoolSizes(args.unfiltered_train, args.filtered_train, args.filtered_eval, args.unfiltered_eval)
    if min(sizes.of(pool) for pool in POOLS) < 0:
        raise UserError("pool sizes must be >= 0")
    summary = sample(args.store, args.df, args.annotations, sizes, args.seed)
    rows = {p: f"{v['drawn']} of {v['asked']} asked ({v['candidates']} candidates)" for p, v in summary["pools"].items()}
    rows["pools"] = os.path.join(args.annotations, "pools.parquet")
    print_summary("Pools drawn", rows)
    for p, v in summary["pools"].items():
        if v["drawn"] < v["asked"]:
            print(f"annotate sample: note: {p} has only {v['candidates']} candidate clips", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- render

RENDER_DESCRIPTION = """\
Render a 5-second MP4 per sampled clip for the raters, from the source
videos: H.264 + AAC, constant frame rate (the source's, at most 30 fps), the
source's resolution with the short side capped at 480 px, -movflags
+faststart. A Beam pipeline (one ffmpeg run per clip, each source fetched and
probed once); clips already rendered are skipped, failed clips are recorded
in MEDIA_DIR/failed/ and retried by the next run.

MEDIA_DIR is a local folder (it must be under the server's document root to
be served) or gs://. Output: MEDIA_DIR/clips/<clip_id>.mp4, render.json.
Clip and video ids are checked (a bad id is recorded, never used as a file
name); with --media-root, a pool row's source video is opened only if it
lies under that root (any other is recorded as failed, unsafe_path, and never
opened); without it, each clip's video is opened where the clip store the
pools were drawn from has it now (media moved and ingested again under
another root are found there), whatever source the row names, and a video
the store does not hold is refused. Exit status 2 with one line when the
pools cannot be read or the run ended short (a runner lost clips: run it
again to complete it); exit status 1 when no clip at all could be rendered.
Beam flags go after `--` (e.g. -- --runner=DataflowRunner ...)."""


def _register_render(sub: Sub) -> None:
    p = _parser(sub, "render", "render a 5-second MP4 per sampled clip (Beam pipeline)", RENDER_DESCRIPTION, run_render)
    p.set_defaults(writes=("media", None))
    _annotations_arg(p)
    p.add_argument("--media", required=True, metavar="MEDIA_DIR", help="where the MP4s go (local folder or gs://)")
    p.add_argument(
        "--media-root", metavar="URI", default=None,
        help="the folder (or gs://, s3://, https:// prefix) the source videos must lie under, as given to "
        "`audioscope ingest`; a pool row whose source is outside it is recorded as failed (unsafe_path), "
        "never opened (default: each video is opened where the clip store the pools were drawn from has "
        "it; pools without a recorded store are taken as they name their sources)",
    )
    add_runner_options(p, what="clips rendered")


def run_render(args: argparse.Namespace) -> int:
    from audioscope.pipelines.render import RenderConfig, render
    from audioscope.pipelines.runner import beam_flags, local_parallelism
    from audioscope.progress import print_summary

    beam_args = local_parallelism(beam_flags(args.rest), args.workers)
    result = render(
        RenderConfig(
            annotations=args.annotations, media=args.media, media_root=args.media_root,
            beam_args=beam_args, poll=args.poll,
        )
    )  # fmt: skip
    rows: dict[str, object] = {k: result.summary[k] for k in ("clips", "rendered", "failed", "missing")}
    for clip_id, reason in list(result.failures.items())[:5]:
        rows[f"  {clip_id}"] = reason
    rows["media"] = result.layout.clips_dir
    print_summary("Render finished", rows)
    if result.summary["clips"] and not result.summary["rendered"]:
        print(
            f"audioscope annotate render: none of the {result.summary['clips']} clips could be rendered (reasons "
            f"above and in {result.layout.failed_dir}); fix the cause (the sources, --media-root) and run the same "
            "command again",
            file=sys.stderr,
        )
        return 1
    return 0


# --------------------------------------------------------------------------- push

PUSH_DESCRIPTION = """\
Give every rendered clip of the pools to exactly three distinct raters
(balanced across all raters, deterministic: see assignment.parquet) and
import it into those raters' projects. Each rater has a project of their
own, in an organization of their own on the server, reached with their own
token: a rater sees only their clips and their own answers, never another
rater's answers, the pools, splits, scores or source paths (a task holds the
video, its frame rate and the clip id). Re-running imports only what the
projects lack (tasks deleted on the server come back), gives clips answered
"can't tell" to one more rater, and restores changed project settings.
Tasks are imported in batches (--batch-size per request).

A project: the clip's video with its sound (played at the clip's frame
rate), two required questions (sound from something visible on screen?
sound from something not visible?) each answered Yes, No or "Can't tell /
clip does not play", instructions with examples, no skip button, one answer
per task. Ids are kept in ANNOTATION_DIR/projects.json.

Local media must lie under the server's document root (a local-files
storage is added to each project); gs:// media gets a GCS import storage
with presigned URLs. Signing needs a service account's private key: give its
key file with --gcs-credentials-file (or start the server with
GOOGLE_APPLICATION_CREDENTIALS pointing at one). Push then checks that Label
Studio redirects one task's video to a signed URL, and says what to do when
it does not; pushing again with a key repairs the storage."""


def _register_push(sub: Sub) -> None:
    p = _parser(sub, "push", "create/update the project and import the tasks (never twice)", PUSH_DESCRIPTION, run_push)
    _annotations_arg(p)
    p.add_argument("--media", required=True, metavar="MEDIA_DIR", help="the folder `annotate render` wrote (local or gs://)")
    p.add_argument("--project-title", default=None, metavar="TITLE", help="project title (default: 'AudioScope: on-screen and off-screen sounds')")
    p.add_argument("--batch-size", type=positive_int, default=1000, metavar="N", help="tasks per import request (default: 1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the rater assignment's tie-breaks (default: 0)")
    p.add_argument(
        "--document-root", default=None, metavar="DIR",
        help="the server's local-files document root (default: from SERVER_DIR/server.json)",
    )
    p.add_argument(
        "--gcs-credentials-file", default=None, metavar="FILE",
        help="service-account key (JSON) the GCS storage of gs:// media signs URLs with (default: the server's own credentials)",
    )
    _connection_args(p)


def run_push(args: argparse.Namespace) -> int:
    from audioscope.annotation.pools import read_pools
    from audioscope.annotation.push import DEFAULT_TITLE, push
    from audioscope.pipelines.runner import normalise
    from audioscope.progress import Progress, print_summary

    pools = read_pools(args.annotations)
    url, secrets, root = connect(args)
    credentials = None
    if args.gcs_credentials_file:
        with open(args.gcs_credentials_file, encoding="utf-8") as f:
            credentials = f.read()
    progress = Progress("push", unit="tasks")
    summary = server_call(
        "push",
        lambda: push(
            url, secrets, args.annotations, pools, normalise(args.media), args.document_root or root,
            title=args.project_title or DEFAULT_TITLE, batch=args.batch_size, gcs_credentials=credentials,
            on_batch=lambda n: progress.update(n), seed=args.seed,
        ),
    )  # fmt: skip
    progress.close()
    rows: dict[str, object] = {
        "projects": f"one per rater ({len(summary['raters'])}), {'created' if summary['projects_created'] else 'updated'}",
        "clips in pools": summary["pooled_clips"],
        "clips assigned": f"{summary['assigned_clips']} (3 distinct raters each)",
        "imported now": summary["imported"],
        "already in the projects": summary["already_there"],
        "without a rendered video": summary["without_media"],
    }
    for name, r in summary["raters"].items():
        rows[f"  {name}"] = f"{r['assigned']} clips, {r['imported']} imported now"
    rows["seconds"] = summary["seconds"]
    print_summary("Push finished", rows)
    if summary["without_media"]:
        print(f"\n{summary['without_media']} clips have no MP4 yet: run `audioscope annotate render` and push again.")
    return 0


# --------------------------------------------------------------------------- demo raters

RATERS_DESCRIPTION = """\
For the demo and tests: the rater accounts of the secrets file (made by
`annotate server --raters`) label the tasks of their own projects through
the API, each with its own token, answering from the synthetic corpus's
ground truth: Q1 = the clip has audible on-screen sound, Q2 = audible
off-screen sound, each answer flipped with the rater's error rate
(deterministic by --seed). Raters work one at a time; running again resumes."""


def _register_demo_raters(sub: Sub) -> None:
    p = _parser(sub, "demo-raters", "let demo accounts label from the synthetic ground truth", RATERS_DESCRIPTION, run_demo_raters)
    _annotations_arg(p)
    p.add_argument(
        "--truth", default=None, metavar="TRUTH_PARQUET",
        help="truth.parquet of the synthetic corpus (default: found next to the clips' source videos)",
    )
    p.add_argument(
        "--error-rates", default="0", metavar="R[,R...]",
        help="error rate per rater, in the order of their names (one value: all raters; default: 0)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the flipped answers (default: 0)")
    _connection_args(p)


def _error_rates(text: str, n: int) -> list[float]:
    from audioscope.errors import UserError

    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--error-rates {text!r}: give numbers between 0 and 1, e.g. 0.1 or 0.05,0.1,0.15") from None
    if len(rates) == 1:
        rates = rates * n
    if len(rates) != n or not all(0.0 <= r <= 1.0 for r in rates):
        raise UserError(f"--error-rates {text!r}: give one rate in [0, 1], or one per rater ({n})")
    return rates


def projects_of(annotation_dir: str) -> Any:
    from audioscope.annotation.push import not_pushed_yet, read_projects

    projects = read_projects(annotation_dir)
    if not projects:
        raise not_pushed_yet(annotation_dir)
    return projects


def run_demo_raters(args: argparse.Namespace) -> int:
    from audioscope.annotation.pools import read_pools
    from audioscope.annotation.raters import DemoRater, run_raters
    from audioscope.synth.truth import detect_truth, load_truth
    from audioscope.errors import UserError
    from audioscope.progress import Progress, print_summary

    url, secrets, _ = connect(args)
    projects = projects_of(args.annotations)
    names = sorted(n for n in secrets.raters if n in projects)
    rates = _error_rates(args.error_rates, len(names))
    pools = read_pools(args.annotations)
    truth_path = args.truth
    if truth_path is None:
        found = detect_truth(list(pools["source_uri"]))
        if found.path is None:
            raise UserError(f"{found.how}; give --truth")
        truth_path = found.path
    raters = [DemoRater(n, secrets.raters[n], r) for n, r in zip(names, rates)]
    progress = Progress("demo raters", unit="votes")
    summary = server_call(
        "demo-raters",
        lambda: run_raters(url, projects, raters, pools, load_truth(truth_path), args.seed, lambda _: progress.update(1)),
    )
    progress.close()
    rows: dict[str, object] = {"tasks": summary["tasks"]}
    for name, c in summary["raters"].items():
        rows[name] = (
            f"{c['annotated']} annotated (error rate {c['error_rate']:g}, {c['flipped']} answers flipped), "
            f"{c['already_done']} done before, {c['no_truth']} without truth"
        )
    print_summary("Demo raters finished", rows)
    return 0


# --------------------------------------------------------------------------- pull

PULL_DESCRIPTION = """\
Read every rater's project (the JSON export: the whole project in one
request, or --page-size task ids per request; the projects side by side,
one per Label Studio process: `annotate server --processes`, whose readers
server.json lists), check it against what the server lists, keep completed,
non-cancelled answers, one per clip and rater (the latest, across duplicate
tasks too), and write into ANNOTATION_DIR: votes.parquet (one row per
counted vote), labels.parquet (per clip: the votes and the final label
"onscreen_only" / "offscreen_only" when all three raters agree, else none),
cant_tell.parquet ("can't tell / clip does not play" answers: not votes;
the next push gives such clips to another rater), AudioScope clip lists
csv/<split>_onscreen_unanimous_clips.csv and
csv/<split>_offscreen_unanimous_clips.csv (split: train, validate, test),
and pull.json (counts, repairs, and what was found changed on the server:
settings, deleted tasks or projects, other projects).

Pull never shrinks what it had: an export with fewer tasks or annotations
than the server lists is read again, then refused; votes of the last pull
that are gone from the server stop the pull unless --allow-fewer. Files are
written only once everything was read: a pull cut short leaves the previous
outputs byte for byte as they were."""


def _register_pull(sub: Sub) -> None:
    p = _parser(sub, "pull", "votes and labels (unanimous of 3) and AudioScope CSVs from the raters' projects", PULL_DESCRIPTION, run_pull)
    _annotations_arg(p)
    p.add_argument(
        "--page-size", type=int, default=0, metavar="N",
        help="task ids per export request (default: 0, each rater's whole project in one request, the fastest)",
    )
    p.add_argument(
        "--allow-fewer", action="store_true",
        help="accept that votes of the last pull are gone from the server (deleted by a rater or on the server)",
    )
    _connection_args(p)


def run_pull(args: argparse.Namespace) -> int:
    from audioscope.annotation.pull import pull
    from audioscope.progress import Progress, print_summary

    from audioscope.annotation.client import ServerInfo

    url, secrets, _ = connect(args)
    projects_of(args.annotations)
    info = ServerInfo.read(args.server_dir)
    readers = info.readers if info is not None and info.url.rstrip("/") == url.rstrip("/") else ()
    progress = Progress("pull", unit="tasks")
    summary = server_call(
        "pull",
        lambda: pull(url, secrets, args.annotations, args.page_size,
                     lambda t, a: progress.update(t, annotations=a), allow_fewer=args.allow_fewer, readers=readers),
    )  # fmt: skip
    progress.close()
    rows: dict[str, object] = {
        "tasks": f"{summary['tasks']} in {len(summary['raters'])} rater projects",
        "annotations": f"{summary['annotations']} read, {summary['counted']} counted, {summary['cant_tell']} can't tell, "
        f"{summary['cancelled']} cancelled, {summary['incomplete']} incomplete, {summary['superseded']} superseded by a later one",
        "clips with 3 votes": f"{summary['clips_with_3_votes']} of {summary['clips']}",
        "on-screen only": summary["labels"]["onscreen_only"],
        "off-screen only": summary["labels"]["offscreen_only"],
        "seconds": summary["seconds"],
        "labels": os.path.join(args.annotations, "labels.parquet"),
    }
    print_summary("Pull finished", rows)
    print_problems("annotate pull", summary)
    return 0


def print_problems(who: str, summary: dict[str, Any]) -> None:
    """What pull repaired and what it found changed on the server, one line each, on stderr."""
    repairs = summary.get("repairs") or {}
    what = {"superseded": "second answers of a rater to a clip dropped (the latest counts)",
            "duplicate_tasks": "duplicate tasks of a clip merged", "foreign": "answers of another account dropped",
            "unassigned": "answers to clips not assigned to the rater dropped"}  # fmt: skip
    for key, n in repairs.items():
        if n:
            print(f"{who}: repaired: {n} {what.get(key, key)}", file=sys.stderr)
    for where, notes in (summary.get("problems") or {}).items():
        for note in notes:
            print(f"{who}: warning: {where}: {note}", file=sys.stderr)
    if summary.get("cant_tell_clips"):
        print(f"{who}: {len(summary['cant_tell_clips'])} clips had a \"can't tell\" answer (cant_tell.parquet); "
              "`annotate push` gives them to another rater where there is one", file=sys.stderr)  # fmt: skip


# --------------------------------------------------------------------------- status
STATUS_DESCRIPTION = """\
Progress and agreement from the last pull (run `annotate pull` first): clips
with 0, 1, 2 and 3 votes per pool, votes and median seconds per task per
rater, Fleiss' kappa per question (clips with three votes), pairwise rater
agreement, share of unanimous clips, "can't tell" answers, and every repair
the pull made (second answers, duplicate tasks, answers of other accounts)
and every change it found on the server (settings, deleted tasks or
projects). Writes ANNOTATION_DIR/status.json and status.png."""


def _register_status(sub: Sub) -> None:
    p = _parser(sub, "status", "progress per pool, per-rater counts, Fleiss' kappa, agreement, picture", STATUS_DESCRIPTION, run_status)
    _annotations_arg(p)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def run_status(args: argparse.Namespace) -> int:
    from audioscope.annotation.status import STATUS_PNG, write_status
    from audioscope.progress import print_summary

    status = write_status(args.annotations)
    rows: dict[str, object] = {}
    for pool, c in status["pools"].items():
        rows[pool] = f"{c['tasks']} tasks: {c['0']} with 0 votes, {c['1']} with 1, {c['2']} with 2, {c['3']} with 3"
    for rater, c in status["raters"].items():
        rows[rater] = f"{c['votes']} votes, median {_fmt(c['median_seconds_per_task'], 1)} s per task"
    agreement = status["agreement"]
    for q, k in agreement["kappa"].items():
        rows[f"Fleiss' kappa {q}"] = f"{_fmt(k['fleiss_kappa'])} over {k['clips']} clips"
    for pair in agreement["pairwise"]:
        rows[" & ".join(pair["raters"])] = (
            f"agree {_fmt(pair['onscreen'])} on-screen, {_fmt(pair['offscreen'])} off-screen ({pair['clips']} clips)"
        )
    u = agreement["unanimity"]
    rows["unanimous (3 votes)"] = (
        f"{_fmt(u['unanimous'])} of {u['clips_with_3_votes']} clips; on-screen only {_fmt(u['onscreen_only'])}, "
        f"off-screen only {_fmt(u['offscreen_only'])}"
    )
    rows["can't tell"] = f"{status['cant_tell_clips']} clips (not votes; re-queued by push)"
    rows["picture"] = os.path.join(args.annotations, STATUS_PNG)
    print_summary("Annotation status", rows)
    print_problems("annotate status", status)
    return 0


# --------------------------------------------------------------------------- onboard

ONBOARD_DESCRIPTION = """\
Write each rater's login (the login page's URL, their email and password)
into an owner-only file (mode 0600; default SERVER_DIR/rater-logins.txt), to
hand out one block per rater by a private channel, with the rater guide
(docs/rater-guide.md). Nothing secret is printed. Each rater logs in to a
project of their own: they see their clips and their own answers only."""


def _register_onboard(sub: Sub) -> None:
    p = _parser(sub, "onboard", "write each rater's login into an owner-only file (mode 0600)", ONBOARD_DESCRIPTION, run_onboard)
    p.add_argument("--out", default=None, metavar="FILE", help="where to write the logins (default: SERVER_DIR/rater-logins.txt)")
    _connection_args(p)


def run_onboard(args: argparse.Namespace) -> int:
    from audioscope.annotation.onboard import LOGINS_FILE, write_logins
    from audioscope.progress import print_summary

    url, secrets, _ = connect(args)
    out = args.out or os.path.join(args.server_dir, LOGINS_FILE)
    n = write_logins(out, url, secrets)
    print_summary("Rater logins written", {"raters": f"{n} ({', '.join(sorted(secrets.raters))})", "file": f"{out} (mode 0600)",
                                           "send with": "docs/rater-guide.md"})  # fmt: skip
    return 0
