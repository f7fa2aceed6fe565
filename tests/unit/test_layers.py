"""The packages of `busstats` are layers: a module imports only from its own package or from
packages below it (docs/architecture.md). An import that runs upward, at module level or
inside a function, fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

import busstats

SOURCE = Path(busstats.__file__).parent

LAYERS = [
    ("core",),
    ("model",),
    ("reference",),
    ("storage",),
    ("ingest",),
    ("commit",),
    ("stats",),
    ("jobs",),
    ("executors",),
    ("orchestration",),
    ("api",),
    ("cli",),
]
"""Lowest first; packages in one tuple are peers."""

RANK = {package: rank for rank, peers in enumerate(LAYERS) for package in peers}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "busstats" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "busstats":
                found.extend((node.lineno, f"busstats.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def upward_imports(root: Path = SOURCE) -> list[str]:
    """Every import in `root` that runs from a lower layer to a higher one."""
    wrong: list[str] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            continue  # the package face and top-level modules
        own = relative.parts[0]
        for line, module in _imports(path):
            target = _package_of(module)
            if target is not None and RANK[target] > RANK[own]:
                wrong.append(f"{relative}:{line} ({own}) imports {module} ({target})")
    return wrong


def test_every_package_is_in_a_layer() -> None:
    packages = {p.name for p in SOURCE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANK)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "settings.py").write_text(
        "def f():\n    from busstats.api.app import create_app\n"
    )
    assert upward_imports(tmp_path) == ["core/settings.py:2 (core) imports busstats.api.app (api)"]
