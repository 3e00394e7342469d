"""examples/prometheus-alerts.yml and examples/grafana-dashboard.json: valid, and every
event_kafka_* metric they use exists on a real scrape of the running service."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from event_kafka.payload import build_payload
from tests.service.ops_helpers import get, parse_series, running_service
from tests.support import await_until, missing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULES = EXAMPLES / "prometheus-alerts.yml"
DASHBOARD = EXAMPLES / "grafana-dashboard.json"
_NAME = re.compile(r"\bevent_kafka_[a-z0-9_]*[a-z0-9]\b")


def used_names() -> dict[str, set[str]]:
    dash = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return {
        "rules": set(_NAME.findall(RULES.read_text())),
        "dashboard": {n for e in exprs for n in _NAME.findall(e)},
    }


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool missing: scripts/install-system-deps.sh --e2e installs it")
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 12 rules found" in out.stdout


def test_dashboard_is_grafana_json() -> None:
    dash = orjson.loads(DASHBOARD.read_bytes())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "event-kafka"
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dash["panels"])


@pytest.mark.asyncio
async def test_every_metric_used_is_exported(tmp_path: Path, kafka_broker: Any) -> None:
    names = used_names()
    assert len(names["rules"]) >= 8 and len(names["dashboard"]) >= 20
    # The spool is watched too ("spool filling"); its series exist only with [spool] dir set.
    spool = {"event_kafka_spool_bytes", "event_kafka_spool_rejected_total"}
    assert spool <= names["rules"] and spool <= names["dashboard"], names
    config = f"""
broker_ids = ["[k]{kafka_broker.bootstrap}/t-dash", "[dlq]{kafka_broker.bootstrap}/t-dash-dlq"]
[events]
publish = ["E_DASH"]
[report_routes.main]
dead_letter = "dlq"
[mi]
listen = "127.0.0.1:0"
[ingest.udp]
listen = "127.0.0.1:0"
[metrics]
statistics_interval_ms = 100
[spool]
dir = "spool"
exclude_broker_ids = ["dlq"]
"""
    async with running_service(tmp_path, config) as svc:
        assert svc.ek.kafka_publish("k", "m", None, "main") == 1
        assert svc.udp is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(build_payload("E_DASH", {"n": 1}), svc.udp.address)

        async def complete() -> str | None:
            _, text = await get(svc, "/metrics")
            ok = "event_kafka_rdkafka_broker_rtt_seconds{" in text and (
                'event_kafka_report_route_runs_total{route="main"} 1.0' in text
            )
            ok = ok and "event_kafka_spool_bytes{" in text
            return text if ok else None

        text = await await_until(complete, 30, "statistics and the report on /metrics")
    exported = {name for name, _ in parse_series(text)}
    for where, used in names.items():
        missing = used - exported
        assert not missing, f"{where} uses metrics the service does not export: {missing}"
