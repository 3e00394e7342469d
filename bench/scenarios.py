"""One benchmark row = one scenario run in its own process (``python -m bench.scenarios``).

Every scenario publishes the same payloads to a fresh topic, counts only acknowledged
(delivered) messages, and reports wall time from the first send to the last acknowledgement,
process CPU (all threads), enqueue-call latency (every 8th call is timed, in every row alike) and
peak RSS. The parent verifies the delivered count by consuming the topic.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

PIKE_PARAMS = {
    "ip": "192.168.2.11",
    "port": 5060,
    "proto": "udp",
    "src_uri": "sip:alice@example.com",
    "reason": "flood",
}
# The seed's E_PIKE_BLOCKED notification (151 bytes, compact, as OpenSIPS sends it).
PIKE = (
    b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11","port":5060,'
    b'"proto":"udp","src_uri":"sip:alice@example.com","reason":"flood"}}'
)
CDR_PARAMS = {
    "callid": "a84b4c76e66710@pc33.atlanta.example.com",
    "from_uri": "sip:alice@atlanta.example.com",
    "to_uri": "sip:bob@biloxi.example.com",
    "from_tag": "1928301774",
    "to_tag": "a6c85cf",
    "method": "INVITE",
    "code": 200,
    "reason": "OK",
    "setup_time": 1764232800,
    "connect_time": 1764232802,
    "end_time": 1764232920,
    "duration": 118,
    "src_ip": "192.0.2.10",
    "dst_ip": "198.51.100.20",
    "user_agent": "Example-UA/4.2.1 (Linux x86_64) SIP stack 2026.11",
    "codec": "PCMA/8000",
    "disposition": "ANSWERED",
    "account": "acct-000042",
}


def cdr_payload() -> bytes:
    from event_kafka.payload import build_payload

    return build_payload("E_ACC_CDR", CDR_PARAMS)


INVITE = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)


class Timer:
    """Times every 8th enqueue call, in every row alike, into a preallocated array."""

    def __init__(self, n: int) -> None:
        self.samples = array("q", bytes(8 * (n // 8 + 2)))
        self.i = 0

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples[: self.i])
        if not s:
            return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
        return {
            "p50_us": s[len(s) // 2] / 1000,
            "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))] / 1000,
            "max_us": s[-1] / 1000,
        }


def _loop(n: int, cap: float, call: Callable[[int], None], timer: Timer) -> int:
    """Call ``call(i)`` n times or until ``cap`` seconds; returns how many were made."""
    perf = time.perf_counter_ns
    deadline = time.perf_counter() + cap
    samples = timer.samples
    i = 0
    while i < n:
        if i & 7 == 0:
            t0 = perf()
            call(i)
            samples[timer.i] = perf() - t0
            timer.i += 1
            if i & 1023 == 0 and time.perf_counter() > deadline:
                i += 1
                break
        else:
            call(i)
        i += 1
    return i


def _producer_conf(bootstrap: str, idem: bool) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"}
    if idem:
        conf["enable.idempotence"] = True
    return conf


# -- the rows ------------------------------------------------------------------------------------


def raw(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """Reference: a tight confluent-kafka produce loop, no callback.

    With no callback there is nothing to count acks with: ``delivered`` is what flush left
    behind subtracted from what was sent, and the parent checks it against the consumed count.
    """
    from confluent_kafka import Producer

    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    produce, poll = p.produce, p.poll
    timer = Timer(n)

    def call(i: int) -> None:
        while True:
            try:
                produce(topic, payload)
                break
            except BufferError:
                poll(0.001)
        poll(0)

    t0, c0 = time.perf_counter(), time.process_time()
    sent = _loop(n, cap, call, timer)
    left = p.flush(120)
    return _rate(_result(sent, sent - left, t0, c0, timer))


def raw_cb(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """Reference: per message orjson.dumps(dict) + produce with a per-message callback."""
    from functools import partial

    import orjson
    from confluent_kafka import Producer

    params = PIKE_PARAMS if len(payload) < 300 else CDR_PARAMS
    delivered = [0]

    def cb(ctx: int, err: Any, msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    produce, poll, dumps = p.produce, p.poll, orjson.dumps
    timer = Timer(n)

    def call(i: int) -> None:
        value = dumps({"jsonrpc": "2.0", "method": "E_PIKE_BLOCKED", "params": params})
        while True:
            try:
                produce(topic, value, on_delivery=partial(cb, i))
                break
            except BufferError:
                poll(0.001)
        poll(0)

    return _measure(lambda: _loop(n, cap, call, timer), lambda: p.flush(120), delivered, timer)


def _ek(bootstrap: str, topic: str, idem: bool) -> Any:
    from event_kafka import EventKafka

    props = "g.linger.ms=5&t.acks=all" + ("&g.enable.idempotence=true" if idem else "")
    # queue_full_wait: like the raw loop, wait for room instead of dropping (both count acks).
    # report_queue_size above librdkafka's queue (100 000 messages): a route's bound counts
    # messages still in librdkafka too, so at the default it refused (-1) where the raw loop
    # waits for room; with it, librdkafka's full queue is what stops both, alike.
    return EventKafka(
        [f"[b]{bootstrap}/{topic}?{props}"], queue_full_wait=10.0, report_queue_size=1_000_000
    )


def publish(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """kafka_publish without a report route."""
    ek = _ek(bootstrap, topic, idem)
    ek.kafka_publish("b", b"warmup")
    time.sleep(0.5)
    pub = ek.kafka_publish
    timer = Timer(n)
    base = ek.stats()["broker_ids"]["b"]["delivered"]

    def call(i: int) -> None:
        pub("b", payload)

    def finish() -> None:
        ek.close(120)

    res = _measure(lambda: _loop(n, cap, call, timer), finish, None, timer)
    res["delivered"] = ek.stats()["broker_ids"]["b"]["delivered"] - base
    return _rate(res)


def publish_route(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """kafka_publish with a report route per message."""
    ek = _ek(bootstrap, topic, idem)
    delivered = [0]

    @ek.report_route("r")
    def route(r: Any) -> None:
        if r.kafka_status == 0:
            delivered[0] += 1

    ek.kafka_publish("b", b"warmup", None, "r")
    ek.kafka_publish("b", b"warmup")
    time.sleep(0.5)
    delivered[0] = 0
    pub = ek.kafka_publish
    timer = Timer(n)

    def call(i: int) -> None:
        pub("b", payload, None, "r")

    return _measure(lambda: _loop(n, cap, call, timer), lambda: ek.close(120), delivered, timer)


def raise_event(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes, callid: bool = False
) -> dict[str, Any]:
    """raise_event to one Kafka subscriber: 3 params, key=callid from a SIP INVITE.

    ``callid=True``: the host passes the Call-ID it already parsed (Kamailio's ``$ci``) as a
    ``CallId`` instead of the raw message text.
    """
    from event_kafka import EventKafka
    from event_kafka.sip import CallId

    sip: Any = CallId("a84b4c76e66710@pc33.atlanta.example.com") if callid else INVITE

    props = "g.linger.ms=5&t.acks=all&key=callid" + ("&g.enable.idempotence=true" if idem else "")
    ek = EventKafka(queue_full_wait=10.0)
    ek.publish_event("E_PIKE_BLOCKED")
    ek.subscribe("E_PIKE_BLOCKED", f"kafka:{bootstrap}/{topic}?{props}")
    params = {"ip": "192.168.2.11", "port": 5060, "reason": "flood"}
    ek.raise_event("E_PIKE_BLOCKED", params, sip)
    time.sleep(0.5)
    raise_ = ek.raise_event
    timer = Timer(n)

    def call(i: int) -> None:
        raise_("E_PIKE_BLOCKED", params, sip)

    lanes = ek.pool.lanes  # held now: close() forgets released lanes once they are done
    res = _measure(lambda: _loop(n, cap, call, timer), lambda: ek.close(120), None, timer)
    res["delivered"] = sum(ln.delivered for ln in lanes) - 1
    return _rate(res)


# -- floors: the least pure Python any correct implementation needs -------------------------------
# Not in the default row list (bench/__main__.py ALL_ROWS): run them with --rows. A floor below
# 0.75x of its reference proves that no pure-Python implementation of that row can meet the target;
# a library row's distance to its floor is what the library itself costs.


def _floor_call(
    p: Any, topic: str, payload: bytes, dr: Callable[[Any, Any], object], accepted: list[int]
) -> Callable[[int], None]:
    """The publish floors' loop body, made once per run (a closure: no call frame per message
    beyond the row's own): ``produce()`` positionally with ``dr``, waiting for room as ``raw``
    does, then count it in ``accepted[0]`` and ``poll(0)``."""
    produce, poll = p.produce, p.poll

    def call(i: int) -> None:
        while True:
            try:
                produce(topic, payload, None, -1, dr)
                break
            except BufferError:
                poll(0.001)
        accepted[0] += 1
        poll(0)

    return call


def floor_publish(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes, api: bool = False
) -> dict[str, Any]:
    """Floor of ``kafka_publish``: one Python function per call that counts and calls
    ``produce()`` positionally with a per-message callback that counts (what exact counters and
    exactly one report per message need, with a Python callback).

    ``api=True`` (``floor_publish_api``): the same behind the least an API call adds, as the
    ``kafka_publish`` row calls it: a function of ``(broker_id, message, key)`` that finds the
    topic by ``broker_id`` and returns 1 (no argument checks, no lane, no poller thread)."""
    from confluent_kafka import Producer

    counts = [0, 0, 0]  # accepted, delivered, failed
    delivered = [0]

    def dr(err: Any, msg: Any) -> None:
        if err is None:
            counts[1] += 1
        else:
            counts[2] += 1

    def finish() -> None:
        p.flush(120)
        delivered[0] = counts[1]

    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    produce, poll = p.produce, p.poll
    timer = Timer(n)

    call = _floor_call(p, topic, payload, dr, counts)

    topics = {"b": topic}

    def kafka_publish(broker_id: str, message: bytes, key: bytes | None = None) -> int:
        # _floor_call's body, inlined: calling it would add the frame this floor must not have.
        t = topics[broker_id]
        while True:
            try:
                produce(t, message, key, -1, dr)
                break
            except BufferError:
                poll(0.001)
        counts[0] += 1
        poll(0)
        return 1

    def call_api(i: int) -> None:
        kafka_publish("b", payload)

    loop = call_api if api else call
    return _measure(lambda: _loop(n, cap, loop, timer), finish, delivered, timer)


def floor_publish_c(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """``floor_publish`` with a C-level delivery callable (a ``SimpleQueue.put`` bound method:
    no Python frame per report). Successes are derived: accepted - held - failed, where held is
    the callable's reference count (confluent-kafka holds one per unreported message); failures
    are the non-``None`` items it recorded."""
    from queue import SimpleQueue

    from confluent_kafka import Producer

    q: SimpleQueue[Any] = SimpleQueue()
    put = q.put
    base = sys.getrefcount(put)
    accepted = [0]
    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    timer = Timer(n)

    call = _floor_call(p, topic, payload, put, accepted)

    def finish() -> None:
        p.flush(120)
        end = object()
        q.put(end)
        items = list(iter(q.get, end))
        failed = len(items) - items.count(None)
        delivered[0] = accepted[0] - (sys.getrefcount(put) - base) - failed

    delivered = [0]
    return _measure(lambda: _loop(n, cap, call, timer), finish, delivered, timer)


def floor_publish_route(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """Floor of ``kafka_publish`` with a report route, where the route (user code) must not
    run on the thread that serves librdkafka: the delivery callback only appends ``(err, msg)``
    to a deque; a route thread drains it, calling the route once per report, and sleeps 1 ms
    when it finds it empty (no wake-up signal at all)."""
    import threading
    from collections import deque

    from confluent_kafka import Producer

    pending: deque[tuple[Any, Any]] = deque()
    append, popleft = pending.append, pending.popleft
    done = [False]
    delivered = [0]
    accepted = [0]

    def route(err: Any, msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    def dr(err: Any, msg: Any) -> None:
        append((err, msg))

    def worker() -> None:
        while True:
            while pending:
                route(*popleft())
            if done[0] and not pending:
                return
            time.sleep(0.001)

    t = threading.Thread(target=worker, daemon=True)
    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    t.start()
    timer = Timer(n)

    call = _floor_call(p, topic, payload, dr, accepted)

    def finish() -> None:
        p.flush(120)
        done[0] = True
        t.join()

    return _measure(lambda: _loop(n, cap, call, timer), finish, delivered, timer)


def _callid_find(msg: str) -> bytes | None:
    # The fastest scan: first "\nCall-ID:" (exact case, full form only), value to the CR.
    i = msg.find("\nCall-ID:")
    if i < 0:
        return None
    return msg[i + 9 : msg.index("\r", i + 9)].strip().encode()


def floor_raise_event(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes, exact: bool = False
) -> dict[str, Any]:
    """Floor of ``raise_event`` with a raw INVITE: the fastest Call-ID scan (one ``str.find``,
    no case-insensitivity, compact form or folding: less than correct), one ``orjson.dumps`` of
    the notification, ``produce()`` positionally with a per-message callback that counts.

    ``exact=True`` (``floor_raise_event_exact``): the same, with the library's exact Call-ID
    (:func:`event_kafka.sip.key_for`: start line checked, any case, compact form, folding) and
    OpenSIPS-exact payload (:func:`event_kafka.payload.build_payload`) in place of the minimal
    ones; no event lookup, subscriber list or lane at all."""
    import orjson
    from confluent_kafka import Producer

    from event_kafka.payload import build_payload
    from event_kafka.sip import key_for

    counts = [0, 0]
    delivered = [0]

    def dr(err: Any, msg: Any) -> None:
        if err is None:
            counts[1] += 1

    def finish() -> None:
        p.flush(120)
        delivered[0] = counts[1]

    params = {"ip": "192.168.2.11", "port": 5060, "reason": "flood"}
    p = Producer(_producer_conf(bootstrap, idem))
    p.produce(topic, b"warmup")
    p.flush(30)
    produce, poll, dumps = p.produce, p.poll, orjson.dumps
    timer = Timer(n)

    def call(i: int) -> None:
        key = _callid_find(INVITE)
        value = dumps({"jsonrpc": "2.0", "method": "E_PIKE_BLOCKED", "params": params})
        while True:
            try:
                produce(topic, value, key, -1, dr)
                break
            except BufferError:
                poll(0.001)
        counts[0] += 1
        poll(0)

    def call_exact(i: int) -> None:
        key = key_for(INVITE)
        value = build_payload("E_PIKE_BLOCKED", params)
        while True:
            try:
                produce(topic, value, key, -1, dr)
                break
            except BufferError:
                poll(0.001)
        counts[0] += 1
        poll(0)

    loop = call_exact if exact else call
    return _measure(lambda: _loop(n, cap, loop, timer), finish, delivered, timer)


def aiokafka_peer(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """Peer: aiokafka ``await send()`` in batches of futures."""
    from aiokafka import AIOKafkaProducer

    timer = Timer(n)
    delivered = [0]

    async def main() -> int:
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=idem
        )
        await p.start()
        try:
            await (await p.send(topic, b"warmup"))
            perf = time.perf_counter_ns
            deadline = time.perf_counter() + cap
            futs = []
            i = 0
            while i < n and time.perf_counter() < deadline:
                t0 = perf()
                futs.append(await p.send(topic, payload))
                if i & 7 == 0:
                    timer.samples[timer.i] = perf() - t0
                    timer.i += 1
                i += 1
                if len(futs) >= 5000:
                    for f in await asyncio.gather(*futs, return_exceptions=True):
                        delivered[0] += not isinstance(f, BaseException)
                    futs = []
            for f in await asyncio.gather(*futs, return_exceptions=True):
                delivered[0] += not isinstance(f, BaseException)
            return i
        finally:
            await p.stop()

    t0, c0 = time.perf_counter(), time.process_time()
    sent = asyncio.run(main())
    return _rate(_result(sent, delivered[0], t0, c0, timer))


def kafka_python_peer(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes
) -> dict[str, Any]:
    """Peer: kafka-python ``send()`` with a success callback."""
    from kafka import KafkaProducer

    kw: dict[str, Any] = {"bootstrap_servers": bootstrap, "linger_ms": 5, "acks": "all"}
    if idem:
        kw["enable_idempotence"] = True
    p = KafkaProducer(**kw)
    p.send(topic, b"warmup").get(30)
    delivered = [0]

    def ok(_md: Any) -> None:
        delivered[0] += 1

    timer = Timer(n)

    def call(i: int) -> None:
        p.send(topic, payload).add_callback(ok)

    return _measure(lambda: _loop(n, cap, call, timer), lambda: p.close(120), delivered, timer)


ROWS: dict[str, Callable[..., dict[str, Any]]] = {
    "raw": raw,
    "raw_cb": raw_cb,
    "kafka_publish": publish,
    "kafka_publish+route": publish_route,
    "raise_event": raise_event,
    "raise_event(CallId)": lambda *a: raise_event(*a, callid=True),
    "floor_publish": floor_publish,
    "floor_publish_api": lambda *a: floor_publish(*a, api=True),
    "floor_publish_c": floor_publish_c,
    "floor_publish_route": floor_publish_route,
    "floor_raise_event": floor_raise_event,
    "floor_raise_event_exact": lambda *a: floor_raise_event(*a, exact=True),
    "aiokafka": aiokafka_peer,
    "kafka-python": kafka_python_peer,
}


# -- measuring -------------------------------------------------------------------------------------


def _result(sent: int, delivered: int, t0: float, c0: float, timer: Timer) -> dict[str, Any]:
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "sent": sent,
        "delivered": delivered,
        "wall_s": wall,
        "cpu_s": cpu,
        **timer.summary(),
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """VmHWM of this process. Not ru_maxrss: Linux carries that over from the process that
    forked us (through exec), so every row would report the bench runner's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _measure(
    loop: Callable[[], int], finish: Callable[[], object], delivered: list[int] | None, t: Timer
) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    sent = loop()
    finish()
    res = _result(sent, delivered[0] if delivered else 0, t0, c0, t)
    return _rate(res) if delivered else res


def _rate(res: dict[str, Any]) -> dict[str, Any]:
    res["msgs_per_s"] = res["delivered"] / res["wall_s"] if res["wall_s"] else 0.0
    res["cpu_us_per_msg"] = res["cpu_s"] / max(res["delivered"], 1) * 1e6
    return res


def main(argv: list[str]) -> None:
    """``python -m bench.scenarios ROW BOOTSTRAP TOPIC N CAP IDEM PAYLOAD`` → JSON on stdout."""
    row, bootstrap, topic, n, cap, idem, which = argv
    payload = PIKE if which == "pike" else cdr_payload()
    res = ROWS[row](bootstrap, topic, int(n), float(cap), idem == "1", payload)
    res["payload_bytes"] = len(payload)
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
