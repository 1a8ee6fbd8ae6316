"""Every release carries croissant.json (Croissant 1.1 with its Responsible-AI fields), generated from
the manifest and listed in it; mlcroissant validates it with no error and no warning, and the records
of an evaluation set read through Croissant are the examples our loader gives."""

from __future__ import annotations

import json
import logging

import pytest

from audioscope.curation import release
from audioscope.curation.manifest import check_dir
from tests.curation.release_inputs import PLANNED, publish_inputs

mlc = pytest.importorskip("mlcroissant")


@pytest.fixture()
def copy(release_inputs_template, tmp_path) -> str:
    root = str(tmp_path / "releases")
    publish_inputs(release_inputs_template, root)
    dest = str(tmp_path / "copy")
    release.pull("audioscope:1.0.0", root=root, dest=dest, show_progress=False)
    return dest


def test_croissant_is_listed_in_the_manifest_and_carries_the_rai_fields(copy):
    manifest = json.loads(open(f"{copy}/manifest.json").read())
    assert "croissant.json" in {f["path"] for f in manifest["files"]}
    assert check_dir(copy).ok
    doc = json.loads(open(f"{copy}/croissant.json").read())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["name"] == "audioscope" and doc["version"] == "1.0.0"
    assert doc["license"] == [
        "https://creativecommons.org/licenses/by-nd/2.0/", "https://creativecommons.org/licenses/by/2.0/"
    ]  # the licences present, as URLs
    for key in ("rai:dataCollection", "rai:dataAnnotationProtocol", "rai:dataLimitations",
                "rai:dataPreprocessingProtocol", "rai:personalSensitiveInformation", "citeAs"):  # fmt: skip
        assert doc[key], key
    assert "3 raters per clip" in doc["rai:dataAnnotationProtocol"]
    by_id = {d["@id"]: d for d in doc["distribution"]}
    files = {f["path"]: f for f in manifest["files"]}
    assert by_id["file/examples.parquet"]["sha256"] == files["examples.parquet"]["sha256"]
    assert by_id["eval-shards"]["includes"] == "eval/**/*.tfrecord"


def test_mlcroissant_validates_it_and_reads_the_evaluation_sets_our_loader_reads(copy, caplog):
    from audioscope.models.data import load_dataset

    with caplog.at_level(logging.WARNING):
        ds = mlc.Dataset(jsonld=f"{copy}/croissant.json")
    issues = ds.metadata.ctx.issues
    assert not issues.errors, issues.report()
    assert not issues.warnings, issues.report()
    assert not [r for r in caplog.records if "croissant" in r.getMessage().lower() or "@context" in r.getMessage()]

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    records = [{k.split("/", 1)[1]: text(v) for k, v in r.items()} for r in ds.records("examples")]
    assert len(records) == len(PLANNED)
    for split in ("validation", "test"):
        via_croissant = sorted(
            (r["subset"], r["clip_id1"], r["clip_id2"] or "", r["type"]) for r in records if r["split"] == split
        )
        ours = sorted(
            (e["type"].decode(), e["clip_id1"].decode(), e["clip_id2"].decode(), e["type"].decode())
            for e in load_dataset(f"{copy}/eval/{split}").as_numpy_iterator()
        )
        assert via_croissant == ours and len(ours) == 4
    lic = list(ds.records("licences"))
    assert len(lic) == 32
