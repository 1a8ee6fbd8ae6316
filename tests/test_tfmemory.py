"""audioscope.tfmemory: every command asks TensorFlow for its pooling CPU allocator."""

from __future__ import annotations

import os

from audioscope import cli, tfmemory


def test_configure_sets_the_pooling_allocator_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    tfmemory.configure()
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "false")  # the user's choice is kept
    tfmemory.configure()
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "false"


def test_every_command_sets_it_before_running(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    seen = []
    monkeypatch.setattr(cli.quiet, "configure", lambda verbose=0: seen.append(os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")))
    assert cli.main(["clips", "list", "--store", str(tmp_path / "no-store")]) != 0  # a command that fails at once
    assert seen == ["true"]  # set before the command (and before quiet's settings)
