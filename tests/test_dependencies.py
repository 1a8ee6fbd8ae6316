"""Declared dependencies and imports agree: every runtime dependency in
pyproject.toml is imported by the package (or is an fsspec file system loaded
by its URL scheme), and every third-party module the package imports is
declared (directly, in an extra, or as a requirement of a declared one)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The package's folders (pyproject's package-dir).
PACKAGE_DIRS = ("audioscope", "pipelines", "curation", "annotation", "schemas", "models")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _canonical(match.group(1))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


#: Scripts that run inside the Label Studio server's own virtualenv (its
#: Django and models), never imported by the toolkit: their imports are that
#: server's dependencies (``make labelstudio``), not ours.
SERVER_SIDE_SCRIPTS = {"annotation/ls_provision.py"}


def _imported_modules() -> set[str]:
    """The first two parts of every absolute import in the package's sources (``google.protobuf``,
    ``numpy.typing``): the top-level name, and the package inside a namespace package shared by
    several distributions (``google``)."""
    names: set[str] = set()
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() in SERVER_SIDE_SCRIPTS:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names.update(".".join(a.name.split(".")[:2]) for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(".".join(node.module.split(".")[:2]))
    top = lambda n: n.split(".")[0]  # noqa: E731
    return {n for n in names if top(n) not in sys.stdlib_module_names and top(n) != "audioscope"}


def _provides(dist: str, module: str) -> bool:
    """Whether distribution ``dist`` installs the (dotted) ``module``."""
    path = module.replace(".", "/")
    return any(str(f) == f"{path}.py" or str(f).startswith(f"{path}/") for f in md.files(dist) or [])


def _dists_of(modules: set[str]) -> dict[str, set[str]]:
    """Installed distribution (canonical) -> the imported modules it provides (a module of a
    namespace package that several distributions share goes to those that install it)."""
    provided = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for m in modules:
        dists = provided.get(m.split(".")[0], [])
        if len(set(dists)) > 1 and "." in m:
            dists = [d for d in dists if _provides(d, m)]
        for dist in dists:
            out.setdefault(_canonical(dist), set()).add(m)
    return out


def _fsspec_backends() -> set[str]:
    """Distributions that fsspec loads by URL scheme (module of the registered class)."""
    from fsspec.registry import known_implementations

    modules = {impl["class"].split(".")[0] for impl in known_implementations.values()}
    return set(_dists_of(modules))


def test_every_declared_dependency_is_imported():
    declared = [_dist_name(r) for r in _pyproject()["project"]["dependencies"]]
    imported = set(_dists_of(_imported_modules()))
    backends = _fsspec_backends() & {"s3fs", "gcsfs"}
    unused = [d for d in declared if d not in imported and d not in backends]
    assert unused == [], f"declared in pyproject.toml but imported nowhere in the package: {unused}"
    assert "ffmpeg-python" not in declared


def test_every_imported_third_party_module_is_declared():
    project = _pyproject()["project"]
    declared = {_dist_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_dist_name(r) for r in extra}
    declared |= {"tensorflow-cpu"} if "tensorflow" in declared else set()
    # what a declared distribution itself requires is installed with it (keras with TensorFlow)
    pulled = set()
    for dist in declared:
        try:
            pulled |= {_dist_name(r) for r in md.requires(dist) or [] if "extra ==" not in r}
        except md.PackageNotFoundError:
            continue
    modules = _imported_modules()
    by_dist = _dists_of(modules)
    unknown = sorted(m for m in modules if not any(m in mods for mods in by_dist.values()))
    if unknown:
        pytest.fail(f"imported but not installed (so not declared either): {unknown}")
    undeclared = {d: sorted(m) for d, m in by_dist.items() if d not in declared | pulled}
    assert undeclared == {}, f"imported by the package but not declared in pyproject.toml: {undeclared}"
