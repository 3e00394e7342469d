"""Docs that run: every ``python``, ``sh`` and ``console`` block of README.md and docs/*.md.

Blocks are extracted when the tests are collected, so a block someone adds is checked too.

* ``python`` blocks run as scripts in a fresh interpreter (``>>>`` blocks as doctests), with
  ``127.0.0.1:9092`` replaced by the test broker.
* ``sh`` blocks run with bash from the repository root, one logical command (``\\``-continued
  lines joined) at a time under ``set -e``, with the example configuration's addresses replaced by
  the test broker and a service this module starts (``event-kafka serve`` on
  examples/event-kafka.toml).
* ``console`` blocks: each ``$ command`` runs (unchanged) and its output must be the lines that
  follow it.
* Relative links must name a file inside the repository.

Commands that cannot run in a test are in ``SKIP`` below, each with the reason; an entry that
matches no command any more is an error, so the list cannot go stale.
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from event_kafka.demo import example_config, free_ports
from event_kafka.devkafka import LocalKafka, TansuBroker, free_port
from tests.support import ServeProcess, missing, wait_until

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
KINDS["console"] = "console"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXAMPLE_ADDRESSES = {"mi": "8888", "udp": "8090", "tcp": "8091", "metrics": "9108"}

# substring of a command -> why it does not run here (and what tests it instead).
SKIP = {
    "make demo": "apt-get + venv + demo; tests/release/test_wheel.py runs `event-kafka demo`",
    "make test": "the suite this test is part of",
    "make bench": "the full benchmark, tens of minutes",
    "python -m bench --repeats": "the benchmark table, tens of minutes",
    "python -m bench --smoke": "minutes; what tests/test_bench_smoke.py runs",
    "python -m bench.report": "needs a results file of a benchmark run (<file> is a placeholder)",
    "event-kafka serve -c examples/event-kafka.toml  ": (
        "runs until SIGTERM; the `service` fixture here runs it on this file"
    ),
    "pip install dist/event_kafka": (
        "needs a built wheel; tests/release/test_wheel.py builds and installs it in a fresh venv"
    ),
    "/tmp/ek/bin/event-kafka --version": "tests/release/test_wheel.py runs the installed --version",
    "useradd ": "changes the host; tests/release/test_systemd.py runs this layout as nobody",
    "install -d -o root -g event-kafka": "changes /etc; test_systemd.py does it in a tmp root",
    "install -o root -g event-kafka": "changes /etc; test_systemd.py does it in a tmp root",
    "install -m 0644 examples/event-kafka.service": "changes /etc; test_systemd.py verifies it",
    "systemctl ": "needs a running systemd (none in test containers)",
    "opensips-cli -x mi event_subscribe": "sent to a real OpenSIPS's MI; none runs in the tests",
    "apt-get ": "installs packages; `make test` runs scripts/install-system-deps.sh --e2e",
    "make -C opensips-3.6.8": "needs an unpacked tarball; scripts/build-opensips.sh runs this make",
    "build-opensips.sh --optimised": "the benchmark's build (minutes); bench/opensips_python.py",
    "python -m bench.opensips_python": "the OpenSIPS benchmark, minutes",
    "/usr/bin/python3 -m venv /opt/ek-venv": "writes /opt and downloads the dependencies",
}
# Programs some blocks need that `make test` installs (scripts/install-system-deps.sh --e2e).
PROGRAMS = ("kamailio", "sipp", "kamcmd")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    kind: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            kind = KINDS.get(m.group(1).lower())
            if kind is not None:
                line = text.count("\n", 0, m.start()) + 1
                found.append(Block(path, line, kind, m.group(2)))
    return found


BLOCKS = _blocks()


def _commands(text: str) -> list[str]:
    """Logical shell commands: ``\\``-continued lines joined; blank and comment lines dropped."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if pending:
            pending += "\n" + line
        elif line.strip() and not line.lstrip().startswith("#"):
            pending = line
        if pending and not pending.endswith("\\"):
            out.append(pending)
            pending = ""
    return out + ([pending] if pending else [])


def _skip_reason(command: str) -> str | None:
    return next((why for what, why in SKIP.items() if what in command), None)


# -- the service and environment sh blocks run against ------------------------------------------


@dataclass
class Service:
    replacements: dict[str, str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def service(
    kafka_broker: LocalKafka | TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("docs-home")
    ports = free_ports()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "HOME": str(home), "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    svc = ServeProcess(
        home,
        example_config(kafka_broker.bootstrap, ports),
        mi_port=ports["mi"],
        health_port=ports["metrics"],
        listeners=(ports["udp"], ports["tcp"]),
    )
    try:
        svc.start(timeout=60, env=env)
        wait_until(svc.ready, 60, "the example service's /health/ready")
        replacements = {"127.0.0.1:9092": kafka_broker.bootstrap}
        for name, port in EXAMPLE_ADDRESSES.items():
            replacements[f"127.0.0.1:{port}"] = f"127.0.0.1:{ports[name]}"
        yield Service(replacements, env)
    finally:
        if svc.alive:
            svc.stop()


def _replace(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


# -- the tests ----------------------------------------------------------------------------------


def test_blocks_were_found() -> None:
    kinds = {b.kind for b in BLOCKS}
    assert {"python", "sh", "console"} <= kinds, kinds


def test_skip_entries_are_used() -> None:
    commands = [c for b in BLOCKS if b.kind == "sh" for c in _commands(b.text)]
    unused = [what for what in SKIP if not any(what in c for c in commands)]
    assert not unused, f"stale SKIP entries (their command is gone): {unused}"


REPO_PATH = re.compile(
    r"(?<![\w./-])(?:\$PWD/)?((?:examples|src|docs|scripts|bench|tests)/[\w./*-]+)"
)
MACHINE_PATH = re.compile(r"(?<![\w.-])/(?:work|root|home)/")


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_paths_exist(block: Block) -> None:
    # Also for the blocks that do not run: no path of one machine, no file that is not there.
    assert not MACHINE_PATH.search(block.text), f"{block.id}: a path of one machine"
    text = re.sub(r"\S*<[^>\s]*>\S*", "", block.text)  # placeholders such as <file>
    missing = [p for p in REPO_PATH.findall(text) if not list(ROOT.glob(p.rstrip(".")))]
    assert not missing, f"{block.id}: no such file in the repository: {missing}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_in_the_repository(path: Path) -> None:
    bad = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or an anchor of this page
        file = (path.parent / target.split("#")[0]).resolve()
        if not file.is_relative_to(ROOT) or not file.exists():
            bad.append(target)
    assert not bad, f"links to nothing or outside the repository: {bad}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "python"], ids=lambda b: b.id)
def test_python_block(block: Block, kafka_broker: LocalKafka | TansuBroker, tmp_path: Path) -> None:
    code = block.text.replace("127.0.0.1:9092", kafka_broker.bootstrap)
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, {}, block.id, str(block.path), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.summarize(verbose=False).failed == 0
        return
    if re.search(r"^import KSR$", code, re.MULTILINE):
        # Kamailio's KEMI module exists only inside Kamailio: the smallest stand-in for import.
        (tmp_path / "KSR.py").write_text(
            "import sys\n"
            "class pv:\n    @staticmethod\n    def get(name): return name\n"
            "def err(text): sys.stderr.write(text)\n"
        )
    script = tmp_path / "snippet.py"
    script.write_text(code)
    res = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"{block.id}:\n{code}\n--- output:\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "sh"], ids=lambda b: b.id)
def test_sh_block(block: Block, service: Service, tmp_path: Path) -> None:
    commands = [c for c in _commands(block.text) if _skip_reason(c) is None]
    if not commands:
        why = "; ".join(sorted({str(_skip_reason(c)) for c in _commands(block.text)}))
        pytest.skip(f"nothing here runs in a test: {why}")
    text = "\n".join(commands)
    absent = [p for p in PROGRAMS if re.search(rf"^\s*{p} ", text, re.M) and not shutil.which(p)]
    if absent:
        missing(f"needs {absent}: `make test` installs them (install-system-deps.sh --e2e)")
    # The docs' fixed example ports and run directory, made private to this run.
    private = {"/tmp/ek-kam": str(tmp_path / "ek-kam"), "/tmp/ek-os": str(tmp_path / "ek-os")}
    private.update({str(p): str(free_port()) for p in range(5070, 5074) if str(p) in text})
    # The migration page converts "the operator's" opensips.cfg: the suite's realistic one, and
    # the TOML it writes goes to this run's directory.
    private["/etc/opensips/opensips.cfg"] = str(ROOT / "tests" / "data" / "opensips-kafka.cfg")
    private["> event-kafka.toml"] = f"> {tmp_path / 'event-kafka.toml'}"
    private["-c event-kafka.toml"] = f"-c {tmp_path / 'event-kafka.toml'}"
    # Background jobs a block starts are stopped (by PID) however the block ends.
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += _replace(_replace(text, service.replacements), private)
    before = _untracked()
    res = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, f"{block.id}:\n{script}\n--- output:\n{res.stdout}{res.stderr}"
    left = sorted(_untracked() - before)
    assert not left, f"{block.id} leaves files in the repository: {left}"


def _untracked() -> set[str]:
    if not (ROOT / ".git").exists():
        return set()  # an unpacked sdist: nothing to compare with
    cmd = ["git", "status", "--porcelain", "--untracked-files=all"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    return {line[3:] for line in out.splitlines() if line.startswith("??")}


_END = "@@docs-test-end@@"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "console"], ids=lambda b: b.id)
def test_console_block(block: Block) -> None:
    commands: list[str] = []
    expected: list[list[str]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
            expected.append([])
        elif commands:
            expected[-1].append(line)
    assert commands, f"{block.id}: a console block without a `$ command`"
    # The marker after each command keeps its exit status for a following `echo $?`.
    script = "".join(f"{c} 2>&1; s=$?; echo {_END}; (exit $s)\n" for c in commands)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    res = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    outputs = [o.strip("\n").splitlines() for o in res.stdout.split(_END + "\n")[:-1]]
    assert len(outputs) == len(commands), res.stdout + res.stderr
    for command, want, got in zip(commands, expected, outputs, strict=True):
        assert got == want, f"{block.id}: $ {command}"
