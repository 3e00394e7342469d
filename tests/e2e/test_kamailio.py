"""End to end: a real Kamailio (app_python3, KEMI) under SIPp load publishes through event-kafka.

Kamailio runs ``examples/kamailio/kamailio.cfg`` + ``kamailio_kemi.py`` on 127.0.0.1, with 4
UDP workers. SIPp's built-in ``uac`` scenario (INVITE / 200 / ACK / BYE / 200) and
``examples/kamailio/options.xml`` load it at a steady rate. Then Kafka must hold:

* exactly one ``E_SIP_REQUEST`` event per SIP request (INVITE, ACK, BYE per call; each
  OPTIONS), keyed by its Call-ID, as the OpenSIPS JSON-RPC notification;
* exactly one CDR per call, keyed by its Call-ID;

and the ``kafka_report`` route must have run once per CDR, with success, in the worker that
published it (one report file per worker process, see ``EK_REPORT_DIR`` in the script).

Needs Debian's ``kamailio``, ``kamailio-python3-modules`` and ``sip-tester`` (``make test``
installs them through ``scripts/install-system-deps.sh --e2e``); skipped, saying so, without.
Kamailio embeds Debian's libpython3.X: this interpreter's site-packages are handed to it
through ``PYTHONPATH``, so its minor version must be the same (C extensions: cp3X ABI).
"""

from __future__ import annotations

import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from tests.support.sip import sip_options
from tests.support.sipp import (
    embedded_python,
    free_udp_port,
    python_path,
    run_sipp,
    uac,
    udp_rcvbuf_errors,
)

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "kamailio"
CFG = EXAMPLE / "kamailio.cfg"
KEMI = EXAMPLE / "kamailio_kemi.py"
OPTIONS_XML = EXAMPLE / "options.xml"

CALLS = 2000  # SIPp uac calls (INVITE + ACK + BYE each)
CALL_RATE = 200  # calls per second, steady
OPTIONS = 1000  # OPTIONS requests
OPTIONS_RATE = 200
CHILDREN = 4  # Kamailio UDP workers: 4 processes, each with its own producers


def _kamailio() -> str | None:
    return shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.path.exists(p)),
        None,
    )


def _app_python3() -> str | None:
    found = glob.glob("/usr/lib/*/kamailio/modules/app_python3.so") + glob.glob(
        "/usr/local/lib*/kamailio/modules/app_python3.so"
    )
    return found[0] if found else None


def _skip_reason() -> str | None:
    missing = []
    kam = _kamailio()
    if kam is None:
        missing.append("kamailio")
    mod = _app_python3()
    if mod is None:
        missing.append("kamailio-python3-modules (app_python3.so)")
    if shutil.which("sipp") is None:
        missing.append("sip-tester (sipp)")
    if missing:
        return (
            f"not installed: {', '.join(missing)} "
            "(apt-get install kamailio kamailio-python3-modules sip-tester, "
            "or scripts/install-system-deps.sh --e2e)"
        )
    assert mod is not None
    emb = embedded_python(mod)
    if emb is not None and emb != sys.version_info[:2]:
        return (
            f"app_python3 embeds Python {emb[0]}.{emb[1]} but the tests run on "
            f"{sys.version_info[0]}.{sys.version_info[1]}: their site-packages "
            "(confluent-kafka, orjson) cannot be loaded into Kamailio"
        )
    return None


_SKIP = _skip_reason()
if _SKIP:
    pytestmark.append(pytest.mark.skip(reason=_SKIP))


# -- helpers ------------------------------------------------------------------------------


class Kamailio:
    """One Kamailio started by PID (foreground main, -DD), stopped by PID with SIGTERM."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.rundir = workdir / "run"
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "kamailio.log"
        # RPC socket (kamcmd -s unix:PATH): short, a unix socket path has at most 107 bytes.
        self.ctl = f"/tmp/ek-kam-{port}-{os.getpid()}.ctl"
        kam = _kamailio()
        assert kam is not None
        self.cmd = [
            kam,
            "-f",
            str(CFG),
            "-DD",  # main process stays in the foreground: its PID is ours to stop
            "-E",  # log to stderr -> kamailio.log
            "-Y",
            str(self.rundir),
            "-m",
            "256",  # shm MB: each tm transaction holds ~14 kB for its 5 s wait timer
            "-A",
            f"EK_SIP_PORT={port}",
            "-A",
            f"EK_CHILDREN={CHILDREN}",
            "-A",
            f'EK_KEMI_SCRIPT="{KEMI}"',
            "-A",
            f'EK_CTL_SOCKET="unix:{self.ctl}"',
        ]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        wait_until(self._answers, timeout, f"kamailio answering on udp:127.0.0.1:{self.port}")
        self.children = self._children()

    def _answers(self) -> bool:
        """Kamailio answers an OPTIONS (fails at once if it exited)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"kamailio exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            sip_options(self.port, "ek-drain", timeout=1.0)
        except TimeoutError:
            return False
        return True

    def _children(self) -> set[int]:
        assert self.proc is not None
        pid = self.proc.pid
        kids: set[int] = set()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.update(int(x) for x in f.read().split())
        return kids

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.children |= self._children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # main forwards it to every child
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Children left behind (should not happen) are ours too: by PID, never by name.
        for pid in self.children:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"kamailio" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.unlink(self.ctl)
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def python_errors(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [
            ln
            for ln in text.splitlines()
            if ("app_python3" in ln and "ERROR" in ln) or ("event-kafka" in ln and "failed" in ln)
        ]


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    started: list[Kamailio] = []

    def start(**env_vars: str) -> Kamailio:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env["PYTHONPATH"] = python_path()
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(env_vars)
        k = Kamailio(tmp_path / f"kamailio-{len(started)}", env, free_udp_port())
        started.append(k)
        k.start()
        return k

    yield start
    for k in started:
        k.stop()


def options(workdir: Path, port: int, count: int, rate: int, user: str = "ping") -> None:
    rc, stats, out = run_sipp(
        workdir,
        port,
        ["-sf", str(OPTIONS_XML), "-s", user, "-m", str(count), "-r", str(rate)],
    )
    assert rc == 0, f"sipp options exit {rc}, stats {stats}:\n{out}"
    assert stats.get("SuccessfulCall(C)") == count, stats
    assert stats.get("FailedCall(C)") == 0, stats


def read_reports(report_dir: Path) -> list[tuple[int, str, str, str]]:
    """(pid, status, kafka_id, key) of every report line the workers wrote."""
    out = []
    for f in sorted(report_dir.glob("reports.*")):
        pid = int(f.name.split(".", 1)[1])
        for line in f.read_text().splitlines():
            status, kid, key = line.split(" ", 2)
            out.append((pid, status, kid, key))
    return out


def drain_reports(
    k: Kamailio, report_dir: Path, expect: int, timeout: float = 60.0, note: str = ""
) -> None:
    """Send ``ek-drain`` OPTIONS until ``expect`` report lines exist.

    Kamailio 5.6 workers hold the GIL between requests, so event-kafka's poll and report-route
    threads only run while their worker runs Python: the last reports of each worker wait for
    that worker's next request. Each drain request gives one worker (the kernel picks the idle
    one that waited longest) up to 0.5 s to serve them.
    """

    def drained() -> bool:
        if len(read_reports(report_dir)) >= expect:
            return True
        sip_options(k.port, "ek-drain")  # a request: some worker runs Python again
        return False

    wait_until(drained, timeout, f"{expect} delivery reports{note}", step=0)


# -- tests ----------------------------------------------------------------------------------


def test_kamailio_sipp_without_publishing(
    kamailio_factory: Callable[..., Kamailio], tmp_path: Path
) -> None:
    """The SIP plumbing alone: Kamailio imports the script and event_kafka, SIPp completes.

    ``EK_PUBLISH=0``: the EventKafka is built (nothing connects) but nothing is sent, so no
    broker is needed; this is also the baseline for the publishing rate.
    """
    k = kamailio_factory(EK_PUBLISH="0", EK_BROKERS="127.0.0.1:9")
    uac(tmp_path / "sipp-uac", k.port, CALLS, CALL_RATE)
    options(tmp_path / "sipp-options", k.port, OPTIONS, OPTIONS_RATE)
    reply = sip_options(k.port, "ek-drain")
    assert reply.startswith("SIP/2.0 200"), reply
    assert "X-EK-Reports:" in reply and "events=0" in reply, reply
    assert k.python_errors() == []
    assert k.stop() is not None


def test_kamailio_publishes_events_and_cdrs(
    kafka_broker: Any,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Any]],
    kamailio_factory: Callable[..., Kamailio],
    tmp_path: Path,
) -> None:
    events_topic = make_topic(4)
    cdr_topic = make_topic(4)
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    k = kamailio_factory(
        EK_BROKERS=kafka_broker.bootstrap,
        EK_EVENT_TOPIC=events_topic,
        EK_CDR_TOPIC=cdr_topic,
        EK_REPORT_DIR=str(report_dir),
    )

    drops0 = udp_rcvbuf_errors()
    t0 = time.monotonic()
    uac(tmp_path / "sipp-uac", k.port, CALLS, CALL_RATE)
    uac_s = time.monotonic() - t0
    options(tmp_path / "sipp-options", k.port, OPTIONS, OPTIONS_RATE)
    # Lost datagrams break "one event per request" without any fault of ours: a dropped ACK
    # is never retransmitted, and SIPp's built-in uac takes tm's retransmitted 200 OK of the
    # INVITE as the 200 OK of a dropped BYE (it does not check the CSeq method). Say so.
    drops = udp_rcvbuf_errors() - drops0
    why = f" (UDP datagrams dropped on this host meanwhile: {drops})"

    # Delivery reports: exactly one per CDR, all successful, each in the publishing worker.
    drain_reports(k, report_dir, CALLS, note=why)
    reports = read_reports(report_dir)
    assert len(reports) == CALLS, f"{len(reports)} reports for {CALLS} CDRs"
    assert collections.Counter(r[1] for r in reports) == {"ok": CALLS}
    assert {r[2] for r in reports} == {"cdr"}
    report_keys = collections.Counter(r[3] for r in reports)
    assert len(report_keys) == CALLS and max(report_keys.values()) == 1
    workers = {r[0] for r in reports}
    assert len(workers) > 1, f"all CDRs from one worker {workers}: load not spread?"

    # SIGTERM first, then read Kafka: what the workers had accepted must all be there.
    # (Kamailio workers _exit(0) on SIGTERM with no Python shutdown; librdkafka's native
    # threads have sent everything by now, which the drain above waited for.)
    assert k.python_errors() == []
    k.stop()

    # Events: one per request, keyed by Call-ID, OpenSIPS JSON-RPC notifications.
    n_events = 3 * CALLS + OPTIONS
    events = consume(events_topic, expect=n_events, timeout=60)
    assert len(events) == n_events, f"{len(events)} events for {n_events} requests{why}"
    per_call: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in events:
        body = json.loads(r.value)
        assert body["jsonrpc"] == "2.0" and body["method"] == "E_SIP_REQUEST"
        p = body["params"]
        assert r.key is not None and r.key.decode() == p["callid"], (r.key, p)
        assert p["ruri"].startswith("sip:") and p["src"].startswith("127.0.0.1:")
        assert ("event", b"E_SIP_REQUEST") in r.headers
        per_call[p["callid"]][p["method"]] += 1
    calls = {c: m for c, m in per_call.items() if "INVITE" in m}
    pings = {c: m for c, m in per_call.items() if "OPTIONS" in m}
    assert len(calls) == CALLS and len(pings) == OPTIONS, why
    bad = [(c, m) for c, m in calls.items() if m != {"INVITE": 1, "ACK": 1, "BYE": 1}]
    assert not bad, f"{len(bad)} calls, e.g. {bad[:5]}{why}"
    assert all(m == {"OPTIONS": 1} for m in pings.values())

    # CDRs: one per call, keyed by its Call-ID, the same calls as the events.
    cdrs = consume(cdr_topic, expect=CALLS, timeout=60)
    assert len(cdrs) == CALLS
    cdr_keys = collections.Counter(r.key.decode() for r in cdrs if r.key is not None)
    assert len(cdr_keys) == CALLS and max(cdr_keys.values()) == 1
    assert set(cdr_keys) == set(calls) == set(report_keys)
    for r in cdrs[:50]:
        cdr = json.loads(r.value)
        assert r.key is not None and cdr["callid"] == r.key.decode()
        assert cdr["duration"] is not None and cdr["duration"] >= 0

    print(
        f"\nkamailio e2e: {CALLS} calls at {CALL_RATE} cps in {uac_s:.1f}s, "
        f"{n_events} events, {CALLS} CDRs, {len(workers)} workers published"
    )
