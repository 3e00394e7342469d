"""Prometheus metrics and OpenSIPS-style statistics, both read from one snapshot at scrape time.

Nothing is updated per message for monitoring: the library already counts everything
(:meth:`EventKafka.stats <event_kafka.connector.EventKafka.stats>`), the listeners keep plain
integer counters, and :class:`ServiceCollector` turns a :class:`Snapshot` of them into metric
families only when Prometheus scrapes ``/metrics``. MI ``get_statistics`` reads the same
snapshot through :func:`statistics_groups`.

Metrics (all prefixed ``event_kafka_``):

========================================  ==================  ================================
name                                      labels              meaning
========================================  ==================  ================================
``messages_accepted_total``               broker_id, event,   accepted into a producer queue
                                          topic               (``broker_id`` for kafka_publish,
                                                              ``event`` for kafka: subscribers)
``messages_delivered_total``              same                acknowledged by the broker
``messages_failed_total``                 same                failure report (timeout, error,
                                                              shutdown)
``messages_rejected_total``               same + reason       refused at once (queue_full,
                                                              too_large, fatal, closed, other)
``messages_in_flight``                    same                accepted, no report yet
``report_route_errors_total``             same                the route raised
``unknown_broker_id_total``               —                   kafka_publish to an unknown ID
``producer_queue_length``                 producer, brokers   librdkafka queue (messages)
``producer_down``                         producer, brokers   1 while all brokers are down
``producer_down_seconds``                 producer, brokers   for how long (0 when up)
``producer_rebuilds_total``               producer, brokers   fatal errors recovered
``producer_info``                         producer, brokers,  the producer's properties,
                                          config              secrets masked
``rdkafka_*`` (below)                     producer [, broker] librdkafka statistics
``report_route_runs_total``               route               reports handled by the route
``report_route_pending``                  route               reports waiting for the route
``report_actions_total``                  route, status       counted by the ``count`` action
``dead_letter_total``                     route, result       re-published / rejected / failed
``event_raised_total``                    event               raise_event calls
``event_subscribers``                     event               live subscribers
``event_subscriber_accepted_total``       event               subscriber sends accepted
``event_subscriber_failed_total``         event               subscriber sends refused
``ingest_received_total``                 listener            notifications read (udp / tcp)
``ingest_malformed_total``                listener            not a valid notification
``ingest_raised_total``                   listener            raised in the Event Interface
``ingest_refused_total``                  listener            unknown event / not accepted
``ingest_unknown_event_total``            listener            event name not published
``ingest_connections``                    listener            open TCP connections
``ingest_bytes_total``                    listener            bytes read
``mi_requests_total`` / ``_errors_total``  —                   MI requests / error replies
``mi_overrun_total``                      reason              timeout (408), busy (503)
``http_rejected_total``                   reason              unauthorized, too_large,
                                                              timeout, overload
``config_reloads_total``                  result              SIGHUP reloads (ok / error)
``spool_records`` / ``spool_bytes``        broker_id, event,   records / bytes in the spool
                                          topic               (not acknowledged yet)
``spool_replayed_total``                  same                records another process
                                                              accepted, delivered here
``spool_deduplicated_total``              same                found already in Kafka: not
                                                              sent again
``spool_expired_total``                   same                older than max_age: failed
``spool_retried_total``                   same                retriable failures, sent again
``spool_rejected_total``                  same + reason       spool_full, spool_error
``spool_write_error``                     same                1 while the spool cannot write
``transport_stat``                        transport,          udp/tcp subscriber counters as
                                          destination, stat   the transports report them
``start_time_seconds``, ``info``          version             process start, version
========================================  ==================  ================================

``producer`` tells producers apart even when they share brokers: ``p`` + a hash of brokers and
masked properties (stable across scrapes, reloads and restarts; never derived from a secret
value); producers differing only in secrets get ``-2``, ``-3``... in creation order.
``producer_info`` maps a name to its configuration.

librdkafka statistics (``[metrics] statistics_interval_ms`` > 0, or a socket's own
``g.statistics.interval.ms``), from the latest ``stats_cb`` report of each producer
(``broker`` is librdkafka's broker name, ``host:port/nodeid`` or ``host:port/bootstrap``):

=============================================  ===============================================
``rdkafka_messages``, ``rdkafka_message_bytes``  messages / bytes in the producer queues
``rdkafka_stats_timestamp_seconds``              when that report was made (staleness)
``rdkafka_broker_up``                            1 while the connection state is UP
``rdkafka_broker_rtt_seconds``                   round-trip time, ``quantile`` 0.5 / 0.99
``rdkafka_broker_outbuf_requests``               requests waiting to be sent
``rdkafka_broker_outbuf_messages``               messages in those requests
``rdkafka_broker_waitresp_requests``             requests sent, waiting for a response
``rdkafka_broker_waitresp_messages``             messages in those requests
``rdkafka_broker_tx_errors_total``               send errors
``rdkafka_broker_tx_retries_total``              requests retried
``rdkafka_broker_request_timeouts_total``        requests timed out
``rdkafka_broker_connects_total``                connection attempts that succeeded
``rdkafka_broker_disconnects_total``             disconnects
=============================================  ===============================================
"""

from __future__ import annotations

from .prometheus import ServiceCollector, make_registry, rdkafka_metrics
from .snapshot import Snapshot
from .statistics import statistics_groups

__all__ = ["ServiceCollector", "Snapshot", "make_registry", "rdkafka_metrics", "statistics_groups"]
