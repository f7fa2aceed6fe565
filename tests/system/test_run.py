"""`./run` installs the groups each command needs, once, and skips pdm when nothing changed.

The script runs for real, in a copy of the project's files, with a stand-in for pdm that logs
its arguments and makes the commands `run` then executes; the real pdm flags were checked by
hand from a fresh clone (README, "Quick start").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PDM = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../pdm-calls"
mkdir -p .venv/bin
for tool in busstats pytest python ruff pyright hadolint; do
    printf '#!/bin/sh\\necho %s "$@"\\n' "$tool" > ".venv/bin/$tool"
    chmod +x ".venv/bin/$tool"
done
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("run", "pdm.lock", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    pdm = tmp_path / ".tools" / "bin" / "pdm"
    pdm.parent.mkdir(parents=True)
    pdm.write_text(FAKE_PDM)
    pdm.chmod(0o755)
    return tmp_path


def run(project: Path, *args: str) -> tuple[str, list[str]]:
    """What the command printed, and the pdm calls it made."""
    calls = project / "pdm-calls"
    calls.unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    done = subprocess.run(
        [str(project / "run"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip(), calls.read_text().splitlines() if calls.exists() else []


def test_each_command_installs_its_groups_once(project: Path) -> None:
    assert run(project, "dev", "--port", "1") == (
        "busstats dev --port 1",
        ["sync --quiet --clean --prod"],
    )
    assert run(project, "dev") == ("busstats dev", [])
    assert run(project, "busstats", "serve") == ("busstats serve", [])
    assert run(project, "test", "-q") == ("pytest -q", ["sync --quiet --clean -G test"])
    assert run(project, "test") == ("pytest", [])
    assert run(project, "dev") == ("busstats dev", [])  # test's group stays; nothing to do
    assert run(project, "bench")[1] == ["sync --quiet --clean -G bench -G test"]
    assert run(project, "lint")[1] == ["sync --quiet --clean -G bench -G lint -G test"]
    assert run(project, "bench-load") == ("python -m benchmarks.load", [])


def test_a_changed_lock_installs_again(project: Path) -> None:
    run(project, "test")
    with (project / "pdm.lock").open("a") as lock:
        lock.write("\n# changed\n")
    assert run(project, "test")[1] == ["sync --quiet --clean -G test"]
    assert run(project, "test")[1] == []


def test_nothing_to_install_costs_well_under_a_second(project: Path) -> None:
    run(project, "dev")
    started = time.perf_counter()
    for _ in range(5):
        assert run(project, "dev") == ("busstats dev", [])
    assert (time.perf_counter() - started) / 5 < 0.3
