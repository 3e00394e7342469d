"""The state of one spooled lane and its basic moves: open the writer, ack, find a report
route's worker, count a refusal (see :mod:`.lane` for the semantics)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException

from .. import forksafe
from ..ratelimit import RateLimitedLog
from ..report import Report, RouteWorker
from ..statistics import LaneOwner, Tally
from . import OwnerSpool, dedupe
from .owner import OwnerLane
from .sender import SENDER

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket
    from . import SpoolRecord
    from .hub import Spools
    from .replay import _ScanJob

__all__ = ["WRITE_ERROR_HOLD", "LaneCore"]

log = logging.getLogger("event_kafka.spool")

WRITE_ERROR_HOLD = 10.0
"""Seconds a failed write keeps the spool "cannot write" (readiness) after it happened."""

# produce() errors that refuse the record for good (it is acked and the call returns -1).
_REFUSED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._INVALID_ARG})

_OK, _FULL, _REFUSE = 0, 1, 2


class LaneCore:
    """What every part of a spooled lane shares: its state and its basic moves."""

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
        self._own_prefix = b""  # ek-spool-id header of our own records: b"<writer>:"
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
        self._full_at: int | None = None  # librdkafka's queue length when it was last full
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
        self._own_prefix = f"{self.own}:".encode()
        self.need_adopt = True
        self.direct = False
        self.store = store
        SENDER.add(self)
        return store

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

    @property
    def held(self) -> int:
        """Records handed to librdkafka whose delivery report has not come yet."""
        return self._sent.value - self._back.value

    def _too_old(self, rec: SpoolRecord, now_ms: int) -> bool:
        age = self.hub.settings.max_age
        return age is not None and now_ms - rec.ts_ms > age * 1000

    def _after_fork_in_child(self) -> None:
        store = self.store
        if store is not None:
            with contextlib.suppress(Exception):
                store.after_fork_in_child()
        self._reset()

    def pump(self) -> int:
        """One bounded step on the sender thread (:class:`~.replay.Replaying`)."""
        raise NotImplementedError
