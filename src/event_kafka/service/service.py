"""The running service: build it, start it, reload it, stop it.

Start-up is all or nothing: the file is validated completely (:mod:`.config`), then the
:class:`~event_kafka.connector.EventKafka` is built (broker_ids, report routes, published
events, static subscriptions) and every listener is bound (MI and metrics over HTTP, ingest
over UDP/TCP); if anything fails, whatever was started is closed again. Stopping closes the
listeners, flushes for ``kafka.flush_timeout`` seconds and logs what was not delivered (each
such message got a failure report, so its report route ran). Reloads are :mod:`.reload`'s,
readiness :mod:`.readiness`'s; the process around it (signals, logging, exit status) is
:mod:`.daemon`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from typing import Any

from ..address import format_address
from ..connector import EventKafka
from ..kafka_socket import KafkaSocket
from ..properties import PropertyPolicy
from .config import ServiceSettings, Subscription, check_subscriber_socket
from .http import HttpConfig, HttpCounters, HttpServer, make_app
from .ingest import TcpIngestServer, UdpIngestServer
from .ingest.raiser import EventRaiser
from .metrics import Snapshot, make_registry, statistics_groups
from .mi import MIDispatcher, package_version, service_commands
from .readiness import Readiness
from .reload import Reloader, SubKey, static_subscriptions
from .report_actions import ReportActions
from .systemd import sd_notify
from .workers import WorkerPool

__all__ = ["Service"]

log = logging.getLogger("event_kafka.service")

_UDP_COUNTERS = ("received", "malformed", "raised", "refused", "bytes")
_MI_WORKERS = 4


class Service:
    """The running service: an EventKafka plus the MI, ingest and metrics listeners.

    It is also the :class:`~event_kafka.service.mi.MIService` the MI commands work on.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.started_with = settings  # listeners and limits stay as they were bound
        self.started_at = time.time()
        self._ek: EventKafka | None = None
        self.routes: dict[str, ReportActions] = {}
        self.static: dict[SubKey, Subscription] = {}
        self.http_counters = HttpCounters()
        # Slow MI work runs here, off the loop that answers /health and /metrics.
        self.workers = WorkerPool(workers=_MI_WORKERS, budget=settings.model.mi.command_timeout)
        self.dispatcher = MIDispatcher([], offload=self.workers.run)
        self.servers: list[HttpServer] = []
        self.udp: UdpIngestServer | None = None
        self.tcp: TcpIngestServer | None = None
        self.raiser = EventRaiser(
            lambda: self.ek.evi,
            lambda: self.settings.model.events,
            log_interval=settings.model.logging.rate_limit_interval,
        )
        self.reloads = {"ok": 0, "error": 0}
        self.stopping = False
        self._stop = asyncio.Event()
        self.readiness = Readiness(
            lambda: self.ek, lambda: self.settings.model.metrics, self._kafka_sockets
        )
        self.ready_checks = self.readiness.checks
        """More ``/health/ready`` conditions: each returns why the service is not ready, or
        None (the place for a spool that cannot write)."""
        self.overrides: Mapping[str, str] = {}  # command-line settings, kept across reloads
        self.reloader = Reloader(self)

    # -- MIService -----------------------------------------------------------------------------

    @property
    def ek(self) -> EventKafka:
        assert self._ek is not None, "the service is not started"
        return self._ek

    @property
    def report_wait_timeout(self) -> float:
        return self.settings.model.mi.report_wait_timeout

    @property
    def default_report_route(self) -> str | None:
        return self.settings.model.mi.default_report_route

    def report_routes(self) -> Collection[str]:
        return self.settings.model.report_routes.keys()

    def statistics(self) -> Mapping[str, Mapping[str, int | float]]:
        return statistics_groups(self.snapshot())

    def _mi_subscriptions(self) -> tuple[int, int]:
        """(subscribers added over the MI now, ``mi.max_subscriptions``)."""
        evi = self.ek.evi
        total = sum(evi.subscriber_count(e.name) for e in evi.list_events())
        return max(0, total - len(self.static)), self.settings.model.mi.max_subscriptions

    @property
    def socket_policy(self) -> PropertyPolicy:
        """What sockets subscribed over the MI may set (``[mi] allow_properties``)."""
        return self.settings.mi_policy

    def is_static(self, event: str, socket: str) -> bool:
        if not any(e == event for e, _ in self.static):
            return False
        try:
            return (event, check_subscriber_socket(socket)) in self.static
        except ValueError:
            return False

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Build everything and bind every listener; on failure undo it all and raise."""
        m = self.settings.model
        s_dir = self.settings.spool_dir
        self._ek = EventKafka(
            broker_ids=m.broker_ids,
            flush_timeout=m.kafka.flush_timeout,
            queue_full_wait=m.kafka.queue_full_wait,
            event_header=m.events.event_header,
            spool_dir=s_dir,
            spool_max_bytes=m.spool.max_bytes,
            spool_max_age=m.spool.max_age,
            spool_fsync=m.spool.fsync,
            spool_exclude=m.spool.exclude_broker_ids,
            spool_max_total_bytes=m.spool.max_total_bytes,
        )
        # Read when each producer is built (lazily, on first use): set before any message.
        self._ek.pool.statistics_interval_ms = m.metrics.statistics_interval_ms
        try:
            self.install_routes(self.settings)
            evi = self.ek.evi
            for name in self.settings.published_events:
                evi.publish_event(name)
            for sub in m.subscriptions:
                evi.subscribe(sub.event, sub.socket, expire=None)
            self.static = static_subscriptions(self.settings)
            for cmd in service_commands(self, lambda: self.dispatcher, self._mi_subscriptions):
                self.dispatcher.add(cmd)
            await self._start_listeners()
        except BaseException:
            await self._close_listeners()
            await asyncio.get_running_loop().run_in_executor(None, self.ek.close, 0.0)
            raise

    def install_routes(self, settings: ServiceSettings) -> None:
        interval = settings.model.logging.rate_limit_interval
        for name, cfg in settings.model.report_routes.items():
            actions = self.routes.get(name)
            if actions is None:
                actions = self.routes[name] = ReportActions(
                    name, cfg, self.ek, log_interval=interval
                )
            else:
                actions.config = cfg  # keep its counters across a reload
            actions.install()

    async def _start_listeners(self) -> None:
        s = self.started_with
        m = s.model
        interval = m.logging.rate_limit_interval
        registry = make_registry(self.snapshot) if m.metrics.enabled else None
        mi_addr = s.listen("mi")
        metrics_addr = s.listen("metrics")
        if mi_addr is not None:
            app = make_app(
                HttpConfig(
                    mi_path=m.mi.path,
                    token=lambda: self.settings.token,
                    max_request_bytes=m.mi.max_request_bytes,
                    read_timeout=m.mi.read_timeout,
                    metrics=metrics_addr is None,
                    counters=self.http_counters,
                ),
                mi=self.dispatcher,
                registry=registry if metrics_addr is None else None,
                ready=self.ready if metrics_addr is None else None,
            )
            await self._serve(
                app, mi_addr.host, mi_addr.port, m.mi.read_timeout, m.mi.max_connections
            )
            host, port = self.servers[-1].address
            log.info("MI listening on http://%s%s", format_address(host, port), m.mi.path)
        if metrics_addr is not None:
            app = make_app(
                HttpConfig(mi_path=None, counters=self.http_counters),
                mi=None,
                registry=registry,
                ready=self.ready,
            )
            await self._serve(app, metrics_addr.host, metrics_addr.port, 10.0, 64)
            host, port = self.servers[-1].address
            log.info("metrics on http://%s/metrics", format_address(host, port))
        udp = m.ingest.udp
        if udp is not None:
            addr = s.listen("udp")
            assert addr is not None
            self.udp = UdpIngestServer(
                self.raiser,
                addr.host,
                addr.port,
                max_datagram=udp.max_datagram,
                log_interval=interval,
            )
            await self.udp.start()
            log.info("udp ingest on %s", format_address(*self.udp.address))
        tcp = m.ingest.tcp
        if tcp is not None:
            addr = s.listen("tcp")
            assert addr is not None
            self.tcp = TcpIngestServer(
                self.raiser,
                addr.host,
                addr.port,
                max_buffer=tcp.max_buffer,
                max_connections=tcp.max_connections,
                idle_timeout=tcp.idle_timeout,
                event_param=tcp.event_param,
                log_interval=interval,
            )
            await self.tcp.start()
            log.info("tcp ingest on %s", format_address(*self.tcp.address))

    async def _serve(
        self, app: Any, host: str, port: int, read_timeout: float, max_connections: int
    ) -> None:
        server = HttpServer(
            app,
            host,
            port,
            read_timeout=read_timeout,
            max_connections=max_connections,
            counters=self.http_counters,
        )
        await server.start()
        self.servers.append(server)

    # -- monitoring ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every counter, read now (for /metrics and get_statistics)."""
        ek = self.ek
        ingest: dict[str, dict[str, int]] = {}
        for name, server in (("udp", self.udp), ("tcp", self.tcp)):
            if server is not None:
                c = server.counters.as_dict()
                if name == "udp":  # connection counters mean nothing for datagrams
                    c = {k: v for k, v in c.items() if k in _UDP_COUNTERS}
                c["unknown_event"] = self.raiser.unknown_events.get(name, 0)
                ingest[name] = c
        return Snapshot(
            ek=ek.stats(),
            broker_topics={bid: sock.topic for bid, sock in ek.brokers.items()},
            transports=ek.evi.transport_stats(),
            ingest=ingest,
            mi={
                "requests": self.dispatcher.requests,
                "errors": self.dispatcher.errors,
                "timeout": self.workers.timeouts,
                "busy": self.workers.busy,
            },
            http=self.http_counters.as_dict(),
            report_actions={name: a.counters() for name, a in self.routes.items()},
            reloads=dict(self.reloads),
            started_at=self.started_at,
            version=package_version(),
        )

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """``/health/ready`` (:mod:`.readiness`): ``(ready, details)``, ``reason`` when not."""
        return await self.readiness.check(self.stopping)

    def _kafka_sockets(self) -> list[KafkaSocket]:
        socks = list(self.ek.brokers.values())
        for _, (scheme, dest) in self.static:
            if scheme == "kafka" and isinstance(dest, KafkaSocket):
                socks.append(dest)
        return socks

    # -- reload ----------------------------------------------------------------------------------

    def request_reload(self, why: str = "SIGHUP") -> None:
        """Start a reload (:mod:`.reload`); one arriving while a reload runs is coalesced."""
        self.reloader.request(why)

    async def reload(self) -> bool:
        """Re-read the file; apply all of it, or refuse it and keep running as before."""
        return await self.reloader.reload()

    # -- stop ------------------------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        if self.stopping:
            log.info("%s: already stopping", why)
            return
        log.info("%s: stopping (no new input; flushing for up to %gs)", why, self._flush_timeout)
        self.stopping = True
        self._stop.set()

    @property
    def _flush_timeout(self) -> float:
        return self.settings.model.kafka.flush_timeout

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> int:
        """Stop accepting, flush, close; returns how many messages were not delivered."""
        self.stopping = True
        sd_notify("STOPPING=1")
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            await self.tcp.close()
        for server in self.servers:
            server.stop_accepting()
        loop = asyncio.get_running_loop()
        before = self.ek.stats()
        # Blocking flush off the loop, so MI calls waiting for a delivery report still get it.
        left = await loop.run_in_executor(None, self.ek.close, self._flush_timeout)
        _log_shutdown(before, self.ek.stats(), left)
        self.workers.close()
        for server in self.servers:
            await server.close()
        self.servers.clear()
        return left

    async def _close_listeners(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            await self.tcp.close()
        for server in self.servers:
            await server.close()
        self.servers.clear()


def _log_shutdown(before: Mapping[str, Any], after: Mapping[str, Any], left: int) -> None:
    in_flight = sum(ln.counters.in_flight for ln in before.get("lanes", ()))
    kept = min(int(after.get("spool_left", 0)), left)
    if kept:
        log.warning(
            "stopped: %d record(s) not delivered before the flush timeout are kept in the "
            "spool (no failure report): the next start delivers them",
            kept,
        )
        left -= kept
    if left:
        log.warning(
            "stopped: %d message(s) were not delivered before the flush timeout; each got a "
            "failure report (report routes ran for them)",
            left,
        )
    elif not kept:
        log.info(
            "stopped: every accepted message was delivered or reported (%d were in flight)",
            in_flight,
        )
    for bid, c in after.get("broker_ids", {}).items():
        log.info(
            "broker_id [%s]: accepted %d, delivered %d, failed %d, rejected %d",
            bid,
            c.get("accepted", 0),
            c.get("delivered", 0),
            c.get("failed", 0),
            c.get("rejected", 0),
        )
