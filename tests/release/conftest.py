"""The built sdist and wheel, shared by the packaging tests (built once per session)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_RELEASED = {"__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}
# Not copied into the clean tree the build starts from. A stale *.egg-info/SOURCES.txt would
# feed its file list into the sdist and hide missing package data.
NOT_COPIED = {*NOT_RELEASED, ".git", ".venv", ".cache", "build", "dist", "results"}


@dataclass
class Built:
    sdist: Path
    wheel: Path
    log: str


def run_timed(label: str, timings: dict[str, float], cmd: list[str]) -> str:
    """Run ``cmd``, record how long it took under ``label``; fail the test if it fails."""
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    timings[label] = round(time.monotonic() - start, 1)
    assert res.returncode == 0, f"{label} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


@pytest.fixture(scope="session")
def timings() -> Iterator[dict[str, float]]:
    t: dict[str, float] = {}
    yield t
    print(f"\npackaging timings (s): {json.dumps(t)}")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]) -> Built:
    """``python -m build`` of a clean copy of this tree: the sdist, then the wheel from it."""
    out = tmp_path_factory.mktemp("dist")
    tree = tmp_path_factory.mktemp("clean") / "event-kafka"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=_not_copied)
    log = run_timed("build", timings, [sys.executable, "-m", "build", "-o", str(out), str(tree)])
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist, wheel, log)


def _not_copied(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in NOT_COPIED or n.endswith((".egg-info", ".pyc"))}
