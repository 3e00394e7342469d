"""event-kafka: OpenSIPS's event_kafka module — Event Interface transport and kafka_publish.

The public API is what this package exports; its modules are the implementation::

    from event_kafka import EventKafka
    ek = EventKafka(broker_ids=["[k1]127.0.0.1:9092/topic1?t.acks=all"])
"""

from .connector import EventKafka, UnknownReportRouteError
from .errors import ConfigError, EventKafkaError, SocketError
from .kafka_socket import KafkaSocket, parse_broker_id, parse_socket
from .producer import after_fork
from .report import Report

__all__ = [
    "ConfigError",
    "EventKafka",
    "EventKafkaError",
    "KafkaSocket",
    "Report",
    "SocketError",
    "UnknownReportRouteError",
    "after_fork",
    "parse_broker_id",
    "parse_socket",
]
