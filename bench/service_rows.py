"""Service rows: ``event-kafka serve`` fed over UDP (as OpenSIPS's event_datagram) or the MI.

``service_udp``: a sender process sends the E_PIKE_BLOCKED notification flat out;
``service_udp@50k``: at a fixed offered rate of 50 000/s. ``service_mi``: MI ``raise_event``
requests from 8 concurrent keep-alive HTTP clients. Delivered = records that reached the topic
(read from the topic's high watermark, then verified by consuming in the parent). CPU and peak
RSS are the service process's; latency is the MI request round trip (UDP has none).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.scenarios import PIKE, Timer, _rate, cdr_payload
from event_kafka.devkafka import free_port

CONFIG = """
broker_ids = []
[kafka]
flush_timeout = 30.0
[events]
publish = ["{event}"]
[[subscriptions]]
event = "{event}"
socket = "kafka:{bootstrap}/{topic}?g.linger.ms=5&t.acks=all{idem}"
[mi]
listen = "127.0.0.1:{mi}"
max_connections = 64
[ingest.udp]
listen = "127.0.0.1:{udp}"
[logging]
level = "WARNING"
"""


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks
    hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cpu, hwm


def _high_watermark(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-hw"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        c.close()


def _wait_landed(bootstrap: str, topic: str, want: int, cap: float) -> tuple[int, float]:
    """Poll until ``want`` records are in the topic or it stops growing; (count, when)."""
    last, last_t = -1, time.perf_counter()
    deadline = time.perf_counter() + cap
    while time.perf_counter() < deadline:
        n = _high_watermark(bootstrap, topic)
        if n != last:
            last, last_t = n, time.perf_counter()
        if n >= want or time.perf_counter() - last_t > 3.0:
            break
        time.sleep(0.05)
    return last, last_t


def _sender(port: int, payload: bytes, n: int, rate: float, out: Any) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = ("127.0.0.1", port)
    t0 = time.perf_counter()
    for i in range(n):
        if rate:
            due = t0 + i / rate
            while time.perf_counter() < due:
                pass
        s.sendto(payload, addr)
    out.put(time.perf_counter() - t0)


def _mi(url: str, method: str, params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=10) as r:
        return json.loads(r.read())


def run(
    row: str, bootstrap: str, topic: str, n: int, cap: float, idem: bool, which: str
) -> dict[str, Any]:
    payload = PIKE if which == "pike" else cdr_payload()
    event = json.loads(payload)["method"]
    ports = {"mi": free_port(), "udp": free_port()}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "svc.toml"
        cfg.write_text(
            CONFIG.format(
                event=event,
                bootstrap=bootstrap,
                topic=topic,
                mi=ports["mi"],
                udp=ports["udp"],
                idem="&g.enable.idempotence=true" if idem else "",
            )
        )
        svc = subprocess.Popen(
            [sys.executable, "-m", "event_kafka.cli", "serve", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{ports['mi']}/mi"
        try:
            for _ in range(300):
                try:
                    _mi(url, "version", [])
                    break
                except OSError:
                    time.sleep(0.05)
            # Warm-up: one event through, so the producer exists and is connected.
            _mi(url, "raise_event", {"event": event, "params": json.dumps({"w": 1})})
            _wait_landed(bootstrap, topic, 1, 30)
            cpu0, _ = _proc_stats(svc.pid)
            timer = Timer(n)
            t0 = time.perf_counter()
            if row.startswith("service_udp"):
                rate = float(row.split("@")[1].rstrip("k")) * 1000 if "@" in row else 0.0
                q: Any = mp.get_context("spawn").Queue()
                p = mp.get_context("spawn").Process(
                    target=_sender, args=(ports["udp"], payload, n, rate, q)
                )
                p.start()
                send_s = q.get(timeout=cap + 120)
                p.join()
            else:
                params = json.dumps(json.loads(payload).get("params", {}))
                send_s, n = asyncio.run(_mi_load(url, event, params, n, cap, timer))
            landed, t_last = _wait_landed(bootstrap, topic, n + 1, cap + 60)
            cpu1, hwm = _proc_stats(svc.pid)
            stats = _mi(url, "get_statistics", {"statistics": ["all"]}).get("result", {})
        finally:
            svc.terminate()
            svc.wait(60)
    delivered = landed - 1
    res = {
        "sent": n,
        "delivered": delivered,
        "wall_s": max(t_last - t0, 1e-9),
        "cpu_s": cpu1 - cpu0,
        **timer.summary(),
        "peak_rss_mb": hwm,
        "send_s": send_s,
        "offered_per_s": n / send_s if send_s else 0.0,
        "ingest_received": stats.get("ingest_udp:received"),
    }
    return _rate(res)


async def _mi_load(
    url: str, event: str, params: str, n: int, cap: float, timer: Timer
) -> tuple[float, int]:
    """Send up to ``n`` requests (or until ``cap``); (seconds, requests answered)."""
    import aiohttp

    perf = time.perf_counter_ns
    t0 = time.perf_counter()
    deadline = t0 + cap
    counter = iter(range(n))
    done = [0]
    body_tpl = {"jsonrpc": "2.0", "method": "raise_event", "params": {"event": event}}

    async def client(session: aiohttp.ClientSession) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            body = {**body_tpl, "id": i, "params": {"event": event, "params": params}}
            s = perf()
            async with session.post(url, json=body) as r:
                await r.read()
            done[0] += 1
            if i & 7 == 0 and timer.i < len(timer.samples):
                timer.samples[timer.i] = perf() - s
                timer.i += 1

    conn = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(client(session) for _ in range(8)))
    return time.perf_counter() - t0, done[0]


if __name__ == "__main__":
    row, bootstrap, topic, n, cap, idem, which = sys.argv[1:]
    out = run(row, bootstrap, topic, int(n), float(cap), idem == "1", which)
    out["payload_bytes"] = len(PIKE if which == "pike" else cdr_payload())
    sys.stdout.write(json.dumps(out) + "\n")
