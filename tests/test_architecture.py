"""The floor plan, checked: folders import only folders below them.

docs/ARCHITECTURE.md documents the order. Every ``import`` statement counts,
at module level or inside a function, so a lazy import cannot hide an
upward dependency. A new folder must be placed in ``LAYERS`` before it can
import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Bottom to top. A folder may import its own modules and any folder before it.
LAYERS: tuple[tuple[str, str, str], ...] = (
    # (name, folder, import prefix)
    ("core", "audioscope", "audioscope"),
    ("synth", "audioscope/synth", "audioscope.synth"),
    ("sources", "audioscope/sources", "audioscope.sources"),
    ("schemas", "schemas", "audioscope.schemas"),
    ("clipstore", "audioscope/clipstore", "audioscope.clipstore"),
    ("pipelines", "pipelines", "audioscope.pipelines"),
    ("curation", "curation", "audioscope.curation"),
    ("annotation", "annotation", "audioscope.annotation"),
    ("models", "models", "audioscope.models"),
)
RANK = {name: i for i, (name, _, _) in enumerate(LAYERS)}


def layer_of_module(module: str) -> str | None:
    """The layer an absolute module name belongs to (None: not ours); the longest prefix wins."""
    matches = [(len(prefix), name) for name, _, prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``; ``from X import y`` counts X.y too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def upward_imports() -> list[str]:
    problems = []
    for name, folder, _ in LAYERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            for line, module in imports_of(path):
                target = layer_of_module(module)
                if target is not None and RANK[target] > RANK[name]:
                    problems.append(
                        f"{path.relative_to(ROOT)}:{line} ({name}) imports {module} ({target}, a layer above)"
                    )
    return problems


def test_layers_cover_every_package_folder() -> None:
    folders = {folder for _, folder, _ in LAYERS}
    for init in ROOT.glob("*/__init__.py"):
        if init.parent.name != "tests":
            assert init.parent.name in folders, f"{init.parent.name}/ is not placed in LAYERS"
    for init in (ROOT / "audioscope").glob("*/__init__.py"):
        assert f"audioscope/{init.parent.name}" in folders, f"audioscope/{init.parent.name}/ is not placed in LAYERS"


def test_no_folder_imports_a_folder_above_it() -> None:
    problems = upward_imports()
    assert not problems, "imports against the data flow (see docs/ARCHITECTURE.md):\n" + "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The check is not vacuous: a lazy upward import inside a function is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from audioscope.models.train import train\n    return train\n")
    [(line, module), *_] = [i for i in imports_of(bad) if i[1] == "audioscope.models.train"]
    assert line == 2 and layer_of_module(module) == "models"
    assert RANK[layer_of_module(module)] > RANK["pipelines"]


@pytest.mark.parametrize(
    "module, layer",
    [
        ("audioscope.errors", "core"),
        ("audioscope.clipstore.reader", "clipstore"),
        ("audioscope.pipelines.score", "pipelines"),
        ("audioscope.models.coincidence", "models"),
        ("numpy", None),
    ],
)
def test_layer_of_module(module: str, layer: str | None) -> None:
    assert layer_of_module(module) == layer
