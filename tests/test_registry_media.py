"""`make media` (python -m tests.registry_media): what it says about the cache, and that looking never fetches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import registry_media as media_module

ROOT = Path(__file__).resolve().parents[1]


def _check(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, media_module.MEDIA_CACHE_ENV: str(cache)}
    return subprocess.run([sys.executable, "-m", "tests.registry_media", "--check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_check_lists_what_is_missing_and_fails_without_fetching(tmp_path):
    done = _check(tmp_path / "cache")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == len(media_module.ALL) and all(line.startswith("missing  ") for line in lines)
    assert all("run `make media`" in line for line in lines)
    assert not (tmp_path / "cache").exists()


def test_a_cached_file_must_have_the_pinned_hash(tmp_path, monkeypatch):
    monkeypatch.setenv(media_module.MEDIA_CACHE_ENV, str(tmp_path))
    media = media_module.SPEECH
    media.path.parent.mkdir(parents=True)
    media.path.write_bytes(b"RIFF not the recording")
    assert media_module.cached(media) is None  # a changed or truncated file is not taken


@pytest.mark.integration
def test_check_passes_once_everything_is_fetched(registry_media, tmp_path):
    cache = tmp_path / "cache"
    for media in media_module.ALL:  # the session's cache, copied: no second download
        src = registry_media(media)
        dest = cache / media.path.relative_to(media_module.media_cache_dir())
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    done = _check(cache)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["cached"] * len(media_module.ALL)
