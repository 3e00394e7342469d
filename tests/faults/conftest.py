"""Fixtures of the fault and security suite: one 3-node KRaft cluster, one SASL_SSL broker.

Both are module-scoped (one JVM set per test file) and torn down by PID. The cluster is thrown
away at the end, so teardown SIGKILLs its nodes instead of waiting for orderly shutdowns (a
KRaft node that lost its quorum can take the whole SIGTERM grace time to exit).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from event_kafka.devkafka import LocalKafka, SaslSslConfig
from tests.support import missing

# Passwords of the SASL_SSL broker's users. Distinctive, so a leak is found by plain grep.
SASL_USERS = {"alice": "Zq9-alice-S3cr3t-pw", "bob": "Xk7-bob-S3cr3t-pw"}


def _fast_stop(kafka: LocalKafka) -> None:
    for node_id in kafka.node_ids:
        kafka.resume_node(node_id)  # harmless when it runs; a paused node must not stay paused
        kafka.kill_node(node_id)
    kafka.stop()  # removes the data directory; every process is already gone


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalKafka]:
    """A 3-node KRaft cluster (each node broker+controller), RF 3, min.insync.replicas 2."""
    kafka = LocalKafka(nodes=3)
    t0 = time.monotonic()
    kafka.start()
    print(f"\n3-node cluster up in {time.monotonic() - t0:.1f}s")
    try:
        yield kafka
    finally:
        _fast_stop(kafka)


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[LocalKafka]:
    """One Kafka node with an extra SASL_SSL listener (SCRAM-SHA-256/512 and PLAIN users)."""
    if shutil.which("openssl") is None:
        missing("the openssl CLI is needed to make the test certificates")
    kafka = LocalKafka(
        sasl_ssl=SaslSslConfig(
            users=SASL_USERS,
            mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
        )
    )
    kafka.start()
    try:
        yield kafka
    finally:
        _fast_stop(kafka)


@pytest.fixture(scope="module")
def sasl_users() -> dict[str, str]:
    """User name -> password of :func:`sasl_kafka`."""
    return dict(SASL_USERS)
