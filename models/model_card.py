"""The model card written into every exported model (coincidence and AudioScope).

Why a card: the score table records which model produced each probability
(by ``model_id``), and the Df threshold (0.8) is only meaningful for the
model it was tuned on. The card says what the model was trained on, how
long, with which settings, and how well it separated aligned from
misaligned audio on held-out videos, so a later reader can judge a score
without re-running anything. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"


@dataclass(kw_only=True)
class ModelCard:
    """What was trained, on what, and how well it did."""

    model_id: str
    model_name: str = "audioscope-coincidence"
    signature: Mapping[str, Any]
    training_data: Mapping[str, Any]
    training: Mapping[str, Any]
    config: Mapping[str, Any]
    validation: Mapping[str, Any]
    notes: list[str] = field(default_factory=list)
    #: what the validation numbers were measured on
    validation_note: str = "held-out videos, self-supervised task"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelCard":
        return cls(**dict(d))

    def to_markdown(self) -> str:
        lines = [
            f"# Model card: {self.model_name}",
            "",
            f"Model id (SHA-256 of variables + signature): `{self.model_id}`",
            "",
            "## Signature",
            "",
            "```json",
            json.dumps(self.signature, indent=2, sort_keys=True),
            "```",
            "",
            "## Training data",
            "",
            *_kv_lines(self.training_data),
            "",
            "## Training",
            "",
            *_kv_lines(self.training),
            "",
            *([f"## Validation ({self.validation_note})", "", *_kv_lines(self.validation), ""] if self.validation else []),
            "## Configuration",
            "",
            "```json",
            json.dumps(self.config, indent=2, sort_keys=True),
            "```",
        ]
        if self.notes:
            lines += ["", "## Notes", "", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def write(self, directory: str | Path) -> None:
        """Write ``model_card.json`` and ``MODEL_CARD.md`` into ``directory``.

        Called on the not-yet-renamed export directory, so the card appears
        atomically together with the model.
        """
        directory = Path(directory)
        (directory / CARD_JSON).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        (directory / CARD_MARKDOWN).write_text(self.to_markdown())


def read_card(directory: str | Path) -> ModelCard | None:
    """The card of an exported model, or None for a model brought from elsewhere."""
    path = Path(directory) / CARD_JSON
    if not path.exists():
        return None
    return ModelCard.from_dict(json.loads(path.read_text()))


def _kv_lines(rows: Mapping[str, Any]) -> list[str]:
    out = []
    for k, v in rows.items():
        if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            v = "; ".join(", ".join(f"{a} {b}" for a, b in x.items()) for x in v)
        if isinstance(v, float):
            v = f"{v:.4f}"
        out.append(f"- **{k}**: {v}")
    return out
