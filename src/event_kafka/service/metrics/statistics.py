"""The snapshot as OpenSIPS statistics (MI ``get_statistics``): ``{group: {name: value}}``."""

from __future__ import annotations

from ...statistics import BrokerOwner, LaneCounters, group
from .snapshot import _SPOOL_COUNTERS, Snapshot, _attr, _lane_rows, _spool_rows


def statistics_groups(snap: Snapshot) -> dict[str, dict[str, int | float]]:
    """The snapshot as OpenSIPS statistics: ``{group: {name: value}}``.

    Groups: ``event_kafka`` (totals), ``broker_<ID>`` (per broker_id), ``event_<NAME>`` (per
    event), ``route_<NAME>`` (per report route), ``ingest_udp``/``ingest_tcp`` and ``mi``.
    MI ``get_statistics`` prints them as ``group:name``.
    """
    groups: dict[str, dict[str, int | float]] = {}
    rows = _lane_rows(snap)
    totals: dict[str, int | float] = {}
    totals.update(sum(rows.values(), LaneCounters()).summary())
    totals["unknown_broker_id"] = int(snap.ek.get("unknown_broker_id", 0))
    totals["rejected_after_close"] = int(snap.ek.get("rejected_after_close", 0))
    spool = _spool_rows(snap)
    if spool:
        for name in ("records", "bytes", *_SPOOL_COUNTERS):
            totals[f"spool_{name}"] = sum(r.get(name, 0) for r in spool.values())
    groups["event_kafka"] = totals
    per_broker = group((BrokerOwner(bid), c) for (bid, _ev, _t), c in rows.items() if bid)
    for bid in snap.broker_topics:
        groups[f"broker_{bid}"] = dict(per_broker.get(BrokerOwner(bid), LaneCounters()).summary())
    for name, ev in snap.ek.get("events", {}).items():
        groups[f"event_{name}"] = {
            k: _attr(ev, k) for k in ("raised", "subscribers", "accepted", "failed")
        }
    for route, r in snap.ek.get("report_routes", {}).items():
        if route.startswith("_"):
            continue  # internal (dead-letter) routes: counted in their route's group
        g: dict[str, int | float] = {"ran": int(r.get("ran", 0))}
        g["errors"] = int(r.get("errors", 0))
        g["pending"] = int(r.get("pending", 0))
        g.update(snap.report_actions.get(route, {}))
        groups[f"route_{route}"] = g
    for listener, counters in snap.ingest.items():
        groups[f"ingest_{listener}"] = dict(counters)
    groups["mi"] = {**snap.mi, **{f"http_{k}": v for k, v in snap.http.items()}}
    return groups
