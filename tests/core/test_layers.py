"""The package's layers and what each may import: core <- training; core <- inference <- app (the
optional web app) <- cli (the `fastnst` command). No exceptions: a call descends, never climbs back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fastnst"
HEAVY = ("lightning", "hydra", "omegaconf", "tensorboard")
RULES = {
    "core": ("fastnst.training", "fastnst.inference", "fastnst.app", "fastnst.cli", *HEAVY),
    "training": ("fastnst.inference", "fastnst.app", "fastnst.cli"),
    "inference": ("fastnst.training", "fastnst.app", "fastnst.cli", *HEAVY),
    "app": ("fastnst.training", "fastnst.cli", *HEAVY),
    "cli": ("fastnst.training", *HEAVY),
}


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too); relative imports are
    resolved against ``package`` (the file's own dotted package: ``fastnst.core`` for fastnst/core/x.py)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            parts = (package or "").split(".")
            base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            stem = ".".join(filter(None, [*base, node.module or ""]))
            names.update([stem] if node.module else [f"{stem}.{alias.name}" for alias in node.names])
    return names


def violations(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import under ``root`` of a module in (or under) ``forbidden``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        package = ".".join(["fastnst", *path.relative_to(root.parent).parent.parts])
        for name in sorted(imported_modules(path, package)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(root.parent)}: {name}")
    return found


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert violations(PACKAGE / layer, RULES[layer]) == []


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    # The guard must be able to fail: a core module that reaches into training, even lazily.
    core = tmp_path / "core"
    core.mkdir()
    (core / "ok.py").write_text("import torch\nfrom fastnst.core import images\n")
    (core / "bad.py").write_text("def f():\n    from fastnst.training.run import run\n    import lightning.pytorch\n")
    (core / "sly.py").write_text("from ..training import run\nfrom . import images\n")  # relative, one level up
    assert violations(core, RULES["core"]) == ["core/bad.py: fastnst.training.run", "core/bad.py: lightning.pytorch",
                                               "core/sly.py: fastnst.training"]


def test_no_flat_modules_left_beside_the_layers() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert flat == []
