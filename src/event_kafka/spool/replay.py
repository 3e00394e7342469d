"""The sender's side of a spooled lane: adopt dead writers, rewind after retriable failures,
read topic tails for records already delivered, expire old records and send from disk."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from ..poller import guarded
from ..producer.shared import _LibrdkafkaLogger
from ..report import StandIn
from . import OwnerSpool, SpoolError, dedupe
from .core import _FULL, _OK, _REFUSE
from .delivery import _REFUSED_ERR, Delivering
from .sender import IDLE, SENDER, WAITING, WORKED

if TYPE_CHECKING:
    from . import SpoolRecord
    from .lane import SpooledLane

__all__ = ["ADOPT_INTERVAL", "BATCH", "DEDUPE_GIVE_UP", "DEDUPE_RETRY", "Replaying"]

log = logging.getLogger("event_kafka.spool")

DEDUPE_RETRY = 2.0
"""Seconds between attempts to read the topic's tail while it cannot be read."""
DEDUPE_GIVE_UP = 5
"""Failed tail reads after which records are sent anyway, once the producer reaches a broker
(the consumer may lack a permission the producer has): duplicates then possible, counted."""
ADOPT_INTERVAL = 30.0
"""Seconds between looks for writers of processes that died since (a forked sibling)."""
BATCH = 5000
"""Records one sender step handles for one lane (fairness between lanes)."""


def _ts(rec: SpoolRecord) -> int:
    return rec.ts_ms


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


class Replaying(Delivering):
    """Everything a spooled lane does on the sender thread (:meth:`pump`)."""

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

    # -- the sender's side -------------------------------------------------------------------

    def pump(self) -> int:
        """One bounded step (sender thread): open/adopt, rewind, deduplicate, send from disk."""
        if self.stopping:
            return self._retire_step() if self.retire_at is not None else IDLE
        if self.retire_at is not None and (
            time.monotonic() >= self.retire_at or self.lane.stats.in_flight == 0
        ):
            self.hub.stop_lanes([cast("SpooledLane", self)])
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

    def _stream(self) -> int:
        """Send records from disk, every writer's (adopted ones and ours) merged by append
        time, each writer's in seq order: per-key order holds across processes that died
        one after the other or ran side by side. Direct mode again once caught up."""
        store = self.store
        assert store is not None
        full = self._full_at
        if full is not None:
            # librdkafka's queue was full: reading the disk again is wasted until it drained.
            if self.lane.sp.queue_length >= full:
                return WAITING
            self._full_at = None
        budget = BATCH
        now_ms = int(time.time() * 1000)
        writers = list(self.writers)
        if self.own is not None and self.own not in writers:
            writers.append(self.own)
        if len(writers) == 1:
            merged: Iterator[SpoolRecord] = store.read(writers[0], self.cursor.get(writers[0], 0))
        else:
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
            msg = StandIn(self.topic, rec.key, rec.value, *where)
            self._report(w, seq, rec.route, None, msg, None)
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
                    w, seq, rec.route, _REFUSED_ERR, StandIn(self.topic, rec.key, rec.value), reason
                )
            elif w != self.own:
                self._replayed.bump()
        self.cursor[w] = seq
        pool = self.hub.pool
        if pool.flushing:
            pool.note_delivery()
        return True

    def _retire_step(self) -> int:
        """After stop: close the store once librdkafka gave every record back."""
        if self.held:
            return WAITING
        self.hub.finish_lanes([cast("SpooledLane", self)])
        return IDLE
