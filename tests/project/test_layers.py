"""The loader's packages are layers and an import only goes down.

docs/architecture.md draws the layers; this test holds them, so a module put
in the wrong package (a rules import in the data plane, an api import in the
plugins package) fails here instead of growing a cycle that shows only when an
import order changes. The edges are read from the source with ``ast``: every
``import`` and ``from ... import``, at any depth (also imports inside
functions and under ``TYPE_CHECKING``, since a cycle of types is still a
cycle in the design).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADER = ROOT / "loader"

# Modules directly in loader/ that every package may import; they import only each other.
LEAVES = frozenset(
    {"config", "log", "journal", "diagnostics", "jsonschemas", "jsonio", "files", "names", "tasks", "repeats"}
)

# Which units each unit may import, besides itself, the leaves and loader/__init__.py.
ALLOWED: dict[str, frozenset[str]] = {
    "__main__": frozenset({"app"}),
    "app": frozenset({"api", "install", "rules", "dataplane", "plugins", "wire", "sdk.protocol"}),
    "api": frozenset({"install", "rules", "dataplane", "plugins", "wire", "sdk.protocol"}),
    "install": frozenset({"plugins", "wire", "sdk", "sdk.protocol"}),
    "rules": frozenset({"dataplane", "plugins", "wire", "sdk.protocol"}),
    "dataplane": frozenset({"plugins", "wire", "sdk.protocol"}),
    "plugins": frozenset({"wire", "sdk.protocol"}),
    "wire": frozenset({"sdk.protocol"}),
    "leaf": frozenset(),
}


def unit_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None for anything outside the project."""
    parts = module.split(".")
    if parts[0] == "sdk":
        return "sdk.protocol" if len(parts) > 1 and parts[1] == "protocol" else "sdk"
    if parts[0] != "loader":
        return None
    if len(parts) == 1:
        return "loader"
    return "leaf" if parts[1] in LEAVES else parts[1]


def module_name(path: Path) -> tuple[str, str]:
    """(the module's dotted name, the package its relative imports start from)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        name = ".".join(parts[:-1])
        return name, name
    return ".".join(parts), ".".join(parts[:-1])


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything the file imports, relative imports resolved."""
    _, package = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            # `from loader import rules` imports the package rules, not only loader.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def layer_violations() -> list[str]:
    found: list[str] = []
    for path in sorted(LOADER.rglob("*.py")):
        source = unit_of(module_name(path)[0])
        assert source is not None
        allowed = ALLOWED.get(source, frozenset()) | {source, "leaf", "loader"}
        for line, target in imported(path):
            target_unit = unit_of(target)
            if target_unit is not None and target_unit not in allowed:
                found.append(f"{path.relative_to(ROOT)}:{line}: {source} imports {target} ({target_unit})")
    return found


def test_every_import_goes_down_the_layers() -> None:
    assert layer_violations() == []


def test_every_package_of_the_loader_has_a_layer() -> None:
    packages = {p.name for p in LOADER.iterdir() if (p / "__init__.py").is_file()} - {"schemas"}
    modules = {p.stem for p in LOADER.glob("*.py")} - {"__init__"}
    assert packages <= ALLOWED.keys()
    assert modules - LEAVES == {"__main__"}


def test_the_allowed_edges_have_no_cycle() -> None:
    """Layers, not a tangle: the allowed graph itself orders the packages."""
    seen: dict[str, int] = {}

    def depth(unit: str, path: tuple[str, ...]) -> int:
        assert unit not in path, f"cycle: {' -> '.join((*path, unit))}"
        if unit not in seen:
            below = ALLOWED.get(unit, frozenset())
            seen[unit] = 1 + max((depth(u, (*path, unit)) for u in below), default=0)
        return seen[unit]

    for unit in ALLOWED:
        depth(unit, ())


def test_a_wrong_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check sees an upward import, relative or absolute, wherever it sits in the file."""
    wire = tmp_path / "loader" / "wire"
    wire.mkdir(parents=True)
    (tmp_path / "loader" / "__init__.py").write_text("")
    (wire / "__init__.py").write_text("")
    (wire / "bad.py").write_text("def f() -> None:\n    from ..rules import sql\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "LOADER", tmp_path / "loader")
    assert layer_violations() == [
        "loader/wire/bad.py:2: wire imports loader.rules (rules)",
        "loader/wire/bad.py:2: wire imports loader.rules.sql (rules)",
    ]


def test_no_test_imports_another_test_file() -> None:
    """What tests share lives in tests/support/ (or a level's helpers), never in a test file another imports."""
    tests = ROOT / "tests"
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for path in sorted(tests.rglob("*.py"))
        for line, target in imported(path)
        if target.startswith("tests.") and target.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert found == []
