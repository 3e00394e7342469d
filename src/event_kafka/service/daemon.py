"""``event-kafka serve``: wiring, signals, reload, shutdown.

Start-up is all or nothing: the file is validated completely (:mod:`.config`), then the
:class:`~event_kafka.connector.EventKafka` is built (broker_ids, report routes, published
events, static subscriptions) and every listener is bound; if anything fails, whatever was
started is closed again and the process exits non-zero.

Signals:

* ``SIGTERM`` / ``SIGINT``: stop accepting (listeners closed), flush for
  ``kafka.flush_timeout`` seconds, log what was not delivered (each such message got a
  failure report, so its report route ran), exit 0.
* ``SIGHUP``: re-read the file, all or nothing. A bad, empty or special file (FIFO, device:
  refused without blocking), one that removes the MI token (restart for that), or one whose
  new static subscriber cannot be opened is refused, logged with the reason, and the running
  configuration kept. A good one is applied: broker_ids added/removed, newly published
  events, static subscriptions added/removed, report routes, the MI token and defaults, the
  log level. Listener addresses and limits need a restart (a warning says so). The file is
  read on a daemon thread within ``_RELOAD_BUDGET`` seconds, so a hung file system cannot
  hold the event loop, SIGTERM or the exit; SIGHUPs during a reload are coalesced into one
  more reload (logged).

Exit status: 0 after a clean stop, 78 (``EX_CONFIG``) for a configuration error, 1 when the
service cannot start (e.g. an address in use). With systemd (``Type=notify``) it reports
``READY=1``, ``RELOADING=1`` and ``STOPPING=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..connector import EventKafka
from ..event_interface import EventInterface, UnknownEventError
from ..kafka_socket import KafkaSocket
from ..properties import PropertyPolicy
from ..ratelimit import RateLimitedLog
from .config import (
    ConfigError,
    LoggingSection,
    ServiceSettings,
    Subscription,
    check_subscriber_socket,
    load_config,
    parse_listen,
)
from .http import HttpConfig, HttpCounters, HttpServer, make_app
from .ingest import ACCEPTED, Notification, RaiseOutcome, TcpIngestServer, UdpIngestServer
from .metrics import Snapshot, make_registry, statistics_groups
from .mi import MIDispatcher, package_version, service_commands
from .report_actions import ReportActions
from .workers import WorkerPool

__all__ = ["EX_CONFIG", "EX_START", "Service", "run", "serve_command", "setup_logging"]

log = logging.getLogger("event_kafka.service")

EX_CONFIG = 78  # sysexits.h: systemd's RestartPreventExitStatus stops retrying a bad file
EX_START = 1

_READY_CACHE_S = 5.0
_UDP_COUNTERS = ("received", "malformed", "raised", "refused", "bytes")


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
        self.static: dict[_SubKey, Subscription] = {}
        self.http_counters = HttpCounters()
        # Slow MI work runs here, off the loop that answers /health and /metrics.
        self.workers = WorkerPool(workers=_MI_WORKERS, budget=settings.model.mi.command_timeout)
        self.dispatcher = MIDispatcher([], offload=self.workers.run)
        self.servers: list[HttpServer] = []
        self.udp: UdpIngestServer | None = None
        self.tcp: TcpIngestServer | None = None
        self.unknown_events: dict[str, int] = {"udp": 0, "tcp": 0}
        self.auto_published = 0
        self.reloads = {"ok": 0, "error": 0}
        self.stopping = False
        self._stop = asyncio.Event()
        self._unknown_log = RateLimitedLog(log, settings.model.logging.rate_limit_interval)
        self._ready_cache: tuple[float, bool, dict[str, Any]] | None = None
        self._probes: dict[str, tuple[float, bool]] = {}
        self.ready_checks: list[Callable[[], str | None]] = []
        """More ``/health/ready`` conditions: each returns why the service is not ready, or
        None (the place for a spool that cannot write)."""
        self.overrides: Mapping[str, str] = {}  # command-line settings, kept across reloads
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stuck_load: threading.Thread | None = None

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
        self._ek = EventKafka(
            broker_ids=m.broker_ids,
            flush_timeout=m.kafka.flush_timeout,
            queue_full_wait=m.kafka.queue_full_wait,
            event_header=m.events.event_header,
        )
        # Read when each producer is built (lazily, on first use): set before any message.
        self._ek.pool.statistics_interval_ms = m.metrics.statistics_interval_ms
        try:
            self._install_routes(self.settings)
            evi = self.ek.evi
            for name in self.settings.published_events:
                evi.publish_event(name)
            for sub in m.subscriptions:
                evi.subscribe(sub.event, sub.socket, expire=None)
            self.static = _static_subs(self.settings)
            for cmd in service_commands(self, lambda: self.dispatcher, self._mi_subscriptions):
                self.dispatcher.add(cmd)
            await self._start_listeners()
        except BaseException:
            await self._close_listeners()
            await asyncio.get_running_loop().run_in_executor(None, self.ek.close, 0.0)
            raise

    def _install_routes(self, settings: ServiceSettings) -> None:
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
            log.info("MI listening on http://%s%s", _hostport(host, port), m.mi.path)
        if metrics_addr is not None:
            app = make_app(
                HttpConfig(mi_path=None, counters=self.http_counters),
                mi=None,
                registry=registry,
                ready=self.ready,
            )
            await self._serve(app, metrics_addr.host, metrics_addr.port, 10.0, 64)
            host, port = self.servers[-1].address
            log.info("metrics on http://%s/metrics", _hostport(host, port))
        udp = m.ingest.udp
        if udp is not None:
            addr = s.listen("udp")
            assert addr is not None
            self.udp = UdpIngestServer(
                self._raise,
                addr.host,
                addr.port,
                max_datagram=udp.max_datagram,
                log_interval=interval,
            )
            await self.udp.start()
            log.info("udp ingest on %s", _hostport(*self.udp.address))
        tcp = m.ingest.tcp
        if tcp is not None:
            addr = s.listen("tcp")
            assert addr is not None
            self.tcp = TcpIngestServer(
                self._raise,
                addr.host,
                addr.port,
                max_buffer=tcp.max_buffer,
                max_connections=tcp.max_connections,
                idle_timeout=tcp.idle_timeout,
                event_param=tcp.event_param,
                log_interval=interval,
            )
            await self.tcp.start()
            log.info("tcp ingest on %s", _hostport(*self.tcp.address))

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

    # -- ingest ----------------------------------------------------------------------------------

    def _raise(self, note: Notification, listener: str) -> RaiseOutcome:
        """Raise an ingested notification; OK only if every subscriber accepted it (or there
        is none), as OpenSIPS's script ``raise_event`` reports it."""
        evi = self.ek.evi
        try:
            rc = self._raise_one(evi, note)
        except UnknownEventError:
            if not self._auto_publish(note.event):
                self.unknown_events[listener] = self.unknown_events.get(listener, 0) + 1
                self._unknown_log.warning(
                    "%s ingest: event %r is not published (events.publish / auto_publish)",
                    listener,
                    note.event,
                )
                return RaiseOutcome((404, "Event not registered"))
            rc = self._raise_one(evi, note)
        except (TypeError, ValueError) as exc:
            self._unknown_log.warning("%s ingest: cannot raise %r: %s", listener, note.event, exc)
            return RaiseOutcome((400, "Bad Params"))
        return ACCEPTED if rc == 1 else RaiseOutcome((500, "Cannot Raise Event"))

    @staticmethod
    def _raise_one(evi: EventInterface, note: Notification) -> int:
        if note.payload is None:
            return evi.raise_event_script(note.event, note.params)
        n, total = evi.raise_payload(note.event, note.payload, note.params)
        return 1 if n == total else -1

    def _auto_publish(self, name: str) -> bool:
        events = self.settings.model.events
        if not events.auto_publish or self.auto_published >= events.auto_publish_max:
            return False
        try:
            self.ek.evi.publish_event(name)
        except ValueError:
            return False
        self.auto_published += 1
        log.info("auto-published event %r", name)
        return True

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
                c["unknown_event"] = self.unknown_events.get(name, 0)
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
        """``/health/ready``: configuration loaded, not stopping, no configured producer
        (broker_ids, static subscriptions) that has reached no broker for
        ``ready_broker_timeout`` s, every :attr:`ready_checks` passing, and
        (``check_brokers``) one reachable bootstrap server per broker list. When not ready,
        ``reason`` says why."""
        if self.stopping:
            return False, {"reason": "stopping"}
        reasons = await self._producers_down()
        reasons += [r for r in (check() for check in self.ready_checks) if r]
        ok, details = await self._brokers_reachable()
        if reasons:
            return False, {"reason": "; ".join(reasons), **details}
        return ok, details

    async def _producers_down(self) -> list[str]:
        """Producers down longer than ``ready_broker_timeout``, unless a metadata request
        (cached ``_READY_CACHE_S``) proves otherwise: an idle producer sends nothing, so only
        asking tells that its brokers are back."""
        metrics = self.settings.model.metrics
        limit = metrics.ready_broker_timeout
        if limit <= 0:
            return []
        now = time.monotonic()
        # Only configured producers: a subscriber added over the MI (by anyone who can reach
        # it) must not be able to take the service out of a load balancer.
        configured = {sock.producer_key for sock in self._kafka_sockets()}
        down = [
            sp
            for sp in self.ek.pool.producers
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
        m = self.settings.model
        if not m.metrics.check_brokers:
            return True, {}
        now = time.monotonic()
        if self._ready_cache is not None and now - self._ready_cache[0] < _READY_CACHE_S:
            return self._ready_cache[1], self._ready_cache[2]
        lists = sorted({sock.brokers for sock in self._kafka_sockets()})
        results = await asyncio.gather(*(_reachable(b, m.metrics.check_timeout) for b in lists))
        brokers = {
            b: "reachable" if ok else "unreachable" for b, ok in zip(lists, results, strict=True)
        }
        ok = all(results)
        self._ready_cache = (now, ok, {"brokers": brokers})
        return ok, {"brokers": brokers}

    def _kafka_sockets(self) -> list[KafkaSocket]:
        socks = list(self.ek.brokers.values())
        for _, (scheme, dest) in self.static:
            if scheme == "kafka" and isinstance(dest, KafkaSocket):
                socks.append(dest)
        return socks

    # -- reload ----------------------------------------------------------------------------------

    def request_reload(self, why: str = "SIGHUP") -> None:
        """Start a reload off the signal handler; one arriving while a reload runs is
        coalesced into a single reload after it (logged, never silently dropped)."""
        if self.stopping:
            log.info("%s: ignored, stopping", why)
            return
        if self._reload_task is not None and not self._reload_task.done():
            if not self._reload_again:
                log.info("%s: a reload is running; the file will be read again after it", why)
            else:
                log.info("%s: a reload is running and another is already queued", why)
            self._reload_again = True
            return
        self._reload_task = asyncio.get_running_loop().create_task(self._reload_loop())

    async def _reload_loop(self) -> None:
        while True:
            await self.reload()
            if not self._reload_again or self.stopping:
                return
            self._reload_again = False  # SIGHUPs during that reload: one more covers them all

    async def reload(self) -> bool:
        """Re-read the file; apply all of it, or refuse it and keep running as before."""
        if self.stopping:
            return False
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            try:
                new, subs = await self._load_in_thread()
                _check_reload_safe(self.settings, new)
                self._apply(new, subs)
            except (ConfigError, _ReloadRefused) as exc:
                self.reloads["error"] += 1
                log.error("reload refused, keeping the running configuration:\n%s", exc)
                return False
            self.reloads["ok"] += 1
            log.info("configuration reloaded: %s", new.summary())
            return True
        finally:
            sd_notify("READY=1")

    async def _load_in_thread(self) -> tuple[ServiceSettings, dict[_SubKey, Subscription]]:
        """Load the file on a daemon thread (it may resolve host names, or meet a hung file
        system): within ``_RELOAD_BUDGET`` s, and never holding the loop or process exit."""
        if self._stuck_load is not None and self._stuck_load.is_alive():
            raise _ReloadRefused(
                "the previous reload is still stuck reading the file (hung file system or "
                "name resolution?); not starting another"
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[ServiceSettings, dict[_SubKey, Subscription]]]
        done = loop.create_future()
        path, overrides = self.settings.path, self.overrides

        def work() -> None:
            try:
                result = _load_for_reload(path, overrides)
            except BaseException as exc:
                if not isinstance(exc, ConfigError):
                    log.exception("reload: loading %s failed", path)
                    exc = ConfigError(f"{path}: cannot load: {type(exc).__name__}")
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(_settle_exc, done, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle_ok, done, result)

        thread = threading.Thread(target=work, name="event-kafka-reload", daemon=True)
        thread.start()
        try:
            return await asyncio.wait_for(done, _RELOAD_BUDGET)
        except TimeoutError:
            self._stuck_load = thread
            raise _ReloadRefused(
                f"reading and checking the file took more than {_RELOAD_BUDGET:g} s"
            ) from None

    def _apply(self, new: ServiceSettings, new_subs: dict[_SubKey, Subscription]) -> None:
        """Apply a loaded file. The one step that can fail (opening a new static subscriber)
        runs first and is undone on failure (_ReloadRefused), so a reload is all or nothing.
        Events are never unpublished (as in OpenSIPS): a name a refused reload published
        stays, with no subscriber."""
        old = self.settings
        ek = self.ek
        evi = ek.evi
        for name in new.published_events:
            evi.publish_event(name)
        added: list[tuple[_SubKey, Subscription]] = []
        for key in [k for k in new_subs if k not in self.static]:  # file order
            sub = new_subs[key]
            try:
                evi.subscribe(sub.event, sub.socket, expire=None)
            except (ValueError, LookupError, RuntimeError, OSError) as exc:
                for _, done in added:
                    with contextlib.suppress(ValueError, LookupError):
                        evi.unsubscribe(done.event, done.socket)
                raise _ReloadRefused(
                    f"static subscription {sub.event} -> {_shown(key)} cannot be added: {exc}"
                ) from None
            added.append((key, sub))
        for key, sub in added:
            log.info("static subscription added: %s -> %s", sub.event, _shown(key))
        _warn_restart_needed(self.started_with, new)
        for bid in old.brokers.keys() - new.brokers.keys():
            log.info("broker_id [%s] removed", bid)
        for bid, sock in new.brokers.items():
            current = ek.brokers.get(bid)
            if current is None:
                log.info("broker_id [%s] added", bid)
            elif current != sock:
                log.info("broker_id [%s] changed: %s", bid, sock)
        ek.set_broker_ids(new.brokers)
        for key in self.static.keys() - new_subs.keys():
            sub = self.static[key]
            with contextlib.suppress(ValueError, LookupError):
                evi.unsubscribe(sub.event, sub.socket)
            log.info("static subscription removed: %s -> %s", sub.event, _shown(key))
        self.static = new_subs
        self.workers.budget = new.model.mi.command_timeout
        self._install_routes(new)
        level = new.model.logging.level
        if level != old.model.logging.level:
            logging.getLogger().setLevel(level)
        self.settings = new

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


_SubKey = tuple[str, tuple[str, object]]
"""(event, (scheme, destination)): equal for sockets that denote the same subscriber."""


def _static_subs(settings: ServiceSettings) -> dict[_SubKey, Subscription]:
    out: dict[_SubKey, Subscription] = {}
    for sub in settings.model.subscriptions:
        try:
            out[(sub.event, check_subscriber_socket(sub.socket))] = sub
        except ValueError as exc:  # validated at load; a host name may have stopped resolving
            log.error("static subscription %s: %s", sub.event, exc)
    return out


class _ReloadRefused(Exception):
    """A reload that would not be complete or would weaken security: nothing was changed."""


_RELOAD_BUDGET = 30.0
"""Seconds a reload may take to read and check the file (a hung NFS mount, slow DNS)."""
_MI_WORKERS = 4


def _check_reload_safe(running: ServiceSettings, new: ServiceSettings) -> None:
    """Refuse a reload that would silently weaken security."""
    if running.token is not None and new.token is None:
        raise _ReloadRefused(
            "it removes the MI token (mi.token / mi.token_file): a reload never drops "
            "authentication; restart the service to run without a token"
        )


def _settle_ok(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _settle_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _load_for_reload(
    path: str, overrides: Mapping[str, str]
) -> tuple[ServiceSettings, dict[_SubKey, Subscription]]:
    # Both parse sockets (and may resolve host names): run together, off the event loop.
    settings = load_config(path, overrides=overrides)
    return settings, _static_subs(settings)


def _shown(key: _SubKey) -> str:
    """A static subscriber's socket for a log line: Kafka property values masked."""
    scheme, dest = key[1]
    if isinstance(dest, KafkaSocket):
        return str(dest)
    printer = getattr(dest, "print", None)
    return f"{scheme}:{printer()}" if callable(printer) else scheme


_RESTART_MI = ("enabled", "listen", "path", "max_request_bytes", "read_timeout", "max_connections")


def _warn_restart_needed(running: ServiceSettings, new: ServiceSettings) -> None:
    a, b = running.model, new.model
    pairs: list[tuple[str, object, object]] = [
        (f"mi.{k}", getattr(a.mi, k), getattr(b.mi, k)) for k in _RESTART_MI
    ]
    pairs += [
        ("ingest", a.ingest, b.ingest),
        ("metrics.listen", a.metrics.listen, b.metrics.listen),
        ("metrics.enabled", a.metrics.enabled, b.metrics.enabled),
        ("kafka.queue_full_wait", a.kafka.queue_full_wait, b.kafka.queue_full_wait),
        ("events.event_header", a.events.event_header, b.events.event_header),
        ("logging.format", a.logging.format, b.logging.format),
        ("logging.output", a.logging.output, b.logging.output),
        ("logging.syslog_address", a.logging.syslog_address, b.logging.syslog_address),
        ("logging.syslog_facility", a.logging.syslog_facility, b.logging.syslog_facility),
        (
            "metrics.statistics_interval_ms",
            a.metrics.statistics_interval_ms,
            b.metrics.statistics_interval_ms,
        ),
    ]
    changed = [name for name, x, y in pairs if x != y]
    if changed:
        log.warning("changed settings that need a restart (not applied): %s", ", ".join(changed))


def _log_shutdown(before: Mapping[str, Any], after: Mapping[str, Any], left: int) -> None:
    in_flight = sum(ln.counters.in_flight for ln in before.get("lanes", ()))
    if left:
        log.warning(
            "stopped: %d message(s) were not delivered before the flush timeout; each got a "
            "failure report (report routes ran for them)",
            left,
        )
    else:
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


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- process ---------------------------------------------------------------------------------------


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) about ``state``; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601, local time with offset, milliseconds: ``2026-05-01T12:00:00.123+02:00``."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; the traceback is a field, its newlines escaped by JSON."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class _LineFormatter(logging.Formatter):
    """Text, one record per line: newlines (multi-line messages, tracebacks) are escaped, so
    journald and syslog never split a record or take a line for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


_HANDLER_TAG = "_event_kafka_service"


def _syslog_handler(cfg: LoggingSection) -> logging.Handler:
    address: str | tuple[str, int] = cfg.syslog_address
    if not cfg.syslog_address.startswith("/"):
        addr = parse_listen(cfg.syslog_address)
        address = (addr.host, addr.port)  # UDP, as syslog over the network usually is
    handler = logging.handlers.SysLogHandler(
        address=address,
        facility=logging.handlers.SysLogHandler.facility_names[cfg.syslog_facility],
    )
    handler.ident = f"event-kafka[{os.getpid()}]: "
    return handler


def setup_logging(cfg: LoggingSection) -> None:
    """One handler on the root logger: stderr (journald takes stderr under systemd) or
    syslog (``output = "syslog"``; a Unix socket such as /dev/log, or UDP host:port).

    Raises:
        OSError: the syslog socket cannot be opened.
    """
    handler: logging.Handler
    if cfg.output == "syslog":
        handler = _syslog_handler(cfg)  # first: on failure the old handlers stay
        text_format = "%(levelname)s %(name)s: %(message)s"  # syslog adds time and host
    else:
        handler = logging.StreamHandler(sys.stderr)
        text_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    setattr(handler, _HANDLER_TAG, True)
    if cfg.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_LineFormatter(text_format))
    root.addHandler(handler)
    root.setLevel(cfg.level)


async def _main(settings: ServiceSettings, overrides: Mapping[str, str]) -> int:
    service = Service(settings)
    service.overrides = overrides
    try:
        await service.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EX_START
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, service.request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, service.request_reload, "SIGHUP")
    log.info(
        "event-kafka %s started (pid %d): %s", package_version(), os.getpid(), settings.summary()
    )
    sd_notify("READY=1")
    try:
        await service.wait_stopped()
        # Handlers stay installed while flushing: a second SIGTERM must not cut the flush
        # short (it is logged); systemd's TimeoutStopSec is the hard limit.
        await service.shutdown()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


def run(config_path: str | Path, overrides: Mapping[str, str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the process exit status.

    ``overrides`` are settings given on the command line (``{"logging.level": "DEBUG"}``);
    they win over the file and the environment, at start and at each reload.

    Example::

        raise SystemExit(run("/etc/event-kafka/event-kafka.toml"))
    """
    overrides = dict(overrides or {})
    try:
        settings = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        print(f"event-kafka: configuration refused:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        setup_logging(settings.model.logging)
    except OSError as exc:
        print(
            f"event-kafka: cannot open syslog {settings.model.logging.syslog_address}: {exc}",
            file=sys.stderr,
        )
        return EX_START
    return asyncio.run(_main(settings, overrides))


def serve_command(config: Path, check: bool, overrides: Mapping[str, str] | None = None) -> int:
    """``event-kafka serve -c FILE [--check] [--log-level L] [--log-format F]``: run, or
    (``check``) only validate the file."""
    if not check:
        return run(config, overrides)
    try:
        settings = load_config(config, overrides=overrides)
    except ConfigError as exc:
        print(f"event-kafka: configuration refused:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"{config}: OK ({settings.summary()})")
    return 0
