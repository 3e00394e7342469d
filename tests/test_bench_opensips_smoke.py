"""Keeps ``make bench-opensips`` working (tiny run, all three modes, the session's broker) on
OpenSIPS's optimised build (``make opensips`` builds it, cached). No assertion on speed: speed
lives in bench/; this checks the run verified its counts and measured CPU for every mode."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.opensips_python import MODES
from event_kafka.devkafka import LocalKafka, TansuBroker
from tests.opensips.osbed import opensips_with_python

pytestmark = [pytest.mark.e2e]

COUNT = 600


@pytest.fixture(scope="module")
def optimised() -> Path:
    return opensips_with_python(optimised=True)


def test_bench_opensips_smoke_verifies_counts(
    optimised: Path, kafka_broker: LocalKafka | TansuBroker, tmp_path: Path
) -> None:
    out = tmp_path / "bench-opensips.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.opensips_python",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--count",
            str(COUNT),
            "--rate",
            "300",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["flags"].startswith("optimised "), result["flags"]
    runs = {r["mode"]: r for r in result["runs"]}
    assert list(runs) == list(MODES)
    for mode, r in runs.items():
        # SIPp retransmits on loss, so OpenSIPS may receive more requests than calls, never fewer.
        assert r["messages"] >= COUNT, r
        if mode != "baseline":
            assert r["verified"] is True, r
            assert r["delivered"] == r["messages"] and r["calls"] == COUNT, r
        for figure in ("sip_workers_us", "kafka_worker_us", "all_us"):
            assert isinstance(r[figure], float) and math.isfinite(r[figure]), (figure, r)
            assert r[figure] >= 0, (figure, r)
    # Ticks of 10 ms: a mode may round to 0, but a run that measured nothing is broken.
    assert sum(r["all_us"] for r in runs.values()) > 0, runs
    assert "| python |" in proc.stdout and "| c |" in proc.stdout, proc.stdout
