"""A pulled release feeds the TensorFlow loader, and a damaged copy is refused before it is read."""

from __future__ import annotations

import numpy as np
import pytest

from audioscope.curation import release
from audioscope.curation.manifest import VerificationError
from tests.curation.release_inputs import PLANNED, flip_byte, publish_inputs

EVAL_SHARD = "eval/test/onscreen_mom/onscreen_mom-00000-of-00001.tfrecord"


@pytest.fixture()
def root(release_inputs_template, tmp_path) -> str:
    root = str(tmp_path / "releases")
    publish_inputs(release_inputs_template, root)
    return root


def test_a_release_path_resolves_to_verified_shards_the_loader_reads(root, tmp_path):
    from audioscope.models.data import load_dataset

    dest = str(tmp_path / "copy")
    path = release.resolve_source("audioscope:1.0.0/eval/test", root=root, dest=dest)
    assert path == f"{dest}/eval/test"
    examples = list(load_dataset(path).as_numpy_iterator())
    planned = sorted((p[4], p[1]) for p in PLANNED if p[0].startswith("eval/test/"))
    assert sorted((e["clip_id1"].decode(), e["type"].decode()) for e in examples) == planned
    for e in examples:
        assert e["frames"].shape == (5, 128, 128, 3) and e["frames"].dtype == np.uint8
        np.testing.assert_array_equal(e["mixture"], e["audio1"] + e["audio2"])
    assert release.resolve_source(path) == path  # a local path in a release copy: verified, then read as is


def test_a_flipped_byte_is_refused_before_the_loader_reads_it(root, tmp_path):
    dest = str(tmp_path / "copy")
    path = release.resolve_source("audioscope:1.0.0/eval", root=root, dest=dest)
    flip_byte(f"{dest}/{EVAL_SHARD}", offset=5000)
    with pytest.raises(VerificationError, match=EVAL_SHARD):
        release.resolve_source("audioscope:1.0.0/eval/test", root=root, dest=dest)
    with pytest.raises(VerificationError, match=EVAL_SHARD):
        release.resolve_source(f"{path}/test/onscreen_mom")
    assert release.resolve_source(f"{path}/validation") == f"{path}/validation"  # other sets are intact


def test_load_dataset_takes_a_release_name_and_refuses_a_damaged_copy(root, tmp_path):
    import inspect

    from audioscope.models.data import load_dataset

    if "release_root" not in inspect.signature(load_dataset).parameters:
        pytest.skip("load_dataset does not take release_root yet (wiring: see resolve_source)")
    dest = str(tmp_path / "copy")
    ds = load_dataset("audioscope:1.0.0/eval/validation", release_root=root, release_dir=dest)
    assert sum(1 for _ in ds) == sum(1 for p in PLANNED if p[0].startswith("eval/validation/"))
    flip_byte(f"{dest}/eval/validation/onscreen_mom/onscreen_mom-00000-of-00001.tfrecord", offset=5000)
    with pytest.raises(VerificationError, match="onscreen_mom-00000-of-00001.tfrecord"):
        load_dataset("audioscope:1.0.0/eval/validation", release_root=root, release_dir=dest)
    with pytest.raises(VerificationError, match="onscreen_mom-00000-of-00001.tfrecord"):
        load_dataset(f"{dest}/eval/validation/onscreen_mom")
