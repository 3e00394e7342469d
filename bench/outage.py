"""Broker down while publishing at a steady rate: calls never block, memory stays bounded,
and every message ends in exactly one report (delivered after recovery, or failed by timeout)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from event_kafka import EventKafka, Report
from event_kafka.devkafka import LocalKafka, consume_all, create_topic


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_outage(outage_s: float, kafka: LocalKafka | None, bootstrap: str) -> dict[str, Any]:
    own = kafka is None
    if own:
        kafka = LocalKafka().start()
    assert kafka is not None
    try:
        return _run(outage_s, kafka)
    finally:
        if own:
            kafka.stop()


def _run(outage_s: float, kafka: LocalKafka) -> dict[str, Any]:
    rate = 2000 if outage_s >= 10 else 500
    before = after = max(2.0, min(10.0, outage_s / 6))
    timeout_ms = int(outage_s * 1000 / 2)  # half the outage: some time out, some survive
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, 1)
    reports: Counter[str] = Counter()
    lock = threading.Lock()
    ek = EventKafka(
        [f"[o]{kafka.bootstrap}/{topic}?t.message.timeout.ms={timeout_ms}&t.acks=all"],
        flush_timeout=30,
    )

    @ek.report_route("r")
    def route(r: Report) -> None:
        with lock:
            reports["delivered" if r.ok else f"failed: {r.reason}"] += 1

    rss = [_rss_mb()]
    worst = 0.0
    results: Counter[int] = Counter()
    t_start = time.monotonic()
    phases = {"down_at": before, "up_at": before + outage_s, "end": before + outage_s + after}
    down = up = False
    i = 0
    while True:
        now = time.monotonic() - t_start
        if now >= phases["end"]:
            break
        if not down and now >= phases["down_at"]:
            kafka.stop_node(kafka.node_ids[0])
            down = True
        if down and not up and now >= phases["up_at"]:
            kafka.start_node(kafka.node_ids[0], wait=False)
            up = True
        # Steady offered rate: publish what is due by now.
        while i < now * rate:
            t0 = time.perf_counter()
            results[ek.kafka_publish("o", f"m{i}", None, "r")] += 1
            worst = max(worst, time.perf_counter() - t0)
            i += 1
        if i % rate == 0:
            rss.append(_rss_mb())
        time.sleep(0.002)
    kafka.wait_ready(120)
    left = ek.close(60)
    rss.append(_rss_mb())
    stats = ek.stats()["broker_ids"]["o"]
    consumed = len(consume_all(kafka.bootstrap, topic, expect=reports["delivered"], timeout=60))
    return {
        "outage_s": outage_s,
        "rate": rate,
        "message_timeout_ms": timeout_ms,
        "published": i,
        "accepted": results[1],
        "rejected": results[-1],
        "reports": dict(reports),
        "reports_total": sum(reports.values()),
        "exactly_one_report_each": sum(reports.values()) == results[1],
        "undelivered_at_close": left,
        "consumed": consumed,
        "max_enqueue_us": round(worst * 1e6, 1),
        "rss_mb_min_max": (round(min(rss), 1), round(max(rss), 1)),
        "stats": stats,
    }
