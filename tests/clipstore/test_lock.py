"""The store lock's create-if-absent write, on local disk and on object stores (emulators on 127.0.0.1)."""

from __future__ import annotations

import pytest

from audioscope.clipstore.format import Layout
from audioscope.clipstore.lock import StoreBusy, StoreLock, create_if_absent
from tests.sources.test_object_store_fetch import gcs, s3  # noqa: F401 (fixtures)


def _twice(uri: str) -> tuple[bool, bool]:
    return create_if_absent(uri, b"first"), create_if_absent(uri, b"second")


def test_local_create_if_absent_and_the_lock(tmp_path):
    assert _twice(str(tmp_path / "store" / "x.lock")) == (True, False)
    assert (tmp_path / "store" / "x.lock").read_bytes() == b"first"
    layout = Layout(str(tmp_path / "store"))
    with StoreLock(layout, what="a.csv"):
        with pytest.raises(StoreBusy, match="a.csv"):
            StoreLock(layout, what="b.csv").acquire()
    assert not (tmp_path / "store" / "ingest.lock").exists()
    with StoreLock(layout):  # free again
        pass


@pytest.mark.integration
def test_gcs_create_if_absent(gcs):  # noqa: F811
    """The emulator ignores ifGenerationMatch (real GCS honours it): the look-first and read-back hold."""
    from audioscope import storage

    assert _twice("gs://media/store/ingest.lock") == (True, False)
    assert storage.read_bytes("gs://media/store/ingest.lock") == b"first"


@pytest.mark.integration
def test_s3_create_if_absent(s3):  # noqa: F811
    from audioscope import storage

    s3.makedirs("locks", exist_ok=True)
    assert _twice("s3://locks/store/ingest.lock") == (True, False)
    assert storage.read_bytes("s3://locks/store/ingest.lock") == b"first"
