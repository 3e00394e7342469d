"""``event-kafka serve`` as a process, driven by the real opensips-cli, the ``opensips`` MI
client and ``opensips-event``, fed over UDP/TCP, checked in a real Kafka. ``Service`` in
process: test_service.py; reloads: test_reload.py; logging: test_log_setup.py.

Every process started here is stopped by its PID; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from event_kafka.devkafka import Record, consume_all, create_topic, free_port
from event_kafka.jsonstream import StreamSplitter
from event_kafka.payload import build_payload, build_payload_with_id
from tests.support import EVENT_KAFKA, ServeProcess, wait_until

BIN = Path(sys.executable).parent
OPENSIPS_CLI = str(BIN / "opensips-cli")
OPENSIPS_EVENT = str(BIN / "opensips-event")


# -- names ----------------------------------------------------------------------------------------


def topic_name() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


# -- the shared service ----------------------------------------------------------------------------


class Svc:
    def __init__(
        self, daemon: ServeProcess, bootstrap: str, topics: dict[str, str], ports: dict[str, int]
    ):
        self.d = daemon
        self.bootstrap = bootstrap
        self.topics = topics
        self.ports = ports

    def consume(self, which: str, expect: int) -> list[Record]:
        return consume_all(self.bootstrap, self.topics[which], timeout=30, expect=expect)


@pytest.fixture(scope="module")
def svc(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    bootstrap = kafka_broker.bootstrap
    topics = {k: topic_name() for k in ("pub", "udp", "tcp", "dlq", "mix")}
    for t in topics.values():
        create_topic(bootstrap, t, 1)
    ports = {k: free_port() for k in ("mi", "udp", "tcp")}
    config = f"""
broker_ids = [
  "[k1]{bootstrap}/{topics["pub"]}?t.acks=all",
  "[dlq]{bootstrap}/{topics["dlq"]}",
  "[down]127.0.0.1:1/nowhere?t.message.timeout.ms=500",
]
[events]
publish = ["E_MI_EVT", "E_CLI"]
[[subscriptions]]
event = "E_UDP"
socket = "kafka:{bootstrap}/{topics["udp"]}"
[[subscriptions]]
event = "E_TCP"
socket = "kafka:{bootstrap}/{topics["tcp"]}?t.acks=all"
[[subscriptions]]
event = "E_MIX"
socket = "kafka:{bootstrap}/{topics["mix"]}"
[report_routes.main]
log = "all"
dead_letter = "dlq"
[mi]
listen = "127.0.0.1:{ports["mi"]}"
read_timeout = 1.5
max_request_bytes = 4096
report_wait_timeout = 20
[ingest.udp]
listen = "127.0.0.1:{ports["udp"]}"
[ingest.tcp]
listen = "127.0.0.1:{ports["tcp"]}"
[metrics]
check_brokers = true
[logging]
level = "INFO"
"""
    daemon = ServeProcess(
        tmp_path_factory.mktemp("svc"), config, listeners=(ports["udp"], ports["tcp"])
    )
    try:
        daemon.start(ports["mi"])
        yield Svc(daemon, bootstrap, topics, ports)
        assert daemon.stop() == 0, daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()
    finally:
        daemon.kill()


def cli(svc: Svc, *args: str, home: Path) -> tuple[int, Any, str]:
    """Run the real opensips-cli against the service: (exit status, parsed JSON, stderr)."""
    proc = subprocess.run(
        [
            OPENSIPS_CLI,
            "-o",
            "communication_type=http",
            "-o",
            f"url={svc.d.url}/mi",
            "-x",
            "mi",
            *args,
        ],
        capture_output=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
    )
    out = proc.stdout.decode()
    return proc.returncode, json.loads(out) if out.strip() else None, proc.stderr.decode()


# -- opensips-cli ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_opensips_cli_drives_every_command(svc: Svc, tmp_path: Path) -> None:
    def ok(*args: str) -> Any:
        rc, out, err = cli(svc, *args, home=tmp_path)
        assert rc == 0, (args, err)
        return out

    names = ok("which")
    assert {"event_subscribe", "evi:subscribe", "kafka_publish", "get_statistics"} <= set(names)
    assert ok("which", "raise_event") == [["event"], ["event", "params"]]
    assert ok("version")["Server"].startswith("event-kafka")
    assert set(ok("uptime")) == {"Now", "Up since", "Up time"}
    assert {"name": "E_CLI", "id": 1} in ok("events_list")["Events"]
    assert ok("evi:list") == ok("events_list")

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(10)
    udp = f"udp:127.0.0.1:{sink.getsockname()[1]}"
    try:
        assert ok("event_subscribe", "E_CLI", udp, "120") == "OK"
        one = ok("subscribers_list", "E_CLI", udp)
        ttl = one["Event"]["Subscriber"].pop("ttl")
        assert 100 < ttl <= 120  # opensips-cli takes a moment per call
        assert one == {
            "Event": {"name": "E_CLI", "id": 1, "Subscriber": {"socket": udp, "expire": 120}}
        }
        assert ok("evi:subscribers", "E_CLI")["Event"]["Subscribers"][0]["socket"] == udp
        assert any(e["name"] == "E_CLI" for e in ok("subscribers_list")["Events"])
        # positional params become an array (opensips-cli's raise_event special case)
        assert ok("raise_event", "E_CLI", "a", "b", "7") == "OK"
        assert sink.recv(65535) == b'{"jsonrpc":"2.0","method":"E_CLI","params":["a","b","7"]}'
        # named: opensips-cli splits params="..." into an array (shlex)
        assert ok("evi:raise", "event=E_CLI", "params=x 'y z'") == "OK"
        assert sink.recv(65535) == b'{"jsonrpc":"2.0","method":"E_CLI","params":["x","y z"]}'
        assert ok("event_subscribe", "event=E_CLI", f"socket={udp}", "expire=0") == "OK"
        rc, _, err = cli(svc, "subscribers_list", "E_CLI", udp, home=tmp_path)
        assert rc != 0 and "404: Subscriber does not exist" in err
    finally:
        sink.close()

    rc, _, err = cli(svc, "raise_event", "E_CLI", home=tmp_path)
    assert rc != 0 and "480: Temporarily Unavailable" in err
    rc, _, err = cli(svc, "subscribers_list", "E_NOPE", home=tmp_path)
    assert rc != 0 and "404: Event not published" in err
    rc, _, err = cli(svc, "event_subscribe", "E_CLI", "udp:127.0.0.1", home=tmp_path)
    assert rc != 0 and "400: Bad parameter value" in err

    assert ok("kafka_publish", "k1", "from-cli", "cli-key") == "OK"
    report = ok("kafka_publish", "broker_id=k1", "message=cli-wait", "wait=1")
    assert report["kafka_status"] == 0 and report["offset"] is not None
    stats = ok("get_statistics", "broker_k1:")
    assert stats["broker_k1:accepted"] >= 2
    assert set(ok("statistics:get", "statistics=event_kafka:accepted")) == {"event_kafka:accepted"}
    assert "event_kafka:delivered" in ok("get_statistics", "all")
    rc, _, err = cli(svc, "nosuchcommand", home=tmp_path)
    assert rc != 0  # opensips-cli refuses names `which` does not list
    records = svc.consume("pub", expect=2)
    assert (b"cli-key", b"from-cli") in [(r.key, r.value) for r in records]


# -- the opensips MI client ------------------------------------------------------------------------


def test_opensips_mi_client(svc: Svc) -> None:
    from opensips.mi import OpenSIPSMI, OpenSIPSMIException

    mi = OpenSIPSMI("http", url=f"{svc.d.url}/mi")
    assert mi.valid()[0]
    assert "kafka_publish" in mi.execute("which")
    assert mi.execute("version")["Server"].startswith("event-kafka")
    assert "Up time" in mi.execute("uptime")
    assert {e["name"] for e in mi.execute("events_list")["Events"]} >= {
        "E_UDP",
        "E_TCP",
        "E_MI_EVT",
    }
    subs = mi.execute("subscribers_list", {"event": "E_UDP"})
    assert subs["Event"]["Subscribers"][0] == {
        "socket": f"kafka:{svc.bootstrap}/{svc.topics['udp']}",
        "expire": "never",
    }
    assert mi.execute("event_subscribe", ["E_MI_EVT", "udp:127.0.0.1:9", 30]) == "OK"
    assert (
        mi.execute("subscribers_list", ["E_MI_EVT", "udp:127.0.0.1:9"])["Event"]["Subscriber"][
            "expire"
        ]
        == 30
    )
    assert (
        mi.execute(
            "event_subscribe", {"event": "E_MI_EVT", "socket": "udp:127.0.0.1:9", "expire": 0}
        )
        == "OK"
    )
    report = mi.execute(
        "kafka_publish", {"broker_id": "k1", "message": "mi-client", "key": "k", "wait": True}
    )
    assert report["kafka_status"] == 0 and report["topic"] == svc.topics["pub"]
    assert report["partition"] == 0 and isinstance(report["offset"], int)
    assert mi.execute("kafka_publish", ["k1", "mi-positional"]) == "OK"
    assert (
        mi.execute("get_statistics", {"statistics": ["event_kafka:"]})["event_kafka:delivered"] >= 1
    )
    with pytest.raises(OpenSIPSMIException, match="-32601: Method not found"):
        mi.execute("no_such_command")
    with pytest.raises(OpenSIPSMIException, match="-32602: Invalid params"):
        mi.execute("kafka_publish", ["k1"])
    with pytest.raises(OpenSIPSMIException, match="400: Bad parameter value"):
        mi.execute("kafka_publish", ["nope", "m"])
    with pytest.raises(OpenSIPSMIException, match="404: Event not registered"):
        mi.execute("raise_event", ["E_NOPE"])


# -- opensips-event --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_opensips_event_receives_an_event_raised_through_the_mi(svc: Svc) -> None:
    port = free_port()
    sock = f"udp:127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            OPENSIPS_EVENT,
            "-t",
            "http",
            "-i",
            "127.0.0.1",
            "-p",
            str(svc.ports["mi"]),
            "-li",
            "127.0.0.1",
            "-lp",
            str(port),
            "-e",
            "60",
            "E_MI_EVT",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:

        def subscribed() -> bool:
            reply = svc.d.mi("subscribers_list", ["E_MI_EVT", sock])
            return "result" in reply

        wait_until(subscribed, 20, "opensips-event to subscribe")
        reply = svc.d.mi("raise_event", {"event": "E_MI_EVT", "params": '{"caller":"alice","n":3}'})
        assert reply["result"] == "OK"
        assert proc.stdout is not None
        text = ""
        while True:
            line = proc.stdout.readline().decode()
            assert line, proc.stderr.read().decode() if proc.stderr else ""
            text += line
            if line.startswith("}"):
                break
        assert json.loads(text) == {
            "jsonrpc": "2.0",
            "method": "E_MI_EVT",
            "params": {"caller": "alice", "n": 3},
        }
        proc.send_signal(signal.SIGTERM)  # it unsubscribes (expire 0) through our MI
        assert proc.wait(30) == 0
        reply = svc.d.mi("subscribers_list", ["E_MI_EVT", sock])
        assert reply["error"]["message"] == "Subscriber does not exist"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- ingest into Kafka -----------------------------------------------------------------------------


def samples(event: str) -> list[bytes]:
    return [
        build_payload(event, {"ip": "192.168.2.11"}),
        build_payload(event),
        build_payload(event, [3, "5", -7, 0]),
        build_payload(
            event,
            [
                ("s", 'q"b\\s/t\tn\nr\rx\x01y\x7fé'),
                ("n", 2147483647),
                ("m", -2147483648),
                ("nul", None),
                ("dup", "a"),
                ("dup", "b"),
            ],
        ),
        build_payload(event, [("k", "a"), (None, "unnamed")]),
        build_payload(event, {"big": "x" * 30000, "emoji": "😀"}),
        # Forwarded as sent (issue 15): an empty params object, bytes that are not UTF-8.
        b'{"jsonrpc":"2.0","method":"%s","params":{}}' % event.encode(),
        b'{"jsonrpc":"2.0","method":"%s","params":{"ua":"\xff\xc3\\"}{","e":"\xc3\xa9"}}'
        % event.encode(),
    ]


def test_udp_ingest_lands_byte_identical(svc: Svc) -> None:
    sent = samples("E_UDP")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"not json", ("127.0.0.1", svc.ports["udp"]))
        for raw in sent:
            s.sendto(raw, ("127.0.0.1", svc.ports["udp"]))  # a few: loopback buffers hold them
    records = svc.consume("udp", expect=len(sent))
    assert sorted(r.value or b"" for r in records) == sorted(sent)
    assert all(r.key is None for r in records)
    wait_until(lambda: svc.d.metric("event_kafka_ingest_malformed_total", listener="udp") >= 1)
    assert svc.d.metric("event_kafka_ingest_raised_total", listener="udp") >= len(sent)


def test_tcp_ingest_reliable_mode_lands_byte_identical(svc: Svc) -> None:
    sent = samples("E_TCP")
    # Reliable mode: the same payloads with ids (OpenSIPS puts "id" first).
    reliable = [build_payload_with_id("E_TCP", [("seq", i)], i + 1) for i in range(3)]
    stream = sent[0] + reliable[0] + sent[1] + reliable[1] + b"".join(sent[2:]) + reliable[2]
    stream += build_payload_with_id("E_NOT_PUBLISHED", None, 99)
    with socket.create_connection(("127.0.0.1", svc.ports["tcp"]), timeout=10) as s:
        for i in range(0, len(stream), 1000):  # split across many segments
            s.sendall(stream[i : i + 1000])
            time.sleep(0.001)  # the pause is the behaviour under test: separate segments
        splitter = StreamSplitter()
        replies: list[Any] = []
        while len(replies) < 4:
            data = s.recv(65536)
            assert data, "connection closed"
            replies += [orjson.loads(o) for o in splitter.feed(data)]
    assert replies == [
        {"jsonrpc": "2.0", "result": "OK", "id": 1},
        {"jsonrpc": "2.0", "result": "OK", "id": 2},
        {"jsonrpc": "2.0", "result": "OK", "id": 3},
        {"jsonrpc": "2.0", "error": {"code": 404, "message": "Event not registered"}, "id": 99},
    ]
    expected = sent + [build_payload("E_TCP", [("seq", i)]) for i in range(3)]
    records = svc.consume("tcp", expect=len(expected))
    assert sorted(r.value or b"" for r in records) == sorted(expected)
    assert svc.d.metric("event_kafka_ingest_unknown_event_total", listener="tcp") >= 1


def test_both_ingest_paths_agree(svc: Svc) -> None:
    """The same event through UDP and TCP gives the same record."""
    raw = build_payload("E_MIX", {"from": "udp-or-tcp", "n": 1})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(raw, ("127.0.0.1", svc.ports["udp"]))
    with socket.create_connection(("127.0.0.1", svc.ports["tcp"]), timeout=10) as s:
        s.sendall(raw)  # closing at once loses nothing: the two records are awaited below
    records = svc.consume("mix", expect=2)
    assert [r.value for r in records] == [raw, raw]


# -- kafka_publish, report routes, dead letter -----------------------------------------------------


def test_failed_messages_go_to_the_dead_letter_broker_id(svc: Svc) -> None:
    reply = svc.d.mi(
        "kafka_publish",
        {
            "broker_id": "down",
            "message": "lost?",
            "key": "call-1",
            "report_route": "main",
            "wait": 1,
        },
    )
    report = reply["result"]
    assert report["kafka_status"] == -1 and "timed out" in report["reason"]
    records = svc.consume("dlq", expect=1)
    assert [(r.key, r.value) for r in records] == [(b"call-1", b"lost?")]
    wait_until(
        lambda: svc.d.metric("event_kafka_dead_letter_total", route="main", result="delivered") == 1
    )
    assert svc.d.metric("event_kafka_report_actions_total", route="main", status="failed") >= 1
    assert "report route main: [down] FAILED" in svc.d.log()


# -- HTTP edges ------------------------------------------------------------------------------------


def test_http_edges(svc: Svc) -> None:
    d = svc.d
    status, body = d.post(b"{not json")
    assert status == 200 and orjson.loads(body)["error"]["code"] == -32700
    status, body = d.post(b'{"jsonrpc":"2.0","id":1,"method":"nope"}')
    assert orjson.loads(body)["error"] == {"code": -32601, "message": "Method not found"}
    status, body = d.post(b'{"jsonrpc":"2.0","method":"version"}')
    assert (status, body) == (202, b"")  # a notification
    status, body = d.post(b"")
    assert status == 400
    status, body = d.post(
        b'{"jsonrpc":"2.0","id":1,"method":"version","params":["' + b"x" * 5000 + b'"]}'
    )
    assert status == 413 and orjson.loads(body)["error"]["code"] == -32600
    status, _ = d.get("/mi")
    assert status == 405
    assert d.get("/health/live") == (200, '{"status":"ok"}')
    # check_brokers = true, and broker_id [down] points at 127.0.0.1:1
    status, text = d.get("/health/ready")
    assert status == 503
    body = orjson.loads(text)  # may also hold a "reason": [down] reaches no broker
    assert body["status"] == "not ready"
    assert body["brokers"] == {svc.bootstrap: "reachable", "127.0.0.1:1": "unreachable"}
    assert d.metric("event_kafka_http_rejected_total", reason="too_large") >= 1


def test_slow_clients_are_cut_off(svc: Svc) -> None:
    with socket.create_connection(("127.0.0.1", svc.ports["mi"]), timeout=10) as s:
        s.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\n")  # ...and never the rest
        start = time.monotonic()
        assert s.recv(100) == b""  # read_timeout = 1.5 s
        assert 1.0 < time.monotonic() - start < 8
    with socket.create_connection(("127.0.0.1", svc.ports["mi"]), timeout=10) as s:
        s.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # slow body
        reply = s.recv(1000)
        assert reply.startswith(b"HTTP/1.1 408")
    assert svc.d.metric("event_kafka_http_rejected_total", reason="timeout") >= 2


def test_metrics_reflect_what_happened(svc: Svc) -> None:
    d = svc.d
    before = d.metric(
        "event_kafka_messages_delivered_total", broker_id="k1", event="", topic=svc.topics["pub"]
    )
    # The service is shared by the module's tests: count from here, not from its start.
    mi_before = d.metric("event_kafka_mi_requests_total")
    for i in range(5):
        assert d.mi("kafka_publish", ["k1", f"m{i}"])["result"] == "OK"
    wait_until(
        lambda: (
            d.metric(
                "event_kafka_messages_delivered_total",
                broker_id="k1",
                event="",
                topic=svc.topics["pub"],
            )
            >= before + 5
        ),
        what="5 more deliveries",
    )
    assert (
        d.metric(
            "event_kafka_messages_in_flight", broker_id="k1", event="", topic=svc.topics["pub"]
        )
        == 0
    )
    assert d.metric("event_kafka_event_subscribers", event="E_UDP") == 1
    assert d.metric("event_kafka_mi_requests_total") >= mi_before + 5
    assert (
        d.metric("event_kafka_build_info", version=d.mi("version")["result"]["Server"].split()[1])
        == 1
    )
    stats = d.mi("get_statistics", [["broker_k1:"]])["result"]
    assert stats["broker_k1:delivered"] == d.metric(
        "event_kafka_messages_delivered_total", broker_id="k1", event="", topic=svc.topics["pub"]
    )


# -- start-up refusals -----------------------------------------------------------------------------


def run_serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EVENT_KAFKA, "serve", *args], capture_output=True, text=True, timeout=timeout
    )


def test_bad_config_is_refused_at_start(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        f'[mi]\nlisten = "127.0.0.1:{port}"\n\n[[subscriptions]]\nevent = "E"\n'
        'socket = "kafka:h:1/t?g.sasl.password=DoNotPrint&t.acks=maybe"\n'
    )
    proc = run_serve("-c", str(cfg))
    assert proc.returncode == 78
    assert f"{cfg}:6: subscriptions[0].socket: invalid Kafka socket" in proc.stderr
    assert "DoNotPrint" not in proc.stderr + proc.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    check = run_serve("--check", "-c", str(cfg))
    assert check.returncode == 78 and "subscriptions[0].socket" in check.stderr


def test_an_empty_or_special_file_is_refused_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # a blocking open would hang the start forever
    for path, why in ((empty, "the file has no settings"), (fifo, "not a regular file")):
        for args in (("-c", str(path)), ("--check", "-c", str(path))):
            proc = run_serve(*args)
            assert proc.returncode == 78 and why in proc.stderr, (args, proc.stderr)


def test_check_only_validates(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "event-kafka.toml"
    proc = run_serve("--check", "-c", str(example))
    assert proc.returncode == 0 and "OK (2 broker_id(s)" in proc.stdout
    assert run_serve("--check", "-c", str(tmp_path / "missing.toml")).returncode == 78


def test_nothing_half_starts_when_a_listener_cannot_bind(tmp_path: Path) -> None:
    mi_port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[mi]\nlisten = "127.0.0.1:{mi_port}"\n'
            f'[ingest.tcp]\nlisten = "127.0.0.1:{busy.getsockname()[1]}"\n'
        )
        proc = run_serve("-c", str(cfg))
        assert proc.returncode == 1, proc.stderr
        assert "cannot start" in proc.stderr
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", mi_port), timeout=1).close()
    finally:
        busy.close()


# -- signals ---------------------------------------------------------------------------------------


def test_sigterm_with_messages_in_flight_loses_nothing(kafka_broker: Any, tmp_path: Path) -> None:
    topic = topic_name()
    create_topic(kafka_broker.bootstrap, topic, 1)
    port, udp = free_port(), free_port()
    # linger.ms=5000: everything is still queued in librdkafka when SIGTERM arrives.
    d = ServeProcess(
        tmp_path,
        f"""
broker_ids = ["[k1]{kafka_broker.bootstrap}/{topic}?g.linger.ms=5000&t.acks=all"]
[kafka]
flush_timeout = 30
[[subscriptions]]
event = "E_T"
socket = "kafka:{kafka_broker.bootstrap}/{topic}?g.linger.ms=5000"
[mi]
listen = "127.0.0.1:{port}"
[ingest.udp]
listen = "127.0.0.1:{udp}"
""",
        listeners=(udp,),
    )
    try:
        d.start(port)
        for i in range(40):
            assert d.mi("kafka_publish", ["k1", f"msg-{i}", f"key-{i}"])["result"] == "OK"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10):
                s.sendto(build_payload("E_T", {"i": i}), ("127.0.0.1", udp))
        wait_until(lambda: d.metric("event_kafka_ingest_raised_total", listener="udp") == 10)
        assert (
            d.metric("event_kafka_messages_in_flight", broker_id="k1", event="", topic=topic) == 40
        )
        started = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0, d.log()
        assert time.monotonic() - started < 30
        log = d.log()
        assert "SIGTERM: stopping" in log
        assert "every accepted message was delivered or reported" in log
        assert "broker_id [k1]: accepted 40, delivered 40, failed 0" in log
        records = consume_all(kafka_broker.bootstrap, topic, expect=50)
        values = sorted(r.value or b"" for r in records)
        assert values == sorted(
            [f"msg-{i}".encode() for i in range(40)]
            + [build_payload("E_T", {"i": i}) for i in range(10)]
        )
    finally:
        d.kill()


def test_sigterm_reports_what_could_not_be_delivered(tmp_path: Path) -> None:
    port = free_port()
    d = ServeProcess(
        tmp_path,
        f"""
broker_ids = ["[k1]127.0.0.1:1/t"]
[kafka]
flush_timeout = 1
[report_routes.r]
log = "failure"
[mi]
listen = "127.0.0.1:{port}"
default_report_route = "r"
""",
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    try:
        d.start(port, env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert notify.recv(100) == b"READY=1"  # systemd Type=notify
        for i in range(3):
            assert d.mi("kafka_publish", ["k1", f"m{i}"])["result"] == "OK"
        assert d.stop(signal.SIGINT) == 0, d.log()
        assert notify.recv(100) == b"STOPPING=1"
        log = d.log()
        assert "3 message(s) were not delivered before the flush timeout" in log
        assert "report route r: [k1] FAILED" in log
    finally:
        notify.close()
        d.kill()


def test_sighup_reloads_or_refuses(kafka_broker: Any, tmp_path: Path) -> None:
    port = free_port()
    base = f"""
broker_ids = ["[k1]127.0.0.1:1/t"]
[events]
publish = ["E_A"]
[mi]
listen = "127.0.0.1:{port}"
"""
    d = ServeProcess(tmp_path, base)
    try:
        d.start(port)
        assert d.mi("events_list")["result"] == {"Events": [{"name": "E_A", "id": 0}]}
        token = "reload-t0ken"
        (tmp_path / "token").write_text(token + "\n")
        d.config_path.write_text(
            base.replace('["[k1]127.0.0.1:1/t"]', '["[k1]127.0.0.1:1/t", "[k2]127.0.0.1:1/t2"]')
            .replace('["E_A"]', '["E_A", "E_B"]')
            .replace("[mi]", '[[subscriptions]]\nevent = "E_A"\nsocket = "udp:127.0.0.1:9"\n[mi]')
            + 'token_file = "token"\n'
        )
        d.send_signal(signal.SIGHUP)
        auth = {"Authorization": f"Bearer {token}"}
        wait_until(
            lambda: d.post(b'{"jsonrpc":"2.0","id":1,"method":"version"}')[0] == 401, what="token"
        )
        assert d.mi("subscribers_list", ["E_A"], auth)["result"]["Event"]["Subscribers"] == [
            {"socket": "udp:127.0.0.1:9", "expire": "never"}
        ]
        assert d.mi("kafka_publish", ["k2", "m"], auth)["result"] == "OK"
        assert d.post(b"{}", {"Authorization": "Bearer wrong"})[0] == 401
        # A bad file: refused, the running configuration stays.
        d.config_path.write_text(base + "oops = 1\n")
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in d.log(), what="the refusal")
        assert "event-kafka.toml:7: mi.oops: unknown key" in d.log()
        assert d.mi("subscribers_list", ["E_A"], auth)["result"]["Event"]["Subscribers"]
        _, text = d.get("/metrics")
        assert 'event_kafka_config_reloads_total{result="error"} 1.0' in text
        assert 'event_kafka_config_reloads_total{result="ok"} 1.0' in text
        assert token not in d.log()
        assert d.stop() == 0
    finally:
        d.kill()


# -- limits: idle connections never starve health -------------------------------------------------


def test_idle_connections_never_starve_health_or_the_mi(tmp_path: Path) -> None:
    port = free_port()
    d = ServeProcess(tmp_path, f'[mi]\nlisten = "127.0.0.1:{port}"\nmax_connections = 64\n')
    idle: list[socket.socket] = []
    try:
        d.start(port)
        for _ in range(70):  # more than max_connections, each silent
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_until(lambda: d.metric("event_kafka_http_rejected_total", reason="overload") >= 6)
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            assert d.get("/health/live")[0] == 200
            worst = max(worst, time.monotonic() - t0)
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert worst < 1.0, worst
        print(f"/health/live with 70+ idle connections: worst {worst * 1000:.1f} ms")
        assert d.mi("version")["result"]["Server"].startswith("event-kafka")
        assert d.stop() == 0
    finally:
        for c in idle:
            c.close()
        d.kill()
