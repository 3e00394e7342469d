"""Raising an ingested notification in the Event Interface (the service's RaiseFunction).

OK only if every subscriber accepted it (or there is none), as OpenSIPS's script
``raise_event`` reports it. An event nobody published is refused (404) and counted per
listener, unless ``[events] auto_publish`` publishes it (at most ``auto_publish_max`` names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ...event_interface import EventInterface, UnknownEventError
from ...kafka_socket import mask_secrets
from ...ratelimit import RateLimitedLog
from ..config import EventsSection
from .listener import ACCEPTED, RaiseOutcome
from .notification import Notification

__all__ = ["EventRaiser"]

log = logging.getLogger("event_kafka.service")


@dataclass
class EventRaiser:
    """A :data:`~.listener.RaiseFunction`: ``raiser(notification, listener) -> outcome``.

    ``evi`` and ``events`` are read at each call, so a reload's ``[events]`` applies at once.
    """

    evi: Callable[[], EventInterface]
    events: Callable[[], EventsSection]
    log_interval: float = 10.0
    unknown_events: dict[str, int] = field(default_factory=lambda: {"udp": 0, "tcp": 0})
    """Notifications of an unpublished event, per listener."""
    auto_published: int = 0
    _log: RateLimitedLog = field(init=False)

    def __post_init__(self) -> None:
        self._log = RateLimitedLog(log, self.log_interval)

    def __call__(self, note: Notification, listener: str) -> RaiseOutcome:
        evi = self.evi()
        try:
            rc = _raise_one(evi, note)
        except UnknownEventError:
            if not self._auto_publish(evi, note.event):
                self.unknown_events[listener] = self.unknown_events.get(listener, 0) + 1
                self._log.warning(
                    "%s ingest: event %r is not published (events.publish / auto_publish)",
                    listener,
                    mask_secrets(note.event),
                )
                return RaiseOutcome((404, "Event not registered"))
            rc = _raise_one(evi, note)
        except (TypeError, ValueError) as exc:
            shown = mask_secrets(note.event)
            self._log.warning("%s ingest: cannot raise %r: %s", listener, shown, exc)
            return RaiseOutcome((400, "Bad Params"))
        return ACCEPTED if rc == 1 else RaiseOutcome((500, "Cannot Raise Event"))

    def _auto_publish(self, evi: EventInterface, name: str) -> bool:
        events = self.events()
        if not events.auto_publish or self.auto_published >= events.auto_publish_max:
            return False
        try:
            evi.publish_event(name)
        except ValueError:
            return False
        self.auto_published += 1
        log.info("auto-published event %r", mask_secrets(name))
        return True


def _raise_one(evi: EventInterface, note: Notification) -> int:
    if note.payload is None:
        return evi.raise_event_script(note.event, note.params)
    n, total = evi.raise_payload(note.event, note.payload, note.params)
    return 1 if n == total else -1
