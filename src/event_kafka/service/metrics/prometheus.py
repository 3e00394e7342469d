"""Prometheus: the metric families of a :class:`~.snapshot.Snapshot`, made at scrape time
(the names are listed in the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ...statistics import REJECT_REASONS
from .snapshot import _SPOOL_COUNTERS, Snapshot, _attr, _lane_rows, _spool_rows

_P = "event_kafka_"
_LANE_LABELS = ["broker_id", "event", "topic"]


class ServiceCollector(Collector):
    """A prometheus-client collector that reads a :class:`Snapshot` on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _lane_metrics(snap)
        yield from _spool_metrics(snap)
        yield from _producer_metrics(snap)
        yield from _event_metrics(snap)
        yield from _ingest_metrics(snap)
        yield from _service_metrics(snap)


def _lane_metrics(snap: Snapshot) -> Iterator[Metric]:
    rows = _lane_rows(snap)
    counters = {
        "accepted": "Messages accepted into a producer queue.",
        "delivered": "Messages acknowledged by the broker.",
        "failed": "Messages with a failure report (error, timeout, shutdown).",
        "route_errors": "Report route calls that raised.",
    }
    for name, doc in counters.items():
        metric = "report_route_errors" if name == "route_errors" else f"messages_{name}"
        fam = CounterMetricFamily(_P + metric, doc, labels=_LANE_LABELS)
        for key, c in rows.items():
            fam.add_metric(list(key), getattr(c, name))
        yield fam
    yield _rejected(
        "messages_rejected",
        "Messages refused at once by kafka_publish / a subscriber.",
        {key: {r: getattr(c, f"rejected_{r}") for r in REJECT_REASONS} for key, c in rows.items()},
    )
    inflight = GaugeMetricFamily(
        _P + "messages_in_flight", "Accepted messages without a report yet.", labels=_LANE_LABELS
    )
    for key, c in rows.items():
        inflight.add_metric(list(key), c.in_flight)
    yield inflight
    yield CounterMetricFamily(
        _P + "unknown_broker_id",
        "kafka_publish calls naming an unknown broker_id.",
        value=int(snap.ek.get("unknown_broker_id", 0)),
    )


def _rejected(
    metric: str, doc: str, counts: dict[tuple[str, ...], dict[str, int]]
) -> CounterMetricFamily:
    """Refusals per lane and ``reason`` (``counts``: ``{lane labels: {reason: n}}``)."""
    fam = CounterMetricFamily(_P + metric, doc, labels=[*_LANE_LABELS, "reason"])
    for key, by_reason in counts.items():
        for reason, n in by_reason.items():
            fam.add_metric([*key, reason], n)
    return fam


def _spool_metrics(snap: Snapshot) -> Iterator[Metric]:
    rows = _spool_rows(snap)
    if not rows:
        return
    for name, doc in (("records", "Records in the spool."), ("bytes", "Bytes in the spool.")):
        fam = GaugeMetricFamily(_P + f"spool_{name}", doc, labels=_LANE_LABELS)
        for key, row in rows.items():
            fam.add_metric(list(key), row.get(name, 0))
        yield fam
    for name, doc in _SPOOL_COUNTERS.items():
        cfam = CounterMetricFamily(_P + f"spool_{name}", doc, labels=_LANE_LABELS)
        for key, row in rows.items():
            cfam.add_metric(list(key), row.get(name, 0))
        yield cfam
    yield _rejected(
        "spool_rejected",
        "Records refused because the spool could not take them.",
        {
            key: {r: row.get(f"rejected_{r}", 0) for r in ("spool_full", "spool_error")}
            for key, row in rows.items()
        },
    )
    err = GaugeMetricFamily(
        _P + "spool_write_error", "1 while the spool cannot write.", labels=_LANE_LABELS
    )
    for key, row in rows.items():
        err.add_metric(list(key), row["write_error"])
    yield err


def _producer_metrics(snap: Snapshot) -> Iterator[Metric]:
    labels = ["producer", "brokers"]
    queue = GaugeMetricFamily(
        _P + "producer_queue_length", "Messages in the librdkafka queue.", labels=labels
    )
    down = GaugeMetricFamily(
        _P + "producer_down", "1 while every broker of the producer is down.", labels=labels
    )
    down_for = GaugeMetricFamily(
        _P + "producer_down_seconds", "Seconds the producer has reached no broker.", labels=labels
    )
    rebuilds = CounterMetricFamily(
        _P + "producer_rebuilds", "Producers rebuilt after a fatal error.", labels=labels
    )
    info = InfoMetricFamily(
        _P + "producer", "A producer's properties (secrets masked).", labels=labels
    )
    producers = list(snap.ek.get("producers", ()))
    for p in producers:
        label = [str(p.get("name", "")), str(p.get("brokers", ""))]
        queue.add_metric(label, int(p.get("queue_length", 0)))
        down.add_metric(label, 1 if p.get("down") else 0)
        down_for.add_metric(label, float(p.get("down_for", 0.0)))
        rebuilds.add_metric(label, int(p.get("rebuilds", 0)))
        info.add_metric(label, {"config": str(p.get("config", ""))})
    yield from (queue, down, down_for, rebuilds, info)
    yield from rdkafka_metrics(producers)
    runs = CounterMetricFamily(
        _P + "report_route_runs", "Reports handled by a report route.", labels=["route"]
    )
    pending = GaugeMetricFamily(
        _P + "report_route_pending", "Reports waiting for a report route.", labels=["route"]
    )
    for name, r in snap.ek.get("report_routes", {}).items():
        runs.add_metric([name], int(r.get("ran", 0)))
        pending.add_metric([name], int(r.get("pending", 0)))
    yield from (runs, pending)
    actions = CounterMetricFamily(
        _P + "report_actions",
        "Reports counted by a configured report route, by delivery status.",
        labels=["route", "status"],
    )
    dead = CounterMetricFamily(
        _P + "dead_letter",
        "Failed messages re-published to a dead-letter broker_id, by result.",
        labels=["route", "result"],
    )
    for route, c in snap.report_actions.items():
        actions.add_metric([route, "delivered"], c.get("delivered", 0))
        actions.add_metric([route, "failed"], c.get("failed", 0))
        for result in ("published", "rejected", "delivered", "failed"):
            dead.add_metric([route, result], c.get(f"dead_letter_{result}", 0))
    yield from (actions, dead)


# librdkafka per-broker statistics exported: (stats field, metric, help, kind).
_BROKER_STATS: tuple[tuple[str, str, str, str], ...] = (
    ("outbuf_cnt", "outbuf_requests", "Requests waiting to be sent to the broker.", "gauge"),
    ("outbuf_msg_cnt", "outbuf_messages", "Messages in requests waiting to be sent.", "gauge"),
    ("waitresp_cnt", "waitresp_requests", "Requests sent, waiting for a response.", "gauge"),
    ("waitresp_msg_cnt", "waitresp_messages", "Messages in requests awaiting a response.", "gauge"),
    ("txerrs", "tx_errors", "Errors sending to the broker.", "counter"),
    ("txretries", "tx_retries", "Requests retried.", "counter"),
    ("req_timeouts", "request_timeouts", "Requests that timed out.", "counter"),
    ("connects", "connects", "Connections made.", "counter"),
    ("disconnects", "disconnects", "Disconnects.", "counter"),
)


def rdkafka_metrics(producers: list[Mapping[str, Any]]) -> Iterator[Metric]:
    """librdkafka's own statistics, from each producer's latest ``stats_cb`` JSON."""
    rk = _P + "rdkafka_"
    msgs = GaugeMetricFamily(
        rk + "messages",
        "Messages in the producer queues (librdkafka msg_cnt).",
        labels=["producer"],
    )
    size = GaugeMetricFamily(
        rk + "message_bytes", "Bytes in the producer queues (msg_size).", labels=["producer"]
    )
    ts = GaugeMetricFamily(
        rk + "stats_timestamp_seconds", "When librdkafka made the report.", labels=["producer"]
    )
    bl = ["producer", "broker"]
    up = GaugeMetricFamily(rk + "broker_up", "1 while the broker connection is UP.", labels=bl)
    rtt = GaugeMetricFamily(
        rk + "broker_rtt_seconds", "Broker round-trip time.", labels=[*bl, "quantile"]
    )
    fams: list[GaugeMetricFamily | CounterMetricFamily] = []
    for _field, name, doc, kind in _BROKER_STATS:
        cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
        fams.append(cls(rk + "broker_" + name, doc, labels=bl))
    for p in producers:
        stats = _parse_stats(p.get("statistics"))
        if stats is None:
            continue
        name = str(p.get("name", ""))
        msgs.add_metric([name], _num(stats.get("msg_cnt")))
        size.add_metric([name], _num(stats.get("msg_size")))
        ts.add_metric([name], _num(stats.get("time")))  # wall clock, whole seconds
        brokers = stats.get("brokers")
        if not isinstance(brokers, Mapping):
            continue
        for bname, b in brokers.items():
            if not isinstance(b, Mapping) or b.get("source") == "internal":
                continue
            label = [name, str(bname)]
            up.add_metric(label, 1 if b.get("state") == "UP" else 0)
            r = b.get("rtt")
            if not isinstance(r, Mapping):
                r = {}
            rtt.add_metric([*label, "0.5"], _num(r.get("p50")) / 1e6)
            rtt.add_metric([*label, "0.99"], _num(r.get("p99")) / 1e6)
            for fam, (field_name, *_rest) in zip(fams, _BROKER_STATS, strict=True):
                fam.add_metric(label, _num(b.get(field_name)))
    yield from (msgs, size, ts, up, rtt, *fams)


def _parse_stats(text: object) -> Mapping[str, Any] | None:
    if not isinstance(text, str | bytes):
        return None
    try:
        stats = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return stats if isinstance(stats, Mapping) else None


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _event_metrics(snap: Snapshot) -> Iterator[Metric]:
    raised = CounterMetricFamily(_P + "event_raised", "Events raised.", labels=["event"])
    subs = GaugeMetricFamily(_P + "event_subscribers", "Live subscribers.", labels=["event"])
    accepted = CounterMetricFamily(
        _P + "event_subscriber_accepted", "Subscriber sends that took the event.", labels=["event"]
    )
    failed = CounterMetricFamily(
        _P + "event_subscriber_failed", "Subscriber sends that refused the event.", labels=["event"]
    )
    for name, ev in snap.ek.get("events", {}).items():
        raised.add_metric([name], _attr(ev, "raised"))
        subs.add_metric([name], _attr(ev, "subscribers"))
        accepted.add_metric([name], _attr(ev, "accepted"))
        failed.add_metric([name], _attr(ev, "failed"))
    yield from (raised, subs, accepted, failed)
    stat = UnknownMetricFamily(
        _P + "transport_stat",
        "Counters of the udp/tcp subscriber transports, as they report them.",
        labels=["transport", "destination", "stat"],
    )
    for scheme, dests in snap.transports.items():
        if scheme == "kafka":
            continue  # the producer metrics above cover it
        for dest, counters in dests.items():
            if not isinstance(counters, Mapping):
                continue
            for name, value in counters.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    stat.add_metric([scheme, str(dest), str(name)], value)
    yield stat


def _ingest_metrics(snap: Snapshot) -> Iterator[Metric]:
    docs = {
        "received": "Notifications read (malformed ones included).",
        "malformed": "Input that is not a valid notification.",
        "raised": "Notifications raised in the Event Interface.",
        "refused": "Notifications not raised or not accepted by every subscriber.",
        "unknown_event": "Notifications for an event that is not published.",
        "bytes": "Bytes read.",
        "connections_total": "TCP connections accepted.",
        "connections_refused": "TCP connections refused (max_connections).",
    }
    for name, doc in docs.items():
        fam = CounterMetricFamily(_P + f"ingest_{name}", doc, labels=["listener"])
        for listener, c in snap.ingest.items():
            fam.add_metric([listener], c.get(name, 0))
        yield fam
    conns = GaugeMetricFamily(
        _P + "ingest_connections", "Open ingest TCP connections.", labels=["listener"]
    )
    for listener, c in snap.ingest.items():
        if listener == "tcp":
            conns.add_metric([listener], c.get("connections", 0))
    yield conns


def _service_metrics(snap: Snapshot) -> Iterator[Metric]:
    yield CounterMetricFamily(
        _P + "mi_requests", "MI requests received.", value=snap.mi.get("requests", 0)
    )
    yield CounterMetricFamily(
        _P + "mi_errors", "MI requests answered with an error.", value=snap.mi.get("errors", 0)
    )
    overrun = CounterMetricFamily(
        _P + "mi_overrun",
        "MI commands answered 408 (past mi.command_timeout) or 503 (too many in progress).",
        labels=["reason"],
    )
    for reason in ("timeout", "busy"):
        overrun.add_metric([reason], snap.mi.get(reason, 0))
    yield overrun
    rejected = CounterMetricFamily(
        _P + "http_rejected", "HTTP requests refused before the MI.", labels=["reason"]
    )
    for reason in ("unauthorized", "too_large", "timeout", "overload"):
        rejected.add_metric([reason], snap.http.get(reason, 0))
    yield rejected
    reloads = CounterMetricFamily(
        _P + "config_reloads", "Configuration reloads (SIGHUP).", labels=["result"]
    )
    for result in ("ok", "error"):
        reloads.add_metric([result], snap.reloads.get(result, 0))
    yield reloads
    yield GaugeMetricFamily(
        _P + "start_time_seconds", "Start time (Unix seconds).", value=snap.started_at
    )
    info = InfoMetricFamily(_P + "build", "event-kafka version.")
    info.add_metric([], {"version": snap.version})
    yield info


def make_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry holding only the service collector (no process/GC default collectors, so
    a scrape costs one snapshot)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(snapshot))
    return registry
