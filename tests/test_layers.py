"""Imports point downward only (DESIGN.md): a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import josh

ROOT = Path(josh.__file__).parent
# Highest first. A module may import its own layer and any layer after it in this list.
LAYERS = [
    "cli",
    "loop",
    "benchmarks",
    "train",
    "view",
    "export",
    "runner",
    "search",
    "rollout",
    "mock",
    "agents",
    "users",
    "envs",
    "llm",
    "types",
    "errors",
]
PEERS = {("agents", "users"), ("users", "agents")}  # independent; neither imports the other


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "josh" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_imports_point_downward() -> None:
    problems = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        own = rel.parts[0] if rel.parts[0] in LAYERS else None
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                target = _layer(name)
                if target is None or target == own:
                    continue
                if (own, target) in PEERS or LAYERS.index(target) < LAYERS.index(own):
                    problems.append(f"{rel}: imports {name} ({own} -> {target})")
    assert not problems, "\n".join(problems)


# The JOSH core works on any agent/user/reward triple (DESIGN.md): it may use the shared types, never an
# environment, an agent, a user simulator, a rollout or a model.
SEARCH_MAY_NOT_IMPORT = ("envs", "agents", "users", "rollout", "llm", "mock")


def test_the_search_core_knows_no_environment_agent_or_model() -> None:
    problems = []
    for path in (ROOT / "search").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["<relative import>"]
            for name in names:
                if name == "<relative import>" or _layer(name) in SEARCH_MAY_NOT_IMPORT:
                    problems.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert (ROOT / "search" / "beam.py").exists()
    assert not problems, "\n".join(problems)


# The viewer only reads records (DESIGN.md): run files, tree and rollout records, the shared types.
VIEW_MAY_NOT_IMPORT = ("cli", "benchmarks", "envs", "agents", "users", "llm", "mock")


def test_the_viewer_reads_records_and_runs_nothing() -> None:
    problems = []
    for path in (ROOT / "view").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            problems += [
                f"{path.relative_to(ROOT)}: imports {n}" for n in names if _layer(n) in VIEW_MAY_NOT_IMPORT
            ]
    assert (ROOT / "view" / "page.py").exists()
    assert not problems, "\n".join(problems)
