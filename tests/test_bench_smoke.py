"""Keeps the benchmark working (tiny run). No assertion on speed: speed lives in bench/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from event_kafka.devkafka import LocalKafka, TansuBroker


def test_bench_smoke_runs_and_verifies_counts(
    kafka_broker: LocalKafka | TansuBroker, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    rows = "raw,raw_cb,kafka_publish,kafka_publish+route,raise_event,aiokafka"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--rows",
            rows,
            "--payloads",
            "pike",
            "--idempotence",
            "off",
            "--outage-seconds",
            "0",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in results] == rows.split(",")
    for r in results:
        assert not r["errors"], r
        assert r["verified"] == r["delivered"] == 3000, r
    ratios = {r["row"]: r.get("reference") for r in results}
    assert ratios["kafka_publish"] == "raw" and ratios["raise_event"] == "raw_cb"
