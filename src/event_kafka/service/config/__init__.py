"""The service configuration: one TOML file, validated completely before anything starts.

Layout (every table is optional except where noted; see ``examples/event-kafka.toml``)::

    broker_ids = ["[k1]127.0.0.1:9092/sip?t.acks=all", "[dlq]127.0.0.1:9092/sip-dlq"]

    [kafka]        flush_timeout, queue_full_wait
    [spool]        dir, max_bytes, max_total_bytes, max_age, fsync, exclude_broker_ids
                   (restart to change)
    [events]       publish = [...], auto_publish, auto_publish_max, event_header
    [[subscriptions]]   event, socket                  (static: never expire)
    [report_routes.NAME]  log, dead_letter, count
    [mi]           enabled, listen, path, token | token_file, max_request_bytes,
                   read_timeout, max_connections, report_wait_timeout, default_report_route,
                   allow_properties
    [ingest.udp]   listen, max_datagram
    [ingest.tcp]   listen, max_buffer, max_connections, idle_timeout, event_param
    [metrics]      enabled, listen, check_brokers, check_timeout, ready_broker_timeout,
                   statistics_interval_ms
    [logging]      level, format, output, syslog_address, syslog_facility,
                   rate_limit_interval

Secrets can stay out of the file (``${file:...}``, ``${cred:...}``, ``${env:...}`` property
values, ``mi.token_file``) and ``EVENT_KAFKA_<SECTION>__<KEY>`` variables override settings:
see :mod:`.sources`.

Every error names the key path (``subscriptions[1].socket``) and, when it can be found in the
text, the line: ``event-kafka.toml:12: subscriptions[1].socket: invalid Kafka socket ...``.
Every ``broker_id`` and subscriber socket is parsed with the library's own grammar (and its
librdkafka property checks) here, so a file that loads is a file that starts. Secret values
(tokens, ``*.password`` properties) never appear in an error.

Trust: sockets written in this file are trusted (any librdkafka property). Sockets that arrive
over the MI (``event_subscribe``) are not: they may only set properties that cannot load code,
run commands, read or write local files or fetch URLs
(:func:`~event_kafka.properties.untrusted_policy`). ``[mi] allow_properties`` widens that
list by exact librdkafka property name (no ``g.``/``t.``, no wildcards), e.g.
``allow_properties = ["ssl.ca.location"]``; a name librdkafka does not know is an error.

Example::

    >>> cfg = load_config_text('broker_ids = ["[k1]127.0.0.1:9092/t"]', "x.toml")
    >>> cfg.broker_id_names
    ('k1',)
"""

from __future__ import annotations

from ...errors import ConfigError
from .fields import ListenAddress, check_subscriber_socket, mi_policy, parse_listen
from .keylines import KeyLines
from .load import MAX_CONFIG_BYTES, load_config, load_config_text
from .schema import (
    EventsSection,
    IngestSection,
    KafkaSection,
    LoggingSection,
    MetricsSection,
    MISection,
    ReportRouteConfig,
    ServiceConfig,
    SpoolSection,
    Subscription,
    TcpIngest,
    UdpIngest,
)
from .settings import ServiceSettings

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "EventsSection",
    "IngestSection",
    "KafkaSection",
    "KeyLines",
    "ListenAddress",
    "LoggingSection",
    "MISection",
    "MetricsSection",
    "ReportRouteConfig",
    "ServiceConfig",
    "ServiceSettings",
    "SpoolSection",
    "Subscription",
    "TcpIngest",
    "UdpIngest",
    "check_subscriber_socket",
    "load_config",
    "load_config_text",
    "mi_policy",
    "parse_listen",
]
