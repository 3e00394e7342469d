"""The package as users install it: build the sdist and wheel, install the wheel into a fresh
venv outside the repository, and run the ``event-kafka`` commands from an empty directory.

Needs network access to PyPI (build requirements and the runtime dependencies; pip's cache
makes later runs quick). The Kafka jars come from the shared jar cache, so nothing is fetched
from Maven Central when it is warm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest

from event_kafka.devkafka import KAFKA_VERSION, fetch_jars
from event_kafka.devkafka.process import pid_alive
from tests.release.conftest import NOT_RELEASED, ROOT, Built, run_timed

pytestmark = [pytest.mark.packaging, pytest.mark.integration]

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Directories whose every file the sdist must carry, and what is never part of a release.
SDIST_TREES = ("src", "tests", "docs", "examples", "bench", "scripts")
SDIST_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile")
PACKAGE_DATA = ("py.typed", "devkafka-pom.xml", "demo.toml")


@dataclass
class Installed:
    venv: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "event-kafka"), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(
    built: Built, tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]
) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    assert ROOT not in base.parents, "the venv must live outside the repository"
    venv, cwd = base / "venv", base / "empty"
    cwd.mkdir()
    run_timed("venv", timings, [sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run_timed("pip install wheel", timings, [*pip, "install", str(built.wheel)])
    # A private cache dir holding only a link to the shared jars: `dev-kafka start` keeps its
    # state file there, so a concurrent dev-kafka of someone else sharing the cache is not hit.
    jars = fetch_jars().parent
    cache = base / "cache"
    cache.mkdir()
    (cache / f"kafka-{KAFKA_VERSION}").symlink_to(jars, target_is_directory=True)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(base),
        "LANG": "C.UTF-8",
        "EVENT_KAFKA_CACHE": str(cache),
        # The demo's and the brokers' temporary directories: found again by the leak check.
        "TMPDIR": str(base),
    }
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return Installed(venv, cwd, env)


def _release_files() -> set[str]:
    """Every file of a source release, as found in this tree."""
    found = {name for name in SDIST_FILES if (ROOT / name).exists()}
    for tree in SDIST_TREES:
        for path in (ROOT / tree).rglob("*"):
            rel = path.relative_to(ROOT)
            skip = NOT_RELEASED.intersection(rel.parts) or rel.suffix == ".pyc"
            skip = skip or any(p.endswith(".egg-info") for p in rel.parts)
            if path.is_file() and not skip and rel.parts[:2] != ("bench", "results"):
                found.add(rel.as_posix())
    return found


def test_sdist_is_a_complete_source_release(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        prefix = f"event_kafka-{VERSION}/"
        names = {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}
        symlinks = [m.name for m in tar.getmembers() if m.issym() or m.islnk()]
        demo = tar.extractfile(prefix + "src/event_kafka/demo.toml")
        assert demo is not None
        demo_text = demo.read().decode()
    missing = sorted(_release_files() - names)
    assert not missing, f"missing from the sdist: {missing}"
    assert {"tests/conftest.py", "tests/faults/conftest.py", "LICENSE"} <= names
    junk = [n for n in names if NOT_RELEASED.intersection(n.split("/")) or n.startswith(".")]
    assert not junk, junk
    assert not symlinks, f"the sdist must hold files, not links: {symlinks}"
    assert demo_text == (ROOT / "examples" / "event-kafka.toml").read_text()


def test_wheel_contents_and_metadata(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        names = set(whl.namelist())
        dist_info = f"event_kafka-{VERSION}.dist-info"
        meta = HeaderParser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
        license_text = whl.read(f"{dist_info}/licenses/LICENSE").decode()
        pom = whl.read("event_kafka/devkafka-pom.xml").decode()
        demo = whl.read("event_kafka/demo.toml").decode()
    for name in PACKAGE_DATA:
        assert f"event_kafka/{name}" in names
    src = ROOT / "src" / "event_kafka"
    assert pom == (src / "devkafka-pom.xml").read_text()
    assert demo == (ROOT / "examples" / "event-kafka.toml").read_text()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in license_text and "Version 2, June 1991" in license_text
    assert meta["License-Expression"] == "GPL-2.0-or-later"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # superseded by SPDX
    assert "project.license" not in built.log, "setuptools warns about the license metadata"


def test_installed_wheel_works_from_an_empty_directory(
    installed: Installed, timings: dict[str, float]
) -> None:
    res = installed.run("--version")
    assert res.returncode == 0 and VERSION in res.stdout, res
    # The package imports from the venv, not from this source tree.
    where = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import event_kafka; print(event_kafka.__file__)",
        ],
        cwd=installed.cwd,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where

    res = installed.run("check", "[k1]127.0.0.1:9092/topic1?g.linger.ms=100&t.acks=all")
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["id"] == "k1"
    res = installed.run("check", "[k1]127.0.0.1:9092/topic1?g.acks=all")
    assert res.returncode == 2 and "write t.acks" in res.stderr, res

    start = time.monotonic()
    res = installed.run("dev-kafka", "start")
    state = Path(installed.env["EVENT_KAFKA_CACHE"]) / "dev-kafka.json"
    try:
        assert res.returncode == 0, res
        bootstrap = res.stdout.strip().splitlines()[-1]
        assert bootstrap.startswith("127.0.0.1:")
        res = installed.run("dev-kafka", "status")
        assert res.returncode == 0 and json.loads(res.stdout)["alive"], res
    finally:
        pids = json.loads(state.read_text())["pids"] if state.exists() else []
        stopped = installed.run("dev-kafka", "stop")
    timings["dev-kafka start/status/stop"] = round(time.monotonic() - start, 1)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped
    assert pids and not [p for p in pids if pid_alive(p)]
    assert installed.run("dev-kafka", "status").returncode == 1

    start = time.monotonic()
    res = installed.run("demo", timeout=240)
    timings["demo"] = round(time.monotonic() - start, 1)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = res.stdout
    assert "exited with status 0" in out
    # key=param:callid: the CDR's record is keyed by its callid.
    assert "key=a84b4c76e66710@pc33.atlanta.example.com" in out
    assert "key=10.0.0.66" in out  # key=param:ip
    # Without opensips-cli the demo makes the MI requests itself; each must do what it shows.
    assert '"broker_k1:accepted": 1' in out and '"code":' not in out, out
    assert '"params":["192.168.2.11"]' in out  # the first raise_event reached Kafka
    leftovers = _processes_mentioning(installed.env["TMPDIR"])
    assert not leftovers, f"the demo left processes running: {leftovers}"
    assert list(installed.cwd.iterdir()) == [], "commands wrote into the working directory"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(proc.name)):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found
