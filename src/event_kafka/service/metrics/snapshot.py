"""What the service counts, read at one moment, and its rows per (broker_id, event, topic)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...statistics import BrokerOwner, LaneCounters, LaneStats, group


@dataclass
class Snapshot:
    """Everything the service counts, read at one moment.

    Attributes:
        ek: ``EventKafka.stats()``.
        broker_topics: each configured broker ID and its topic (lanes with another owner
            belong to event subscribers).
        transports: ``EventInterface.transport_stats()``.
        ingest: per listener (``udp``/``tcp``) counters, ``unknown_event`` included.
        mi: ``requests``/``errors`` of the dispatcher.
        http: rejections by reason.
        report_actions: per route counters of the configured actions.
        reloads: ``{"ok": n, "error": n}``.
        started_at: ``time.time()`` at start; ``version``: the package version.
    """

    ek: Mapping[str, Any]
    broker_topics: Mapping[str, str] = field(default_factory=dict)
    transports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ingest: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    mi: Mapping[str, int] = field(default_factory=dict)
    http: Mapping[str, int] = field(default_factory=dict)
    report_actions: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    reloads: Mapping[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    version: str = ""


def _lane_key(ln: LaneStats) -> tuple[str, str, str]:
    if isinstance(ln.owner, BrokerOwner):
        return (ln.owner.broker_id, "", ln.topic)
    return ("", ln.owner.event, ln.topic)


def _lane_rows(snap: Snapshot) -> dict[tuple[str, str, str], LaneCounters]:
    """Lane counters summed per (broker_id, event, topic): a broker_id has one lane per report
    route, an event one per Kafka subscriber socket."""
    rows = group((_lane_key(ln), ln.counters) for ln in snap.ek.get("lanes", ()))
    # Configured broker IDs show up (as zeros) before their first message.
    for bid, topic in snap.broker_topics.items():
        rows.setdefault((bid, "", topic), LaneCounters())
    return rows


_SPOOL_COUNTERS = {
    "replayed": "Spooled records another process accepted, delivered by this one.",
    "deduplicated": "Spooled records found already in Kafka, not sent again.",
    "expired": "Spooled records older than max_age, failed.",
    "retried": "Retriable failures of spooled records (sent again, not failed).",
}


def _spool_rows(snap: Snapshot) -> dict[tuple[str, str, str], dict[str, int]]:
    """Spool counters summed per (broker_id, event, topic) (an event may have several
    subscribers on one topic)."""
    rows: dict[tuple[str, str, str], dict[str, int]] = {}
    for s in snap.ek.get("spool", ()):
        key = (str(s.get("broker_id", "")), str(s.get("event", "")), str(s.get("topic", "")))
        row = rows.setdefault(key, {})
        for name, value in s.items():
            if isinstance(value, int) and not isinstance(value, bool):
                row[name] = row.get(name, 0) + value
        row["write_error"] = max(row.get("write_error", 0), 1 if s.get("write_error") else 0)
    return rows


def _attr(obj: Any, name: str) -> int:
    value = obj.get(name, 0) if isinstance(obj, Mapping) else getattr(obj, name, 0)
    return int(value)
