"""Tables from outside that are not what they claim: one line naming the file, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioscope import cli
from audioscope.errors import UserError
from audioscope.schemas.annotations import AnnotationLayout


@pytest.mark.parametrize("content", [b"not parquet\n", b"", b"PAR1"])
def test_filter_with_scores_that_are_not_parquet_says_which_file(tmp_path: Path, capsys, content: bytes) -> None:
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "scores.parquet").write_bytes(content)
    (scores / "scores.json").write_text("{}")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = cli.main(["filter", "--scores", str(scores), "--store", str(tmp_path / "store"), "--out", str(tmp_path / "df")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "audioscope filter: error:" in err
    # nothing was written (the reader's own message is checked below)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_scores_that_are_not_parquet_are_named_by_the_reader(tmp_path: Path) -> None:
    from audioscope.curation.filter import load_scores

    (tmp_path / "scores.parquet").write_bytes(b"garbage" * 10)
    with pytest.raises(UserError) as e:
        load_scores(str(tmp_path))
    assert str(tmp_path / "scores.parquet") in str(e.value) and "audioscope score" in str(e.value)


@pytest.mark.parametrize("content", [b"x", b"not a parquet file at all\n"])
def test_pools_that_are_not_parquet_are_named(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "pools.parquet").write_bytes(content)
    with pytest.raises(UserError) as e:
        AnnotationLayout(str(tmp_path)).read_pools()
    message = str(e.value)
    assert str(tmp_path / "pools.parquet") in message and "annotate sample" in message
