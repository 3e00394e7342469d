"""Fixtures of the OpenSIPS parity suite: the cached build, and one OpenSIPS + one
``event-kafka serve`` sharing the session's Apache Kafka (loopback only).

The suite skips only when the OpenSIPS source tarball is absent (``scripts/build-opensips.sh``
exit status 3); a build that fails is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from osbed import (
    INGEST_CASES,
    PAYLOAD_CASES,
    OpenSIPS,
    Serve,
    build_opensips,
    free_udp_port,
    make_opensips,
    make_serve,
    unique,
)

from event_kafka.devkafka import create_topic, free_port

# Events the MI parity tests subscribe and raise (published in both).
MI_EVENTS = [f"E_MI{i}" for i in range(8)]


@pytest.fixture(scope="session")
def opensips_prefix() -> Path:
    prefix = build_opensips()
    if prefix is None:
        pytest.skip(
            "OpenSIPS 3.6.8 tarball not found (../shared/vendor/opensips or OPENSIPS_TARBALL)"
        )
    return prefix


@dataclass
class Pair:
    """OpenSIPS and event-kafka serve side by side; ``topics``: name -> Kafka topic."""

    os: OpenSIPS
    ek: Serve
    bootstrap: str
    topics: dict[str, str]
    udp_port: int
    tcp_port: int

    def both(self, method: str, params: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The same request to both; the replies without the HTTP status (compared apart)."""
        a, b = self.os.call(method, params), self.ek.call(method, params)
        assert a.pop("http_status") == 200, a
        assert b.pop("http_status") == 200, b
        return a, b


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


# -- an OpenSIPS with a script: kafka_publish and raise_event from a SIP request route -------------

# X-Case picks what the request route does; X-Broker / X-Key give kafka_publish's arguments.
SCRIPT_ROUTE = """
  if ($hdr(X-Case) == "event") {
    raise_event("E_CALLID");
  } else if ($hdr(X-Case) == "key") {
    if (!kafka_publish($hdr(X-Broker), $rb, $hdr(X-Key), "kafka_report")) {
      sl_send_reply(500, "Not Queued");
      exit;
    }
  } else if ($hdr(X-Case) == "empty-key") {
    if (!kafka_publish($hdr(X-Broker), $rb, "", "kafka_report")) {
      sl_send_reply(500, "Not Queued");
      exit;
    }
  } else if ($hdr(X-Case) == "no-key") {
    kafka_publish($hdr(X-Broker), $rb);
  }
  sl_send_reply(200, "OK");"""

# The four report AVPs, raised as a named-params event (a kafka: subscriber writes it).
REPORT_ROUTE = """
route[kafka_report] {
  $avp(rn) = "kafka_id"; $avp(rv) = $avp(kafka_id);
  $avp(rn) = "kafka_status"; $avp(rv) = $avp(kafka_status);
  $avp(rn) = "kafka_key"; $avp(rv) = $avp(kafka_key);
  $avp(rn) = "kafka_msg"; $avp(rv) = $avp(kafka_msg);
  raise_event("E_KREPORT", $avp(rn), $avp(rv));
}
"""

DOWN_BROKER = "127.0.0.1:1/nowhere?t.message.timeout.ms=1500"


@dataclass
class Scripted:
    os: OpenSIPS
    bootstrap: str
    topics: dict[str, str]


def scripted_opensips(
    prefix: Path, workdir: Path, broker_ids: list[str], events: list[str] | None = None
) -> OpenSIPS:
    return make_opensips(
        prefix,
        workdir,
        broker_ids=broker_ids,
        events=events or ["E_CALLID", "E_KREPORT"],
        request_route=SCRIPT_ROUTE,
        routes=REPORT_ROUTE,
    )


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
