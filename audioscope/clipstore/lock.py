"""One ingest at a time per clip store (:class:`audioscope.locks.FolderLock` on ``STORE/ingest.lock``).

Two ingests into one store at once could interleave their index rebuilds
(one removing the other's shards) or lose one list's requests; the second
is refused at once with a message naming the holder.
"""

from __future__ import annotations

from audioscope.clipstore.format import Layout
from audioscope.locks import FolderBusy, FolderLock, create_if_absent  # noqa: F401 (create_if_absent re-exported)


class StoreBusy(FolderBusy):
    """Another ingest holds the store."""


class StoreLock(FolderLock):
    """``with StoreLock(layout, what="list.csv"):`` holds the store for one ingest."""

    busy = StoreBusy

    def __init__(self, layout: Layout, what: str = "") -> None:
        super().__init__(layout.lock, activity="ingest", subject=f"the store {layout.root}", what=what or "a list")
        self.layout = layout
