"""Shared test configuration."""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    if shutil.which("ffmpeg") is None:  # `make test` installs it; a bare pytest may not have it
        skip = pytest.mark.skip(reason="ffmpeg not installed: run `make test`, which installs it")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)
