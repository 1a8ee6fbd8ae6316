"""The data card of a release says only true things, in words a reader can check (real publish, real files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from audioscope import storage
from audioscope.curation import release
from audioscope.curation.datacard import TERMS, licence_lines, settings_table, shown_path
from audioscope.schemas.df import DfLayout
from audioscope.curation.release import PublishRequest


def _publish_card(inputs, root: str, df: str) -> str:
    req = PublishRequest(mix=inputs.mix, df=df, labels=inputs.labels, name="audioscope", version="1.0.0", root=root)
    release.publish(req, show_progress=False)
    return storage.read_text(f"{root}/audioscope/1.0.0/README.md")


def _say_mixed_from(mix: str, df: str) -> None:
    path = Path(mix, "summary.json")
    summary = json.loads(path.read_text())
    summary["inputs"]["df"] = df
    path.write_text(json.dumps(summary))


def test_card_has_no_false_warning_no_absolute_path_and_defines_its_terms(release_inputs, tmp_path, monkeypatch):
    # `audioscope mix` records the Df as an absolute path to df.parquet; the release is then made with a
    # relative --df from the run folder (as `make demo` does): the same folder, no warning.
    run = Path(release_inputs.df).parent
    _say_mixed_from(release_inputs.mix, str(Path(release_inputs.df, "df.parquet").resolve()))
    monkeypatch.chdir(run)
    card = _publish_card(release_inputs, "releases", "df")
    assert "moved or copied" not in card
    assert str(tmp_path) not in card and "/tmp/" not in card
    # every term is defined exactly once, and every abbreviation the card uses is among them
    for term, _ in TERMS:
        assert card.count(f"- **{term}**:") == 1, term
    for abbreviation in ("NOn", "SOff", "LOn", "LOff", "MoM", "Df"):
        assert abbreviation in card and any(t == abbreviation for t, _ in TERMS)
    # numbers rounded to what they mean: no float with five or more decimals anywhere
    assert not re.search(r"\d\.\d{5,}", card), re.search(r"\d\.\d{5,}", card)
    # settings as tables, not Python dicts
    assert "{'" not in card and '{"' not in card
    assert "| `seed` | 31337 |" in card  # the coincidence model's training settings
    assert "| `recipes.unsupervised.NOn` | 1 |" in card  # the mixture configuration
    for section in ("## Terms", "## Intended use", "## Known limitations", "## Citation", "## Licences"):
        assert section in card
    # the licences present (CC BY 2.0 and BY-ND 2.0, real-world sources) ask for attribution
    assert "Attribution License <https://creativecommons.org/licenses/by/2.0/>" in card
    assert "require attribution" in card and "public domain" not in card
    assert "--root releases" in card


def test_a_df_that_really_moved_is_still_reported(release_inputs, tmp_path):
    elsewhere = tmp_path / "old-run" / "df"
    _say_mixed_from(release_inputs.mix, str(elsewhere / "df.parquet"))
    card = _publish_card(release_inputs, str(tmp_path / "releases"), release_inputs.df)
    assert "the mixtures were made from the Df old-run/df, not inputs/df (moved or copied?)" in card
    assert str(tmp_path) not in card


def test_same_as_compares_folders_not_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "df").mkdir()
    layout = DfLayout.of("df")
    assert layout.same_as(str(tmp_path / "df" / "df.parquet"))
    assert layout.same_as(str(tmp_path / "df") + "/")
    assert layout.same_as("./df/df.parquet")
    assert not layout.same_as(str(tmp_path / "other"))
    assert DfLayout.of("gs://b/run/df/").same_as("gs://b/run/df/df.parquet")
    assert not DfLayout.of("gs://b/run/df").same_as("gs://b/other/df")


def test_shown_path_never_shows_a_foreign_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown_path(str(tmp_path / "demo-output" / "df")) == "demo-output/df"
    assert shown_path("/somewhere/else/clipstore") == "else/clipstore"
    assert shown_path("gs://bucket/releases/") == "gs://bucket/releases"
    assert shown_path("demo-output/releases") == "demo-output/releases"
    assert shown_path(None) == "(not recorded)"


def test_licence_text_comes_from_the_licences_present():
    cc0 = {"by_licence": {"CC0 1.0": 40}, "urls": {"CC0 1.0": "https://creativecommons.org/publicdomain/zero/1.0/"}}
    text = "\n".join(licence_lines(cc0))
    assert "public domain" in text and "YFCC100M" not in text and "attribution is required" not in text.replace(
        "no attribution is required", ""
    )
    mixed = {"by_licence": {"CC0 1.0": 4, "Attribution License": 3, "(unknown)": 1}, "unknown": 1,
             "urls": {"Attribution License": "https://creativecommons.org/licenses/by/2.0/"}}  # fmt: skip
    text = "\n".join(licence_lines(mixed))
    assert "require attribution" in text and "licence unknown: 1 clips" in text


def test_settings_table_rounds_and_flattens():
    lines = settings_table({"lr": 0.0001234567, "schedule": {"warmup": 100, "decay": 0.999912}, "ok": True})
    table = "\n".join(lines)
    assert "| `lr` | 0.0001235 |" in table
    assert "| `schedule.decay` | 0.9999 |" in table and "| `schedule.warmup` | 100 |" in table
    assert "| `ok` | true |" in table


def test_warnings_in_the_card_carry_no_absolute_path(release_inputs, tmp_path):
    path = Path(release_inputs.mix, "summary.json")
    summary = json.loads(path.read_text())
    summary["inputs"]["labels"] = str(tmp_path / "old-run" / "annotation" / "labels.parquet")
    path.write_text(json.dumps(summary))
    req = PublishRequest(mix=release_inputs.mix, df=release_inputs.df, labels=None, name="audioscope",
                         version="1.0.0", root=str(tmp_path / "releases"))  # fmt: skip
    release.publish(req, show_progress=False)
    card = storage.read_text(f"{tmp_path}/releases/audioscope/1.0.0/README.md")
    assert "the mixtures used labels from annotation/labels.parquet but --labels was not given" in card
    assert str(tmp_path) not in card


def test_paths_shown_keeps_uris_and_relative_paths(tmp_path, monkeypatch):
    from audioscope.curation.datacard import paths_shown

    monkeypatch.chdir(tmp_path)
    text = f"from {tmp_path}/run/df and /data/x/y.parquet, see https://example.org/a/b, gs://b/c/d and train/validation"
    assert paths_shown(text) == "from run/df and x/y.parquet, see https://example.org/a/b, gs://b/c/d and train/validation"


def test_settings_tables_show_no_absolute_path() -> None:
    from audioscope.curation.datacard import settings_table

    table = "\n".join(settings_table({"store": "/srv/data/run/clipstore", "source": "gs://bucket/store", "steps": 3}))
    assert "/srv/data" not in table
    assert "| `store` | run/clipstore |" in table and "gs://bucket/store" in table and "| `steps` | 3 |" in table
