"""End to end: event-kafka inside the real OpenSIPS 3.6.8 (python module), beside OpenSIPS's own
event_kafka.so, in one server on the same SIPp traffic.

OpenSIPS runs ``examples/opensips/opensips.cfg`` + ``ek_handler.py`` (2 UDP workers). For every
SIP request the script publishes the same message through the C ``kafka_publish`` and through
event-kafka's (``python_exec``), and raises ``E_SIP_REQUEST`` to both Event Interfaces, each
with a ``kafka:...?key=callid`` subscriber: four topics. Then:

* both ``kafka_publish`` topics hold the same records with the same keys (the Call-ID);
* both event topics hold the same notifications; event-kafka keys them by the Call-ID,
  OpenSIPS does not (its key=callid bug, tests/opensips/test_opensips_bugs.py);
* each report route ran exactly once per record; event-kafka's ran in the worker that
  published it (the PID inside the message), so every worker used producers of its own, and
  the startup record the main process published before the fork was delivered once;
* on SIGTERM with a broker that answers late, OpenSIPS loses what its Kafka process did not
  flush in 250 ms, event-kafka delivers everything it accepted (its workers close at exit).

Needs the cached OpenSIPS build (scripts/build-opensips.sh, python module included) and SIPp;
OpenSIPS embeds Debian's libpython3.X, so the tests must run on the same minor version (this
interpreter's site-packages are handed to it through PYTHONPATH).
"""

from __future__ import annotations

import collections
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import Record, free_port
from tests.opensips.heldproxy import HeldProxy
from tests.opensips.osbed import OpenSIPS, opensips_with_python
from tests.support import wait_until
from tests.support.sip import send_sip, sip_message
from tests.support.sipp import free_udp_port, python_path, uac, udp_rcvbuf_errors

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "opensips"
CALLS = 2000  # SIPp uac calls: INVITE, ACK, BYE each
CALL_RATE = 250
WORKERS = 2
HELD = 300  # requests published while the broker does not answer, then SIGTERM


@pytest.fixture(scope="module")
def prefix() -> Path:
    return opensips_with_python()


def render_cfg(
    prefix: Path, sip_port: int, mi_port: int, brokers: str, topics: dict[str, str]
) -> str:
    values = {
        "WORKERS": str(WORKERS),
        "SIP_PORT": str(sip_port),
        "MPATH": f"{prefix}/lib64/opensips/modules/",
        "MI_PORT": str(mi_port),
        "BROKERS": brokers,
        "OS_PUB_TOPIC": topics["os_pub"],
        "OS_EVENT_TOPIC": topics["os_ev"],
        "HANDLER": str(EXAMPLE / "ek_handler.py"),
    }
    cfg = re.sub(
        r"@([A-Z_]+)@", lambda m: values[m.group(1)], (EXAMPLE / "opensips.cfg").read_text()
    )
    return cfg


class Bed:
    """One OpenSIPS with the example config; its report lines in ``reports``."""

    def __init__(
        self, prefix: Path, workdir: Path, brokers: str, topics: dict[str, str], **env: str
    ) -> None:
        workdir.mkdir(parents=True)
        self.reports = workdir / "reports"
        self.reports.mkdir()
        sip_port, mi_port = free_udp_port(), free_port()
        cfg = render_cfg(prefix, sip_port, mi_port, brokers, topics)
        self.os = OpenSIPS(prefix, workdir, cfg, mi_port, sip_port)
        self.os.env = {
            **os.environ,
            "PYTHONPATH": python_path(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "EK_BROKER_IDS": f"[pub]{brokers}/{topics['ek_pub']}?t.acks=all",
            "EK_SUBSCRIBE": f"E_SIP_REQUEST=kafka:{brokers}/{topics['ek_ev']}?key=callid",
            "EK_REPORT_DIR": str(self.reports),
            **env,
        }
        self.os.env.pop("PYTHONHOME", None)

    def lines(self, side: str) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.reports.glob(f"{side}-reports.*")):
            out += [json.loads(ln) for ln in f.read_text().splitlines() if ln.endswith("}")]
        return out

    def stat(self, name: str) -> int:
        res = self.os.ok("get_statistics", {"statistics": [name]})
        return int(next(iter(res.values())))

    def kafka_worker_pid(self) -> int:
        procs = self.os.ok("ps")["Processes"]
        return next(int(p["PID"]) for p in procs if p["Type"] == "Kafka worker")

    def python_errors(self) -> list[str]:
        return [ln for ln in self.os.log().splitlines() if "python:" in ln or "refused" in ln]


@pytest.fixture
def beds(prefix: Path, tmp_path: Path) -> Iterator[Callable[..., Bed]]:
    started: list[Bed] = []

    def start(brokers: str, topics: dict[str, str], **env: str) -> Bed:
        bed = Bed(prefix, tmp_path / f"os{len(started)}", brokers, topics, **env)
        started.append(bed)
        bed.os.start()
        return bed

    yield start
    for bed in started:
        bed.os.kill()


def pairs(records: list[Record]) -> collections.Counter[tuple[bytes | None, bytes | None]]:
    return collections.Counter((r.key, r.value) for r in records)


def test_opensips_python_module_beside_event_kafka_so(
    kafka_broker: Any,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Record]],
    beds: Callable[..., Bed],
    tmp_path: Path,
) -> None:
    topics = {k: make_topic(2) for k in ("os_pub", "ek_pub", "os_ev", "ek_ev")}
    bed = beds(kafka_broker.bootstrap, topics, EK_STARTUP_ID="pub")
    main_pid = bed.os.proc.pid if bed.os.proc else -1

    drops0 = udp_rcvbuf_errors()
    uac(tmp_path / "sipp", bed.os.sip_port, CALLS, CALL_RATE)
    why = f" (UDP datagrams dropped on this host meanwhile: {udp_rcvbuf_errors() - drops0})"
    # Every request that reached the script was published once each way (retransmissions
    # included, on both sides alike): OpenSIPS's own count says how many.
    n = bed.stat("rcv_requests")
    assert n >= 3 * CALLS, f"{n} requests for {CALLS} calls{why}"

    # Report routes: one per accepted record, the startup record's included (event-kafka).
    wait_until(lambda: len(bed.lines("ek")) >= n + 1, 60, f"{n + 1} event-kafka reports")
    wait_until(lambda: len(bed.lines("os")) >= n, 60, f"{n} OpenSIPS reports")
    ek_pub = consume(topics["ek_pub"], expect=n + 1, timeout=60)
    os_pub = consume(topics["os_pub"], expect=n, timeout=60)
    ek_ev = consume(topics["ek_ev"], expect=n, timeout=60)
    os_ev = consume(topics["os_ev"], expect=n, timeout=60)
    assert bed.python_errors() == []
    assert bed.os.stop() == 0, bed.os.tail()
    ek_reports, os_reports = bed.lines("ek"), bed.lines("os")

    # kafka_publish: the same records with the same keys, on both sides.
    startup = [r for r in ek_pub if r.key == b"startup"]
    assert len(startup) == 1 and json.loads(startup[0].value or b"")["pid"] == main_pid
    ek_pub = [r for r in ek_pub if r.key != b"startup"]
    assert len(ek_pub) == len(os_pub) == n
    assert pairs(ek_pub) == pairs(os_pub)
    per_call: dict[bytes | None, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for r in ek_pub:
        body = json.loads(r.value or b"")
        assert r.key is not None and r.key.decode() == body["callid"]
        per_call[r.key][body["method"]] += 1
    assert len(per_call) == CALLS, why
    missing = [m for m in per_call.values() if set(m) != {"INVITE", "ACK", "BYE"}]
    assert not missing, f"{len(missing)} calls lack a request, e.g. {missing[:3]}{why}"

    # Event Interface: the same notifications; event-kafka keys them by the Call-ID.
    def params(r: Record) -> tuple[str, ...]:
        body = json.loads(r.value or b"")
        assert body["jsonrpc"] == "2.0" and body["method"] == "E_SIP_REQUEST"
        return tuple(sorted(body["params"].items()))

    assert collections.Counter(map(params, ek_ev)) == collections.Counter(map(params, os_ev))
    assert all(r.key == dict(params(r))["callid"].encode() for r in ek_ev)
    os_keys = collections.Counter(r.key for r in os_ev)
    assert os_keys == {None: n}  # OpenSIPS 3.6.8 ignores key=callid on event sockets

    # Report routes ran exactly once per record, with success.
    def reported(lines: list[dict[str, Any]]) -> collections.Counter[tuple[Any, Any]]:
        return collections.Counter((ln["key"], ln["msg"]) for ln in lines)

    def published(records: list[Record]) -> collections.Counter[tuple[Any, Any]]:
        return collections.Counter(
            (r.key.decode() if r.key else None, (r.value or b"").decode()) for r in records
        )

    assert {ln["status"] for ln in ek_reports} == {0}
    assert reported(ek_reports) == published(ek_pub + startup)
    assert {ln["status"] for ln in os_reports} == {0}
    assert reported(os_reports) == published(os_pub)

    # Each worker its own producers: event-kafka's report ran in the process that published
    # (whose PID the script wrote into the message); the main process's producer, inherited by
    # every worker, was never used there.
    pids = collections.Counter()
    for ln in ek_reports:
        assert ln["pid"] == json.loads(ln["msg"])["pid"], ln
        pids[ln["pid"]] += 1
    workers = set(pids) - {main_pid}
    assert len(workers) == WORKERS, f"published from {pids}: load not spread over {WORKERS}?"
    assert pids[main_pid] == 1  # the startup record
    # OpenSIPS's module runs its report route in whichever worker its IPC picks (shown only).
    elsewhere = sum(ln["pid"] != json.loads(ln["msg"])["pid"] for ln in os_reports)

    print(
        f"\nopensips python e2e: {CALLS} calls, {n} requests; records: ek pub {len(ek_pub)}+1 "
        f"startup, os pub {len(os_pub)}, ek events {len(ek_ev)} (keyed), os events "
        f"{len(os_ev)} (no key); reports ek {len(ek_reports)} (all in the publishing worker), "
        f"os {len(os_reports)} ({elsewhere} in another worker); workers {dict(pids)}"
    )


def send_held(bed: Bed) -> int:
    """HELD requests while nothing can reach the broker; returns the Kafka worker's PID."""
    port = bed.os.sip_port
    reqs = [sip_message(port, f"held-{i}@ek", f"m{i}") for i in range(HELD)]
    assert send_sip(port, reqs) == [b"SIP/2.0 200 OK"] * HELD
    assert bed.lines("ek") == bed.lines("os") == []  # nothing can have been delivered
    return bed.kafka_worker_pid()


def test_sigterm_loses_nothing_event_kafka_accepted(
    kafka_broker: Any,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Record]],
    beds: Callable[..., Bed],
) -> None:
    """The broker answers late (a held proxy) when OpenSIPS gets SIGTERM. OpenSIPS's Kafka
    process flushes 250 ms and exits: its records are gone, without a report. event-kafka's
    workers close at exit (C on_exit hook, EK_CLOSE_TIMEOUT): the broker answers once the
    Kafka process is gone, within that time, and every accepted record is delivered and
    reported."""
    host, port = kafka_broker.bootstrap.split(",")[0].rsplit(":", 1)
    proxy = HeldProxy((host, int(port)), max_connections=32)
    topics = {k: make_topic(1) for k in ("os_pub", "ek_pub", "os_ev", "ek_ev")}
    try:
        bed = beds(f"127.0.0.1:{proxy.port}", topics, EK_CLOSE_TIMEOUT="4")
        kafka_pid = send_held(bed)

        # The broker comes back as soon as OpenSIPS's Kafka process has given up.
        def release_when_gone() -> None:
            wait_until(lambda: not os.path.exists(f"/proc/{kafka_pid}"), 30, "Kafka worker exit")
            proxy.release()

        releaser = threading.Thread(target=release_when_gone, daemon=True)
        releaser.start()
        assert bed.os.stop() == 0, bed.os.tail()
        releaser.join(30)
        assert proxy.released.is_set()
    finally:
        proxy.release()

    ek_pub = consume(topics["ek_pub"], expect=HELD, timeout=30)
    ek_ev = consume(topics["ek_ev"], expect=HELD, timeout=30)
    os_pub = consume(topics["os_pub"], timeout=5)
    os_ev = consume(topics["os_ev"], timeout=5)
    ek_reports, os_reports = bed.lines("ek"), bed.lines("os")
    proxy.close()
    print(
        f"\nSIGTERM with {HELD} requests held: event-kafka delivered {len(ek_pub)} + "
        f"{len(ek_ev)} events, {len(ek_reports)} reports; OpenSIPS delivered {len(os_pub)} + "
        f"{len(os_ev)} events, {len(os_reports)} reports"
    )
    assert len(ek_pub) == len(ek_ev) == HELD
    assert len({r.key for r in ek_pub}) == HELD
    assert len(ek_reports) == HELD and {ln["status"] for ln in ek_reports} == {0}
    # What OpenSIPS 3.6.8 does: whatever 250 ms did not flush is lost, with no report.
    assert len(os_pub) < HELD and len(os_ev) < HELD
    assert len(os_reports) == len(os_pub)


def test_sigterm_with_spool_loses_nothing_however_long_the_broker_is_away(
    kafka_broker: Any,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Record]],
    beds: Callable[..., Bed],
    tmp_path: Path,
) -> None:
    """With EK_SPOOL_DIR the broker stays away past OpenSIPS's whole shutdown: the workers
    close (1 s), leaving their records in the spool; a new process on the same spool
    (same broker_ids and subscriber) delivers every one, reported as replayed."""
    host, port = kafka_broker.bootstrap.split(",")[0].rsplit(":", 1)
    proxy = HeldProxy((host, int(port)), max_connections=32)
    topics = {k: make_topic(1) for k in ("os_pub", "ek_pub", "os_ev", "ek_ev")}
    spool = tmp_path / "spool"
    brokers = f"127.0.0.1:{proxy.port}"
    try:
        bed = beds(brokers, topics, EK_CLOSE_TIMEOUT="1", EK_SPOOL_DIR=str(spool))
        send_held(bed)
        assert bed.os.stop() == 0, bed.os.tail()
        assert bed.lines("ek") == []  # close() left them on disk, no report
        proxy.release()

        reports: list[Report] = []
        env = bed.os.env or {}  # the same broker_id and subscriber as the workers had
        ek = EventKafka([env["EK_BROKER_IDS"]], spool_dir=spool)
        ek.add_report_route("kafka_report", reports.append)
        event, _, sock = env["EK_SUBSCRIBE"].partition("=")
        ek.publish_event(event)
        ek.subscribe(event, sock, expire=None)
        # The subscriber's spool is adopted on first use: one more event, one more record.
        assert ek.raise_event(event, {"after": "restart"}) == 1
        assert ek.kafka_publish("pub", "after restart", "k", "kafka_report") == 1
        assert ek.flush(30) == 0
        assert ek.close(5) == 0
    finally:
        proxy.release()
    ek_pub = consume(topics["ek_pub"], expect=HELD + 1, timeout=30)
    ek_ev = consume(topics["ek_ev"], expect=HELD + 1, timeout=30)
    os_pub = consume(topics["os_pub"], timeout=5)
    proxy.close()
    print(
        f"\nSIGTERM with the spool, {HELD} held: replayed {len(ek_pub) - 1} + "
        f"{len(ek_ev) - 1} events; OpenSIPS delivered {len(os_pub)}"
    )
    assert len(ek_pub) == len(ek_ev) == HELD + 1
    assert len({r.key for r in ek_pub}) == HELD + 1
    replayed = [r for r in reports if getattr(r, "replayed", False)]
    assert len(replayed) == HELD and {r.kafka_status for r in reports} == {0}
    assert len(os_pub) < HELD
