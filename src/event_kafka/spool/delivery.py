"""Delivery reports of spooled records (poller thread): ack, report, or send again later.

Success acks and reports; a permanent failure reports and acks; a retriable one rewinds the
writer so that the record is sent again (after a tail scan) and reports nothing."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from ..poller import POLLER, guarded
from ..producer.shared import _Closed
from ..report import Delivery, StandIn
from . import dedupe
from .core import _FULL, _OK, _REFUSE, _REFUSED, LaneCore
from .sender import SENDER

if TYPE_CHECKING:
    from . import SpoolRecord

__all__ = ["EXPIRED_REASON", "Delivering"]

log = logging.getLogger("event_kafka.spool")

EXPIRED_REASON = "expired in the spool: older than max_age ({:g}s)"


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


def _retriable(err: KafkaError) -> bool:
    return err.code() in _RETRIABLE or err.retriable()


_EXPIRED = KafkaError(KafkaError._MSG_TIMED_OUT, "expired in the spool")
_REFUSED_ERR = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "refused by the producer")


class Delivering(LaneCore):
    """The delivery side of a spooled lane."""

    # -- delivery callbacks (poller thread; library code only, never raises) -----------------

    def _produce(self, rec: SpoolRecord) -> int:
        return self._send(
            rec.writer, rec.seq, rec.ts_ms, rec.value, rec.key, rec.headers, rec.route
        )

    def _send(
        self,
        writer: str,
        seq: int,
        ts_ms: int,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        route: str | None,
    ) -> int:
        """Hand one record to librdkafka: _OK, _FULL (it waits on disk) or _REFUSE."""
        sid = (self._own_prefix if writer == self.own else f"{writer}:".encode()) + b"%d" % seq
        hdrs = (
            [(dedupe.SPOOL_HEADER, sid)]
            if headers is None
            else [*headers, (dedupe.SPOOL_HEADER, sid)]
        )
        self._sent.bump()
        try:
            self.lane.sp.produce(
                self.topic,
                value,
                key,
                on_delivery=partial(self._dr, writer, seq, route),
                headers=hdrs,
                timestamp=ts_ms,
            )
        except BufferError:
            self._back.bump()
            self._full_at = self.lane.sp.queue_length
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
                store = self.store
                if store is not None:
                    store.ack(writer, seq)
                lane._delivered.bump()
                sp = lane.sp
                if sp.down:
                    sp.mark_up()
                if sp.last_error is not None:
                    sp.last_error = None
                if route is not None or self._callbacks:
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

    def _expire(self, rec: SpoolRecord) -> None:
        self._ack(rec.writer, rec.seq)
        self._expired.bump()
        self.lane._failed.bump()
        reason = EXPIRED_REASON.format(self.hub.settings.max_age)
        msg = StandIn(self.topic, rec.key, rec.value)
        self._report(rec.writer, rec.seq, rec.route, _EXPIRED, msg, reason)
        pool = self.hub.pool
        if pool.flushing:
            pool.note_delivery()
