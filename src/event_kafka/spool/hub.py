"""The spooled lanes of one ``EventKafka``: created per owner, replayed at start, released at
reloads, stopped and closed together; totals, readiness and statistics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import forksafe
from ..poller import guarded
from ..producer.pool import ProducerLimitError
from ..report import Report
from ..statistics import BrokerOwner, LaneOwner
from .owner import SpoolRoute, owner_directory
from .sender import SENDER

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket
    from ..producer import ProducerPool
    from . import SpoolSettings
    from .lane import SpooledLane

__all__ = ["TOTAL_EVERY", "Spools"]

log = logging.getLogger("event_kafka.spool")

TOTAL_EVERY = 0.1
"""Seconds between sums of every directory's bytes for ``max_total_bytes``."""


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
                from .lane import SpooledLane  # the lane imports this module

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
                sp._purge_and_serve([p], max(deadline - time.monotonic(), 2.0), held)
        return self.finish_lanes(lanes)

    def sync(self) -> None:
        """Persist every owner's acks now (``flush()`` before it returns): a process killed
        right after has no record that it reported re-reported by the next one."""
        for sl in self.lanes:
            store = sl.store
            if store is not None:
                try:
                    store.sync()
                except Exception as exc:  # the acks stay in memory; persisted again later
                    guarded(log.error, "[%s] spool: cannot persist acks: %r", sl.owner.name, exc)

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
