"""The broker down for a minute while a process publishes through the spool at a steady
rate: RSS stays bounded (the backlog grows on disk, not in memory), no call fails, and once
the broker is back everything is delivered (verified by consuming)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from event_kafka import EventKafka
from event_kafka.devkafka import LocalKafka, consume_all, create_topic

from .outage import _rss_mb
from .scenarios import PIKE


def run_spool_outage(outage_s: float, kafka: LocalKafka | None, bootstrap: str) -> dict[str, Any]:
    own = kafka is None
    if own:
        kafka = LocalKafka().start()
    assert kafka is not None
    spool = Path(tempfile.mkdtemp(prefix="ek-bench-spool-outage-", dir="/var/tmp"))
    try:
        return _run(outage_s, kafka, spool)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        if own:
            kafka.stop()


def _disk_mb(d: Path) -> float:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) / 2**20


def _run(outage_s: float, kafka: LocalKafka, spool: Path) -> dict[str, Any]:
    rate = 5000
    topic = f"spool-outage-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, 1)
    node = kafka.node_ids[0]
    ek = EventKafka([f"[o]{kafka.bootstrap}/{topic}?t.acks=all"], spool_dir=spool)
    results = {1: 0, -1: 0}
    for _ in range(1000):  # warm-up, delivered before the outage
        results[ek.kafka_publish("o", PIKE)] += 1
    ek.flush(30)
    rss = [(0.0, _rss_mb(), 0.0)]  # (t, RSS MB, spool MB)
    kafka.stop_node(node)
    worst = 0.0
    t0 = time.monotonic()
    i = 0
    next_sample = 1.0
    while (now := time.monotonic() - t0) < outage_s:
        while i < now * rate:
            c0 = time.perf_counter()
            results[ek.kafka_publish("o", PIKE)] += 1
            worst = max(worst, time.perf_counter() - c0)
            i += 1
        if now >= next_sample:
            rss.append((round(now, 1), _rss_mb(), _disk_mb(spool)))
            next_sample += 1.0
        time.sleep(0.002)  # the offered rate: a steady 5000/s
    kafka.start_node(node, wait=False)
    kafka.wait_ready(120)
    t_up = time.monotonic()
    left = ek.flush(600)
    drained_s = time.monotonic() - t_up
    rss_after = _rss_mb()
    ek.close(10)
    consumed = len(consume_all(kafka.bootstrap, topic, expect=results[1], timeout=120))
    mbs = [r for _, r, _ in rss]
    half = [r for t, r, _ in rss if t >= outage_s / 2]
    return {
        "outage_s": outage_s,
        "rate": rate,
        "accepted": results[1],
        "rejected": results[-1],
        "left_after_flush": left,
        "consumed": consumed,
        "all_delivered": consumed == results[1] and left == 0,
        "drained_s_after_broker_back": round(drained_s, 1),
        "max_enqueue_us": round(worst * 1e6, 1),
        "rss_mb_start_peak_end": (round(mbs[0], 1), round(max(mbs), 1), round(mbs[-1], 1)),
        "rss_mb_growth_second_half": round(max(half) - min(half), 1) if half else None,
        "rss_mb_after_drain": round(rss_after, 1),
        "spool_mb_at_end_of_outage": round(rss[-1][2], 1),
    }
