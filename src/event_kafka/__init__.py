"""event-kafka: OpenSIPS's event_kafka module — Event Interface transport and kafka_publish.

The public API is what this package exports; its modules are the implementation::

    from event_kafka import EventKafka
    ek = EventKafka(broker_ids=["[k1]127.0.0.1:9092/topic1?t.acks=all"])
"""

from .connector import EventKafka, UnknownReportRouteError
from .errors import ConfigError, EventKafkaError, SocketError
from .event_interface import EventInterface, EventNameError, UnknownEventError
from .forksafe import after_fork
from .kafka_socket import KafkaSocket, parse_broker_id, parse_socket
from .payload import build_payload
from .producer import ProducerLimitError
from .report import Report, report_future
from .sip import CallId, SipMessageError

__all__ = [
    "CallId",
    "ConfigError",
    "EventInterface",
    "EventKafka",
    "EventKafkaError",
    "EventNameError",
    "KafkaSocket",
    "ProducerLimitError",
    "Report",
    "SipMessageError",
    "SocketError",
    "UnknownEventError",
    "UnknownReportRouteError",
    "after_fork",
    "build_payload",
    "parse_broker_id",
    "parse_socket",
    "report_future",
]
