"""The layout's import rules (docs/architecture.md), read from the source with `ast`: data flows
one way, and nothing that serves at run time or reads a model depends on the training code."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "edge_inspect"
BASE = {"errors", "atomic", "config", "training_config", "logging", "progress", "models.names"}
# room -> rooms it may import (besides the base modules and itself)
ALLOWED: dict[str, set[str]] = {
    "acquisition": set(),
    "tiling": {"acquisition"},
    "inference": {"models"},
    "decision": {"tiling"},
    "records": {"decision", "tiling"},
    "outputs": {"decision", "tiling"},
    "monitoring": {"acquisition", "decision", "tiling"},
    "pipeline": {"acquisition", "tiling", "inference", "decision", "monitoring"},
    "models": set(),
    "datasets": {"acquisition", "tiling"},
    "training": {"models", "datasets", "evaluation"},
    "evaluation": {"models", "datasets", "decision"},
    "export": {"models", "datasets", "inference", "evaluation", "acquisition", "tiling"},
    "recalibration": {"acquisition", "tiling", "inference", "decision", "pipeline", "monitoring"},
    "service": {"acquisition", "tiling", "inference", "decision", "records", "outputs", "monitoring",
                "pipeline"},
}


def _room(module: str) -> str:
    """'edge_inspect.decision.verdict' -> 'decision'; base modules keep their dotted name."""
    rest = module.removeprefix("edge_inspect.")
    return rest if rest in BASE else rest.split(".")[0]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edge_inspect"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out.update(n if n.removeprefix("edge_inspect.") in BASE else node.module for n in names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("edge_inspect"))
    return out


def test_every_room_imports_only_what_it_may() -> None:
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        room = _room(module)
        if room not in ALLOWED:
            continue  # base modules, commands, cli, bench, doctor
        for imp in _imports(path):
            target = _room(imp)
            if target in BASE or target == room or target == "edge_inspect" or target in ALLOWED[room]:
                continue
            problems.append(f"{module} imports {imp} ({room} may not import {target})")
    assert not problems, "\n".join(problems)


def test_nothing_but_the_train_command_imports_training() -> None:
    users = sorted(
        str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
        if "training" not in p.relative_to(PKG).parts[:1]
        and any(_room(i) == "training" for i in _imports(p))
    )
    assert users == ["edge_inspect/commands.py"], users
