"""The service's ``[spool]`` section: validated like the rest of the file, passed to the
EventKafka, a spool that cannot write takes readiness away (with the reason), and /metrics
shows the spool."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from event_kafka.errors import ConfigError
from event_kafka.service.config import load_config_text
from tests.service.ops_helpers import get, parse_series, running_service


def test_spool_section_is_parsed_and_resolved(tmp_path: Path) -> None:
    s = load_config_text(
        'broker_ids = ["[k1]127.0.0.1:9092/t", "[k2]127.0.0.1:9092/u"]\n'
        '[spool]\ndir = "spool"\nmax_bytes = 1048576\nmax_age = 3600\nfsync = 0.5\n'
        "max_total_bytes = 2097152\n"
        'exclude_broker_ids = ["k2"]\n',
        "ek.toml",
        base_dir=tmp_path,
    )
    assert s.spool_dir == tmp_path / "spool"  # relative to the file, created at first use
    sp = s.model.spool
    assert (sp.max_bytes, sp.max_age, sp.fsync, sp.exclude_broker_ids) == (
        1048576,
        3600,
        0.5,
        ["k2"],
    )
    assert sp.max_total_bytes == 2097152
    default = load_config_text('broker_ids = ["[k1]127.0.0.1:9092/t"]', "ek.toml")
    assert default.spool_dir is None and default.model.spool.fsync == "never"


@pytest.mark.parametrize(
    ("spool", "expect"),
    [
        ('exclude_broker_ids = ["nope"]', "ek.toml:3: spool.exclude_broker_ids[0]: unknown"),
        ('fsync = "sometimes"', "spool.fsync"),
        ("fsync = 0", "spool.fsync"),
        ("max_bytes = 0", "spool.max_bytes"),
        ("max_total_bytes = -5", "spool.max_total_bytes"),
        ("max_age = -1", "spool.max_age"),
        ('dir = ""', "spool.dir: empty path"),
        ('dir = "FILE/sub"', "is not a directory"),
        ("bogus = 1", "spool.bogus"),
    ],
)
def test_spool_section_errors_name_the_key(tmp_path: Path, spool: str, expect: str) -> None:
    (tmp_path / "FILE").write_text("x")
    text = f'broker_ids = ["[k1]127.0.0.1:9092/t"]\n[spool]\n{spool}\n'
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "ek.toml", base_dir=tmp_path)
    assert expect in str(err.value)


@pytest.mark.asyncio
async def test_full_spool_takes_readiness_away_and_metrics_show_it(
    tmp_path: Path, closed_port: int
) -> None:
    # Kafka unreachable: records stay in the spool until max_bytes refuses more.
    config = f"""
broker_ids = ["[k1]127.0.0.1:{closed_port}/t", "[k2]127.0.0.1:{closed_port}/t"]
[spool]
dir = "spool"
max_bytes = 4096
exclude_broker_ids = ["k2"]
[kafka]
flush_timeout = 0.5
[mi]
listen = "127.0.0.1:0"
[metrics]
ready_broker_timeout = 0
"""
    async with running_service(tmp_path, config) as svc:
        assert await svc.ready() == (True, {})
        results = [svc.ek.kafka_publish("k1", "x" * 100) for _ in range(100)]
        accepted = results.count(1)
        assert 0 < accepted < 100 and results[accepted:] == [-1] * (100 - accepted)
        assert svc.ek.kafka_publish("k2", "no spool") == 1  # excluded: not refused
        ready, details = await svc.ready()
        assert not ready and "spool of k1" in details["reason"]
        assert "spool_full" in details["reason"] and str(tmp_path / "spool") in details["reason"]
        status, text = await get(svc, "/health/ready")
        assert status == 503 and "spool of k1" in orjson.loads(text)["reason"]
        status, text = await get(svc, "/metrics")
        series = parse_series(text)
        labels = (("broker_id", "k1"), ("event", ""), ("topic", "t"))
        assert series[("event_kafka_spool_records", labels)] == accepted
        assert series[("event_kafka_spool_bytes", labels)] > 0
        full_labels = tuple(sorted((*labels, ("reason", "spool_full"))))
        full = ("event_kafka_spool_rejected_total", full_labels)
        assert series[full] == 100 - accepted
        assert series[("event_kafka_spool_write_error", labels)] == 1
        assert not any(dict(k[1]).get("broker_id") == "k2" for k in series if "spool" in k[0])
        assert svc.statistics()["event_kafka"]["spool_records"] == accepted
    assert (tmp_path / "spool" / "broker_id" / "k1").is_dir()
    assert not (tmp_path / "spool" / "broker_id" / "k2").exists()
