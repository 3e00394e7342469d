"""examples/event-kafka.service as shipped: ``systemd-analyze verify``, and the documented install
(a venv in /opt/event-kafka, the configuration root:<group> 0640 in a 0750 directory) run as an
unprivileged user. The service user is ``nobody``/``nogroup`` here (the unit's ``event-kafka``
user does not exist on a test machine); every path is under a temporary root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from event_kafka.demo import _mi, example_config, free_ports
from event_kafka.devkafka import LocalKafka, TansuBroker
from tests.release.conftest import ROOT, Built, run_timed
from tests.support import http_status, missing, wait_until

pytestmark = pytest.mark.packaging

UNIT = ROOT / "examples" / "event-kafka.service"
INSTALLED_BIN = "/opt/event-kafka/bin/event-kafka"
CONFIG = "/etc/event-kafka/event-kafka.toml"
NOBODY, NOGROUP = 65534, 65534
# What the service needs and an unprivileged user can run: Debian's interpreter (the pyenv one
# of the dev venv lives under /root, which nobody can enter).
SYSTEM_PYTHON = "/usr/bin/python3.11"


def _unit_value(name: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", UNIT.read_text(), re.MULTILINE)


def test_unit_verifies_and_matches_the_documented_install(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed (Debian package: systemd)")
    root = tmp_path / "root"
    unit = root / "etc" / "systemd" / "system" / "event-kafka.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(UNIT, unit)
    # The targets the unit is ordered against come with systemd itself.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    # verify checks that every command exists and is executable: give it the installed layout.
    for exe in (INSTALLED_BIN, "/bin/kill"):
        path = root / exe.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    res = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "event-kafka.service" not in res.stderr, res.stderr  # no warning about our unit
    # The header's install steps and the unit agree.
    assert _unit_value("ExecStart") == [f"{INSTALLED_BIN} serve -c {CONFIG}"]
    assert _unit_value("ExecStartPre") == [f"{INSTALLED_BIN} serve --check -c {CONFIG}"]
    assert _unit_value("User") == ["event-kafka"] and _unit_value("Group") == ["event-kafka"]
    assert _unit_value("DynamicUser") == []
    # ProtectSystem=strict: the spool the example config suggests must be in the state directory.
    assert _unit_value("ProtectSystem") == ["strict"]
    assert _unit_value("StateDirectory") == ["event-kafka"]
    assert _unit_value("StateDirectoryMode") == ["0700"]
    example = (ROOT / "examples" / "event-kafka.toml").read_text()
    assert '# dir = "/var/lib/event-kafka/spool"' in example
    header = UNIT.read_text().split("[Unit]")[0]
    assert "install -d -o root -g event-kafka -m 0750 /etc/event-kafka" in header
    assert "install -o root -g event-kafka -m 0640 event-kafka.toml /etc/event-kafka/" in header
    assert "python3 -m venv /opt/event-kafka" in header


@pytest.fixture(scope="module")
def install_root(built: Built, timings: dict[str, float]) -> Iterator[Path]:
    """A root directory nobody can traverse, holding /opt/event-kafka installed from the wheel."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        missing("needs root and setpriv to run the service as another user")
    if not Path(SYSTEM_PYTHON).exists():
        missing(f"{SYSTEM_PYTHON} (Debian python3.11) is needed for a venv nobody can run")
    root = Path(tempfile.mkdtemp(prefix="ek-systemd-"))
    try:
        root.chmod(0o755)
        venv = root / "opt" / "event-kafka"
        run_timed("systemd: venv", timings, [SYSTEM_PYTHON, "-m", "venv", str(venv)])
        pip = [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q", "install"]
        run_timed("systemd: pip install wheel", timings, [*pip, str(built.wheel)])
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _install_config(root: Path, text: str, group: int) -> Path:
    """The header's ``install -d ... -m 0750`` and ``install ... -m 0640``, as root."""
    etc = root / "etc" / "event-kafka"
    etc.mkdir(parents=True, exist_ok=True)
    os.chown(etc, 0, group)
    etc.chmod(0o750)
    cfg = etc / "event-kafka.toml"
    cfg.write_text(text)
    os.chown(cfg, 0, group)
    cfg.chmod(0o640)
    return cfg


def _as_nobody(root: Path, *args: str) -> list[str]:
    exe = str(root / INSTALLED_BIN.lstrip("/"))
    who = [f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups"]
    return ["setpriv", *who, "--", exe, *args]


ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _check_as_nobody(root: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    """``serve --check -c cfg`` as the service user, from ``/``."""
    return subprocess.run(
        _as_nobody(root, "serve", "--check", "-c", str(cfg)),
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        cwd="/",
    )


def test_service_runs_as_an_unprivileged_user(
    install_root: Path, kafka_broker: LocalKafka | TansuBroker
) -> None:
    ports = free_ports()
    # StateDirectory=event-kafka: /var/lib/event-kafka, the service user's, 0700; the spool in it.
    state = install_root / "var" / "lib" / "event-kafka"
    state.mkdir(parents=True)
    os.chown(state, NOBODY, NOGROUP)
    state.chmod(0o700)
    config = example_config(kafka_broker.bootstrap, ports)
    config += f'\n[spool]\ndir = "{state / "spool"}"\n'
    cfg = _install_config(install_root, config, NOGROUP)
    check = _check_as_nobody(install_root, cfg)
    assert check.returncode == 0, check
    svc = subprocess.Popen(
        _as_nobody(install_root, "serve", "-c", str(cfg)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        cwd="/",
    )
    try:
        ready = f"http://127.0.0.1:{ports['metrics']}/health/ready"
        wait_until(lambda: http_status(ready) == 200 or svc.poll() is not None, 60, ready)
        assert svc.poll() is None, svc.communicate()[0]
        status = Path(f"/proc/{svc.pid}/status").read_text()  # setpriv exec()s the service
        assert re.search(rf"^Uid:\s+{NOBODY}\s", status, re.MULTILINE), status
        assert re.search(r"^Groups:\s*$", status, re.MULTILINE), status
        # A spooled event: the service writes its spool in the state directory.
        mi = f"http://127.0.0.1:{ports['mi']}/mi"
        cdr = {"event": "E_ACC_CDR", "params": '{"callid":"c1"}'}  # params as JSON text, as MI
        assert _mi(mi, "raise_event", cdr) == "OK"
        spool = state / "spool"
        wait_until(lambda: any(p.is_file() for p in spool.rglob("*")), 30, "a spool file")
        assert {p.stat().st_uid for p in spool.rglob("*")} == {NOBODY}
        svc.send_signal(signal.SIGTERM)
        out = svc.communicate(timeout=60)[0]
        assert svc.returncode == 0, out
    finally:
        if svc.poll() is None:
            svc.kill()
            svc.wait(10)


def test_spool_the_service_user_cannot_reach_is_exit_78(install_root: Path) -> None:
    # A spool outside the state directory the unit gives the user: a clear error, no traceback.
    private = install_root / "var" / "lib" / "root-only"
    private.mkdir(parents=True)
    private.chmod(0o700)
    config = example_config("127.0.0.1:9", free_ports())
    cfg = _install_config(
        install_root, config + f'\n[spool]\ndir = "{private / "spool"}"\n', NOGROUP
    )
    res = _check_as_nobody(install_root, cfg)
    assert res.returncode == 78, res
    assert f"spool.dir: {private / 'spool'} cannot be reached: Permission denied" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_config_unreadable_by_the_service_user_is_exit_78(install_root: Path) -> None:
    # The shipped unit's old failure: a root:root 0640 file the service user cannot read.
    cfg = _install_config(install_root, example_config("127.0.0.1:9", free_ports()), 0)
    res = _check_as_nobody(install_root, cfg)
    assert res.returncode == 78, res
    assert "ermission denied" in res.stdout + res.stderr
