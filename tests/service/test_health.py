"""/health/ready fails, with the reason, while a producer has reached no broker for
``ready_broker_timeout``; /health/live does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from event_kafka.devkafka import LocalKafka
from tests.service.ops_helpers import get, running_service
from tests.support import await_until


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[LocalKafka]:
    """A broker of this module alone: the test stops and restarts it."""
    kafka = LocalKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.asyncio
async def test_ready_follows_the_broker(own_kafka: LocalKafka, tmp_path: Path) -> None:
    config = f"""
broker_ids = ["[k1]{own_kafka.bootstrap}/health?t.message.timeout.ms=120000"]
[mi]
listen = "127.0.0.1:0"
[metrics]
ready_broker_timeout = 2
check_timeout = 1
"""
    async with running_service(tmp_path, config) as svc:
        assert svc.ek.kafka_publish("k1", "first") == 1

        async def delivered() -> bool:
            return svc.ek.stats()["broker_ids"]["k1"].get("delivered", 0) == 1

        await await_until(delivered, 30, "the first delivery")
        assert await get(svc, "/health/ready") == (200, '{"status":"ok"}')
        name = svc.ek.stats()["producers"][0]["name"]

        own_kafka.stop_node(1)  # the producer is idle: only librdkafka's reconnects notice

        async def not_ready() -> dict[str, str] | None:
            status, text = await get(svc, "/health/ready")
            return orjson.loads(text) if status == 503 else None

        body = await await_until(not_ready, 60, "/health/ready to fail")
        assert body["status"] == "not ready"
        assert f"producer {name} ({own_kafka.bootstrap}) has reached no broker" in body["reason"]
        assert "ready_broker_timeout 2s" in body["reason"]
        assert await get(svc, "/health/live") == (200, '{"status":"ok"}')
        _, text = await get(svc, "/metrics")
        assert (
            f'event_kafka_producer_down{{brokers="{own_kafka.bootstrap}",producer="{name}"}} 1.0'
            in text
        )

        own_kafka.start_node(1)

        async def ready() -> bool:
            return (await get(svc, "/health/ready"))[0] == 200

        # Nothing is sent meanwhile: the probe (a metadata request) is what notices.
        await await_until(ready, 60, "/health/ready to recover")
        assert svc.ek.stats()["producers"][0]["down"] is False


@pytest.mark.asyncio
async def test_ready_counts_configured_producers_can_be_off_and_extended(tmp_path: Path) -> None:
    # Nothing listens on port 1: the producer is down from its first message on.
    config = """
broker_ids = ["[k1]127.0.0.1:1/t?t.message.timeout.ms=60000"]
[kafka]
flush_timeout = 0
[mi]
listen = "127.0.0.1:0"
[metrics]
ready_broker_timeout = 0.2
check_timeout = 0.2
"""
    async with running_service(tmp_path, config) as svc:
        # A subscriber added at run time (over the MI) does not count: only configured ones.
        evi = svc.ek.evi
        evi.publish_event("E_DYN")
        evi.subscribe("E_DYN", "kafka:127.0.0.1:2/t?t.message.timeout.ms=60000")
        assert evi.raise_event("E_DYN", {"a": 1}) == 1

        async def dynamic_down_long() -> bool:
            p = svc.ek.stats()["producers"]
            return bool(p) and p[0]["down_for"] > 0.5

        await await_until(dynamic_down_long, 30, "the dynamic subscriber's producer to be down")
        assert await get(svc, "/health/ready") == (200, '{"status":"ok"}')

        assert svc.ek.kafka_publish("k1", "m") == 1

        async def down() -> bool:
            return (await get(svc, "/health/ready"))[0] == 503

        await await_until(down, 30, "not ready")
        svc.settings = svc.settings.__class__(
            model=svc.settings.model.model_copy(
                update={
                    "metrics": svc.settings.model.metrics.model_copy(
                        update={"ready_broker_timeout": 0.0}
                    )
                }
            ),
            path=svc.settings.path,
            brokers=svc.settings.brokers,
        )
        assert await get(svc, "/health/ready") == (200, '{"status":"ok"}')
        svc.ready_checks.append(lambda: "spool cannot write: disk full")
        status, text = await get(svc, "/health/ready")
        assert status == 503
        assert orjson.loads(text)["reason"] == "spool cannot write: disk full"
