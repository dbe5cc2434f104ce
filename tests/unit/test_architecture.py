"""The layering and size rules of docs/architecture.md, checked."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "omnirelay"
MAX_LINES = 650


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def test_ingress_and_upstream_never_import_each_other() -> None:
    for path in modules("ingress"):
        assert not any(m.startswith("omnirelay.upstream") for m in imports_of(path)), path
    for path in modules("upstream"):
        assert not any(m.startswith("omnirelay.ingress") for m in imports_of(path)), path


def test_lower_layers_do_not_import_higher_ones() -> None:
    higher = (
        "omnirelay.pipeline",
        "omnirelay.passthrough",
        "omnirelay.app",
        "omnirelay.runtime",
        "omnirelay.cli",
    )
    for package in ("canonical", "transport", "ingress", "upstream", "storage", "wire"):
        for path in modules(package):
            bad = [m for m in imports_of(path) if m.startswith(higher)]
            assert not bad, f"{path} imports {bad}"


def test_storage_depends_only_on_itself() -> None:
    for path in modules("storage"):
        ours = [
            m
            for m in imports_of(path)
            if m.startswith("omnirelay.") and not m.startswith("omnirelay.storage")
        ]
        assert ours in ([], ["omnirelay.errors"]), f"{path} imports {ours}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"
