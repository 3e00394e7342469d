"""Helpers of the operations tests: an in-process service, HTTP GETs, series checks."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from event_kafka.service.config import load_config
from event_kafka.service.service import Service


@contextlib.asynccontextmanager
async def running_service(
    tmp_path: Path, config: str, environ: dict[str, str] | None = None
) -> AsyncIterator[Service]:
    """A started :class:`Service` for ``config`` (written to tmp_path); shut down after."""
    path = tmp_path / "event-kafka.toml"
    path.write_text(config)
    service = Service(load_config(path, environ=environ))
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown()


def http_base(service: Service) -> str:
    host, port = service.servers[0].address
    return f"http://{host}:{port}"


async def get(service: Service, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(http_base(service) + path, timeout=aiohttp.ClientTimeout(total=30)) as r,
    ):
        return r.status, await r.text()


Series = tuple[str, tuple[tuple[str, str], ...]]


def parse_series(text: str) -> dict[Series, float]:
    """Every sample of a Prometheus text page; fails on a duplicate series (same name and
    labels), which Prometheus would silently collapse to one value."""
    seen: Counter[Series] = Counter()
    out: dict[Series, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            seen[key] += 1
            out[key] = s.value
    dups = [key for key, n in seen.items() if n > 1]
    assert not dups, f"duplicate series on /metrics: {dups}"
    return out
