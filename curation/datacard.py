"""What a release says about itself: its inputs, licences and data card.

:func:`load_inputs` reads the three step outputs a release is made from (the
mixtures folder of ``audioscope mix``, the Df folder of ``audioscope
filter``, optionally the annotation folder), checks that they belong
together, and finds the coincidence model card. From them come
``LICENSES.csv`` (:func:`licence_rows`: one row per clip whose media or
reference is in the release) and ``README.md`` (:func:`render_readme`, the
data card: contents, how it was made, label statistics, known limitations).

Licence exclusion (``--exclude-licence TEXT``): a pattern matches a licence
when it occurs, ignoring case, in the licence's name or URL (``NoDerivs``
matches "Attribution-NoDerivs License"). Examples whose media carries such a
licence make the release refuse to publish (the mixtures must be rebuilt
without them); clips of the curated lists (references, no media) that carry
one are left out of ``LICENSES.csv`` and counted in the data card.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from audioscope import storage, uris
from audioscope.schemas.df import DfLayout, read_df, read_report
from audioscope.curation.manifest import fmt_bytes
from audioscope.errors import UserError
from audioscope.folders import another_steps_folder
from audioscope.pipelines.mix_catalog import licence_excluded as licence_matches
from audioscope.schemas.records import video_of_clip
from audioscope.shell import q

#: Files of a Df folder (written by `audioscope filter`) that a release carries.
DF_FILES: tuple[str, ...] = DfLayout.RELEASED
#: Suffixes of the top-level files of an annotation folder that a release carries.
LABEL_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".json", ".md")
LICENCE_COLUMNS: tuple[str, ...] = ("clip_id", "video_id", "source", "licence_name", "licence_url", "attribution")

_CLIP_COLUMNS = ("clip_id", "video_id", "source", "licence_name", "licence_url")


@dataclass
class ReleaseInputs:
    """The step outputs a release is made from, read and checked."""

    mix: str
    df: str
    labels: str | None
    summary: dict[str, Any]
    filter_report: dict[str, Any]
    annotation: dict[str, Any] | None
    model_card: dict[str, Any] | None
    examples: pd.DataFrame
    df_table: pd.DataFrame
    labels_table: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str | None:
        return self.filter_report.get("inputs", {}).get("model_id")


# --------------------------------------------------------------------------- reading


def _read_json(uri: str, what: str, fix: str) -> dict[str, Any]:
    if not storage.exists(uri):
        raise UserError(f"{uri} is missing: {what}; {fix}")
    try:
        data = json.loads(storage.read_text(uri))
    except ValueError:
        raise UserError(f"{uri} is not valid JSON; {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{uri} does not hold a JSON object; {fix}")
    return data


def _read_parquet(uri: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    with storage.open_file(uri) as fh:
        schema = pq.read_schema(fh)
        fh.seek(0)
        cols = None if columns is None else [c for c in columns if c in schema.names]
        return pq.read_table(fh, columns=cols).to_pandas()


def _require(frame: pd.DataFrame, columns: Iterable[str], uri: str, fix: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{uri} lacks the columns {missing}; {fix}")


_EXAMPLE_COLUMNS = (
    "shard", "subset", "split", "type", "is_mom", "frames_clip_id", "clip_id1", "video_id1", "path1",
    "clip_id2", "video_id2", "path2", "label1", "licence_name1", "licence_url1", "licence_name2", "licence_url2",
)  # fmt: skip


def load_mix(mix: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """``summary.json`` and ``examples.parquet`` of a finished mixtures folder."""
    from audioscope.pipelines.mix_layout import MixLayout

    layout = MixLayout(mix)
    wrong = another_steps_folder(mix, "mix", "--mix")
    if wrong:
        raise UserError(wrong)
    fix = f"finish the mixtures first: run `audioscope mix ... --out {q(mix)}` again until it prints its summary"
    summary = _read_json(layout.summary_json, "the mixtures step has not finished", fix)
    for key in ("counts", "shards", "config"):
        if key not in summary:
            raise UserError(f"{layout.summary_json} has no {key!r}: it was not written by `audioscope mix`")
    uri = layout.examples_parquet
    if not storage.exists(uri):
        raise UserError(f"{uri} is missing; {fix}")
    examples = _read_parquet(uri, _EXAMPLE_COLUMNS)
    _require(examples, ("clip_id1", "frames_clip_id"), uri, "it was not written by `audioscope mix`")
    return summary, examples


def load_df(df_dir: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The report and the Df table of a finished Df folder written by ``audioscope filter``."""
    layout = DfLayout.of(df_dir)
    layout.require_finished()
    report = read_report(layout)
    table = read_df(layout, _CLIP_COLUMNS[:2] + ("source_uri", "licence_name", "licence_url", "split"))
    return dict(report.data), table


def load_annotation(labels_dir: str) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    """``status.json`` (if any) and ``labels.parquet`` of an annotation folder."""
    from audioscope.schemas.annotations import AnnotationLayout

    layout = AnnotationLayout(labels_dir)
    uri = layout.labels_parquet
    if not storage.exists(uri):
        raise UserError(
            f"{uri} is missing: {labels_dir} is not an annotation folder; give the folder the annotation "
            "pull wrote (votes.parquet, labels.parquet, the unanimous clip CSVs), or leave out --labels"
        )
    table = _read_parquet(uri)
    _require(table, ("clip_id", "video_id", "pool", "n_votes", "label"), uri, "re-run the annotation pull")
    status_uri = layout.status_json
    status = None
    if storage.exists(status_uri):
        status = _read_json(status_uri, "", "re-run the annotation pull to rewrite it")
    return status, table


def find_model_card(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The coincidence model card named by the filter report (scores.json's ``model``), if it can be read."""
    from audioscope.schemas.df import DfReport

    model = DfReport(report).model_folder
    if not model:
        return None
    uri = storage.join(model, "model_card.json")
    try:
        if not storage.exists(uri):
            return None
        card = json.loads(storage.read_text(uri))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def load_inputs(mix: str, df: str, labels: str | None) -> ReleaseInputs:
    """Read and cross-check the inputs of a release (see the module docstring)."""
    summary, examples = load_mix(mix)
    report, df_table = load_df(df)
    annotation, labels_table = load_annotation(labels) if labels else (None, None)
    inputs = ReleaseInputs(
        mix=mix, df=df, labels=labels, summary=summary, filter_report=report, annotation=annotation,
        model_card=find_model_card(report), examples=examples, df_table=df_table, labels_table=labels_table,
    )  # fmt: skip
    _cross_check(inputs)
    return inputs


def _cross_check(inputs: ReleaseInputs) -> None:
    mix_inputs = inputs.summary.get("inputs") or {}
    mixed_with, filtered_with = mix_inputs.get("model_id"), inputs.model_id
    if mixed_with and filtered_with and mixed_with != filtered_with:
        raise UserError(
            f"the mixtures in {inputs.mix} were made from a Df scored by model {mixed_with}, but {inputs.df} "
            f"was filtered with model {filtered_with}: give the Df folder the mixtures were made from with --df"
        )
    df_used = str(mix_inputs.get("df") or "")
    if df_used and not DfLayout.of(inputs.df).same_as(df_used):
        inputs.warnings.append(
            f"the mixtures were made from the Df {shown_path(DfLayout.of(df_used).root)}, not "
            f"{shown_path(inputs.df)} (moved or copied?)"
        )
    if mix_inputs.get("labels") and not inputs.labels:
        inputs.warnings.append(
            f"the mixtures used labels from {mix_inputs['labels']} but --labels was not given: the release "
            "carries no votes or label lists and its data card has no label statistics"
        )
    if inputs.labels and not mix_inputs.get("labels"):
        inputs.warnings.append(
            f"--labels {inputs.labels} was given but the mixtures were made without labels (no LOn/LOff "
            "examples, no evaluation sets from them)"
        )
    if inputs.model_card is None:
        inputs.warnings.append("the coincidence model card was not found (scores.json names no readable model folder)")


# --------------------------------------------------------------------------- licences


def _clip_frame(frame: pd.DataFrame, mapping: Mapping[str, str], media: bool) -> pd.DataFrame:
    cols = {dst: frame[src] if src in frame.columns else None for dst, src in mapping.items()}
    out = pd.DataFrame(cols, index=frame.index).dropna(subset=["clip_id"])
    out = out[out["clip_id"].astype(str) != ""]
    return out.assign(media=media)


def clip_table(inputs: ReleaseInputs) -> pd.DataFrame:
    """One row per clip referenced by the release: its video, source, licence and whether its media is in shards.

    Source and licence come from the first of Df, the labels table and the
    example table that knows them (Df and labels carry the clip store's record).
    """
    ex = inputs.examples
    lists = [inputs.df_table] + ([inputs.labels_table] if inputs.labels_table is not None else [])
    parts = [
        _clip_frame(table, {"clip_id": "clip_id", "video_id": "video_id", "source": "source_uri",
                            "licence_name": "licence_name", "licence_url": "licence_url"}, False)
        for table in lists
    ]  # fmt: skip
    parts += [
        _clip_frame(ex, {"clip_id": "clip_id1", "video_id": "video_id1", "source": "path1",
                         "licence_name": "licence_name1", "licence_url": "licence_url1"}, True),
        _clip_frame(ex, {"clip_id": "clip_id2", "video_id": "video_id2", "source": "path2",
                         "licence_name": "licence_name2", "licence_url": "licence_url2"}, True),
        _clip_frame(ex, {"clip_id": "frames_clip_id"}, True),
    ]  # fmt: skip
    allc = pd.concat(parts, ignore_index=True).replace({"": None})
    media = allc.groupby("clip_id", sort=True)["media"].any()
    info = allc.drop(columns=["media"]).groupby("clip_id", sort=True).first()
    info["video_id"] = info["video_id"].fillna(pd.Series(info.index.map(video_of_clip), index=info.index))
    return info.assign(media=media).reset_index()


def offending_examples(inputs: ReleaseInputs, clips: pd.DataFrame, patterns: Sequence[str]) -> list[str]:
    """Clips (with their licence) whose media is in some example under an excluded licence; first 5, then a count.

    Each example's own licence columns are checked for its two audio clips;
    the frames clip's licence comes from the clip table (Df).
    """
    if not patterns:
        return []
    ex = inputs.examples
    bad: dict[str, str] = {}
    for n in ("1", "2"):
        names, urls = ex.get(f"licence_name{n}"), ex.get(f"licence_url{n}")
        if f"clip_id{n}" not in ex.columns or names is None:
            continue
        for clip, name, url in zip(ex[f"clip_id{n}"], names, urls if urls is not None else [None] * len(ex)):
            if clip and licence_matches(name, url, patterns):
                bad.setdefault(str(clip), str(name or url))
    known = clips.set_index("clip_id")
    for clip in set(ex["frames_clip_id"].dropna()) & set(known.index):
        if licence_matches(known.at[clip, "licence_name"], known.at[clip, "licence_url"], patterns):
            bad.setdefault(str(clip), str(known.at[clip, "licence_name"] or known.at[clip, "licence_url"]))
    shown = [f"{c} ({lic})" for c, lic in sorted(bad.items())]
    return shown[:5] + ([f"... {len(shown) - 5} more clips"] if len(shown) > 5 else [])


def licence_rows(clips: pd.DataFrame, patterns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """LICENSES.csv rows (clips under excluded licences left out) and how many were left out."""
    excluded = [licence_matches(n, u, patterns) for n, u in zip(clips["licence_name"], clips["licence_url"])]
    kept = clips[[not x for x in excluded]]
    rows = kept.assign(attribution=[_attribution(r) for r in kept.itertuples()])
    return rows[list(LICENCE_COLUMNS)].reset_index(drop=True), int(len(clips) - len(kept))


def _attribution(r: Any) -> str:
    where = f" ({r.source})" if r.source else ""
    if r.licence_name or r.licence_url:
        url = f" <{r.licence_url}>" if r.licence_url else ""
        return f"Clip {r.clip_id} of video {r.video_id}{where}, licensed under {r.licence_name or 'a licence'}{url}"
    return f"Clip {r.clip_id} of video {r.video_id}{where}; licence unknown"


def licences_csv(rows: pd.DataFrame) -> bytes:
    """``LICENSES.csv`` bytes: a header and one row per clip, sorted by clip_id."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LICENCE_COLUMNS)
    for r in rows.sort_values("clip_id", kind="mergesort").itertuples(index=False):
        writer.writerow(["" if v is None or (isinstance(v, float) and v != v) else v for v in r])
    return out.getvalue().encode("utf-8")


def licence_summary(rows: pd.DataFrame, left_out: int, patterns: Sequence[str]) -> dict[str, Any]:
    """Counts of clips per licence name, for the manifest and the data card."""
    names = rows["licence_name"].fillna("(unknown)")
    urls = rows.dropna(subset=["licence_name", "licence_url"]).groupby("licence_name", sort=True)["licence_url"].first()
    return {
        "clips": int(len(rows)),
        "by_licence": {str(k): int(v) for k, v in names.value_counts().sort_index().items()},
        "urls": {str(k): str(v) for k, v in urls.items()},
        "unknown": int(rows["licence_name"].isna().sum()),
        "excluded_patterns": list(patterns),
        "curated_clips_left_out": left_out,
    }


# --------------------------------------------------------------------------- labels


def label_statistics(labels: pd.DataFrame | None) -> dict[str, Any] | None:
    """Per split and pool: sampled clips, clips with three votes, and the unanimous labels."""
    if labels is None:
        return None
    from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

    frame = labels.assign(split=labels["split"].fillna("(none)") if "split" in labels.columns else "(none)")
    out: dict[str, Any] = {}
    for (split, pool), g in frame.groupby(["split", "pool"], sort=True):
        out.setdefault(str(split), {})[str(pool)] = {
            "clips": int(len(g)),
            "three_votes": int((g["n_votes"] >= 3).sum()),
            "onscreen_only": int((g["label"] == LABEL_ONSCREEN_ONLY).sum()),
            "offscreen_only": int((g["label"] == LABEL_OFFSCREEN_ONLY).sum()),
            "unlabeled": int(g["label"].isna().sum()),
        }
    return out


# --------------------------------------------------------------------------- the data card

#: Every abbreviation and term the card uses, defined once (the "Terms" section).
TERMS: tuple[tuple[str, str], ...] = (
    ("clip", "5 s of a source video (16 kHz mono audio and 1 frame per second at 128x128), cut with a 1 s hop."),
    ("coincidence probability", "the score of an audio-visual coincidence model that a clip's audio and "
     "frames belong together; high scores suggest on-screen sound."),
    ("Df", "the filtered subset: the clips whose coincidence probability passes the selection rule below, "
     "split into train, validation and test per video."),
    ("mixture", "the audio of one clip."),
    ("MoM", "mixture of mixtures: the sum of two mixtures. The model sees the frames of the first mixture's "
     "clip only, so the second mixture is off-screen by construction."),
    ("single", "an example with one mixture and no second mixture."),
    ("NOn", "noisy on-screen: first mixture and frames from the same Df train clip (on-screen sound is "
     "likely, not certain: the label comes from the coincidence model)."),
    ("SOff", "synthetic off-screen: frames of a Df clip with the audio of a clip of another Df video, so "
     "all of its sound is off-screen."),
    ("LOn", "labeled on-screen: frames and audio of a train clip that three raters unanimously labeled "
     "\"on-screen sound only\"."),
    ("LOff", "labeled off-screen: the same for \"off-screen sound only\"."),
    ("unanimous", "all three raters of a clip chose the same answer; only such clips get a label."),
)  # fmt: skip


def shown_path(path: Any) -> str:
    """A path as the card may show it: URIs as given; local paths relative to the working folder when
    inside it, else only the last two components (an absolute path of the machine that built the release
    means nothing to its readers)."""
    import os

    if path is None or str(path) == "":
        return "(not recorded)"
    text = str(path)
    if not storage.is_local(text):
        return text.rstrip("/")
    local = uris.local_path(text)
    if not os.path.isabs(local):
        return os.path.normpath(local)
    rel = os.path.relpath(local, os.getcwd())
    if not rel.startswith(".."):
        return rel
    parts = [p for p in local.split(os.sep) if p]
    return "/".join(parts[-2:]) or local


_ABSOLUTE = re.compile(r"(?<![\w/:.])(/[\w.\-]+(?:/[\w.\-]+)+/?)")


def paths_shown(text: str) -> str:
    """``text`` with every absolute local path in it replaced by :func:`shown_path`'s form."""
    return _ABSOLUTE.sub(lambda m: shown_path(m.group(1)), str(text))


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def _cell(value: Any) -> str:
    """A table cell: floats rounded to 4 significant digits, lists joined, pipes escaped."""
    if isinstance(value, bool) or value is None:
        text = str(value).lower() if isinstance(value, bool) else "-"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_cell(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key in sorted(data):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def settings_table(data: Mapping[str, Any], header: tuple[str, str] = ("setting", "value")) -> list[str]:
    """A two-column Markdown table of (nested) settings, keys joined with dots, numbers rounded."""
    rows = _flatten(data)
    if not rows:
        return ["(none recorded)"]
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{k}` | {paths_shown(_cell(v))} |" for k, v in rows]
    return lines


def _counts_lines(counts: Mapping[str, Any]) -> list[str]:
    cols = ("total", "NOn", "SOff", "LOn", "LOff", "mom", "single")
    lines = [
        "Training examples per recipe and type (terms defined under \"Terms\"):",
        "",
        "| set | examples | NOn | SOff | LOn | LOff | MoM | single |",
        "|---|" + "---:|" * len(cols),
    ]
    for recipe, c in sorted((counts.get("train") or {}).items()):
        lines.append(f"| train/{recipe} | " + " | ".join(str(c.get(k, "")) for k in cols) + " |")
    lines += ["", "Evaluation examples per set and split:", "", "| evaluation set | validation | test |", "|---|---:|---:|"]
    ev = counts.get("eval") or {}
    for s in sorted({s for split in ev.values() for s in split}):
        lines.append(f"| {s} | {ev.get('validation', {}).get(s, 0)} | {ev.get('test', {}).get(s, 0)} |")
    return lines


def _label_lines(stats: Mapping[str, Any] | None) -> list[str]:
    if stats is None:
        return ["No human labels are part of this release (published without --labels)."]
    lines = [
        "Each sampled clip was labeled by three different raters; a clip gets a label only when all three "
        "agree (docs/recipe.md, \"annotation\").",
        "",
        "| split | pool | clips | 3 votes | on-screen only | off-screen only | unlabeled |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for split, pools in sorted(stats.items()):
        for pool, c in sorted(pools.items()):
            lines.append(
                f"| {split} | {pool} | {c['clips']} | {c['three_votes']} | {c['onscreen_only']} "
                f"| {c['offscreen_only']} | {c['unlabeled']} |"
            )
    return lines


def _model_lines(card: Mapping[str, Any] | None, model_id: str | None) -> list[str]:
    lines = [f"Coincidence model id: `{model_id}`.", ""]
    if card is None:
        return lines + ["Model card: not found (the model folder named in the scores could not be read)."]
    for key, title in (("training_data", "Training data"), ("training", "Training settings"),
                       ("validation", "Validation")):  # fmt: skip
        if isinstance(card.get(key), Mapping) and card[key]:
            lines += [f"{title} of the coincidence model:", "", *settings_table(card[key]), ""]
    return lines


def _truth_sentence(report: Mapping[str, Any]) -> str | None:
    t = report.get("truth_metrics")
    if not t:
        return None
    return (
        f"Measured against the corpus's ground truth: precision of Df {_pct(t.get('precision'))} (share of Df "
        f"clips with on-screen sound), recall {_pct(t.get('recall'))} (share of all clips with on-screen sound "
        f"that Df keeps), off-screen-only share of Df {_pct(t.get('offscreen_only_rate_df'))}."
    )


def limitations(inputs: ReleaseInputs, licences: Mapping[str, Any]) -> list[str]:
    """Known limitations, from what the inputs say about themselves."""
    out = [
        "Df is chosen by an automatic audio-visual coincidence model: some clips in it have no on-screen "
        "sound, and some off-screen-only clips get in (NOn examples are noisy by design).",
        "Uploader names and video titles are not recorded by the clip store; attribute clips through their "
        "source video (LICENSES.csv names the source and the licence).",
    ]
    report = inputs.filter_report
    if sentence := _truth_sentence(report):
        out.append(sentence)
    if inputs.labels_table is None:
        out.append("No human labels: the release has no labeled (LOn/LOff) examples from this annotation.")
    if licences.get("unknown"):
        out.append(f"{licences['unknown']} clips have no licence recorded in the inputs.")
    if licences.get("curated_clips_left_out"):
        out.append(
            f"{licences['curated_clips_left_out']} clips of the curated lists carry an excluded licence "
            f"({', '.join(licences['excluded_patterns'])}); they are listed by reference only (no media of them "
            "is in the shards) and are not in LICENSES.csv."
        )
    empty = [f"{split}/{name}" for split, sets in sorted((inputs.summary.get("counts", {}).get("eval") or {}).items())
             for name, n in sorted(sets.items()) if not n]  # fmt: skip
    if empty:
        out.append(f"Evaluation sets without examples (too few unanimous labels): {', '.join(empty)}.")
    notes = inputs.summary.get("notes") or {}
    for key, value in sorted(notes.items()) if isinstance(notes, Mapping) else ():
        if value:
            out.append(f"Mixtures note ({key}): {json.dumps(value, sort_keys=True, default=str)}")
    out += [f"Filter warning: {w}" for w in report.get("warnings", [])]
    out += [f"Publish warning: {w}" for w in inputs.warnings]
    return [paths_shown(line) for line in out]


_PUBLIC_DOMAIN = ("cc0", "publicdomain", "public domain")


def _is_public_domain(name: Any, url: Any) -> bool:
    text = f"{name or ''} {url or ''}".lower().replace(" ", "") if name or url else ""
    return any(k.replace(" ", "") in text for k in _PUBLIC_DOMAIN)


def licence_lines(licences: Mapping[str, Any]) -> list[str]:
    """What the licences present in the release ask of its users (from the licences, not assumed)."""
    by = licences.get("by_licence") or {}
    urls = licences.get("urls") or {}
    known = {k: v for k, v in by.items() if k != "(unknown)"}
    lines = ["Each clip keeps the licence of its source video. Licences present (clips per licence):", ""]
    for name, n in sorted(known.items()):
        url = urls.get(name)
        lines.append(f"- {name}{f' <{url}>' if url else ''}: {n} clips")
    if licences.get("unknown"):
        lines.append(f"- licence unknown: {licences['unknown']} clips")
    if not by:
        lines.append("- (no clips)")
    lines.append("")
    if known and all(_is_public_domain(k, urls.get(k)) for k in known):
        lines.append(
            "Every clip with a known licence is dedicated to the public domain: no attribution is required, "
            "though naming the source is good practice (`LICENSES.csv`)."
        )
    elif known:
        lines.append(
            "Some licences present require attribution (and may restrict commercial use or derivatives, as "
            "their names say): credit each clip you redistribute with its line in `LICENSES.csv` (clip, "
            "video, source, licence name and URL, an attribution sentence)."
        )
    if licences.get("excluded_patterns"):
        lines.append(
            "Licences excluded when publishing (matching, ignoring case): "
            + ", ".join(licences["excluded_patterns"]) + "."
        )
    return lines


def _is_synthetic(inputs: ReleaseInputs) -> bool:
    """Whether every source video comes from a synthetic corpus made by `audioscope synth`."""
    from audioscope.synth.truth import detect_truth

    sources = inputs.df_table["source_uri"].dropna().astype(str).tolist() if "source_uri" in inputs.df_table else []
    return bool(sources) and detect_truth(sources).path is not None


CITATION_AUDIOSCOPE = """\
@inproceedings{tzinis2021into,
  title     = {Into the Wild with {AudioScope}: Unsupervised Audio-Visual Separation of On-Screen Sounds},
  author    = {Tzinis, Efthymios and Wisdom, Scott and Jansen, Aren and Hershey, Shawn and Remez, Tal and
               Ellis, Daniel P. W. and Hershey, John R.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}"""

CITATION_YFCC100M = """\
@article{thomee2016yfcc100m,
  title   = {{YFCC100M}: The New Data in Multimedia Research},
  author  = {Thomee, Bart and Shamma, David A. and Friedland, Gerald and Elizalde, Benjamin and Ni, Karl and
             Poland, Douglas and Borth, Damian and Li, Li-Jia},
  journal = {Communications of the ACM},
  volume  = {59},
  number  = {2},
  pages   = {64--73},
  year    = {2016}
}"""


def render_readme(
    *, name: str, version: str, root: str, inputs: ReleaseInputs, group_bytes: Mapping[str, int],
    licences: Mapping[str, Any], labels: Mapping[str, Any] | None, toolkit: Mapping[str, Any],
) -> str:  # fmt: skip
    """The data card (``README.md``) of a release."""
    summary, report = inputs.summary, inputs.filter_report
    selection = report.get("inputs", {}).get("selection", {})
    splits = report.get("inputs", {}).get("splits", {})
    ratios = splits.get("ratios") or []
    kept = report.get("kept", {})
    synthetic = _is_synthetic(inputs)
    shown_root = shown_path(root)
    source_text = (
        "a synthetic corpus made by `audioscope synth` (generated videos with known on- and off-screen "
        "sources; not real-world data)" if synthetic else "the videos of the clip store (the AudioScope recipe "
        "uses Creative Commons videos of YFCC100M)"
    )
    lines = [
        f"# {name} {version}",
        "",
        "An AudioScope on-screen / off-screen sound dataset: training shards of mixtures of mixtures (MoM), "
        "evaluation sets (on-/off-screen single mixtures and MoMs), the curated clip lists they were made "
        f"from, and the per-clip licences. Source videos: {source_text}. Every file is listed with its size "
        "and SHA-256 in `manifest.json`.",
        "",
        "## Get it",
        "",
        "```",
        f"audioscope release pull {name}:{version} --root {q(shown_root)} --to DIR            # everything",
        f"audioscope release pull {name}:{version} --root {q(shown_root)} --to DIR --only eval  # evaluation sets only",
        "audioscope release verify DIR",
        "```",
        "",
        "In Python, `audioscope.curation.release.resolve(\"%s:%s\", root=%r)` returns a verified local "
        "folder; every `*.tfrecord` below `train/<recipe>/` or `eval/<split>/<set>/` is a shard of "
        "`tf.train.Example` records (schema: `audioscope.schemas.records`; since record schema 3 a shard "
        "holds each clip's media once, first, and then the examples, which refer to those clips: read it "
        "with `audioscope.models.data.load_dataset` or `audioscope.models.numpy_data.MixtureArrays`)."
        % (name, version, shown_root),
        "",
        "## Terms",
        "",
        *[f"- **{term}**: {text}" for term, text in TERMS],
        "",
        "## Contents",
        "",
        *[f"- `{g}`: {fmt_bytes(group_bytes.get(g, 0))}" for g in ("train", "eval", "curated", "meta")],
        "",
        *_counts_lines(summary.get("counts", {})),
        "",
        "Evaluation pair lists (`eval/<split>/<set>/<split>_<set>_pairs.csv`) use the published six-column "
        "format `path1,start1,end1,path2,start2,end2` (single mixtures: last three fields empty).",
        "",
        "## Intended use",
        "",
        "- Training and evaluating models that separate sounds and tell on-screen from off-screen sound "
        "(AudioScope and similar audio-visual separation models).",
        "- Comparing such models on the evaluation sets of the same release (the pair lists fix every example).",
        "- Not for identifying people, places or uploaders, nor for judging what a real-world scene sounds like"
        + (": the videos are synthetic." if synthetic else ": Df is chosen by a model and is not a random "
           "sample of the source videos."),
        "",
        "## How it was made",
        "",
        f"1. Clips: 5 s with a 1 s hop from the videos of the clip store `{shown_path(report.get('inputs', {}).get('store'))}`.",
        "2. Coincidence scores and filtering:",
        "",
        *[f"   {line}" if line else "" for line in _model_lines(inputs.model_card, inputs.model_id)],
        f"   Selection: {selection.get('description', '(not recorded)')}; kept {kept.get('clips')} clips of "
        f"{kept.get('videos')} videos.",
        f"   Splits per video: train/validation/test "
        f"{'/'.join(f'{100 * float(r):.0f}%' for r in ratios) if ratios else '(not recorded)'}, "
        f"seed {splits.get('seed')}.",
        *([f"   {s}"] if (s := _truth_sentence(report)) else []),
        "",
        f"3. Human labels: {'from the annotation folder `' + shown_path(inputs.labels) + '`' if inputs.labels else 'none'}.",
        f"4. Mixtures: seed {summary.get('config', {}).get('seed')}, made by audioscope-data "
        f"{summary.get('toolkit_version')}; their settings are the table under \"Mixture configuration\".",
        f"5. Published with audioscope-data {toolkit.get('version')} (git commit {toolkit.get('git_commit')}"
        f"{', with local changes' if toolkit.get('git_modified') else ''}).",
        "",
        "## Label statistics",
        "",
        *_label_lines(labels),
        "",
        "## Licences",
        "",
        *licence_lines(licences),
        "",
        "## Known limitations",
        "",
        *[f"- {item}" for item in limitations(inputs, licences)],
        "",
        "## Citation",
        "",
        f"Cite this release as \"{name} {version}\" with its manifest's SHA-256, and the recipe it follows:",
        "",
        "```bibtex",
        CITATION_AUDIOSCOPE,
        "```",
        *(["", "and the source collection:", "", "```bibtex", CITATION_YFCC100M, "```"] if not synthetic else []),
        "",
        "## Mixture configuration",
        "",
        *settings_table(summary.get("config", {})),
        "",
    ]  # fmt: skip
    return "\n".join(lines)
