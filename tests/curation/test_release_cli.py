"""`audioscope release publish|list|pull|verify|diff` as a user runs them (local release root)."""

from __future__ import annotations

import json
from pathlib import Path

from audioscope import cli
from tests.curation.release_inputs import flip_byte

TRAIN_SHARD = "train/unsupervised/unsupervised-00000-of-00001.tfrecord"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["release", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _publish_args(inputs, root: str, version: str) -> list[str]:
    return ["publish", "--mix", inputs.mix, "--df", inputs.df, "--labels", inputs.labels, "--name", "audioscope",
            "--version", version, "--root", root]  # fmt: skip


def test_release_commands_end_to_end(release_inputs, tmp_path, capsys):
    root = str(tmp_path / "releases")
    rc, out, err = _run(capsys, *_publish_args(release_inputs, root, "1.0.0"))
    assert rc == 0, err
    assert "Release published" in out and "audioscope:1.0.0" in out and f"{root}/audioscope/1.0.0" in out
    assert "manifest sha256" in out

    rc, _, err = _run(capsys, *_publish_args(release_inputs, root, "1.0.0"))
    assert rc == 2 and "never overwritten: bump the version" in err and "Traceback" not in err

    summary = Path(release_inputs.mix, "summary.json")
    summary.write_text(summary.read_text().replace('"seed": 7', '"seed": 9'))
    assert _run(capsys, *_publish_args(release_inputs, root, "1.1.0"))[0] == 0

    rc, out, _ = _run(capsys, "list", "--root", root)
    lines = [line for line in out.splitlines() if line.startswith("audioscope:")]
    assert rc == 0 and [line.split()[0] for line in lines] == ["audioscope:1.0.0", "audioscope:1.1.0"]
    assert lines[0].split()[-3:-1] == ["3", "8"]  # train and eval examples
    rc, out, _ = _run(capsys, "list", "audioscope", "--root", root, "--json")
    assert [v["version"] for v in json.loads(out)["audioscope"]["versions"]] == ["1.0.0", "1.1.0"]

    dest = tmp_path / "eval"
    rc, out, err = _run(capsys, "pull", "audioscope:1.1.0", "--root", root, "--to", str(dest), "--only", "eval")
    assert rc == 0, err
    assert "parts" in out and "eval" in out and "transferred" in out
    assert not (dest / "train").exists() and (dest / "eval" / "test" / "offscreen_mom").is_dir()

    rc, out, _ = _run(capsys, "verify", str(dest))
    assert rc == 0 and "Verification passed" in out

    full = tmp_path / "full"
    assert _run(capsys, "pull", "audioscope:1.1.0", "--root", root, "--to", str(full))[0] == 0
    flip_byte(full / TRAIN_SHARD)
    rc, out, err = _run(capsys, "verify", str(full))
    assert rc == 1 and f"BAD {TRAIN_SHARD}: SHA-256 differs" in out and "Verification FAILED" in out
    assert "pull the release again" in err

    rc, out, _ = _run(capsys, "diff", "audioscope:1.0.0", "audioscope:1.1.0", "--root", root)
    assert rc == 0
    assert "files: 0 added, 0 removed, 2 changed" in out  # summary.json and the data card
    assert "configs.mix.seed: 7 -> 9" in out


def test_release_commands_refuse_bad_input_with_what_to_do(release_inputs, tmp_path, capsys):
    root = str(tmp_path / "releases")
    rc, _, err = _run(capsys, *_publish_args(release_inputs, root, "v1"))
    assert rc == 2 and "not a semantic version" in err
    rc, _, err = _run(capsys, "pull", "audioscope:1.0.0", "--root", root, "--to", str(tmp_path / "x"))
    assert rc == 2 and "not published" in err and "audioscope release list" in err
    rc, _, err = _run(
        capsys, "pull", "audioscope:1.0.0", "--root", root, "--to", str(tmp_path / "x"), "--only", "video"
    )
    assert rc == 2 and "--only takes train, eval, curated" in err
    rc, _, err = _run(capsys, "verify", str(tmp_path))
    assert rc == 2 and "not a release copy" in err
    rc, out, _ = _run(capsys)
    assert rc == 2 and "publish" in out and "verify" in out
