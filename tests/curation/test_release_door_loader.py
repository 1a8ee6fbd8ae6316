"""Door: the TensorFlow loader on a release copy that changed after it was pulled. A flipped byte
with its timestamps restored is refused before tf.data reads it, as our error naming the file (not a
DataLossError from deep inside TensorFlow that names none), and nothing in the copy is changed."""

from __future__ import annotations

import os

import pytest

from audioscope.curation import release
from audioscope.curation.manifest import VerificationError
from tests.curation.hostile import snapshot
from tests.curation.release_inputs import PLANNED, publish_inputs

SHARD = "eval/validation/onscreen_mom/onscreen_mom-00000-of-00001.tfrecord"
PAIRS = "eval/validation/onscreen_mom/validation_onscreen_mom_pairs.csv"


@pytest.fixture()
def copy(release_inputs_template, tmp_path) -> str:
    root = str(tmp_path / "releases")
    publish_inputs(release_inputs_template, root)
    dest = str(tmp_path / "copy")
    release.pull("audioscope:1.0.0", root=root, dest=dest, only="eval", show_progress=False)
    return dest


def _flip_keeping_times(path: str, offset: int) -> None:
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("rel", [SHARD, PAIRS])
def test_the_loader_refuses_a_flipped_byte_whatever_its_mtime(copy, rel):
    from audioscope.models.data import load_dataset

    folder = f"{copy}/eval/validation"
    assert sum(1 for _ in load_dataset(folder)) == sum(1 for p in PLANNED if p[0].startswith("eval/validation/"))
    _flip_keeping_times(f"{copy}/{rel}", offset=min(5000, os.path.getsize(f"{copy}/{rel}") - 1))
    before = snapshot(copy)
    with pytest.raises(VerificationError, match=rel.replace(".", r"\.")):
        load_dataset(folder)
    assert snapshot(copy) == before  # refused, not "repaired" or touched
