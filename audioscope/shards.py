"""Shard names: the one template every step names its shards with (no Beam, no TensorFlow).

``{stem}-{i:05d}-of-{n:05d}{suffix}``, as TensorFlow Datasets names sharded
files; :meth:`ShardTemplate.parse` finds a step's earlier shards again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ShardTemplate:
    """Shard names ``{stem}-{i:05d}-of-{n:05d}{suffix}`` (TFDS's sharded-file naming)."""

    stem: str
    suffix: str

    def name(self, i: int, n: int) -> str:
        if not 0 <= i < n:
            raise ValueError(f"shard {i} of {n} does not exist")
        return f"{self.stem}-{i:05d}-of-{n:05d}{self.suffix}"

    def pattern(self) -> str:
        """The glob pattern of every shard name of this template."""
        return f"{self.stem}-*{self.suffix}"

    def parse(self, name: str) -> tuple[int, int] | None:
        """``(i, n)`` of a shard name made by :meth:`name`; None for any other name."""
        m = re.fullmatch(rf"{re.escape(self.stem)}-(\d{{5,}})-of-(\d{{5,}}){re.escape(self.suffix)}", name)
        return (int(m.group(1)), int(m.group(2))) if m else None
