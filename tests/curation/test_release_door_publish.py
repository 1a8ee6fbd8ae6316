"""Door: `release publish` refuses what it cannot stand behind (an empty Df, 0 examples, mixtures made
from another Df unless --allow-mismatch, which the manifest records), in one line without a traceback,
and leaves the release root as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audioscope import cli
from audioscope.curation import release
from audioscope.errors import UserError
from tests.curation.hostile import snapshot


def _req(inputs, root: str, **kw) -> release.PublishRequest:
    return release.PublishRequest(
        mix=inputs.mix, df=inputs.df, labels=inputs.labels, name="audioscope", version="1.0.0", root=root, **kw
    )


def _cli(inputs, root: str, *extra: str) -> list[str]:
    return ["release", "publish", "--mix", inputs.mix, "--df", inputs.df, "--labels", inputs.labels, "--name",
            "audioscope", "--version", "1.0.0", "--root", root, *extra]  # fmt: skip


def _keep_df_rows(inputs, keep) -> None:
    path = Path(inputs.df, "df.parquet")
    table = pq.read_table(path)
    mask = [keep(c) for c in table.column("clip_id").to_pylist()]
    import pyarrow as pa

    pq.write_table(table.filter(pa.array(mask)), path)


def _refused(inputs, tmp_path, capsys, message: str, *extra: str) -> None:
    root = tmp_path / "releases"
    root.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=message):
        release.publish(_req(inputs, str(root), allow_mismatch="--allow-mismatch" in extra), show_progress=False)
    rc = cli.main(_cli(inputs, str(root), *extra))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message.split(".*")[0] in err
    assert snapshot(tmp_path) == before  # no version, no staging folder, inputs untouched


def test_an_empty_df_is_refused(release_inputs, tmp_path, capsys):
    _keep_df_rows(release_inputs, lambda c: False)
    _refused(release_inputs, tmp_path, capsys, "holds no clips: there is nothing to release")


def test_a_release_of_no_examples_is_refused(release_inputs, tmp_path, capsys):
    path = Path(release_inputs.mix, "summary.json")
    summary = json.loads(path.read_text())
    for s in summary["shards"]:
        s["examples"] = 0
    path.write_text(json.dumps(summary))
    _refused(release_inputs, tmp_path, capsys, "hold 0 examples")


def test_mixtures_from_another_df_are_refused_unless_allowed_and_then_recorded(release_inputs, tmp_path, capsys):
    _keep_df_rows(release_inputs, lambda c: not c.startswith("vidB-"))  # NOn and SOff use vidB clips
    _refused(release_inputs, tmp_path, capsys, "were not made from the Df .*vidB-0000000.*--allow-mismatch")
    root = str(tmp_path / "releases")
    result = release.publish(_req(release_inputs, root, allow_mismatch=True), show_progress=False)
    check = result.manifest.configs["df_check"]
    assert check["mismatch"] and check["allowed"] and check["clips_not_in_df"] == 2
    assert check["examples_not_in_df"] == ["vidB-0000000", "vidB-0001000"]
    assert any("--allow-mismatch" in w for w in result.warnings)


def test_a_matching_df_is_recorded_as_checked(release_inputs, tmp_path):
    result = release.publish(_req(release_inputs, str(tmp_path / "releases")), show_progress=False)
    check = result.manifest.configs["df_check"]
    assert check["mismatch"] is False and check["allowed"] is False and check["clips_checked"] >= 4


def test_a_df_that_is_not_parquet_is_refused_in_one_line(release_inputs, tmp_path, capsys):
    Path(release_inputs.df, "df.parquet").write_bytes(b"this is not a parquet file at all")
    root = tmp_path / "releases"
    root.mkdir()
    before = snapshot(tmp_path)
    rc = cli.main(_cli(release_inputs, str(root)))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "df.parquet" in err, err
    assert snapshot(tmp_path) == before
