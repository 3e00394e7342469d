"""Which spooled records Kafka already has: read a topic's tail for ``ek-spool-id`` headers.

Before a spooled lane re-sends records whose fate it does not know (records of a dead
process, or records that timed out or were purged while in flight: "possibly persisted"),
it reads the topic from a little before the oldest of them (``offsets_for_times`` on every
partition, up to each partition's end as it was when the scan began) and collects the
``ek-spool-id: <writer>:<seq>`` headers of those writers. The records found are
acknowledged in the spool and reported delivered instead of being sent twice.

The scan is bounded (time and records): an incomplete scan says so (``complete=False``) and
the caller sends the rest, accepting possible duplicates, which it counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = [
    "SLACK_MS",
    "SPOOL_HEADER",
    "DedupeDenied",
    "DedupeUnavailable",
    "Found",
    "consumer_config",
    "parse_id",
    "scan",
]

SPOOL_HEADER = "ek-spool-id"
"""The header every spooled record carries: ``<writer>:<seq>`` (ASCII)."""

SLACK_MS = 30_000
"""The scan starts this long before the oldest record's timestamp: clock skew between hosts
(and ``LogAppendTime`` topics, whose timestamps are the broker's)."""

# Connection settings a consumer shares with the producer (brokers, TLS, SASL, sockets).
_SHARED_PREFIXES = (
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "ssl.",
    "ssl_",
    "sasl.",
    "enable.ssl.",
    "socket.",
    "broker.address.",
    "client.id",
    "client.dns.lookup",
    "api.version.",
    "broker.version.fallback",
    "reconnect.backoff",
    "connections.max.idle.ms",
    "resolve_cb",
    "https.",
    "enable.sasl.",
    "oauthbearer",
    "logger",  # the caller's rate-limited, scrubbed logger: never librdkafka's own stderr
    "log_level",
)
_DENIED = (
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._AUTHENTICATION,
)


class DedupeUnavailable(Exception):
    """The tail could not be read now (brokers unreachable, timeout): try again later."""


class DedupeDenied(Exception):
    """The tail can never be read (no READ permission on the topic): send without it."""


@dataclass(slots=True)
class Found:
    """Records already in Kafka: ``ids[writer][seq] = (partition, offset)``."""

    ids: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    complete: bool = True  # scanned every partition to its end within the bounds
    scanned: int = 0  # records read

    def pop(self, writer: str, seq: int) -> tuple[int, int] | None:
        """Where ``writer:seq`` is in Kafka (forgotten once asked), or ``None``."""
        seqs = self.ids.get(writer)
        if not seqs:
            return None
        return seqs.pop(seq, None)

    def merge(self, other: Found) -> None:
        for w, seqs in other.ids.items():
            self.ids.setdefault(w, {}).update(seqs)
        self.complete = self.complete and other.complete
        self.scanned += other.scanned

    def __len__(self) -> int:
        return sum(len(s) for s in self.ids.values())


def parse_id(value: bytes | str | None) -> tuple[str, int] | None:
    """``(writer, seq)`` of an ``ek-spool-id`` header value, ``None`` if it is not one."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    writer, sep, seq = text.rpartition(":")
    if not sep or not writer or not seq.isdigit():
        return None
    return writer, int(seq)


def consumer_config(producer_config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection part of a producer's configuration, as a consumer's (no group)."""
    conf = {
        k: v
        for k, v in producer_config.items()
        if isinstance(k, str) and k.startswith(_SHARED_PREFIXES)
    }
    conf.update(
        {
            "group.id": "event-kafka-spool-dedupe",  # never joined: partitions are assigned
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "latest",
        }
    )
    return conf


def scan(
    config: Mapping[str, Any],
    topic: str,
    writers: Mapping[str, int],
    since_ms: int,
    *,
    timeout: float = 10.0,
    max_records: int = 5_000_000,
) -> Found:
    """The ids of ``writers`` (``writer -> first seq of interest``) in ``topic`` from
    ``since_ms`` on, every partition up to its end as it was when the scan began.

    Raises:
        DedupeUnavailable: metadata, offsets or watermarks could not be read in time.
        DedupeDenied: the topic may not be read (authorization).
    """
    deadline = time.monotonic() + timeout
    c = Consumer(consumer_config(config))
    try:
        return _scan(c, topic, writers, since_ms, deadline, max_records)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() in _DENIED:
            raise DedupeDenied(err.str()) from None
        raise DedupeUnavailable(str(err)) from None
    finally:
        c.close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DedupeUnavailable("timed out")
    return left


def _scan(
    c: Consumer,
    topic: str,
    writers: Mapping[str, int],
    since_ms: int,
    deadline: float,
    max_records: int,
) -> Found:
    # Short: with the brokers away, the caller retries later rather than waiting here.
    md = c.list_topics(topic, timeout=min(_left(deadline), 3.0))
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None:
        code = tmd.error.code() if tmd is not None and tmd.error is not None else None
        if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            return Found()  # no topic: nothing of ours is in it
        if code in _DENIED:
            raise DedupeDenied(tmd.error.str())
        raise DedupeUnavailable(f"topic {topic!r} metadata: {tmd.error if tmd else 'missing'}")
    parts = sorted(tmd.partitions)
    if not parts:
        raise DedupeUnavailable(f"topic {topic!r} has no partitions yet")
    starts = c.offsets_for_times(
        [TopicPartition(topic, p, max(since_ms, 0)) for p in parts], timeout=_left(deadline)
    )
    assign: list[TopicPartition] = []
    ends: dict[int, int] = {}
    for tp in starts:
        if tp.error is not None:
            raise KafkaException(tp.error)
        _low, high = c.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=_left(deadline), cached=False
        )
        # -1: no record at or after since_ms in this partition.
        start = tp.offset if tp.offset >= 0 else high
        if start < high:
            assign.append(TopicPartition(topic, tp.partition, start))
            ends[tp.partition] = high
    found = Found()
    if not assign:
        return found
    c.assign(assign)
    want = dict(writers)
    while ends:
        if found.scanned >= max_records or time.monotonic() >= deadline:
            found.complete = False
            break
        for msg in c.consume(1000, min(0.5, max(deadline - time.monotonic(), 0.01))):
            part = msg.partition() or 0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(part, None)
                    continue
                raise KafkaException(err)
            found.scanned += 1
            off = msg.offset() or 0
            end = ends.get(part)
            if end is None:
                continue
            if off >= end - 1:
                ends.pop(part, None)
            if off >= end:
                continue
            hdrs = msg.headers()
            if isinstance(hdrs, list):
                _collect(found, want, hdrs, part, off)
    return found


def _collect(
    found: Found,
    want: Mapping[str, int],
    headers: list[tuple[str, str | bytes | None]],
    part: int,
    off: int,
) -> None:
    for name, value in headers:
        if name != SPOOL_HEADER:
            continue
        got = parse_id(value)
        if got is None:
            return
        writer, seq = got
        first = want.get(writer)
        if first is not None and seq >= first:
            found.ids.setdefault(writer, {})[seq] = (part, off)
        return
