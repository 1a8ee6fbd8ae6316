"""Croissant 1.1 metadata of a release (``croissant.json``), generated from its manifest.

Croissant (mlcommons.org/croissant) is the JSON-LD description of machine
learning datasets that dataset tracks and hubs expect. The release's
``croissant.json`` holds:

* the dataset: name, version, date, the licences of its clips (URLs), how to
  cite it, and the Responsible-AI fields that apply (``rai:``): how the data
  was collected and processed, the annotation protocol and platform, known
  limitations and biases, personal information, intended use, maintenance;
* the distribution: every table and list as a ``FileObject`` with its SHA-256
  from the manifest, and the shards as ``FileSet``\\ s (``train/**/*.tfrecord``,
  ``eval/**/*.tfrecord``, the pair lists);
* record sets: ``examples`` (one record per example of every shard, from
  ``examples.parquet``: shard, index, split, set, type, clip ids, label,
  licences) and ``licences`` (one per clip, from ``LICENSES.csv``).

An evaluation set is the records of ``examples`` with its ``split`` and
``subset`` (``test`` / ``onscreen_mom``). Audio and frames stay in the
TFRecord shards (Croissant readers do not decode TFRecords); use
``audioscope.models.data.load_dataset`` (TensorFlow) or the files listed by
:func:`audioscope.curation.manifest.release_files` for them.

Standard library only.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from audioscope.curation.manifest import FileEntry, Manifest

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

#: The AudioScope paper, which the dataset's recipe follows.
CITATION = (
    "@inproceedings{tzinis2021audioscope,\n"
    "  title={Into the Wild with AudioScope: Unsupervised Audio-Visual Separation of On-Screen Sounds},\n"
    "  author={Tzinis, Efthymios and Wisdom, Scott and Jansen, Aren and Hershey, Shawn and Remez, Tal and "
    "Ellis, Daniel P. W. and Hershey, John R.},\n"
    "  booktitle={International Conference on Learning Representations (ICLR)},\n"
    "  year={2021}\n}"
)

_FORMATS = {
    ".parquet": "application/x-parquet", ".csv": "text/csv", ".json": "application/json",
    ".md": "text/markdown", ".png": "image/png", ".tfrecord": "application/x-tfrecord",
}  # fmt: skip

#: Columns of examples.parquet described by the ``examples`` record set: (column, Croissant type, description).
EXAMPLE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("shard", "sc:Text", "the TFRecord shard holding the example (release-relative path)"),
    ("index", "sc:Integer", "position of the example among its shard's examples (0-based; the clip records "
     "at the head of a packed shard are not counted)"),
    ("split", "sc:Text", "train, validation or test"),
    ("subset", "sc:Text", "the training recipe or the evaluation set (onscreen_single, offscreen_mom, ...)"),
    ("type", "sc:Text", "example type: NOn, SOff, LOn, LOff for training; the set name for evaluation"),
    ("is_mom", "sc:Boolean", "true for a mixture of mixtures (a second clip's audio added)"),
    ("frames_clip_id", "sc:Text", "clip whose video frames the example carries"),
    ("clip_id1", "sc:Text", "clip of the first mixture's audio (VIDEO_ID-MILLISECONDS)"),
    ("video_id1", "sc:Text", "source video of clip_id1"),
    ("clip_id2", "sc:Text", "clip of the second mixture's audio (empty when not a mixture of mixtures)"),
    ("label1", "sc:Text", "unanimous human label of clip_id1 (onscreen_only, offscreen_only) when labelled"),
    ("licence_name1", "sc:Text", "licence of clip_id1's video"),
    ("licence_url1", "sc:URL", "licence URL of clip_id1's video"),
)
LICENCE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("clip_id", "sc:Text", "clip (VIDEO_ID-MILLISECONDS)"),
    ("video_id", "sc:Text", "source video"),
    ("licence_name", "sc:Text", "licence of the source video"),
    ("licence_url", "sc:URL", "licence URL of the source video"),
    ("attribution", "sc:Text", "how to attribute the clip"),
)


def _file_id(path: str) -> str:
    return "file/" + path


def _file_object(e: FileEntry, description: str) -> dict[str, Any]:
    ext = "." + e.path.rsplit(".", 1)[-1] if "." in e.path else ""
    return {
        "@type": "cr:FileObject", "@id": _file_id(e.path), "name": e.path, "description": description,
        "contentUrl": e.path, "contentSize": f"{e.size} B",
        "encodingFormat": _FORMATS.get(ext, "application/octet-stream"), "sha256": e.sha256,
    }  # fmt: skip


def _fields(record_set: str, file_id: str, fields: Sequence[tuple[str, str, str]], have: set[str]) -> list[dict]:
    return [
        {
            "@type": "cr:Field", "@id": f"{record_set}/{col}", "name": col, "description": text, "dataType": kind,
            "source": {"fileObject": {"@id": file_id}, "extract": {"column": col}},
        }  # fmt: skip
        for col, kind, text in fields
        if col in have
    ]


def _annotation_text(configs: Mapping[str, Any], labels: Mapping[str, Any] | None) -> str:
    ann = configs.get("annotation") or {}
    cfg = ann.get("config") if isinstance(ann, Mapping) else None
    raters = (cfg or {}).get("raters") if isinstance(cfg, Mapping) else None
    text = (
        "Clips sampled into pools per split (filtered: from the Df; unfiltered: from all clips) are shown as "
        "5-second videos to human raters in Label Studio, who answer whether sound comes from something "
        "on screen and whether sound comes from something off screen; "
        f"{raters or 'several'} raters per clip. A clip is labelled onscreen_only or offscreen_only only when "
        "all raters agree; evaluation sets use only those unanimous clips."
    )
    if labels is None:
        text += " This release carries no human labels."
    return text


def build(manifest: Manifest, *, limitations: Sequence[str] = (), description: str = "") -> dict[str, Any]:
    """The Croissant JSON-LD document of the release ``manifest`` describes (see the module docstring)."""
    files = manifest.by_path()
    configs = manifest.configs or {}
    lic = manifest.licences or {}
    distribution: list[dict[str, Any]] = []
    described = {
        "README.md": "the data card", "LICENSES.csv": "licence and attribution of every clip",
        "summary.json": "what `audioscope mix` made: config, inputs, counts, shards",
        "examples.parquet": "one row per example of every shard",
    }  # fmt: skip
    for path, text in described.items():
        if path in files:
            distribution.append(_file_object(files[path], text))
    for path, e in sorted(files.items()):
        if path.startswith("curated/"):
            distribution.append(_file_object(e, "curated list: " + path.split("/", 2)[1]))
    sets = (
        ("train-shards", "train/**/*.tfrecord", "training mixtures (TFRecord of tf.train.Example records: each "
         "clip's media once, then the examples referring to them; audioscope.schemas.records)"),
        ("eval-shards", "eval/**/*.tfrecord", "evaluation sets (TFRecord, packed as the training shards)"),
        ("eval-pairs", "eval/**/*_pairs.csv", "evaluation pair lists: path,start,end of each clip of an example"),
    )
    for set_id, pattern, text in sets:
        head = pattern.split("/", 1)[0] + "/"
        suffix = pattern.rsplit("*", 1)[-1]
        if any(p.startswith(head) and p.endswith(suffix) for p in files):
            fmt = _FORMATS[".tfrecord"] if suffix.endswith(".tfrecord") else "text/csv"
            distribution.append({
                "@type": "cr:FileSet", "@id": set_id, "name": set_id, "description": text,
                "encodingFormat": fmt, "includes": pattern,
            })  # fmt: skip
    record_sets = []
    if "examples.parquet" in files:
        have = {c for c, _, _ in EXAMPLE_FIELDS}
        record_sets.append({
            "@type": "cr:RecordSet", "@id": "examples", "name": "examples",
            "description": "every example of the release; an evaluation set is the records with its split and "
            "subset (e.g. split=test, subset=onscreen_mom); audio and frames are in the shard named by `shard`",
            "field": _fields("examples", _file_id("examples.parquet"), EXAMPLE_FIELDS, have),
        })  # fmt: skip
    if "LICENSES.csv" in files:
        record_sets.append({
            "@type": "cr:RecordSet", "@id": "licences", "name": "licences",
            "description": "licence and attribution of every clip the release refers to",
            "field": _fields("licences", _file_id("LICENSES.csv"), LICENCE_FIELDS, {c for c, _, _ in LICENCE_FIELDS}),
        })  # fmt: skip
    filt = configs.get("filter") or {}
    selection = filt.get("selection") if isinstance(filt, Mapping) else None
    mix = configs.get("mix") or {}
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": manifest.name,
        "description": description
        or "AudioScope on-screen / off-screen sound dataset: 5-second video clips, mixtures of their audio "
        "(and mixtures of mixtures) for training and evaluating audio-visual separation of on-screen sounds.",
        "version": manifest.version,
        "datePublished": manifest.created,
        "url": "README.md",
        "citeAs": CITATION,
        "license": sorted(set((lic.get("urls") or {}).values())) or ["https://creativecommons.org/licenses/"],
        "keywords": ["audio-visual", "sound separation", "on-screen sound", "YFCC100M", "AudioScope"],
        "isLiveDataset": False,
        "rai:dataCollection": (
            "Clips of 5 s cut from source videos by `audioscope ingest` (each clip's source video and licence "
            "are in LICENSES.csv); scored by an audio-visual coincidence model "
            f"({(manifest.models.get('coincidence') or {}).get('model_id') or 'unrecorded'}); the clips whose "
            "score passes the threshold form the filtered list Df; training and evaluation mixtures are made "
            "from Df and from human-labelled clips."
        ),
        "rai:dataCollectionType": ["Secondary Data Analysis", "Manual Human Curation"],
        "rai:dataPreprocessingProtocol": [
            f"filter selection: {json.dumps(selection, sort_keys=True) if selection else 'see manifest.json'}",
            f"mixing: seed {mix.get('seed', '?')}, recipes {json.dumps(mix.get('recipes', {}), sort_keys=True)}",
            "audio 16 kHz mono int16, 5 frames of 128x128 RGB per clip (see the data card)",
        ],
        "rai:dataAnnotationProtocol": _annotation_text(configs, manifest.labels),
        "rai:dataAnnotationPlatform": "Label Studio",
        "rai:dataLimitations": list(limitations) or ["see the Known limitations section of README.md"],
        "rai:dataBiases": (
            "The Df list is chosen by a model trained on the same kind of video: sources it scores low (quiet, "
            "off-screen-heavy, rare sound classes) are under-represented; the video collection reflects who "
            "uploads Creative-Commons video to the source site."
        ),
        "rai:personalSensitiveInformation": (
            "User-uploaded videos can show faces and carry voices of people; no names, uploader accounts or "
            "titles are recorded; each clip is attributed through its source video as its licence requires."
        ),
        "rai:dataUseCases": (
            "Training and evaluating on-screen / off-screen sound separation and audio-visual coincidence "
            "models (research). Not for identifying people."
        ),
        "rai:dataReleaseMaintenancePlan": (
            "Versions are immutable (a published version is never overwritten); changes come as new "
            "semantic versions in the same release root; `audioscope release diff` lists what changed."
        ),
        "distribution": distribution,
        "recordSet": record_sets,
    }
    return doc


def to_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")
