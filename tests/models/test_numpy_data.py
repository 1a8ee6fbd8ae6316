"""audioscope.models.numpy_data: the loader without TensorFlow, against the TF loader on the same shards."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioscope.models.numpy_data import FIELDS, MixtureArrays
from audioscope.schemas import records
from audioscope.schemas.records import RecordError

from ..schemas.test_records import make_record, v1_example
from .test_data import write_shards

#: A subprocess where `import tensorflow` fails, as on a machine without it.
NO_TF = """
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("No module named 'tensorflow' (blocked by the test)")
sys.meta_path.insert(0, NoTensorFlow())
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("npshards")
    written = write_shards(root, {"train/r/r-00000-of-00002.tfrecord": 5, "train/r/r-00001-of-00002.tfrecord": 4})
    v1 = root / "old" / "o-00000-of-00001.tfrecord"
    records.write_tfrecord(str(v1), [v1_example(make_record(40 + i)) for i in range(2)])
    return root, written


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b) == set(FIELDS)
    for name in FIELDS:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, y.dtype, x.shape, y.shape)
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_the_same_examples_and_fields_as_the_tensorflow_loader(shards):
    from audioscope.models.data import load_dataset

    root, _ = shards
    for source, kw in ((str(root / "train"), {}), (str(root / "train"), {"batch_size": 4}), (str(root / "old"), {})):
        tf_side = list(load_dataset(source, **kw).as_numpy_iterator())
        np_side = list(MixtureArrays(source, **kw))
        assert len(tf_side) == len(np_side) > 0
        for a, b in zip(tf_side, np_side):
            assert_same(a, b)


def test_it_runs_without_tensorflow_and_gives_the_same_examples(shards, tmp_path):
    from audioscope.models.data import load_dataset

    root, _ = shards
    out = tmp_path / "examples.pkl"
    code = NO_TF + f"""
import pickle
from audioscope.models.numpy_data import MixtureArrays
examples = list(MixtureArrays({str(root / "train")!r}, batch_size=3, threads=2))
assert "tensorflow" not in sys.modules
try:
    import tensorflow
    raise SystemExit("tensorflow imported")
except ModuleNotFoundError:
    pass
pickle.dump(examples, open({str(out)!r}, "wb"))
"""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    examples = pickle.loads(out.read_bytes())
    expected = list(load_dataset(str(root / "train"), batch_size=3).as_numpy_iterator())
    assert len(examples) == len(expected) == 3
    for a, b in zip(expected, examples):
        assert_same(a, b)


def test_shuffling_is_seeded_parts_split_the_files_and_repeat_goes_on(shards):
    root, written = shards
    plain = [e["clip_id1"].decode() for e in MixtureArrays(str(root / "train"))]
    assert plain == [r.clip_id1 for rel in sorted(written) for r in written[rel]]
    a = [e["clip_id1"] for e in MixtureArrays(str(root / "train"), shuffle_buffer=4, seed=3)]
    b = [e["clip_id1"] for e in MixtureArrays(str(root / "train"), shuffle_buffer=4, seed=3)]
    assert a == b and sorted(x.decode() for x in a) == sorted(plain) and [x.decode() for x in a] != plain
    parts = [[e["clip_id1"].decode() for e in MixtureArrays(str(root / "train"), part=(i, 2))] for i in range(2)]
    assert parts[0] + parts[1] == plain and parts[0] and parts[1]
    looped = MixtureArrays(str(root / "train"), repeat=True, batch_size=4)
    batches = [b for _, b in zip(range(5), looped)]
    assert [len(b["clip_id1"]) for b in batches] == [4] * 5


def test_damaged_and_newer_shards_are_refused_naming_the_file(shards, tmp_path):
    root, _ = shards
    bad = tmp_path / "bad-00000-of-00001.tfrecord"
    blob = bytearray((root / "train/r/r-00001-of-00002.tfrecord").read_bytes())
    blob[100] ^= 0x40
    bad.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"{bad.name} is damaged"):
        list(MixtureArrays(str(bad)))
    newer = tmp_path / "new-00000-of-00001.tfrecord"
    example = records.to_example(make_record(1))
    example.features.feature["schema_version"].int64_list.value[0] = records.SCHEMA_VERSION + 1
    records.write_tfrecord(str(newer), [example.SerializeToString()])
    with pytest.raises(RecordError, match=f"{newer.name}: record schema version {records.SCHEMA_VERSION + 1}.*upgrade"):
        list(MixtureArrays(str(newer)))
    from audioscope.errors import UserError
    from audioscope.models.data import load_dataset

    with pytest.raises(UserError, match=f"{newer.name}: record schema version {records.SCHEMA_VERSION + 1}.*upgrade"):
        load_dataset(str(newer))


def test_batch_arrays_serve_again_only_once_nothing_refers_to_them():
    from audioscope.models.numpy_data import ALIGN, NUMERIC, BatchBuffers

    buffers = BatchBuffers(keep=2)
    first = buffers.get(3)
    assert set(first) == set(NUMERIC) and first["frames"].shape == (3, 5, 128, 128, 3)
    assert all(a.ctypes.data % ALIGN == 0 for a in first.values())
    held = buffers.get(3)  # `first` is still held: other arrays
    assert held["mixture"] is not first["mixture"]
    mixture = first["mixture"]
    del first
    again = buffers.get(3)  # a dict dropped, but its array still held: not served again
    assert again["mixture"] is not mixture and again["mixture"] is not held["mixture"]
    view = mixture[1, :10]  # a numpy view refers to the buffer owning the memory, not to `mixture`
    del mixture, again
    third = buffers.get(3)  # `held` is held and the view keeps the other set: a new set, not kept (keep=2)
    assert not np.shares_memory(third["mixture"], held["mixture"]) and not np.shares_memory(third["mixture"], view)
    del view, third
    served = buffers.get(3)  # nothing refers to the first set any more: it serves again
    assert served["audio1"].ctypes.data % ALIGN == 0
    assert not np.shares_memory(served["mixture"], held["mixture"])
    assert len({buffers.get(3)["mixture"].ctypes.data for _ in range(5)}) == 1  # each dropped at once: one set
    assert buffers.get(2)["mixture"].shape == (2, 80_000)  # another size: other arrays


def test_a_batch_kept_by_the_caller_is_never_written_over(shards):
    root, _ = shards
    data = MixtureArrays(str(root / "train"), batch_size=2, repeat=True, shuffle_buffer=4, seed=1)
    it = iter(data)
    kept = next(it)
    kept_values = {k: np.copy(v) for k, v in kept.items()}
    second = next(it)
    view, view_values = second["mixture"][1], np.copy(second["mixture"][1])
    del second
    pointers = []
    for _ in range(12):
        batch = next(it)
        pointers.append(batch["mixture"].ctypes.data)
        del batch
    assert_same(kept, kept_values)
    np.testing.assert_array_equal(view, view_values)
    assert len(set(pointers)) < len(pointers)  # dropped batches' arrays serve again


def test_the_tensorflow_loader_takes_the_batch_arrays_without_copying_and_uses_them_again(shards, monkeypatch):
    import tensorflow as tf

    from audioscope.models import numpy_data
    from audioscope.models.data import load_dataset

    root, _ = shards
    made = []
    real = numpy_data._numeric_batch

    def counted(n):
        arrays, owners = real(n)
        made.append(arrays["mixture"].ctypes.data)
        return arrays, owners

    class Shared:  # a tensor's own memory seen from numpy (``.numpy()`` copies; DLPack does not)
        def __init__(self, tensor):
            self.tensor = tensor

        def __dlpack__(self, **_):
            return tf.experimental.dlpack.to_dlpack(self.tensor)

        def __dlpack_device__(self):
            return (1, 0)  # CPU

    monkeypatch.setattr(numpy_data, "_numeric_batch", counted)
    seen = []
    for batch in load_dataset(str(root / "train"), batch_size=2, repeat=True, threads=1).take(30):
        seen.append(np.from_dlpack(Shared(batch["mixture"])).ctypes.data)
    assert set(seen) <= set(made)  # every batch's tensor is one of the generator's arrays: no copy
    assert len(made) < 10  # 30 batches from a few sets
    kept = list(load_dataset(str(root / "train"), batch_size=2))  # tensors kept: their arrays not reused
    for tensors, arrays in zip(kept, MixtureArrays(str(root / "train"), batch_size=2)):
        assert_same({k: v.numpy() for k, v in tensors.items()}, arrays)
