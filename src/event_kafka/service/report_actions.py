"""Report routes built from the configuration: log, dead-letter, count.

A ``[report_routes.NAME]`` table becomes one report route (a callable taking a
:class:`~event_kafka.report.Report`) registered under ``NAME``; MI ``kafka_publish`` names it
(or ``mi.default_report_route`` does). Per report, in this order:

* **count** — per status (``delivered`` / ``failed``), in ``/metrics`` and ``get_statistics``;
* **log** — ``"all"``: one INFO line per report; ``"failure"``: a WARNING per failure, at
  most one per ``logging.rate_limit_interval`` with a count of the suppressed ones;
  ``"none"``. Lines carry the broker ID, status, topic/partition/offset, key and reason —
  never the message itself;
* **dead_letter** — a failed message is published again, same key and value, to the
  ``dead_letter`` broker_id. Those copies report to an internal route
  (``_dead_letter:NAME``) that counts and logs them and never dead-letters again, so a
  broken dead-letter topic cannot loop.

Routes run on the library's route threads, never on the event loop.

Example::

    actions = ReportActions("main", ReportRouteConfig(dead_letter="dlq"), ek)
    actions.install()                       # ek.add_report_route("main", actions)
    ek.kafka_publish("k1", "msg", report_route="main")
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ratelimit import RateLimitedLog
from ..report import Report
from .config import ReportRouteConfig
from .counters import counter_dict

if TYPE_CHECKING:
    from ..connector import EventKafka

__all__ = ["DEAD_LETTER_PREFIX", "ReportActions", "describe"]

log = logging.getLogger("event_kafka.service.report")

DEAD_LETTER_PREFIX = "_dead_letter:"
"""Dead-letter copies of route ``NAME`` report to the internal route ``_dead_letter:NAME``
(configured route names cannot start with ``_``)."""


@dataclass
class RouteCounters:
    """What one report route's actions did (the route's ``count``ed reports and its
    dead-letter copies)."""

    delivered: int = 0
    failed: int = 0
    dead_letter_published: int = 0
    """Copies accepted by the dead-letter broker_id."""
    dead_letter_rejected: int = 0
    """Copies refused at once (lost, logged)."""
    dead_letter_delivered: int = 0
    dead_letter_failed: int = 0


class ReportActions:
    """The actions of one configured report route, callable as the route itself.

    Its counters (:class:`RouteCounters`, read by :mod:`.metrics`) are ``stats``.
    """

    def __init__(
        self,
        name: str,
        config: ReportRouteConfig,
        ek: EventKafka,
        *,
        log_interval: float = 10.0,
    ) -> None:
        self.name = name
        self.config = config
        self.ek = ek
        self.dead_letter_route = DEAD_LETTER_PREFIX + name
        self._fail_log = RateLimitedLog(log, log_interval)
        self._lock = threading.Lock()
        self.stats = RouteCounters()

    def install(self) -> None:
        """Register (or replace) this route, and its dead-letter route, in the EventKafka."""
        if self.config.dead_letter is not None:
            self.ek.add_report_route(self.dead_letter_route, self._dead_letter_report)
        self.ek.add_report_route(self.name, self)

    def __call__(self, report: Report) -> None:
        cfg = self.config
        if cfg.count:
            with self._lock:
                if report.ok:
                    self.stats.delivered += 1
                else:
                    self.stats.failed += 1
        if cfg.log == "all":
            log.info("report route %s: %s", self.name, describe(report))
        elif cfg.log == "failure" and not report.ok:
            self._fail_log.warning("report route %s: %s", self.name, describe(report))
        if cfg.dead_letter is not None and not report.ok:
            self._dead_letter(report, cfg.dead_letter)

    def _dead_letter(self, report: Report, target: str) -> None:
        message = report.message if report.message is not None else b""
        rc = self.ek.kafka_publish(target, message, report.key, self.dead_letter_route)
        with self._lock:
            if rc == 1:
                self.stats.dead_letter_published += 1
            else:
                self.stats.dead_letter_rejected += 1
        if rc != 1:
            self._fail_log.error(
                "report route %s: dead-letter broker_id [%s] refused the copy, message lost "
                "(key %r)",
                self.name,
                target,
                report.kafka_key,
            )

    def _dead_letter_report(self, report: Report) -> None:
        with self._lock:
            if report.ok:
                self.stats.dead_letter_delivered += 1
            else:
                self.stats.dead_letter_failed += 1
        if not report.ok:
            self._fail_log.error(
                "report route %s: dead-letter copy failed too, message lost: %s",
                self.name,
                describe(report),
            )

    def counters(self) -> dict[str, int]:
        with self._lock:
            return counter_dict(self.stats)


def describe(report: Report) -> str:
    """One log line for a report, without the message text (it may be large or personal)."""
    status = "delivered" if report.ok else "FAILED"
    where = f"{report.topic}[{report.partition}]@{report.offset}" if report.ok else report.topic
    reason = f", reason: {report.reason}" if report.reason else ""
    key = f", key {report.kafka_key!r}" if report.key else ""
    size = len(report.message) if report.message is not None else 0
    return f"[{report.kafka_id}] {status} to {where} ({size} bytes{key}){reason}"
