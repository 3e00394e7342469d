"""One ingest listener's core: decode a notification, raise it, count, and build the reply.

The servers (:mod:`.udp`, :mod:`.tcp`) only move bytes; what to do with one notification is
here. Raising is not ingest's business: the service hands each server a
:data:`RaiseFunction` at construction, and ingest never reaches back into the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from ...address import format_peer
from ...ratelimit import RateLimitedLog
from ..counters import counter_dict
from .notification import IngestError, Notification, parse_notification

__all__ = ["ACCEPTED", "IngestCounters", "Listener", "RaiseFunction", "RaiseOutcome"]

log = logging.getLogger("event_kafka.service.ingest")


@dataclass(slots=True)
class RaiseOutcome:
    """What happened to one notification: ``error`` is ``None`` when it was accepted,
    else the JSON-RPC ``(code, message)`` to answer a reliable-mode sender with."""

    error: tuple[int, str] | None = None


ACCEPTED = RaiseOutcome()

RaiseFunction: TypeAlias = Callable[[Notification, str], RaiseOutcome]
"""``(notification, listener) -> outcome``: raises the event in the Event Interface."""


@dataclass
class IngestCounters:
    """Counters of one listener (read at scrape time by :mod:`.metrics`)."""

    received: int = 0
    """Notifications decoded (datagrams / objects), malformed ones included."""
    malformed: int = 0
    raised: int = 0
    refused: int = 0
    """Decoded but not raised: unknown event, or no subscriber accepted it."""
    replies: int = 0
    connections: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    streams_closed_on_error: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return counter_dict(self)


@dataclass
class Listener:
    name: str
    raise_fn: RaiseFunction
    counters: IngestCounters = field(default_factory=IngestCounters)
    bad_log: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log, 10.0))
    event_param: str | None = None

    def handle(self, raw: bytes, peer: object) -> tuple[Any, bool, bytes | None]:
        """Decode and raise one notification: ``(id, has_id, reply bytes or None)``.

        ``peer``: its text, or the address as ``recvfrom`` gives it (formatted only when a
        log line names it)."""
        c = self.counters
        c.received += 1
        try:
            note = parse_notification(raw, event_param=self.event_param)
        except IngestError as exc:
            c.malformed += 1
            self.bad_log.warning(
                "%s ingest: malformed notification from %s: %s",
                self.name,
                peer if isinstance(peer, str) else format_peer(peer),
                exc,
            )
            if exc.id is None:
                return None, False, None
            return exc.id, True, _error_reply(exc.code, exc.message, exc.id)
        try:
            outcome = self.raise_fn(note, self.name)
        except Exception:
            log.exception("%s ingest: raising %s failed", self.name, note.event)
            outcome = RaiseOutcome((500, "Cannot Raise Event"))
        if outcome.error is None:
            c.raised += 1
        else:
            c.refused += 1
        if not note.has_id:
            return None, False, None
        if outcome.error is None:
            return note.id, True, orjson.dumps({"jsonrpc": "2.0", "result": "OK", "id": note.id})
        return note.id, True, _error_reply(*outcome.error, note.id)


def _error_reply(code: int, message: str, rid: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid})
