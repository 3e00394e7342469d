"""The producer core: shared, lazy, fork-safe confluent-kafka producers with exact reporting.

* :mod:`.shared` — :class:`SharedProducer`, one confluent-kafka Producer per distinct
  configuration: lazy build, poll/flush, rebuild after a fatal error, scrubbed logs.
* :mod:`.lane` — :class:`Lane`, one owner's (broker_id or event) use of a producer: the hot
  ``publish`` path and its counters.
* :mod:`.pool` — :class:`ProducerPool`, which shares producers between lanes, bounds them
  (``max_producers``), owns the report-route workers and closes everything.

Guarantees, and how:

* **Never blocks on the network.** ``produce()`` only enqueues; nothing connects at start-up.
  A full queue waits at most ``queue_full_wait`` (default 0), then the call returns -1, counted.
* **Exactly one report per accepted message.** Every message carries a delivery callback;
  one thread per process (:mod:`event_kafka.poller`) serves every producer's callbacks. For
  lanes without a report route only failures reach Python; their successes are counted from
  what librdkafka still holds (:mod:`.lane`). User
  code (report routes, ``on_report``) runs on worker threads
  (:class:`~event_kafka.report.RouteWorker`), never on that thread, and nothing it raises or
  how long it takes can stop other reports. At close, what is left after the flush time is
  purged, and the purge reports say so.
* **Bounded.** A route's backlog (accepted, not yet reported) is bounded by
  ``report_queue_size``: past it, ``publish`` refuses (-1, counted as queue full) instead of
  ever blocking the poller. ``max_producers`` bounds the distinct producers (and so the
  librdkafka threads) a pool creates: :class:`ProducerLimitError`.
* **Fork safety.** :mod:`event_kafka.forksafe` re-creates every lock, queue and thread
  handle in a forked child; a child drops (never touches) its parent's producers and creates
  its own on first use. Hosts that fork in C without Python's fork hooks call
  :func:`after_fork` in the child.
"""

from ..forksafe import after_fork
from .lane import Lane
from .pool import DRAIN_GRACE, ProducerLimitError, ProducerPool
from .shared import SHUTDOWN_REASON, SharedProducer, describe_config, producer_name

__all__ = [
    "DRAIN_GRACE",
    "SHUTDOWN_REASON",
    "Lane",
    "ProducerLimitError",
    "ProducerPool",
    "SharedProducer",
    "after_fork",
    "describe_config",
    "producer_name",
]
