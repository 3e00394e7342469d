"""Where a spooled owner lives and how the pool sees it: the owner directory's name, the
producer lane under a spooled owner and the ``(broker_id, route)`` view ``kafka_publish`` uses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..producer.lane import Lane
from ..report import Report
from ..statistics import COUNTERS, BrokerOwner, LaneCounters, LaneOwner

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket
    from .core import LaneCore
    from .lane import SpooledLane

__all__ = ["OwnerLane", "SpoolRoute", "owner_directory"]


def _safe(name: str) -> str:
    """``name`` as one safe path component (percent-encoded; never ``.``/``..``/empty)."""
    out = []
    for ch in name:
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    text = "".join(out)
    return text if text else "%"


def owner_directory(root: Path, owner: LaneOwner, socket: KafkaSocket) -> Path:
    """Where an owner's records live: ``root/broker_id/<ID>`` for a broker_id,
    ``root/event/<event>/<hash>`` for a ``kafka:`` subscriber (the hash is of its brokers,
    topic and key mode, never of property values: a rotated password keeps the directory)."""
    if isinstance(owner, BrokerOwner):
        return root / "broker_id" / _safe(owner.broker_id)
    ident = f"{socket.brokers}/{socket.topic}?key={socket.key_param or socket.key_callid}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    return root / "event" / _safe(owner.event) / digest


@dataclass(slots=True)
class _Stopped(LaneCounters):
    """A stopped owner's counters: ``in_flight`` is only what librdkafka still holds (records
    left in the spool are no longer waited for, and get no report)."""

    held: int = 0

    @property
    def in_flight(self) -> int:
        return self.held


class OwnerLane(Lane):
    """The producer lane under a spooled owner (made by the pool, counted like any lane).

    ``accepted`` counts records appended by this process plus records adopted from others
    (monotonic); ``in_flight`` is what is spooled or in librdkafka. Once the owner stops
    (close, release), records left on disk are no longer in flight for the pool: only those
    librdkafka holds are.
    """

    spooled: LaneCore
    derives_successes = False  # the spool's own delivery callbacks count every outcome

    @property
    def accepted(self) -> int:
        sl: LaneCore | None = self.__dict__.get("spooled")
        return self._accepted.value + (sl.adopted if sl is not None else 0)

    @property
    def stats(self) -> LaneCounters:
        c = super().stats
        sl: LaneCore | None = self.__dict__.get("spooled")
        if sl is None or not sl.stopping:
            return c
        out = _Stopped(held=0 if sl.finished else sl.held)
        for n in COUNTERS:
            setattr(out, n, getattr(c, n))
        return out


@dataclass(frozen=True, slots=True)
class SpoolRoute:
    """A ``(broker_id, report route)`` view of a spooled lane (what ``kafka_publish`` uses)."""

    spooled: SpooledLane
    route: str | None

    def publish(
        self,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_report: Callable[[Report], object] | None = None,
    ) -> int:
        return self.spooled.publish(value, key, headers, on_report, self.route)

    @property
    def stats(self) -> LaneCounters:
        return self.spooled.stats
