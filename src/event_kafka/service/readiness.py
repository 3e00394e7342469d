"""``/health/ready``: whether the service should get traffic now, and if not, why.

Ready means: not stopping; no configured producer (broker_ids, static subscriptions) that has
reached no broker for ``metrics.ready_broker_timeout`` s; no spool that failed to write in
the last ``WRITE_ERROR_HOLD`` (10) s (disk full, ``max_bytes`` reached, unwritable: the
reason names the owner, directory and error); every extra check passing; and, with
``metrics.check_brokers``, one reachable bootstrap server per broker list. Probes are
cached ``_READY_CACHE_S`` s, so a load balancer polling often costs the brokers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..connector import EventKafka
from ..kafka_socket import KafkaSocket
from .config import MetricsSection

__all__ = ["Readiness"]

_READY_CACHE_S = 5.0


class Readiness:
    """The readiness check of one service; ``ek``, ``metrics`` and ``sockets`` (the configured
    Kafka sockets) are read at each check, so a reload applies at once."""

    def __init__(
        self,
        ek: Callable[[], EventKafka],
        metrics: Callable[[], MetricsSection],
        sockets: Callable[[], Iterable[KafkaSocket]],
    ) -> None:
        self._ek, self._metrics, self._sockets = ek, metrics, sockets
        self.checks: list[Callable[[], str | None]] = []
        """More conditions: each returns why the service is not ready, or None."""
        self._ready_cache: tuple[float, bool, dict[str, Any]] | None = None
        self._probes: dict[str, tuple[float, bool]] = {}

    async def check(self, stopping: bool) -> tuple[bool, dict[str, Any]]:
        """``(ready, details)``; when not ready, ``details["reason"]`` says why."""
        if stopping:
            return False, {"reason": "stopping"}
        reasons = await self._producers_down()
        spool = self._ek().spool
        if spool is not None:
            reasons += spool.unwritable()  # a failed write: accepted records would be refused
        reasons += [r for r in (check() for check in self.checks) if r]
        ok, details = await self._brokers_reachable()
        if reasons:
            return False, {"reason": "; ".join(reasons), **details}
        return ok, details

    async def _producers_down(self) -> list[str]:
        """Producers down longer than ``ready_broker_timeout``, unless a metadata request
        (cached ``_READY_CACHE_S``) proves otherwise: an idle producer sends nothing, so only
        asking tells that its brokers are back."""
        metrics = self._metrics()
        limit = metrics.ready_broker_timeout
        if limit <= 0:
            return []
        now = time.monotonic()
        # Only configured producers: a subscriber added over the MI (by anyone who can reach
        # it) must not be able to take the service out of a load balancer.
        configured = {sock.producer_key for sock in self._sockets()}
        down = [
            sp
            for sp in self._ek().pool.producers
            if sp.down and now - sp.down_since >= limit and sp.key in configured
        ]
        probes = {sp.name: self._probes[sp.name] for sp in down if sp.name in self._probes}
        stale = [
            sp for sp in down if sp.name not in probes or now - probes[sp.name][0] >= _READY_CACHE_S
        ]
        loop = asyncio.get_running_loop()
        # In parallel: each probe may take check_timeout when its brokers are really gone.
        results = await asyncio.gather(
            *(loop.run_in_executor(None, sp.probe, metrics.check_timeout) for sp in stale)
        )
        for sp, up in zip(stale, results, strict=True):
            probes[sp.name] = (now, up)
        self._probes = probes
        return [
            f"producer {sp.name} ({sp.label}) has reached no broker for "
            f"{now - sp.down_since:.0f}s (ready_broker_timeout {limit:g}s)"
            for sp in down
            if sp.down and not probes[sp.name][1]
        ]

    async def _brokers_reachable(self) -> tuple[bool, dict[str, Any]]:
        metrics = self._metrics()
        if not metrics.check_brokers:
            return True, {}
        now = time.monotonic()
        if self._ready_cache is not None and now - self._ready_cache[0] < _READY_CACHE_S:
            return self._ready_cache[1], self._ready_cache[2]
        lists = sorted({sock.brokers for sock in self._sockets()})
        results = await asyncio.gather(*(_reachable(b, metrics.check_timeout) for b in lists))
        brokers = {
            b: "reachable" if ok else "unreachable" for b, ok in zip(lists, results, strict=True)
        }
        ok = all(results)
        self._ready_cache = (now, ok, {"brokers": brokers})
        return ok, {"brokers": brokers}


async def _reachable(brokers: str, timeout: float) -> bool:
    """Whether a TCP connection to any bootstrap server of ``brokers`` opens in time."""
    for entry in brokers.split(","):
        entry = entry.strip()
        if entry.startswith("["):
            host, _, port = entry[1:].partition("]:")
        else:
            host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
