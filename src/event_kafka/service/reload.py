"""Reloading the configuration (``SIGHUP``), all or nothing.

A bad, empty or special file (FIFO, device: refused without blocking), one that removes the
MI token (restart for that), or one whose new static subscriber cannot be opened is refused,
logged with the reason, and the running configuration kept. A good one is applied: broker_ids
added/removed, newly published events, static subscriptions added/removed, report routes, the
MI token and defaults, the log level. Listener addresses and limits need a restart (a warning
says so). The file is read on a daemon thread within ``_RELOAD_BUDGET`` seconds, so a hung
file system cannot hold the event loop, SIGTERM or the exit; SIGHUPs during a reload are
coalesced into one more reload (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..kafka_socket import KafkaSocket
from .config import ConfigError, ServiceSettings, Subscription, check_subscriber_socket, load_config
from .systemd import sd_notify

if TYPE_CHECKING:
    from ..connector import EventKafka
    from .workers import WorkerPool

__all__ = ["Reloadable", "Reloader", "SubKey", "static_subscriptions"]

log = logging.getLogger("event_kafka.service")

SubKey = tuple[str, tuple[str, object]]
"""(event, (scheme, destination)): equal for sockets that denote the same subscriber."""


def static_subscriptions(settings: ServiceSettings) -> dict[SubKey, Subscription]:
    out: dict[SubKey, Subscription] = {}
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


class Reloadable(Protocol):
    """What a reload reads and changes: the running settings and what was built from them
    (the :class:`~.service.Service`)."""

    settings: ServiceSettings
    started_with: ServiceSettings
    overrides: Mapping[str, str]
    static: dict[SubKey, Subscription]
    reloads: dict[str, int]
    stopping: bool
    workers: WorkerPool

    @property
    def ek(self) -> EventKafka: ...

    def install_routes(self, settings: ServiceSettings) -> None:
        """Install (or update) the report routes of ``settings``."""


class Reloader:
    """The reloads of one service (at most one running, one queued)."""

    def __init__(self, service: Reloadable) -> None:
        self.service = service
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stuck_load: threading.Thread | None = None

    def request(self, why: str = "SIGHUP") -> None:
        """Start a reload off the signal handler; one arriving while a reload runs is
        coalesced into a single reload after it (logged, never silently dropped)."""
        if self.service.stopping:
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
            if not self._reload_again or self.service.stopping:
                return
            self._reload_again = False  # SIGHUPs during that reload: one more covers them all

    async def reload(self) -> bool:
        """Re-read the file; apply all of it, or refuse it and keep running as before."""
        if self.service.stopping:
            return False
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            try:
                new, subs = await self._load_in_thread()
                _check_reload_safe(self.service.settings, new)
                self._apply(new, subs)
            except (ConfigError, _ReloadRefused) as exc:
                self.service.reloads["error"] += 1
                log.error("reload refused, keeping the running configuration:\n%s", exc)
                return False
            self.service.reloads["ok"] += 1
            log.info("configuration reloaded: %s", new.summary())
            return True
        finally:
            sd_notify("READY=1")

    async def _load_in_thread(self) -> tuple[ServiceSettings, dict[SubKey, Subscription]]:
        """Load the file on a daemon thread (it may resolve host names, or meet a hung file
        system): within ``_RELOAD_BUDGET`` s, and never holding the loop or process exit."""
        if self._stuck_load is not None and self._stuck_load.is_alive():
            raise _ReloadRefused(
                "the previous reload is still stuck reading the file (hung file system or "
                "name resolution?); not starting another"
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[ServiceSettings, dict[SubKey, Subscription]]]
        done = loop.create_future()
        path, overrides = self.service.settings.path, self.service.overrides

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

    def _apply(self, new: ServiceSettings, new_subs: dict[SubKey, Subscription]) -> None:
        """Apply a loaded file. The one step that can fail (opening a new static subscriber)
        runs first and is undone on failure (_ReloadRefused), so a reload is all or nothing.
        Events are never unpublished (as in OpenSIPS): a name a refused reload published
        stays, with no subscriber."""
        service = self.service
        old = service.settings
        ek = service.ek
        evi = ek.evi
        for name in new.published_events:
            evi.publish_event(name)
        added: list[tuple[SubKey, Subscription]] = []
        for key in [k for k in new_subs if k not in service.static]:  # file order
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
        _warn_restart_needed(service.started_with, new)
        for bid in old.brokers.keys() - new.brokers.keys():
            log.info("broker_id [%s] removed", bid)
        for bid, sock in new.brokers.items():
            current = ek.brokers.get(bid)
            if current is None:
                log.info("broker_id [%s] added", bid)
            elif current != sock:
                log.info("broker_id [%s] changed: %s", bid, sock)
        ek.set_broker_ids(new.brokers)
        for key in service.static.keys() - new_subs.keys():
            sub = service.static[key]
            with contextlib.suppress(ValueError, LookupError):
                evi.unsubscribe(sub.event, sub.socket)
            log.info("static subscription removed: %s -> %s", sub.event, _shown(key))
        service.static = new_subs
        service.workers.budget = new.model.mi.command_timeout
        service.install_routes(new)
        level = new.model.logging.level
        if level != old.model.logging.level:
            logging.getLogger().setLevel(level)
        self.service.settings = new


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
) -> tuple[ServiceSettings, dict[SubKey, Subscription]]:
    # Both parse sockets (and may resolve host names): run together, off the event loop.
    settings = load_config(path, overrides=overrides)
    return settings, static_subscriptions(settings)


def _shown(key: SubKey) -> str:
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
        ("spool", (a.spool, running.spool_dir), (b.spool, new.spool_dir)),
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
