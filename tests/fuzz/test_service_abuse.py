"""``event-kafka serve`` under abuse (issue 8 §3 and the service side of §4).

One real service (a subprocess on free loopback ports, a real broker) whose broker_id and
static subscription carry SASL/SSL passwords, with an MI bearer token:

* fuzzed UDP datagrams (20 000), TCP streams (2 000 connections) and MI requests (5 000),
  then: the process is alive, ``version`` answers, ingested events and ``kafka_publish`` still
  land in Kafka, its RSS stayed bounded, the malformed counters match the garbage sent;
* the MI guard rails: a request without the token is refused; slow-loris connections up to
  the connection limit leave room for a normal request, are cut after ``read_timeout`` and
  anything beyond the limit is refused at once; a 100 MB body is refused without being read;
  100 000 nested ``[`` is a parse error, not a RecursionError;
* secrets (the passwords, one sent later over the MI, one in a refused reload, the token)
  appear in no log line, MI reply, ``/metrics`` or ``get_statistics``.

Every generated input is sent (none is set aside as a bug "already known"). Every process
started here is stopped by its PID; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from event_kafka.devkafka import consume_all, create_topic, free_port
from event_kafka.service.ingest import IngestError, parse_notification
from tests.fuzz import targets as T
from tests.support import ServeProcess, wait_until
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.timeout(600)

HEX = uuid.uuid4().hex
SECRETS = {
    "broker_sasl": f"BrkSasl{HEX[:12]}",
    "broker_ssl": f"BrkSsl{HEX[12:24]}",
    "sub_sasl": f"SubSasl{HEX[:10]}",
    "mi_sub": f"MiSub{HEX[10:22]}",
    "reload": f"Reload{HEX[:14]}",
    "token": f"Tok{HEX[4:28]}",
}
TOKEN = SECRETS["token"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MI_MAX_CONNECTIONS = 16
READ_TIMEOUT = 2.0
TCP_MAX_BUFFER = 65536
RSS_GROWTH_MB = 200


class Service(ServeProcess):
    """The service under abuse: every MI reply kept for the secret check."""

    default_headers = AUTH  # the MI here has a token

    def __init__(self, workdir: Path, config: str, ports: dict[str, int]) -> None:
        super().__init__(
            workdir, config, mi_port=ports["mi"], listeners=(ports["udp"], ports["tcp"])
        )
        self.ports = ports
        self.replies: list[bytes] = []  # every MI reply body, for the secret check
        self.rss_baseline = 0.0
        self.threads_baseline = 0

    def rss_mb(self) -> float:
        return self.status("VmRSS") / 1024

    def listening(self) -> list[tuple[str, str]]:
        """(protocol, local address) of every listening TCP / bound UDP socket it holds."""
        assert self.proc is not None
        inodes = set()
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            lines = Path(f"/proc/{self.proc.pid}/net/{proto}").read_text().splitlines()[1:]
            for line in lines:
                f = line.split()
                listening = f[3] == "0A" if proto.startswith("tcp") else f[2].endswith(":0000")
                if f[9] in inodes and listening:
                    found.append((proto, f[1]))
        return found

    def seen(self, body: bytes) -> None:
        self.replies.append(body)

    def stats(self, *names: str) -> dict[str, Any]:
        reply = self.mi("get_statistics", [list(names)])
        assert "result" in reply, reply
        return dict(reply["result"])


class Svc:
    def __init__(self, service: Service, bootstrap: str, topics: dict[str, str]) -> None:
        self.s = service
        self.bootstrap = bootstrap
        self.topics = topics

    def records(self, which: str) -> list[bytes]:
        recs = consume_all(self.bootstrap, self.topics[which], timeout=30)
        return [r.value or b"" for r in recs]


@pytest.fixture(scope="module")
def svc(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    bootstrap = kafka_broker.bootstrap
    topics = {k: f"abuse-{k}-{uuid.uuid4().hex[:8]}" for k in ("pub", "ev")}
    for t in topics.values():
        create_topic(bootstrap, t, 1)
    ports = {"mi": free_port(), "udp": free_udp_port(), "tcp": free_port()}
    s = SECRETS
    config = f"""
broker_ids = [
  "[k1]{bootstrap}/{topics["pub"]}?g.sasl.password={s["broker_sasl"]}&g.ssl.key.password={s["broker_ssl"]}&g.debug=conf,security&t.acks=all",
]
[events]
publish = ["E_GOOD", "E_TEST", "E_FUZZ"]
auto_publish = true
auto_publish_max = 20
[[subscriptions]]
event = "E_GOOD"
socket = "kafka:{bootstrap}/{topics["ev"]}?g.sasl.password={s["sub_sasl"]}&g.debug=conf,security"
[report_routes.r]
log = "all"
[mi]
listen = "127.0.0.1:{ports["mi"]}"
token = "{TOKEN}"
max_request_bytes = 1048576
read_timeout = {READ_TIMEOUT}
max_connections = {MI_MAX_CONNECTIONS}
report_wait_timeout = 5
default_report_route = "r"
[ingest.udp]
listen = "127.0.0.1:{ports["udp"]}"
[ingest.tcp]
listen = "127.0.0.1:{ports["tcp"]}"
max_buffer = {TCP_MAX_BUFFER}
max_connections = 64
[logging]
level = "DEBUG"
rate_limit_interval = 0.0
"""
    service = Service(tmp_path_factory.mktemp("abuse"), config, ports)
    try:
        service.start()
        yield Svc(service, bootstrap, topics)
        assert service.stop() == 0, service.log()[-3000:]
    finally:
        service.kill()


# -- helpers ----------------------------------------------------------------------------------


def udp_send(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))


def good(event: str, marker: str) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": event, "params": {"marker": marker}})


def expect_malformed(datagram: bytes) -> bool:
    try:
        parse_notification(datagram)
    except IngestError:
        return True
    return False


# -- baseline ---------------------------------------------------------------------------------


def test_starts_serves_and_delivers(svc: Svc) -> None:
    s = svc.s
    assert s.mi("version")["result"]["Server"].startswith("event-kafka")
    # The broker_id carries passwords on a PLAINTEXT listener: librdkafka ignores them there.
    reply = s.mi("kafka_publish", ["k1", "baseline", "key", "r", 1])
    assert reply["result"]["kafka_status"] == 0, reply
    udp_send(s.ports["udp"], [good("E_GOOD", "baseline-udp")])
    wait_until(
        lambda: any(b"baseline-udp" in v for v in svc.records("ev")), 30, "the baseline event"
    )
    s.rss_baseline = s.rss_mb()
    s.threads_baseline = s.status("Threads")


def test_every_listener_is_on_loopback(svc: Svc) -> None:
    """What the service binds (MI, metrics on the MI listener, UDP and TCP ingest) is on
    127.0.0.1 here; and with no ``listen`` configured, the MI defaults to loopback."""
    from event_kafka.service.config import load_config_text

    found = svc.s.listening()
    assert len(found) >= 3, found  # MI, UDP, TCP
    for proto, addr in found:
        assert addr.startswith("0100007F:"), (proto, addr)  # 127.0.0.1, little-endian hex
    default = load_config_text("")
    assert str(default.listen("mi")) == "127.0.0.1:8888"
    assert default.listen("metrics") is None  # /metrics is served on the MI listener
    assert default.model.mi.token is None  # no token by default: hence loopback only


# -- the blasts -------------------------------------------------------------------------------


def test_udp_blast(svc: Svc) -> None:
    s = svc.s
    r = random.Random(8)
    corpus: list[bytes] = []
    datagrams: list[bytes] = []
    while len(datagrams) < 20_000:
        if corpus and r.random() < 0.4:
            d = T.mutate(r, r.choice(corpus), T.TOKENS["json"], r.choice(corpus))
        else:
            d = T.gen_notification(r)
            corpus.append(d)
            corpus = corpus[-200:]
        if r.random() < 0.01:
            d = r.choice([b"", b"\xff" * 1000, b"[" * 60_000, b" " * 65_000])
        if len(d) <= 65_507:
            datagrams.append(d)
    malformed = sum(map(expect_malformed, datagrams))
    before = s.stats("ingest_udp:")
    sent = 0
    for i in range(0, len(datagrams), 400):
        chunk = datagrams[i : i + 400]
        udp_send(s.ports["udp"], chunk)
        sent += len(chunk)
        want = before["ingest_udp:received"] + sent
        # A lost datagram (loopback buffer overrun) would time this out: checked below.
        with contextlib.suppress(AssertionError):
            wait_until(lambda w=want: s.stats("ingest_udp:")["ingest_udp:received"] >= w, 15, "udp")
    after = s.stats("ingest_udp:")
    received = after["ingest_udp:received"] - before["ingest_udp:received"]
    got_malformed = after["ingest_udp:malformed"] - before["ingest_udp:malformed"]
    assert received <= sent
    assert received >= sent * 0.99, f"{sent - received} of {sent} datagrams lost"
    lost = sent - received
    assert malformed - lost <= got_malformed <= malformed, (got_malformed, malformed, lost)
    assert s.alive
    print(f"\nudp: {sent} datagrams, {received} received, {got_malformed} malformed")


async def _tcp_stream(port: int, data: bytes, read_replies: bool) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=10
        )
    except (OSError, TimeoutError):
        return
    try:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), timeout=10)
        if read_replies:
            writer.write_eof()
            while await asyncio.wait_for(reader.read(65536), timeout=10):
                pass
    except (OSError, TimeoutError):
        pass  # closed by the service (out of sync, too large)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout=5)


def test_tcp_blast(svc: Svc) -> None:
    s = svc.s
    r = random.Random(9)
    streams: list[bytes] = []
    while len(streams) < 2000:
        data, _ = T.gen_stream(r)
        if r.random() < 0.3:
            data = T.mutate(r, data, T.TOKENS["json"])
        if r.random() < 0.01:
            data = b'{"jsonrpc":"2.0","method":"E_GOOD","params":["' + b"a" * 200_000 + b'"]}'
        streams.append(data)
    lo = hi = closed = 0
    for data in streams:
        received, malformed, _, failed, pending = T._predict_stream(data, TCP_MAX_BUFFER)
        if len(data) <= TCP_MAX_BUFFER:
            lo += malformed
            hi += malformed + bool(pending)  # a notification cut by the end counts too
            closed += failed
        else:  # a size limit may strike at any segment: only bounds
            hi += received + 1
    before = s.stats("ingest_tcp:")

    async def blast() -> None:
        sem = asyncio.Semaphore(32)

        async def one(i: int, data: bytes) -> None:
            async with sem:
                await _tcp_stream(s.ports["tcp"], data, read_replies=i % 2 == 0)

        await asyncio.gather(*(one(i, d) for i, d in enumerate(streams)))

    asyncio.run(blast())
    wait_until(lambda: s.stats("ingest_tcp:")["ingest_tcp:connections"] == 0, 30, "tcp closes")
    after = s.stats("ingest_tcp:")
    delta = {k.split(":")[1]: after[k] - before[k] for k in after if k in before}
    assert delta["connections_total"] == len(streams), delta
    assert delta["connections_refused"] == 0, delta
    assert lo <= delta["malformed"] <= hi, (lo, delta["malformed"], hi)
    assert delta["streams_closed_on_error"] >= closed, (closed, delta)
    assert s.alive
    print(f"\ntcp: {len(streams)} streams, counters {delta}, malformed expected {lo}..{hi}")


def _commands(s: Service) -> dict[str, list[tuple[str, ...]]]:
    names = s.mi("which")["result"]
    return {n: [tuple(p) for p in s.mi("which", [n])["result"]] for n in names}


def test_mi_blast(svc: Svc) -> None:
    import aiohttp

    s = svc.s
    commands = _commands(s)
    r = random.Random(10)
    bodies: list[tuple[bytes, bool]] = []
    corpus: list[bytes] = []
    while len(bodies) < 5000:
        if corpus and r.random() < 0.3:
            body = T.mutate(r, r.choice(corpus), T.TOKENS["json"])
        else:
            body = T.gen_mi_body(r, commands)
            corpus.append(body)
            corpus = corpus[-200:]
        if len(body) < 1_000_000:
            bodies.append((body, r.random() < 0.05))  # 5 % without the token
    before_requests = s.metric("event_kafka_mi_requests_total")
    before_401 = s.metric("event_kafka_http_rejected_total", reason="unauthorized")
    statuses: dict[int, int] = {}
    failures: list[str] = []
    retried: list[bytes] = []

    async def blast() -> None:
        conn = aiohttp.TCPConnector(limit=8, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:

            async def one(body: bytes, anonymous: bool) -> None:
                headers = {"Content-Type": "application/json"}
                if not anonymous:
                    headers.update(AUTH)
                for attempt in (1, 2):
                    try:
                        async with http.post(s.url + "/mi", data=body, headers=headers) as resp:
                            data = await resp.read()
                        break
                    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                        # A keep-alive connection the service closed as idle (read_timeout)
                        # just as the client picked it: sent again, as HTTP clients do.
                        if attempt == 2:
                            raise
                        retried.append(body)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                s.replies.append(data)
                if anonymous:
                    if resp.status != 401:
                        failures.append(f"no token but {resp.status}")
                    return
                if resp.status == 202 or (resp.status == 400 and not body):
                    return  # a notification; an empty body
                if resp.status != 200:
                    failures.append(f"{resp.status} for {body[:120]!r}")
                    return
                try:
                    T.check_mi_reply(body, orjson.loads(data))
                except (T.FuzzFailure, orjson.JSONDecodeError) as exc:
                    failures.append(f"{exc} for {body[:120]!r}")

            await asyncio.gather(*(one(b, a) for b, a in bodies))

    asyncio.run(blast())
    assert not failures, failures[:10]
    anonymous = sum(a for _, a in bodies)
    assert statuses.get(401, 0) == anonymous
    assert s.metric("event_kafka_http_rejected_total", reason="unauthorized") >= (
        before_401 + anonymous
    )
    dispatched = sum(1 for b, a in bodies if b and not a)  # an empty body never reaches the MI
    assert s.metric("event_kafka_mi_requests_total") >= before_requests + dispatched
    assert s.alive
    print(
        f"\nmi: {len(bodies)} requests, statuses {dict(sorted(statuses.items()))}, "
        f"{len(retried)} sent again on a fresh connection"
    )


def test_still_serving_and_bounded_after_the_blasts(svc: Svc) -> None:
    s = svc.s
    assert s.alive
    assert s.mi("version")["result"]["Server"].startswith("event-kafka")
    marker = uuid.uuid4().hex
    udp_send(s.ports["udp"], [good("E_GOOD", f"udp-{marker}")])
    with socket.create_connection(("127.0.0.1", s.ports["tcp"]), timeout=10) as c:
        c.sendall(good("E_GOOD", f"tcp-{marker}"))
    reply = s.mi("kafka_publish", ["k1", f"mi-{marker}", "key", "r", 1])
    assert reply["result"]["kafka_status"] == 0, reply

    def landed() -> bool:
        values = svc.records("ev")
        return any(f"udp-{marker}".encode() in v for v in values) and any(
            f"tcp-{marker}".encode() in v for v in values
        )

    wait_until(landed, 60, "the events ingested after the blasts")
    assert any(f"mi-{marker}".encode() == v for v in svc.records("pub"))
    rss, threads = s.rss_mb(), s.status("Threads")
    print(
        f"\nrss: {s.rss_baseline:.0f} MB before the blasts, {rss:.0f} MB after; "
        f"threads {s.threads_baseline} -> {threads}"
    )
    assert rss - s.rss_baseline < RSS_GROWTH_MB, (s.rss_baseline, rss)
    # The MI blast subscribes a few sockets (producers, TCP senders): a bounded set.
    assert threads - s.threads_baseline < 64, (s.threads_baseline, threads)
    # /metrics still parses (auto-published fuzz event names are label values) and agrees.
    udp_malformed = s.metric("event_kafka_ingest_malformed_total", listener="udp")
    assert udp_malformed == s.stats("ingest_udp:malformed")["ingest_udp:malformed"]
    assert udp_malformed >= 5000
    assert s.metric("event_kafka_ingest_malformed_total", listener="tcp") >= 100


# -- the MI's guard rails ---------------------------------------------------------------------


def test_token_is_required(svc: Svc) -> None:
    s = svc.s
    body = b'{"jsonrpc":"2.0","id":1,"method":"version"}'
    for headers in (
        {},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
    ):
        status, data = s.post(body, headers)
        assert status == 401, (headers, status, data)
    assert s.post(body, {"Authorization": f"bearer {TOKEN}"})[0] == 200
    # Refused before the body is read: a huge body without the token is 401 too.
    status, _ = s.post(b"[" * 500_000, {})
    assert status == 401
    assert s.get("/metrics")[0] == 200 and s.get("/health/live")[0] == 200


def _slow_loris(port: int) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\n")
    return c


def test_slow_loris_up_to_the_limit_then_cut_off(svc: Svc) -> None:
    s = svc.s
    port = s.ports["mi"]
    before = s.metric("event_kafka_http_rejected_total", reason="overload")
    threads = s.status("Threads")
    slow = [_slow_loris(port) for _ in range(MI_MAX_CONNECTIONS - 1)]
    try:
        wait_until(lambda: s.accepted(port) >= len(slow), 10, "the slow clients accepted")
        # One slot is left: a normal request is answered at once.
        t0 = time.monotonic()
        status, body = s.post(b'{"jsonrpc":"2.0","id":1,"method":"version"}')
        assert status == 200 and time.monotonic() - t0 < READ_TIMEOUT, (status, body)
        # No thread per connection: 15 held, at most a few unrelated ones (a producer being
        # released in the background after the MI blast).
        assert s.status("Threads") <= threads + 4
        # Fill the last slot, then more: slow clients never lock anyone out (issue 12 item 9):
        # each newcomer is answered and closes the longest-waiting slow client instead.
        slow.append(_slow_loris(port))
        wait_until(lambda: s.accepted(port) >= len(slow), 10, "the last slot taken")
        extra = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for c in extra:
            c.settimeout(5)
            c.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = c.recv(100)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            c.close()
        evicted = 0
        for c in slow[:5]:  # the five oldest made room
            c.settimeout(5)
            try:
                evicted += c.recv(100) == b""
            except ConnectionResetError:  # aborted: as closed
                evicted += 1
        assert evicted == 5
        # Trickling a byte now and then does not buy time: all are cut after read_timeout.
        t0 = time.monotonic()
        for c in slow:
            c.settimeout(READ_TIMEOUT * 4)
        for _ in range(int(READ_TIMEOUT / 0.5)):
            for c in slow:
                with contextlib.suppress(OSError):
                    c.sendall(b"X")
            time.sleep(0.5)  # the trickle is the behaviour under test: a byte every 0.5 s
        for c in slow:
            with contextlib.suppress(ConnectionResetError):
                assert c.recv(100) in (b"",)
        assert time.monotonic() - t0 < READ_TIMEOUT * 4
    finally:
        for c in slow:
            c.close()
    assert s.metric("event_kafka_http_rejected_total", reason="overload") >= before + 5
    status, _ = s.post(b'{"jsonrpc":"2.0","id":1,"method":"version"}')
    assert status == 200


def _send_until_refused(port: int, head: bytes, chunk: bytes, limit: int) -> tuple[int, bytes]:
    """Send ``head`` then ``chunk`` repeatedly (up to ``limit`` bytes) while reading: returns
    (body bytes sent before the service answered or closed, its answer)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    answer = b""
    deadline = time.monotonic() + 30
    try:
        c.sendall(head)
        c.setblocking(False)
        while sent < limit and time.monotonic() < deadline:
            try:
                data = c.recv(65536)
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer:
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            try:
                sent += c.send(chunk)
            except BlockingIOError:
                select.select([c], [c], [], 0.5)  # until it can read or write again
            except (BrokenPipeError, ConnectionResetError):
                break
        c.setblocking(True)
        c.settimeout(5)
        try:
            while b"\r\n\r\n" not in answer:
                data = c.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    finally:
        c.close()
    return sent, answer


def test_100mb_body_is_refused_without_being_read(svc: Svc) -> None:
    s = svc.s
    rss0 = s.rss_mb()
    size = 100 * 1024 * 1024
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    head = (
        b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    sent, answer = _send_until_refused(s.ports["mi"], head, b"[" * 65536, size)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 32 * 1024 * 1024, f"{sent} bytes were taken before the refusal"
    # Chunked, no Content-Length: read up to max_request_bytes (1 MiB), then refused.
    head = (
        b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"[" * 65536 + b"\r\n"
    sent, answer = _send_until_refused(s.ports["mi"], head, chunk, size)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 32 * 1024 * 1024, f"{sent} bytes were taken before the refusal"
    assert s.rss_mb() - rss0 < 64
    assert s.metric("event_kafka_http_rejected_total", reason="too_large") >= 2
    assert s.mi("version")["result"]


def test_deeply_nested_json_is_a_parse_error(svc: Svc) -> None:
    s = svc.s
    for body in (
        b"[" * 100_000,
        b"{" * 100_000,
        b'{"jsonrpc":"2.0","id":1,"method":"version","params":' + b"[" * 100_000,
        b'{"jsonrpc":"2.0","id":1,"method":"version","params":' + b"[" * 100_000 + b"]" * 100_000,
    ):
        status, data = s.post(body)
        assert status == 200, (status, data[:200])
        assert orjson.loads(data)["error"]["code"] == -32700
    # And over UDP/TCP ingest: counted as malformed, nothing else.
    udp_before = s.stats("ingest_udp:malformed")["ingest_udp:malformed"]
    udp_send(
        s.ports["udp"], [b"[" * 60_000, b'{"jsonrpc":"2.0","method":"E","params":' + b"{" * 60_000]
    )
    wait_until(
        lambda: s.stats("ingest_udp:malformed")["ingest_udp:malformed"] >= udp_before + 2,
        15,
        "malformed deep datagrams",
    )
    with socket.create_connection(("127.0.0.1", s.ports["tcp"]), timeout=10) as c:
        try:
            c.sendall(b"{" * 100_000)
            c.settimeout(10)
            assert c.recv(100) == b""  # closed: nested deeper than the stream limit
        except ConnectionResetError:
            pass
    log = s.log()
    assert "RecursionError" not in log and "Traceback" not in log


# -- a lone surrogate on the wire (KB1), before the log checks below ------------------------


def test_kb1_lone_surrogate_id_over_http(svc: Svc) -> None:
    status, data = svc.s.post(b'{"jsonrpc":"2.0","id":"\\ud800","method":"version"}')
    assert status == 200, (status, data[:200])
    json.loads(data)


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_never_leak(svc: Svc) -> None:
    s = svc.s
    boot = svc.bootstrap
    mi_secret = SECRETS["mi_sub"]
    # Dynamic subscriptions with a password: good, malformed, duplicate, refresh, removal.
    sock = f"kafka:{boot}/{svc.topics['ev']}?g.sasl.password={mi_secret}&t.acks=all"
    assert s.mi("event_subscribe", ["E_TEST", sock])["result"] == "OK"
    assert s.mi("event_subscribe", ["E_TEST", sock, 60])["result"] == "OK"
    for bad in (
        f"{sock}&g.nope=1",
        f"{sock}&t.acks=maybe",
        f"kafka:{boot}/{svc.topics['ev']}?g.sasl.password={mi_secret}&",
        f"kafka:{boot}/bad topic?g.ssl.key.password={mi_secret}",
    ):
        reply = s.mi("event_subscribe", ["E_TEST", bad])
        assert reply["error"]["code"] == 400, reply
    assert s.mi("raise_event", ["E_TEST", ["x"]])["result"] == "OK"
    assert s.mi("subscribers_list", ["E_TEST", sock])["result"]
    s.mi("subscribers_list")
    s.mi("subscribers_list", ["E_GOOD"])
    s.mi("events_list")
    s.mi("get_statistics", [["all"]])
    s.mi("kafka_publish", ["k1", "secret-check", "key", "r", 1])
    assert s.mi("event_subscribe", ["E_TEST", sock, 0])["result"] == "OK"
    # A reload with a bad broker_id holding another password: refused, logged, masked.
    good_config = s.config_path.read_text()
    s.config_path.write_text(
        good_config.replace(
            "broker_ids = [",
            f'broker_ids = [\n  "[k9]{boot}/t?g.sasl.password={SECRETS["reload"]}&g.no.such=1",',
        )
    )
    before = s.log().count("reload refused")
    assert s.proc is not None
    os.kill(s.proc.pid, signal.SIGHUP)
    wait_until(lambda: s.log().count("reload refused") > before, 30, "the refused reload")
    s.config_path.write_text(good_config)
    wait_until(lambda: "report route r:" in s.log(), 30, "the secret-check's report logged")
    s.get("/metrics")
    haystack = [s.log(), *(r.decode("utf-8", "replace") for r in s.replies)]
    leaks = [
        (name, i)
        for name, secret in SECRETS.items()
        for i, text in enumerate(haystack)
        if secret in text
    ]
    assert not leaks, f"secrets leaked (name, 0 = log / n = n-th reply): {leaks[:10]}"
    # The check means something only if the masked form was really printed.
    log = s.log()
    assert "reload refused" in log and "g.sasl.password=*****" in log
    assert "Traceback" not in log and "Exception in callback" not in log
    assert "Error handling request" not in log
