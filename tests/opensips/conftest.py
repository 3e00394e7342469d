"""Fixtures of the OpenSIPS parity suite: the cached build, and one OpenSIPS + one
``event-kafka serve`` sharing the session's Apache Kafka (loopback only).

The suite skips only when the OpenSIPS source tarball is absent (``scripts/build-opensips.sh``
exit status 3), and fails instead under ``CI=true``; a build that fails is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from event_kafka.devkafka import create_topic, free_port
from tests.opensips.osbed import (
    DOWN_BROKER,
    INGEST_CASES,
    MI_EVENTS,
    PAYLOAD_CASES,
    Pair,
    Scripted,
    build_opensips,
    make_opensips,
    make_serve,
    scripted_opensips,
    unique,
)
from tests.support import missing
from tests.support.sipp import free_udp_port


@pytest.fixture(scope="session")
def opensips_prefix() -> Path:
    prefix = build_opensips()
    if prefix is None:
        missing("OpenSIPS 3.6.8 tarball not found (../shared/vendor/opensips or OPENSIPS_TARBALL)")
    return prefix


@pytest.fixture(scope="session")
def pair(
    opensips_prefix: Path, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    bootstrap = kafka_broker.bootstrap
    topics = {k: unique(k) for k in ("os", "ek", "ingest", "os_ingest")}
    for t in topics.values():
        create_topic(bootstrap, t, 1)
    payload_events = [c.event for c in PAYLOAD_CASES]
    ingest_events = [e for c in INGEST_CASES for e in (c.udp_event, c.tcp_event)]
    events = payload_events + ingest_events + MI_EVENTS
    udp_port, tcp_port = free_udp_port(), free_port()
    work = tmp_path_factory.mktemp("pair")
    os_ = make_opensips(opensips_prefix, work / "opensips", events=events)
    ek = make_serve(
        work / "serve",
        events=events,
        # What the ingest forwards lands in one topic, to compare with OpenSIPS's own record.
        subscriptions=[(e, f"kafka:{bootstrap}/{topics['ingest']}") for e in ingest_events],
        udp_port=udp_port,
        tcp_port=tcp_port,
    )
    try:
        os_.start()
        ek.start()
        yield Pair(os_, ek, bootstrap, topics, udp_port, tcp_port)
        assert os_.alive, f"OpenSIPS died during the session:\n{os_.tail()}"
        assert ek.stop() == 0, ek.tail()
        assert os_.stop() == 0, os_.tail()
    finally:
        ek.kill()
        os_.kill()


@pytest.fixture(scope="session")
def scripted(
    opensips_prefix: Path, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scripted]:
    bootstrap = kafka_broker.bootstrap
    topics = {k: unique(k) for k in ("pub", "reports", "callid")}
    for t in topics.values():
        create_topic(bootstrap, t, 1)
    os_ = scripted_opensips(
        opensips_prefix,
        tmp_path_factory.mktemp("scripted"),
        [f"[k1]{bootstrap}/{topics['pub']}", f"[kdown]{DOWN_BROKER}"],
    )
    try:
        os_.start()
        assert os_.ok("event_subscribe", ["E_KREPORT", f"kafka:{bootstrap}/{topics['reports']}"])
        yield Scripted(os_, bootstrap, topics)
        assert os_.stop() == 0, os_.tail()
    finally:
        os_.kill()
