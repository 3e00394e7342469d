"""``tcp:`` transport (event_stream): grammar, stream format, reliable mode, reconnects,
overflow, and the ``opensips`` package's stream listener. Loopback only."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from event_kafka.errors import SocketError
from event_kafka.event_interface import EventInterface
from event_kafka.payload import build_payload
from event_kafka.transports.tcp import TcpTransport
from tests.support import wait_event, wait_until

Reply = Callable[[dict[str, Any]], bytes | None]


class StreamServer:
    """A receiver on 127.0.0.1: records what arrives, replies as told, can hang up."""

    def __init__(self, reply: Reply | None = None, split: bool = False) -> None:
        self.reply = reply
        self.split = split
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.raw: list[bytearray] = []  # per connection
        self.objects: list[dict[str, Any]] = []
        self.eofs = 0
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(0.05)
            with self.lock:
                self.conns.append(conn)
                raw = bytearray()
                self.raw.append(raw)
            t = threading.Thread(target=self._serve, args=(conn, raw), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, raw: bytearray) -> None:
        text = ""
        decoder = json.JSONDecoder()
        while not self.stopped.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                with self.lock:
                    self.eofs += 1
                return
            raw += data
            text += data.decode("utf-8", "surrogateescape")  # ingest forwards any bytes
            while text:
                try:
                    obj, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    break
                text = text[end:]
                with self.lock:
                    self.objects.append(obj)
                out = self.reply(obj) if self.reply else None
                if out:
                    self._send(conn, out)

    def _send(self, conn: socket.socket, out: bytes) -> None:
        try:
            if not self.split:
                conn.sendall(out)
                return
            for i in range(0, len(out), 3):  # three bytes per segment, with pauses
                conn.sendall(out[i : i + 3])
                time.sleep(0.001)  # the pause is the behaviour under test: separate segments
        except OSError:
            pass

    def hang_up(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            c.close()

    def wait_objects(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        assert wait_until(lambda: len(self.objects) >= n, timeout), self.objects
        with self.lock:
            return list(self.objects)

    def stop(self) -> None:
        self.stopped.set()
        self.hang_up()
        self.sock.close()
        for t in self.threads:
            t.join(2)


def ok_reply(obj: dict[str, Any]) -> bytes:
    return b'{"jsonrpc":"2.0","result":"OK","id":%d}' % obj["id"]


@pytest.fixture
def server() -> Iterator[StreamServer]:
    s = StreamServer()
    yield s
    s.stop()


def make_evi(transport: TcpTransport) -> EventInterface:
    evi = EventInterface(transports=[transport], expiry_interval=0)
    evi.publish_event("E_TEST")
    return evi


@pytest.fixture
def tcp() -> Iterator[TcpTransport]:
    t = TcpTransport()
    yield t
    t.close()


def counters(t: TcpTransport, port: int) -> dict[str, int]:
    c = t.stats().get(f"tcp:127.0.0.1:{port}", {})
    assert isinstance(c, dict)
    return c


# -- grammar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "printed", "method"),
    [
        ("127.0.0.1:8090", "127.0.0.1:8090", None),
        ("127.0.0.1:8090/my_method", "127.0.0.1:8090/my_method", "my_method"),
        ("127.0.0.1:8090/a/b", "127.0.0.1:8090/a/b", "a/b"),
        ("localhost:8090", "localhost:8090", None),
        ("[::1]:8090/m", "[::1]:8090/m", "m"),
    ],
)
def test_parse_and_print(tcp: TcpTransport, text: str, printed: str, method: str | None) -> None:
    d = tcp.parse(text)
    assert (d.print(), d.method) == (printed, method)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("127.0.0.1:8090/", "empty method after '/'", 19),
        ("127.0.0.1", "missing port", 13),
        ("127.0.0.1:/m", "missing port", 14),
        ("127.0.0.1:80x/m", "unexpected 'x' in port", 16),
        ("127.0.0.1:0", "port 0 out of range", 14),
        ("", "no socket specified", 4),
    ],
)
def test_parse_errors(tcp: TcpTransport, text: str, message: str, position: int) -> None:
    with pytest.raises(SocketError, match=message) as info:
        tcp.parse(text)
    assert info.value.position == position


def test_match_includes_method(tcp: TcpTransport) -> None:
    assert tcp.parse("127.0.0.1:9/m") == tcp.parse("127.0.0.1:9/m")
    assert tcp.parse("127.0.0.1:9/m") != tcp.parse("127.0.0.1:9")
    assert tcp.parse("127.0.0.1:9/m") != tcp.parse("127.0.0.1:9/n")
    assert tcp.parse("127.0.0.1:9") != tcp.parse("localhost:9")


# -- stream format ----------------------------------------------------------------------------


def test_events_are_concatenated_on_one_connection(server: StreamServer) -> None:
    t = TcpTransport()
    with make_evi(t) as evi:
        sock = f"tcp:127.0.0.1:{server.port}"
        evi.subscribe("E_TEST", sock)
        evi.subscribe("E_TEST", sock)  # a refresh: still one subscriber
        sent = [build_payload("E_TEST", {"n": i, "s": "é"}) for i in range(200)]
        for i in range(200):
            assert evi.raise_event("E_TEST", {"n": i, "s": "é"}) == 1
        server.wait_objects(200)
        assert len(server.raw) == 1
        assert bytes(server.raw[0]) == b"".join(sent)  # no delimiter, no newline
        c = counters(t, server.port)
        assert (c["accepted"], c["written"], c["connects"], c["overflow"]) == (200, 200, 1, 0)


def test_method_override(server: StreamServer) -> None:
    with make_evi(TcpTransport()) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}/my_method")
        evi.raise_event("E_TEST", [1, "x"])
        assert len(server.wait_objects(1)) == 1
        assert bytes(server.raw[0]) == b'{"jsonrpc":"2.0","method":"my_method","params":[1,"x"]}'


def test_ingested_bytes_are_forwarded_as_sent_or_rebuilt_raw(
    server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A pre-built payload (ingest: OpenSIPS's bytes, not UTF-8) goes out unchanged; with
    /method it is rebuilt from the params, the non-UTF-8 bytes still raw."""
    raw = b'{"jsonrpc":"2.0","method":"E_TEST","params":{"ua":"\xff\xc3\\"}"}}'
    params = [("ua", '\udcff\udcc3"}')]
    rebuilt = b'{"jsonrpc":"2.0","method":"m","params":{"ua":"\xff\xc3\\"}"}}'
    with make_evi(TcpTransport()) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}/m")
        assert evi.raise_payload("E_TEST", raw, params) == (2, 2)
        server.wait_objects(2)
        assert bytes(server.raw[0]) in (raw + rebuilt, rebuilt + raw)
        # A lone \uD800 escape cannot be rebuilt: /m refuses it (counted), as-is still sends.
        lone = b'{"jsonrpc":"2.0","method":"E_TEST","params":["\\ud800"]}'
        assert evi.raise_payload("E_TEST", lone, ["\ud800"]) == (1, 2)
        server.wait_objects(3)
        assert bytes(server.raw[0]).endswith(lone)
        assert "raised" not in caplog.text  # a refusal, not a transport error


def test_two_subscribers_of_one_address_share_the_connection(server: StreamServer) -> None:
    t = TcpTransport()
    with make_evi(t) as evi:
        evi.publish_event("E_OTHER")
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        evi.subscribe("E_OTHER", f"tcp:127.0.0.1:{server.port}/other")
        evi.raise_event("E_TEST")
        evi.raise_event("E_OTHER")
        server.wait_objects(2)
        assert len(server.raw) == 1
        assert [o["method"] for o in server.objects] == ["E_TEST", "other"]
        # The last subscriber of the address gone: the connection is closed.
        evi.unsubscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        # A sentinel after the unsubscribe: it still travels on the first connection.
        evi.raise_event("E_OTHER")
        server.wait_objects(3)
        assert server.eofs == 0 and len(server.raw) == 1
        evi.unsubscribe("E_OTHER", f"tcp:127.0.0.1:{server.port}/other")
        assert wait_until(lambda: server.eofs == 1)
        assert wait_until(lambda: t.stats() == {})


# -- reliable mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split-every-3-bytes"])
def test_reliable_mode_ids_and_replies(split: bool) -> None:
    server = StreamServer(reply=ok_reply, split=split)
    t = TcpTransport(reliable=True, timeout=5.0)
    try:
        with make_evi(t) as evi:
            evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}/m")
            for i in range(20):
                assert evi.raise_event("E_TEST", {"i": i}) == 1
            objs = server.wait_objects(20)
            ids = [o["id"] for o in objs]
            assert all(type(i) is int and i > 0 for i in ids) and len(set(ids)) == 20
            assert list(objs[0]) == ["id", "jsonrpc", "method", "params"]  # "id" first
            assert objs[0]["method"] == "m"
            assert wait_until(lambda: counters(t, server.port)["acked"] == 20)
            c = counters(t, server.port)
            assert (c["failed"], c["in_flight"], c["bad_replies"]) == (0, 0, 0)
    finally:
        server.stop()


def test_reliable_mode_concatenated_replies_and_multibyte_split() -> None:
    # Replies held back and sent together, cut in the middle of a UTF-8 character.
    held: list[bytes] = []

    def reply(obj: dict[str, Any]) -> bytes | None:
        held.append(b'{"id":%d,"result":"\xc3\xa9t\xc3\xa9"}' % obj["id"])
        if len(held) < 4:
            return None
        out = b" \r\n".join(held)
        held.clear()
        return out

    server = StreamServer(reply=reply, split=True)  # 3-byte segments split "é" somewhere
    t = TcpTransport(reliable=True, timeout=5.0)
    try:
        with make_evi(t) as evi:
            evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
            for i in range(8):
                evi.raise_event("E_TEST", {"i": i})
            assert wait_until(lambda: counters(t, server.port)["acked"] == 8)
    finally:
        server.stop()


def test_reliable_mode_error_replies_fail() -> None:
    def reply(obj: dict[str, Any]) -> bytes:
        if obj["params"]["i"] % 2:
            return b'{"jsonrpc":"2.0","error":{"code":-32000,"message":"no"},"id":%d}' % obj["id"]
        return ok_reply(obj)

    server = StreamServer(reply=reply)
    t = TcpTransport(reliable=True, timeout=5.0)
    try:
        with make_evi(t) as evi:
            evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
            for i in range(10):
                evi.raise_event("E_TEST", {"i": i})
            assert wait_until(lambda: counters(t, server.port)["acked"] == 5)
            assert wait_until(lambda: counters(t, server.port)["error_replies"] == 5)
            c = counters(t, server.port)
            assert (c["failed"], c["in_flight"]) == (5, 0)
    finally:
        server.stop()


def test_reliable_mode_timeout(server: StreamServer) -> None:
    t = TcpTransport(reliable=True, timeout=0.2)
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        for i in range(3):
            evi.raise_event("E_TEST", {"i": i})
        server.wait_objects(3)
        assert wait_until(lambda: counters(t, server.port)["timeouts"] == 3)
        c = counters(t, server.port)
        assert (c["failed"], c["acked"], c["in_flight"]) == (3, 0, 0)


def test_reliable_mode_garbage_reply_drops_the_connection() -> None:
    server = StreamServer(reply=lambda obj: b"HTTP/1.1 400 Bad Request\r\n\r\n")
    t = TcpTransport(reliable=True, timeout=5.0)
    try:
        with make_evi(t) as evi:
            evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
            evi.raise_event("E_TEST")
            assert wait_until(lambda: counters(t, server.port)["disconnects"] == 1)
            assert counters(t, server.port)["failed"] == 1
    finally:
        server.stop()


def test_reliable_overflow_counts_requests_awaiting_replies(server: StreamServer) -> None:
    t = TcpTransport(reliable=True, timeout=30.0, queue_size=5, close_timeout=0.1)
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        results = [evi.raise_event("E_TEST", {"i": i}) for i in range(8)]
        assert results == [1] * 5 + [0] * 3
        assert evi.raise_event_script("E_TEST") == -1
        c = counters(t, server.port)
        assert (c["accepted"], c["overflow"]) == (5, 4)
        assert evi.stats()["E_TEST"].failed == 4


# -- queue, reconnects, failures --------------------------------------------------------------


def test_queue_overflow_while_the_sender_is_busy(server: StreamServer) -> None:
    t = TcpTransport(queue_size=10)
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        evi.raise_event("E_TEST", {"i": -1})
        server.wait_objects(1)
        # Hold the sender thread: nothing leaves the queue meanwhile.
        release = threading.Event()
        assert t._loop is not None
        held = threading.Event()

        def hold() -> None:
            held.set()
            release.wait(5)

        t._loop.call_soon_threadsafe(hold)
        wait_event(held, 5, "the sender thread held")
        accepted = sum(evi.raise_event("E_TEST", {"i": i}) for i in range(25))
        release.set()
        assert accepted == 10
        c = counters(t, server.port)
        assert c["overflow"] == 15
        objs = server.wait_objects(11)
        assert [o["params"]["i"] for o in objs] == list(range(-1, 10))


def test_peer_close_then_reconnect(server: StreamServer) -> None:
    t = TcpTransport()
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        evi.raise_event("E_TEST", {"n": 1})
        server.wait_objects(1)
        server.hang_up()
        assert wait_until(lambda: counters(t, server.port)["disconnects"] == 1)
        evi.raise_event("E_TEST", {"n": 2})
        objs = server.wait_objects(2)
        assert [o["params"]["n"] for o in objs] == [1, 2]
        assert len(server.raw) == 2
        assert counters(t, server.port)["connects"] == 2


def test_connect_failure_counts_and_retries_later() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    t = TcpTransport(retry_interval=0.3)
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{port}")
        assert evi.raise_event("E_TEST") == 1  # queued: the failure comes later
        assert wait_until(lambda: counters(t, port)["connect_failures"] == 1)
        assert counters(t, port)["failed"] == 1
        start = time.monotonic()
        evi.raise_event("E_TEST")
        assert wait_until(lambda: counters(t, port)["connect_failures"] == 2)
        assert time.monotonic() - start >= 0.2  # waited for retry_interval
        c = counters(t, port)
        assert (c["failed"], c["connects"], c["queued"]) == (2, 0, 0)


def test_connect_timeout() -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, connect hangs.
    with socket.socket() as srv, socket.socket() as filler:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        port = srv.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        t = TcpTransport(connect_timeout=0.2, retry_interval=5.0, close_timeout=0.1)
        with make_evi(t) as evi:
            evi.subscribe("E_TEST", f"tcp:127.0.0.1:{port}")
            start = time.monotonic()
            assert evi.raise_event("E_TEST") == 1
            # The caller never waits for the connect: it returned before the connect failed.
            assert counters(t, port)["connect_failures"] == 0
            assert wait_until(lambda: counters(t, port)["connect_failures"] == 1)
            assert 0.15 < time.monotonic() - start < 2.0
            c = counters(t, port)
            assert (c["failed"], c["connects"]) == (1, 0)


def test_send_never_blocks_on_a_slow_destination(server: StreamServer) -> None:
    # Fill the socket buffers of a receiver that reads nothing; raise stays fast throughout.
    server.stopped.set()  # its connections stop reading
    t = TcpTransport(queue_size=100, close_timeout=0.1)
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        big = {"x": "y" * 60_000}
        worst = 0.0
        for _ in range(300):
            start = time.perf_counter()
            evi.raise_event("E_TEST", big)
            worst = max(worst, time.perf_counter() - start)
        assert worst < 0.5
        assert counters(t, server.port)["overflow"] > 0


def test_close_writes_what_is_queued_and_stops_the_thread(server: StreamServer) -> None:
    t = TcpTransport()
    evi = make_evi(t)
    evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
    for i in range(50):
        evi.raise_event("E_TEST", {"i": i})
    thread = t._thread
    evi.close()
    assert thread is not None and not thread.is_alive()
    assert len(server.wait_objects(50)) == 50
    assert wait_until(lambda: server.eofs == 1)


# -- the opensips package's stream listener ---------------------------------------------------


class EviMI:
    """Stands in for OpenSIPS's MI: ``event_subscribe`` goes to our Event Interface.

    The package's stream socket names itself ``udp:ip:port`` (a bug in opensips 0.1.11's
    ``Stream.create``); what it listens on is TCP, so the scheme is corrected here.
    """

    def __init__(self, evi: EventInterface) -> None:
        self.evi = evi

    def execute(self, cmd: str, params: list[Any]) -> str:
        assert cmd == "event_subscribe"
        event, sock, expire = params
        self.evi.subscribe(event, "tcp:" + sock.split(":", 1)[1], expire=int(expire))
        return "OK"


def test_opensips_package_stream_listener_receives() -> None:
    from opensips.event import OpenSIPSEventHandler

    t = TcpTransport()
    evi = make_evi(t)
    handler = OpenSIPSEventHandler(mi=EviMI(evi), _type="stream", ip="127.0.0.1", port=0)
    got: list[Any] = []
    event = handler.subscribe("E_TEST", got.append, expire=120)
    try:
        port = int(event.socket.sock_name.rsplit(":", 1)[1])
        assert evi.raise_event("E_TEST", {"n": 1}) == 1
        assert wait_until(lambda: len(got) == 1)
        # That listener reads once per connection and hangs up: the next event reconnects.
        assert wait_until(lambda: counters(t, port)["disconnects"] == 1)
        assert evi.raise_event("E_TEST", {"n": 2}) == 1
        assert wait_until(lambda: len(got) == 2)
        assert got == [
            {"jsonrpc": "2.0", "method": "E_TEST", "params": {"n": 1}},
            {"jsonrpc": "2.0", "method": "E_TEST", "params": {"n": 2}},
        ]
        assert counters(t, port)["connects"] == 2
    finally:
        event.unsubscribe()
        evi.close()
    assert evi.list_subscribers("E_TEST")[0].subscribers == ()


# -- fork -------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_opens_its_own_connection(server: StreamServer) -> None:
    t = TcpTransport()
    with make_evi(t) as evi:
        evi.subscribe("E_TEST", f"tcp:127.0.0.1:{server.port}")
        evi.raise_event("E_TEST", {"from": "parent"})
        server.wait_objects(1)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                if t._loop is None and evi.raise_event("E_TEST", {"from": "child"}) == 1:
                    t.close()  # writes what is queued
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        evi.raise_event("E_TEST", {"from": "parent"})
        objs = server.wait_objects(3)
        assert sorted(o["params"]["from"] for o in objs) == ["child", "parent", "parent"]
        assert len(server.raw) == 2  # the child used a connection of its own
