"""Spooled lanes: the durable spool between ``kafka_publish`` / ``raise_event`` and librdkafka.

With ``EventKafka(spool_dir=...)`` every broker_id and every ``kafka:`` subscriber publishes
through a :class:`SpooledLane`: one owner directory of the on-disk store
(:class:`~event_kafka.spool.OwnerSpool`) in front of a producer lane.

* **Accepted means on disk.** ``publish`` returns 1 once ``append()`` wrote the record (one
  ``write``: it survives a kill -9 of the process; the ``fsync`` policy decides what survives a
  power cut). A record that cannot be written is refused: -1, counted as ``spool_full`` or
  ``spool_error`` (and in the lane's ``rejected_other``); the service's readiness goes false.
* **Direct, or backlog from disk.** A record is handed to librdkafka at once (direct mode)
  unless librdkafka's queue or the report route's backlog is full, a replay runs or records
  wait to be sent again: then it stays on disk only and the process's sender thread
  (:mod:`.sender`) feeds it later, in sequence order, switching back to direct once caught
  up. Memory stays bounded however long Kafka is away; the disk is bounded by
  ``max_bytes`` (then -1).
* **Leaves the spool only when done.** Broker acknowledgement: ``ack()`` and a success
  report. Permanent failure (record too large, topic authorization, invalid record...): a
  failure report and ``ack()``. Records older than ``max_age`` when they would be sent: a
  failure report (``expired in the spool``) and ``ack()``. Retriable failures (message timed
  out, transport errors, not enough replicas, unknown topic, purges by a producer rebuild) are
  **not** failures: the record is sent again later, after the records still in librdkafka
  came back and the topic's tail was checked for it (:mod:`.dedupe`), so an outage longer
  than ``message.timeout.ms`` fails nothing and "possibly persisted" records are not sent
  twice. Exactly one report per accepted record.
* **Replay.** Records left by processes that are gone (their writer's lock is free) are
  adopted in the background: for broker_ids whose directory holds records from
  construction on, for a ``kafka:`` subscriber from its ``subscribe()``, otherwise at the
  owner's first use in a process, and every 30 s after (a forked sibling that died). They
  are deduplicated against the topic's tail (``offsets_for_times`` from their oldest
  timestamp minus :data:`~event_kafka.spool.dedupe.SLACK_MS`, every partition,
  ``ek-spool-id`` headers), then sent merged by append time (each writer in sequence order)
  before this process's own records of that owner go direct (per-key order holds across
  restarts). Their reports have
  ``replayed=True``; the report route is looked up by the record's route name at report time
  (an unknown name is counted, ``unknown_route``, and logged). ``on_report`` callables live
  in memory only: a replayed record has its route's report, never its ``on_report``.
* **Header and timestamp.** Every spooled record carries ``ek-spool-id: <writer>:<seq>``
  (also ``kafka_publish`` records, which otherwise have no headers) and its append time as
  the Kafka timestamp.
* **Close.** ``close(timeout)`` stops accepting, sends for at most ``timeout``, then purges
  what librdkafka still holds and leaves every record not acknowledged on disk, with no
  report; it returns how many it left. The next process (same ``spool_dir``) delivers them.
* **Fork.** A forked child gets its own writer on first use (the store's
  ``after_fork_in_child``); the parent's records stay the parent's, and a child adopts only
  writers whose process is gone.

Order: per key, in publish order, as long as nothing fails retriably. A record that timed
out is sent again after records published later may have been delivered (use
``enable.idempotence`` and a long ``message.timeout.ms`` to make that rare).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..report import Report
from ..statistics import LaneCounters
from . import SpoolError, SpoolFullError
from .core import _OK, _REFUSE, WRITE_ERROR_HOLD
from .delivery import EXPIRED_REASON
from .hub import Spools
from .owner import OwnerLane, SpoolRoute, owner_directory
from .replay import Replaying

if TYPE_CHECKING:
    pass

__all__ = ["EXPIRED_REASON", "OwnerLane", "SpoolRoute", "SpooledLane", "Spools", "owner_directory"]

log = logging.getLogger("event_kafka.spool")

YIELD_EVERY = 256
"""Direct publishes between looks at librdkafka's queue (:meth:`SpooledLane._yield_to_reports`)."""
YIELD_ABOVE = 4096
"""Records in librdkafka (sent, or delivered with the report not served yet) above which a
publish lets the delivery thread run."""
YIELD_SLEEP = 0.0002
YIELD_MAX = 0.002
"""Seconds one publish gives the delivery thread at most."""


class SpooledLane(Replaying):
    """One owner (a broker_id or a ``kafka:`` subscriber): its spool directory in front of
    its producer lane. See the module documentation for the semantics.

    Thread-safe. ``publish`` holds the owner's lock around ``append`` + ``produce`` so that
    the sequence order on disk is the order librdkafka gets.
    """

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_report: Callable[[Report], object] | None = None,
        route: str | None = None,
    ) -> int:
        """Spool one record: 1 once it is written (a report will follow), -1 if refused."""
        lane = self.lane
        if not self.accepting:
            lane.rejected_closed += 1
            return -1
        if on_report is not None and self.hub.pool.callbacks.full():
            return lane._backlog_full(self.hub.pool.callbacks)
        if type(value) is not bytes:
            if isinstance(value, str):
                value = value.encode()
            elif value is not None:
                raise TypeError("message and key must be str or bytes")
        if key is not None and type(key) is not bytes:
            if not isinstance(key, str):
                raise TypeError("message and key must be str or bytes")
            key = key.encode()
        hub = self.hub
        if hub.max_total_bytes is not None:
            over = hub.over_total()
            if over is not None:
                return self._refused("spool_full", SpoolFullError(over))
        yield_now = False
        with self._lock:
            if not self.accepting:  # again, under the lock: close() may have begun
                lane.rejected_closed += 1
                return -1
            try:
                store = self.store if self.store is not None else self._open()
                seq, ts_ms = store.put(value, key, headers, route)
            except SpoolFullError as exc:
                return self._refused("spool_full", exc)
            except SpoolError as exc:
                return self._refused("spool_error", exc)
            except ValueError as exc:  # a field too long for a spool frame: as too large
                lane.rejected_too_large += 1
                self._failog.warning("[%s] message rejected: %s", self.owner.name, exc)
                return -1
            if self.write_error is not None:
                self.write_error = None
            if hub.max_total_bytes is not None:
                hub.added(len(value or b"") + len(key or b"") + 64)  # + frame overhead
            own = self.own
            if on_report is not None:
                self._callbacks[(own, seq)] = on_report  # type: ignore[index]
            if self.direct:
                if route is not None:
                    w = self._worker(route)
                    if w is not None and w.full():
                        self._to_backlog()
                        lane._accepted.bump()
                        return 1
                got = self._send(own, seq, ts_ms, value, key, headers, route)  # type: ignore[arg-type]
                if got == _OK:
                    self.cursor[own] = seq  # type: ignore[index]
                    if not seq % YIELD_EVERY:
                        yield_now = True
                elif got == _REFUSE:
                    if self._refusal is not None:
                        lane._rejected(self._refusal)
                    self._callbacks.pop((own, seq), None)  # type: ignore[arg-type]
                    self.cursor[own] = seq  # type: ignore[index]
                    store.ack(own, seq)  # type: ignore[arg-type]
                    return -1
                else:
                    self._to_backlog()
            lane._accepted.bump()
        if yield_now:
            self._yield_to_reports()
        return 1

    def _yield_to_reports(self) -> None:
        """Let the delivery thread serve reports when they pile up (outside the lock).

        confluent-kafka takes the GIL once per delivery report. Appends never release it
        (a copy into a mapping, no system call), so without this a publishing loop leaves
        the poller one report per switch interval (5 ms): librdkafka's queue fills with
        delivered records and the lane falls back to reading them from disk. Bounded
        (``YIELD_MAX``), and it stops as soon as the queue does not shrink: a broker that is
        down or slow holds records that no report frees, and the spool is there for those."""
        sp = self.lane.sp
        n = sp.queue_length
        if n <= YIELD_ABOVE or sp.down:
            return
        deadline = time.monotonic() + YIELD_MAX
        while True:
            time.sleep(YIELD_SLEEP)  # releases the GIL: the poller serves reports meanwhile
            was, n = n, sp.queue_length
            if n <= YIELD_ABOVE // 2 or n >= was or time.monotonic() >= deadline:
                return

    # -- monitoring and lifecycle ------------------------------------------------------------

    @property
    def stats(self) -> LaneCounters:
        return self.lane.stats

    def spool_stats(self) -> dict[str, Any]:
        """Counters of the spool itself (``EventKafka.stats()["spool"]``)."""
        store = self.store
        return {
            "directory": str(self.directory),
            "records": store.pending() if store is not None else 0,
            "bytes": store.pending_bytes() if store is not None else 0,
            "direct": self.direct,
            "replayed": self._replayed.value,
            "deduplicated": self._deduplicated.value,
            "expired": self._expired.value,
            "retried": self._retried.value,
            "unknown_route": self._unknown_route.value,
            "dedupe_incomplete": self.dedupe_incomplete,
            "tail_unreadable": self._tail_unreadable.value,
            "rejected_spool_full": self.rejected_spool_full,
            "rejected_spool_error": self.rejected_spool_error,
            "left": self.left,
            "write_error": self.unwritable(),
        }

    def unwritable(self) -> str | None:
        """Why the spool could not write lately (``WRITE_ERROR_HOLD`` s), or ``None``."""
        we = self.write_error
        if we is None or time.monotonic() - we[0] > WRITE_ERROR_HOLD:
            return None
        return we[1]
