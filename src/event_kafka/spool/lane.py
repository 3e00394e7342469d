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

import contextlib
import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from .. import forksafe
from ..poller import POLLER, guarded
from ..producer.lane import Lane
from ..producer.pool import ProducerLimitError
from ..producer.shared import _Closed, _LibrdkafkaLogger
from ..ratelimit import RateLimitedLog
from ..report import Delivery, Report, RouteWorker
from ..statistics import COUNTERS, BrokerOwner, LaneCounters, LaneOwner, Tally
from . import OwnerSpool, SpoolError, SpoolFullError, dedupe
from .sender import IDLE, SENDER, WAITING, WORKED

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket
    from ..producer import ProducerPool
    from . import SpoolRecord, SpoolSettings

__all__ = ["EXPIRED_REASON", "SpoolRoute", "SpooledLane", "Spools", "owner_directory"]

log = logging.getLogger("event_kafka.spool")

EXPIRED_REASON = "expired in the spool: older than max_age ({:g}s)"
WRITE_ERROR_HOLD = 10.0
"""Seconds a failed write keeps the spool "cannot write" (readiness) after it happened."""
DEDUPE_RETRY = 2.0
"""Seconds between attempts to read the topic's tail while it cannot be read."""
DEDUPE_GIVE_UP = 5
"""Failed tail reads after which records are sent anyway, once the producer reaches a broker
(the consumer may lack a permission the producer has): duplicates then possible, counted."""
ADOPT_INTERVAL = 30.0
"""Seconds between looks for writers of processes that died since (a forked sibling)."""
TOTAL_EVERY = 0.1
"""Seconds between sums of every directory's bytes for ``max_total_bytes``."""
BATCH = 5000
"""Records one sender step handles for one lane (fairness between lanes)."""

# Errors after which a record is sent again rather than failed: the cluster may take it later.
_RETRIABLE = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._RESOLVE,
        KafkaError._FATAL,
        KafkaError._DESTROY,
        KafkaError._WAIT_COORD,
        KafkaError._NODE_UPDATE,
        KafkaError._AUTHENTICATION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.CONCURRENT_TRANSACTIONS,
        KafkaError.THROTTLING_QUOTA_EXCEEDED,
    }
)
# produce() errors that refuse the record for good (it is acked and the call returns -1).
_REFUSED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._INVALID_ARG})

_OK, _FULL, _REFUSE = 0, 1, 2


def _ts(rec: SpoolRecord) -> int:
    return rec.ts_ms


def _retriable(err: KafkaError) -> bool:
    return err.code() in _RETRIABLE or err.retriable()


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


class _ScanJob:
    """One tail scan (:func:`~event_kafka.spool.dedupe.scan`) running on its own thread."""

    def __init__(self, snapshot: dict[str, int]) -> None:
        self.snapshot = snapshot  # the dedupe_from it answers
        self.done = threading.Event()
        self.found = dedupe.Found()
        self.error: BaseException | None = None

    def run(self, *args: Any) -> None:
        try:
            self.found = dedupe.scan(*args)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()
            SENDER.wake()


class _Stored:
    """A spooled record in the shape of a confluent-kafka ``Message`` (for reports of
    records that never went through librdkafka in this process)."""

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self, rec: SpoolRecord, topic: str, partition: int | None, offset: int | None
    ) -> None:
        self._key, self._value = rec.key, rec.value
        self._topic, self._partition, self._offset = topic, partition, offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


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

    spooled: SpooledLane

    @property
    def accepted(self) -> int:
        sl: SpooledLane | None = self.__dict__.get("spooled")
        return self._accepted.value + (sl.adopted if sl is not None else 0)

    @property
    def stats(self) -> LaneCounters:
        c = super().stats
        sl: SpooledLane | None = self.__dict__.get("spooled")
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


class SpooledLane:
    """One owner (a broker_id or a ``kafka:`` subscriber): its spool directory in front of
    its producer lane. See the module documentation for the semantics.

    Thread-safe. ``publish`` holds the owner's lock around ``append`` + ``produce`` so that
    the sequence order on disk is the order librdkafka gets.
    """

    def __init__(
        self,
        hub: Spools,
        socket: KafkaSocket,
        owner: LaneOwner,
        directory: Path,
    ) -> None:
        self.hub = hub
        self.socket = socket
        self.topic = socket.topic
        self.owner = owner
        self.directory = directory
        self.lane: OwnerLane = hub.pool.lane(socket, owner, None, factory=OwnerLane)  # type: ignore[assignment]
        self.lane.spooled = self
        self._lock = forksafe.lock()
        # The rewind map is small and touched rarely (poller: retriable failures; sender).
        self._rewind_lock = forksafe.lock()
        self._failog = RateLimitedLog(log, 10.0)
        self.accepting = True
        self.stopping = False
        self.finished = False  # stopped and its store closed
        self.finishing = False
        self.retire_at: float | None = None
        self.wants_replay = False  # open and adopt on the sender thread (construction)
        self._reset()
        forksafe.register(self)

    def _reset(self) -> None:
        self.store: OwnerSpool | None = None
        self.need_adopt = False  # the sender adopts dead writers, then sending starts
        self._next_adopt = 0.0
        self.own: str | None = None
        self.direct = False  # set once the store is open and nothing waits
        self.adopted = 0  # records of other writers counted as accepted
        self.writers: list[str] = []  # writers to send from disk, adopted first
        self.cursor: dict[str, int] = {}  # per writer: last seq handed over or disposed
        self.rewind: dict[str, int] = {}  # per writer: send again after this seq
        self.dedupe_from: dict[str, int] = {}  # writers whose next records need a tail scan
        self.found = dedupe.Found()
        self._dedupe_next = 0.0
        self._dedupe_failures = 0
        self._scan_job: _ScanJob | None = None
        self._next_sweep = 0.0
        self._suspects: set[tuple[str, int]] = set()  # sent alone after "too large"
        self._solo = False  # the last record sent was a suspect: wait for its report
        self._callbacks: dict[tuple[str, int], Callable[[Report], object]] = {}
        self._workers: dict[str, RouteWorker] = {}
        self._sent = Tally()
        self._back = Tally()
        self._replayed = Tally()
        self._expired = Tally()
        self._retried = Tally()
        self._deduplicated = Tally()
        self._unknown_route = Tally()
        self._tail_unreadable = Tally()
        self.rejected_spool_full = 0
        self.rejected_spool_error = 0
        self.dedupe_incomplete = 0
        self.write_error: tuple[float, str] | None = None
        self._refusal: KafkaException | None = None
        self.left = 0

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
        if isinstance(value, str):
            value = value.encode()
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(value, bytes | None) or not isinstance(key, bytes | None):
            raise TypeError("message and key must be str or bytes")
        over = self.hub.over_total() if self.hub.max_total_bytes is not None else None
        if over is not None:
            return self._refused("spool_full", SpoolFullError(over))
        with self._lock:
            if not self.accepting:  # again, under the lock: close() may have begun
                lane.rejected_closed += 1
                return -1
            try:
                store = self.store if self.store is not None else self._open()
                rec = store.append(value, key, headers, route)
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
            if self.hub.max_total_bytes is not None:
                self.hub.added(len(value or b"") + len(key or b"") + 64)  # + frame overhead
            if on_report is not None:
                self._callbacks[(rec.writer, rec.seq)] = on_report
            if self.direct:
                if route is not None:
                    w = self._worker(route)
                    if w is not None and w.full():
                        self._to_backlog()
                        lane._accepted.bump()
                        return 1
                got = self._produce(rec)
                if got == _REFUSE:
                    if self._refusal is not None:
                        lane._rejected(self._refusal)
                    self._callbacks.pop((rec.writer, rec.seq), None)
                    self.cursor[rec.writer] = rec.seq
                    store.ack(rec.writer, rec.seq)
                    return -1
                if got == _OK:
                    self.cursor[rec.writer] = rec.seq
                else:
                    self._to_backlog()
            lane._accepted.bump()
        return 1

    def _refused(self, reason: str, exc: Exception) -> int:
        if reason == "spool_full":
            self.rejected_spool_full += 1
        else:
            self.rejected_spool_error += 1
        self.lane.rejected_other += 1
        self.write_error = (time.monotonic(), f"{reason}: {exc}")
        self._failog.warning("[%s] spool %s: message rejected: %s", self.owner.name, reason, exc)
        return -1

    def _to_backlog(self) -> None:
        self.direct = False
        SENDER.wake()

    def _open(self) -> OwnerSpool:
        """Open this process's writer (under the lock) and register with the sender, which
        adopts the writers of dead processes (a scan of their files: not on the caller's
        thread). Until then records wait on disk. Raises SpoolError."""
        store = OwnerSpool(self.directory, self.hub.settings)
        self.own = store.writer_id
        self.need_adopt = True
        self.direct = False
        self.store = store
        SENDER.add(self)
        return store

    def _adopt(self, store: OwnerSpool) -> None:
        """Adopt the writers of dead processes (sender thread, once per process and owner).

        The scan runs without the owner's lock (publishers keep appending). The store gives
        them oldest first; nobody acks their records before we send them, so counting them
        now is exact."""
        writers = [w for w in store.adopt() if w != self.own]
        adopted = sum(store.pending_of(w) for w in writers)
        with self._lock:
            self.adopted += adopted
            for w in writers:
                if w not in self.writers and w != self.own:
                    self.writers.append(w)
                    self.cursor.setdefault(w, 0)
                    self.dedupe_from[w] = 0
                    self.direct = False  # theirs go first (a later adoption: from now on)
            self.need_adopt = False  # after the count: flush() waits for this
            self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        if writers:
            log.warning(
                "[%s] spool: adopted %d record(s) of %d writer(s) gone from %s",
                self.owner.name,
                adopted,
                len(writers),
                self.directory,
            )
        SENDER.wake()

    def _produce(self, rec: SpoolRecord) -> int:
        hdrs = [*(rec.headers or ()), (dedupe.SPOOL_HEADER, f"{rec.writer}:{rec.seq}".encode())]
        dr = partial(self._dr, rec.writer, rec.seq, rec.route)
        self._sent.bump()
        try:
            self.lane.sp.produce(
                self.topic,
                rec.value,
                rec.key,
                on_delivery=dr,
                headers=hdrs,
                timestamp=rec.ts_ms,
            )
        except BufferError:
            self._back.bump()
            return _FULL
        except _Closed:
            self._back.bump()
            return _FULL
        except KafkaException as exc:
            self._back.bump()
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in _REFUSED:
                self._refusal = exc
                return _REFUSE
            # Fatal state, unusable resolver...: the record waits on disk.
            self._failog.warning(
                "[%s] produce refused (record kept in the spool): %s",
                self.owner.name,
                self.lane.sp.scrub(str(err)),
            )
            return _FULL
        POLLER.kick()
        return _OK

    # -- delivery callbacks (poller thread; library code only, never raises) -----------------

    def _dr(
        self, writer: str, seq: int, route: str | None, err: KafkaError | None, msg: Any
    ) -> None:
        try:
            self._back.bump()
            lane = self.lane
            if err is None:
                if self._suspects:
                    self._suspects.discard((writer, seq))
                self._ack(writer, seq)
                lane._delivered.bump()
                sp = lane.sp
                if sp.down:
                    sp.mark_up()
                if sp.last_error is not None:
                    sp.last_error = None
                self._report(writer, seq, route, None, msg, None)
            elif _retriable(err) or self._first_too_large(err, writer, seq):
                if not self.stopping:
                    self._retried.bump()
                    with self._rewind_lock:
                        prev = self.rewind.get(writer)
                        if prev is None or seq - 1 < prev:
                            self.rewind[writer] = seq - 1
                    self.direct = False
                    SENDER.wake()
                # stopping: the record stays in the spool for the next process, no report
            else:
                self._suspects.discard((writer, seq))
                self._ack(writer, seq)
                lane._failed.bump()
                reason = lane.reason(err)
                guarded(self._failog.warning, "[%s] delivery failed: %s", self.owner.name, reason)
                self._report(writer, seq, route, err, msg, reason)
            pool = self.hub.pool
            if pool.flushing:
                pool.note_delivery()
        except BaseException as exc:
            guarded(log.error, "[%s] spool delivery callback: %r", self.owner.name, exc)

    def _first_too_large(self, err: KafkaError, writer: str, seq: int) -> bool:
        """The broker refuses a whole batch as too large (the topic's ``max.message.bytes``
        is below the producer's ``message.max.bytes``), failing small records with the big
        one: the first time, each record is sent again on its own batch (a "suspect")."""
        if err.code() != KafkaError.MSG_SIZE_TOO_LARGE or (writer, seq) in self._suspects:
            return False
        self._suspects.add((writer, seq))
        return True

    def _ack(self, writer: str, seq: int) -> None:
        store = self.store
        if store is not None:
            store.ack(writer, seq)

    def _worker(self, name: str) -> RouteWorker | None:
        fn = self.hub.route(name)
        if fn is None:
            return None
        w = self._workers.get(name)
        if w is None or w.route is not fn:
            w = self._workers[name] = self.hub.pool.route_worker(name, fn)
        return w

    def _report(
        self,
        writer: str,
        seq: int,
        route: str | None,
        err: KafkaError | None,
        msg: Any,
        reason: str | None,
    ) -> None:
        replayed = writer != self.own
        if self._callbacks:
            cb = self._callbacks.pop((writer, seq), None)
            if cb is not None:
                w = self.hub.pool.callbacks
                w.reserve()
                w.submit(Delivery(self.lane, err, msg, reason, cb, replayed))
        if route is None:
            return
        rw = self._worker(route)
        if rw is None:
            self._unknown_route.bump()
            guarded(
                self._failog.warning,
                "[%s] report route %r of a spooled record is not defined: report dropped",
                self.owner.name,
                route,
            )
            return
        rw.reserve()
        rw.submit(Delivery(self.lane, err, msg, reason, None, replayed))

    # -- the sender's side -------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Records handed to librdkafka whose delivery report has not come yet."""
        return self._sent.value - self._back.value

    def pump(self) -> int:
        """One bounded step (sender thread): open/adopt, rewind, deduplicate, send from disk."""
        if self.stopping:
            return self._retire_step() if self.retire_at is not None else IDLE
        if self.retire_at is not None and (
            time.monotonic() >= self.retire_at or self.lane.stats.in_flight == 0
        ):
            self.hub.stop_lanes([self])
            return WORKED
        if self.store is None:
            if not self.wants_replay:
                return IDLE
            with self._lock:
                if self.store is None:
                    try:
                        self._open()
                    except SpoolError as exc:
                        self.write_error = (time.monotonic(), f"spool_error: {exc}")
                        guarded(self._failog.error, "[%s] spool: %s", self.owner.name, exc)
                        return WAITING
            return WORKED
        if self.need_adopt:
            self._adopt(self.store)
            return WORKED
        if self.rewind:
            if self.held:
                return WAITING  # every record in librdkafka must come back first
            with self._lock:
                if self.held:
                    return WAITING
                with self._rewind_lock:
                    rewind, self.rewind = self.rewind, {}
                for w, after in rewind.items():
                    self.cursor[w] = min(self.cursor.get(w, after), after)
                    self.dedupe_from[w] = min(self.dedupe_from.get(w, after + 1), after + 1)
                    if w not in self.writers:
                        self.writers.append(w)
            return WORKED
        if self.dedupe_from:
            got = self._dedupe()
            if got == WAITING:
                self._expire_head()
            return got
        if self.direct:
            if time.monotonic() >= self._next_adopt:
                self.need_adopt = True  # a sibling worker may have died meanwhile
                return WORKED
            return IDLE
        got = self._stream()
        if got == WAITING:
            self._expire_head()
        return got

    def _expire_head(self) -> None:
        """While records cannot be sent (Kafka away, queue full), fail those older than
        ``max_age`` anyway, oldest first (at most once a second; they are in seq order, so
        the sweep stops at the first young one of each writer)."""
        age = self.hub.settings.max_age
        store = self.store
        now = time.monotonic()
        if age is None or store is None or now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        now_ms = int(time.time() * 1000)
        writers = list(self.writers)
        if self.own is not None and self.own not in writers:
            writers.append(self.own)
        for w in writers:
            for rec in store.read(w, self.cursor.get(w, 0)):
                if self.stopping or not self._too_old(rec, now_ms):
                    break
                self._expire(rec)
                if self.cursor.get(w, 0) < rec.seq:
                    self.cursor[w] = rec.seq

    def _dedupe(self) -> int:
        """Read the topic's tail for records of ``dedupe_from`` (on a thread of its own: it
        may take seconds, and other lanes must not wait); records wait meanwhile."""
        job = self._scan_job
        if job is not None:
            if not job.done.is_set():
                return WAITING
            self._scan_job = None
            return self._scanned(job)
        store = self.store
        assert store is not None
        if time.monotonic() < self._dedupe_next:
            return WAITING
        since: int | None = None
        want: dict[str, int] = {}
        for w, first in self.dedupe_from.items():
            rec = next(iter(store.read(w, max(first - 1, self.cursor.get(w, 0)))), None)
            if rec is not None:
                want[w] = rec.seq
                since = rec.ts_ms if since is None else min(since, rec.ts_ms)
        if since is None:
            self.dedupe_from = {}
            return WORKED
        sp = self.lane.sp
        job = self._scan_job = _ScanJob(dict(self.dedupe_from))
        config = {**sp.config, "logger": _LibrdkafkaLogger(sp.scrub, sp.label + " dedupe")}
        args = (config, self.topic, want, since - dedupe.SLACK_MS)
        threading.Thread(target=job.run, args=args, name="ek-spool-dedupe", daemon=True).start()
        return WAITING

    def _scanned(self, job: _ScanJob) -> int:
        exc = job.error
        if isinstance(exc, dedupe.DedupeUnavailable):
            self._dedupe_failures += 1
            self._tail_unreadable.bump()
            self._dedupe_next = time.monotonic() + DEDUPE_RETRY
            sp = self.lane.sp
            if self._dedupe_failures < DEDUPE_GIVE_UP or sp.down or sp._producer is None:
                guarded(
                    self._failog.warning,
                    "[%s] spool: topic %r not readable yet (%s): records wait in the spool",
                    self.owner.name,
                    self.topic,
                    sp.scrub(str(exc)),
                )
                return WAITING
            found = dedupe.Found(complete=False)
        elif exc is not None:
            guarded(
                log.warning,
                "[%s] spool: cannot read topic %r to find records already delivered (%s): "
                "sending them again (duplicates possible)",
                self.owner.name,
                self.topic,
                self.lane.sp.scrub(str(exc)),
            )
            found = dedupe.Found(complete=False)
        else:
            found = job.found
        if not found.complete:
            self.dedupe_incomplete += 1
        self._dedupe_failures = 0
        self.found.merge(found)
        for w, first in job.snapshot.items():
            if self.dedupe_from.get(w) == first:
                del self.dedupe_from[w]
        return WORKED

    def _too_old(self, rec: SpoolRecord, now_ms: int) -> bool:
        age = self.hub.settings.max_age
        return age is not None and now_ms - rec.ts_ms > age * 1000

    def _stream(self) -> int:
        """Send records from disk, every writer's (adopted ones and ours) merged by append
        time, each writer's in seq order: per-key order holds across processes that died
        one after the other or ran side by side. Direct mode again once caught up."""
        store = self.store
        assert store is not None
        budget = BATCH
        now_ms = int(time.time() * 1000)
        writers = list(self.writers)
        if self.own is not None and self.own not in writers:
            writers.append(self.own)
        merged = heapq.merge(*(store.read(w, self.cursor.get(w, 0)) for w in writers), key=_ts)
        for rec in merged:
            if self.stopping or self.rewind or budget <= 0:
                return WORKED
            budget -= 1
            if not self._send_one(rec, now_ms):
                return WAITING
        with self._lock:
            if self.rewind or self.stopping:
                return WORKED
            for w in writers:
                if w in self.writers:
                    self.writers.remove(w)  # caught up (ours is always read last anyway)
            own = self.own
            if self.writers:
                return WORKED
            if own is not None and next(iter(store.read(own, self.cursor.get(own, 0))), None):
                return WORKED
            self.direct = True
            self.found = dedupe.Found()
        return WORKED

    def _send_one(self, rec: SpoolRecord, now_ms: int) -> bool:
        """Dispose of or hand over one record read from disk; False: cannot now (full)."""
        w, seq = rec.writer, rec.seq
        where = self.found.pop(w, seq) if self.found.ids else None
        if where is not None:
            self._ack(w, seq)
            self._deduplicated.bump()
            self.lane._delivered.bump()
            if w != self.own:
                self._replayed.bump()
            self._report(w, seq, rec.route, None, _Stored(rec, self.topic, *where), None)
        elif self._too_old(rec, now_ms):
            self._expire(rec)
        else:
            if rec.route is not None:
                rw = self._worker(rec.route)
                if rw is not None and rw.full():
                    return False
            solo = bool(self._suspects) and (w, seq) in self._suspects
            if (solo or self._solo) and self.held:
                return False  # a suspect goes alone: the batch before it, and it, come back
            with self._lock:
                if self.stopping:  # close() is purging: nothing more goes to librdkafka
                    return False
                got = self._produce(rec)
            self._solo = solo and got == _OK
            if got == _FULL:
                return False
            if got == _REFUSE:
                self._ack(w, seq)
                self.lane._failed.bump()
                reason = "refused by the producer (too large or invalid)"
                self._report(
                    w, seq, rec.route, _REFUSED_ERR, _Stored(rec, self.topic, None, None), reason
                )
            elif w != self.own:
                self._replayed.bump()
        self.cursor[w] = seq
        pool = self.hub.pool
        if pool.flushing:
            pool.note_delivery()
        return True

    def _expire(self, rec: SpoolRecord) -> None:
        self._ack(rec.writer, rec.seq)
        self._expired.bump()
        self.lane._failed.bump()
        reason = EXPIRED_REASON.format(self.hub.settings.max_age)
        msg = _Stored(rec, self.topic, None, None)
        self._report(rec.writer, rec.seq, rec.route, _EXPIRED, msg, reason)
        pool = self.hub.pool
        if pool.flushing:
            pool.note_delivery()

    def _retire_step(self) -> int:
        """After stop: close the store once librdkafka gave every record back."""
        if self.held:
            return WAITING
        self.hub.finish_lanes([self])
        return IDLE

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

    def _after_fork_in_child(self) -> None:
        store = self.store
        if store is not None:
            with contextlib.suppress(Exception):
                store.after_fork_in_child()
        self._reset()


_EXPIRED = KafkaError(KafkaError._MSG_TIMED_OUT, "expired in the spool")
_REFUSED_ERR = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "refused by the producer")


class Spools:
    """Every spooled lane of one ``EventKafka`` (``EventKafka.spool``).

    Args:
        root: ``spool_dir``.
        settings: size, age and fsync limits of each owner directory.
        pool: the producer pool the lanes publish through.
        route: looks up a report route by name (``None``: not defined).
        flush_timeout: how long a released lane keeps sending before it leaves the rest.
        exclude: broker_ids that publish without the spool.
    """

    def __init__(
        self,
        root: Path,
        settings: SpoolSettings,
        pool: ProducerPool,
        route: Callable[[str], Callable[[Report], object] | None],
        flush_timeout: float,
        exclude: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.settings = settings
        self.pool = pool
        self.route = route
        self.flush_timeout = flush_timeout
        self.exclude = frozenset(exclude)
        self._lanes: dict[tuple[object, Path], SpooledLane] = {}
        self._all: list[SpooledLane] = []
        self._lock = forksafe.rlock()
        self.closed = False
        self.left = 0  # records stopped lanes left in their directories
        self.max_total_bytes: int | None = None  # every owner directory together
        self._total = (0.0, 0)  # (when, bytes): summed at most every TOTAL_EVERY s

    def over_total(self) -> str | None:
        """Why the whole spool takes nothing more (``max_total_bytes``), or ``None``.

        Summing every directory on each call would cost O(owners): the sum is redone every
        ``TOTAL_EVERY`` s, appends since are added as they come (:meth:`added`), and an
        estimate at the limit is checked against a fresh sum before refusing."""
        limit = self.max_total_bytes
        if limit is None:
            return None
        now = time.monotonic()
        at, total = self._total
        if now - at > TOTAL_EVERY or total >= limit:
            total = sum(sl.store.pending_bytes() for sl in self.lanes if sl.store is not None)
            self._total = (now, total)
        if total < limit:
            return None
        return (
            f"spool {self.root} is full: {total} B in all its directories, "
            f"max_total_bytes {limit} B"
        )

    def added(self, n: int) -> None:
        """``n`` bytes were just appended somewhere (for :meth:`over_total`)."""
        at, total = self._total
        self._total = (at, total + n)

    def lane(self, socket: KafkaSocket, owner: LaneOwner) -> SpooledLane:
        """The spooled lane of ``owner`` publishing to ``socket`` (created on first call)."""
        d = owner_directory(self.root, owner, socket)
        key = (socket, d)
        with self._lock:
            if self.closed:
                raise RuntimeError("spool is closed")
            sl = self._lanes.get(key)
            if sl is None:
                sl = self._lanes[key] = SpooledLane(self, socket, owner, d)
                self._all.append(sl)
            return sl

    def route_view(self, socket: KafkaSocket, owner: LaneOwner, route: str | None) -> SpoolRoute:
        """What ``kafka_publish`` to ``owner`` with report route ``route`` publishes through."""
        return SpoolRoute(self.lane(socket, owner), route)

    def stop_accepting(self) -> None:
        """``publish`` refuses from now on (-1, ``rejected_closed``); sending goes on."""
        for sl in self.lanes:
            sl.accepting = False

    def replay_existing(self, brokers: dict[str, KafkaSocket]) -> None:
        """Start replaying, in the background, every broker_id with records on disk."""
        for bid, sock in brokers.items():
            if bid in self.exclude:
                continue
            try:
                self.replay_subscriber(sock, BrokerOwner(bid))
            except ProducerLimitError as exc:  # replayed on its first use instead
                guarded(log.error, "[%s] spool replay not started: %s", bid, exc)

    def replay_subscriber(self, socket: KafkaSocket, owner: LaneOwner) -> SpooledLane | None:
        """The lane of ``owner``, replaying in the background, if its directory holds
        records; ``None`` (nothing opened) otherwise."""
        d = owner_directory(self.root, owner, socket)
        try:
            has = any(p.suffix == ".seg" for p in d.iterdir())
        except OSError:
            return None
        if not has:
            return None
        sl = self.lane(socket, owner)
        sl.wants_replay = True
        SENDER.add(sl)
        return sl

    def wait_adopted(self, deadline: float) -> None:
        """Wait (bounded) until lanes scheduled for replay have adopted what is on disk."""
        while time.monotonic() < deadline:
            if not any(
                sl.need_adopt or (sl.wants_replay and sl.store is None) for sl in self.lanes
            ):
                return
            SENDER.wake()
            time.sleep(0.005)  # adoption is a directory scan on the sender thread: short

    def unsettled(self) -> int:
        """Records in no lane's count yet: on disk behind a released lane that is stopping
        (its heir adopts them once it finished), or (1 each) lanes still to adopt."""
        n = 0
        for sl in self.lanes:
            if sl.stopping and sl.retire_at is not None and not sl.finished:
                ln = sl.lane
                n += max(ln._accepted.value + sl.adopted - ln.delivered - ln.failed - sl.held, 0)
            elif sl.need_adopt or (sl.wants_replay and sl.store is None):
                n += 1
        return n

    def release(self, sl: SpooledLane) -> None:
        """A lane is no longer used (reload, unsubscribe): it keeps sending for
        ``flush_timeout``, then leaves the rest in its directory and gives its producer back."""
        with self._lock:
            for k, v in list(self._lanes.items()):
                if v is sl:
                    del self._lanes[k]
        sl.accepting = False
        if sl.retire_at is None:
            sl.retire_at = time.monotonic() + self.flush_timeout
        SENDER.add(sl)

    @property
    def lanes(self) -> list[SpooledLane]:
        with self._lock:
            return list(self._all)

    def stop_lanes(self, lanes: list[SpooledLane]) -> None:
        """Stop sending: retriable failures from now stay in the spool, without report."""
        for sl in lanes:
            with sl._lock:
                sl.accepting = False
                sl.direct = False
                sl.stopping = True
        for sl in lanes:
            if sl.retire_at is not None:
                with self._lock:
                    if sl in self._all:
                        self.pool.release(sl.lane)

    def finish_lanes(self, lanes: list[SpooledLane]) -> int:
        """Close the stores of stopped lanes; returns how many records they left."""
        left = 0
        for sl in lanes:
            with self._lock:
                if sl.finishing:
                    continue
                sl.finishing = True
            n = max(sl.lane._accepted.value + sl.adopted - sl.lane.delivered - sl.lane.failed, 0)
            SENDER.remove(sl)
            store = sl.store
            if store is not None:
                try:
                    store.close()  # unlocks its writers: an heir may adopt them now
                except Exception as exc:
                    guarded(log.error, "[%s] spool close: %r", sl.owner.name, exc)
            with self._lock:
                heirs = [
                    o for o in self._all if o is not sl and o.directory == sl.directory and o.store
                ]
                for o in heirs:  # a reload's new lane for the same owner takes what is left
                    o.need_adopt = True
                # Only now (flush() counts them through this lane until an heir adopts).
                self._all.remove(sl)
                sl.finished = True  # the pool no longer waits for these
            SENDER.wake()
            sl.left = n
            left += n
            self.left += n
            if n:
                guarded(
                    log.warning,
                    "[%s] %d record(s) left in the spool %s%s",
                    sl.owner.name,
                    n,
                    sl.directory,
                    " for the lane that replaces it" if heirs else " for the next process",
                )
        return left

    def close(self, deadline: float) -> int:
        """Stop every lane (after the caller's flush), purge what librdkafka holds (those
        records stay in the spool) and close the stores; returns how many records are left."""
        with self._lock:
            self.closed = True
            lanes = list(self._all)
        self.stop_lanes(lanes)
        producers = {id(sl.lane.sp): sl.lane.sp for sl in lanes}
        for sp in producers.values():
            p = sp._producer
            if p is None:
                continue
            mine = [sl for sl in lanes if sl.lane.sp is sp]

            def held(mine: list[SpooledLane] = mine) -> int:
                return sum(sl.held for sl in mine)

            if held():
                sp._purge_and_serve(p, max(deadline - time.monotonic(), 2.0), held)
        return self.finish_lanes(lanes)

    def unwritable(self) -> list[str]:
        """Why spools cannot write (one line per owner), for readiness."""
        out = []
        for sl in self.lanes:
            why = sl.unwritable()
            if why:
                out.append(f"spool of {sl.owner.name} ({sl.directory}) cannot write: {why}")
        return out

    def stats(self) -> list[dict[str, Any]]:
        """Per spooled lane: owner, topic and :meth:`SpooledLane.spool_stats`."""
        out = []
        for sl in self.lanes:
            kind = "broker_id" if isinstance(sl.owner, BrokerOwner) else "event"
            out.append({kind: sl.owner.name, "topic": sl.topic, **sl.spool_stats()})
        return out
