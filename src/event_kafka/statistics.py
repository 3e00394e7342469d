"""Typed statistics: who owns a counter, the counters of a lane, and their one aggregation.

A lane's owner is a value of one kind — a ``broker_id`` or an event — never a bare string: a
broker_id ``E1`` and an event ``E1`` are two different owners. (Producers and report routes
have sections of their own in ``EventKafka.stats()``, keyed by their names.) Lane
counters (:class:`LaneCounters`) add up with ``+``; :func:`group` is the one place that sums
them (per owner, per ``(owner, topic)``, per subscriber socket...).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, fields
from typing import TypeVar

from . import forksafe

__all__ = [
    "COUNTERS",
    "REJECT_REASONS",
    "SUMMARY",
    "BrokerOwner",
    "EventOwner",
    "LaneCounters",
    "LaneOwner",
    "LaneStats",
    "Tally",
    "group",
]


@dataclass(frozen=True, slots=True)
class BrokerOwner:
    """A ``broker_id`` of ``kafka_publish``."""

    broker_id: str

    @property
    def name(self) -> str:
        return self.broker_id


@dataclass(frozen=True, slots=True)
class EventOwner:
    """An Event Interface event (its Kafka subscribers publish for it)."""

    event: str

    @property
    def name(self) -> str:
        return self.event


LaneOwner = BrokerOwner | EventOwner
"""Who publishes through a lane: a ``broker_id`` (``kafka_publish``) or an event."""

REJECT_REASONS = ("queue_full", "too_large", "fatal", "closed", "other")
"""Why ``publish`` refused a message at once (``rejected_<reason>`` counters)."""


@dataclass(slots=True)
class LaneCounters:
    """Counters of one lane (or a sum of lanes); ``in_flight = accepted - delivered - failed``."""

    accepted: int = 0
    delivered: int = 0
    failed: int = 0
    rejected_queue_full: int = 0
    rejected_too_large: int = 0
    rejected_fatal: int = 0
    rejected_closed: int = 0
    rejected_other: int = 0
    route_errors: int = 0

    @property
    def in_flight(self) -> int:
        return self.accepted - self.delivered - self.failed

    @property
    def rejected(self) -> int:
        return sum(getattr(self, f"rejected_{r}") for r in REJECT_REASONS)

    def __add__(self, other: LaneCounters) -> LaneCounters:
        return LaneCounters(*(getattr(self, n) + getattr(other, n) for n in _FIELDS))

    def as_dict(self) -> dict[str, int]:
        """Every counter, ``in_flight`` and ``rejected`` included."""
        d = {n: getattr(self, n) for n in _FIELDS}
        d["in_flight"] = self.in_flight
        d["rejected"] = self.rejected
        return d

    def summary(self) -> dict[str, int]:
        """The :data:`SUMMARY` counters (OpenSIPS statistics groups)."""
        return {n: getattr(self, n) for n in SUMMARY}


_FIELDS = tuple(f.name for f in fields(LaneCounters))
COUNTERS = _FIELDS
"""The stored lane counters, in order."""
SUMMARY = ("accepted", "delivered", "failed", "rejected", "in_flight", "route_errors")
"""The lane counters shown per group by MI ``get_statistics``."""


@dataclass(frozen=True, slots=True)
class LaneStats:
    """One lane read at one moment: its owner, topic, brokers and counters."""

    owner: LaneOwner
    topic: str
    brokers: str
    counters: LaneCounters


K = TypeVar("K", bound=Hashable)


def group(rows: Iterable[tuple[K, LaneCounters]]) -> dict[K, LaneCounters]:
    """Lane counters summed per key: ``group((ln.owner, ln.counters) for ln in lanes)``."""
    out: dict[K, LaneCounters] = {}
    for k, c in rows:
        out[k] = out.get(k, LaneCounters()) + c
    return out


class Tally:
    """A counter that threads bump without a lock (``tally.bump()``, an atomic C call).

    Reading takes a lock, and is exact: it bumps the underlying ``itertools.count`` too and
    subtracts the reads made so far, so no private state (such as its ``repr``) is parsed.
    """

    __slots__ = ("_count", "_read_lock", "_reads", "bump")

    def __init__(self, start: int = 0) -> None:
        self._count = itertools.count(start)
        self.bump: Callable[[], object] = self._count.__next__
        self._reads = 0
        self._read_lock = forksafe.lock()

    @property
    def value(self) -> int:
        with self._read_lock:
            n = next(self._count) - self._reads
            self._reads += 1
            return n
