"""Checks pydantic cannot do alone: duplicate broker_ids and subscriptions, report routes,
the MI token, the spool directory, listeners on one address."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ...kafka_socket import KafkaSocket, parse_broker_id
from .fields import _shown, check_subscriber_socket, parse_listen
from .files import _read_token_file, under, why
from .messages import _dotted
from .schema import ServiceConfig
from .sources import Loc


def _cross_check(
    m: ServiceConfig, problems: list[tuple[Loc, str]], base_dir: Path | None
) -> tuple[dict[str, KafkaSocket], str | None]:
    brokers: dict[str, KafkaSocket] = {}
    first_at: dict[str, int] = {}
    for i, text in enumerate(m.broker_ids):
        bid, sock = parse_broker_id(text)  # already validated: cannot fail
        if bid in brokers:
            problems.append(
                (
                    ("broker_ids", i),
                    f"duplicate broker id [{_shown(bid)}] (first in broker_ids[{first_at[bid]}])",
                )
            )
            continue
        brokers[bid] = sock
        first_at[bid] = i

    seen_subs: dict[tuple[str, tuple[str, object]], int] = {}
    for i, sub in enumerate(m.subscriptions):
        key = check_subscriber_socket(sub.socket)  # already validated
        if (sub.event, key) in seen_subs:
            problems.append(
                (
                    ("subscriptions", i),
                    f"same event and socket as subscriptions[{seen_subs[(sub.event, key)]}]",
                )
            )
        seen_subs.setdefault((sub.event, key), i)

    for name, route in m.report_routes.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            problems.append(
                (
                    ("report_routes", name),
                    "a route name is letters, digits, '_', '.', '-' and does not start with "
                    "'_' (reserved)",
                )
            )
        if route.dead_letter is not None and route.dead_letter not in first_at:
            problems.append(
                (
                    ("report_routes", name, "dead_letter"),
                    f"unknown broker_id [{_shown(route.dead_letter)}]",
                )
            )
    if m.mi.default_report_route is not None and m.mi.default_report_route not in m.report_routes:
        problems.append(
            (
                ("mi", "default_report_route"),
                f"no [report_routes.{_shown(m.mi.default_report_route)}]",
            )
        )

    token: str | None = None
    if m.mi.token is not None and m.mi.token_file is not None:
        problems.append((("mi", "token_file"), "set either mi.token or mi.token_file, not both"))
    elif m.mi.token is not None:
        token = m.mi.token.get_secret_value()
        if not token.strip():
            problems.append((("mi", "token"), "empty token"))
    elif m.mi.token_file is not None:
        tf = under(Path(m.mi.token_file), base_dir)
        try:
            token = _read_token_file(tf)
        except (OSError, ValueError) as exc:
            problems.append((("mi", "token_file"), f"cannot read {_shown(str(tf))}: {why(exc)}"))
        else:
            if not token:
                problems.append((("mi", "token_file"), f"{_shown(str(tf))} is empty"))
    if token is not None and any(ch.isspace() or ord(ch) < 0x21 for ch in token):
        # Would never survive an Authorization header intact; say so without showing it.
        problems.append((("mi", "token"), "the token contains whitespace or control characters"))

    _check_listeners(m, problems)
    return brokers, token


def _check_spool(
    m: ServiceConfig,
    brokers: Mapping[str, KafkaSocket],
    problems: list[tuple[Loc, str]],
    base_dir: Path | None,
) -> Path | None:
    """``spool.dir`` resolved, and checked as far as it can be before start: an existing
    path is a writable directory, else its nearest existing parent is."""
    sp = m.spool
    for i, bid in enumerate(sp.exclude_broker_ids):
        if bid not in brokers:
            problems.append(
                (("spool", "exclude_broker_ids", i), f"unknown broker_id [{_shown(bid)}]")
            )
    if sp.dir is None:
        return None
    if not sp.dir.strip():
        problems.append((("spool", "dir"), "empty path (leave dir unset for no spool)"))
        return None
    d = under(Path(sp.dir).expanduser(), base_dir)
    probe = d
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    except OSError as exc:  # a parent the service user cannot search (EACCES): no traceback
        problems.append((("spool", "dir"), f"{_shown(str(d))} cannot be reached: {exc.strerror}"))
        return d
    what = "" if probe == d else f" (its parent {_shown(str(probe))})"
    if not probe.is_dir():
        problems.append((("spool", "dir"), f"{_shown(str(d))}{what} is not a directory"))
    elif not os.access(probe, os.W_OK | os.X_OK):
        problems.append((("spool", "dir"), f"{_shown(str(d))}{what} is not writable"))
    return d


def _check_listeners(m: ServiceConfig, problems: list[tuple[Loc, str]]) -> None:
    tcp: dict[tuple[str, int], Loc] = {}
    candidates: list[tuple[Loc, str | None]] = [
        (("mi", "listen"), m.mi.listen if m.mi.enabled else None),
        (("metrics", "listen"), m.metrics.listen if m.metrics.enabled else None),
        (("ingest", "tcp", "listen"), m.ingest.tcp.listen if m.ingest.tcp else None),
    ]
    for loc, text in candidates:
        if text is None:
            continue
        addr = parse_listen(text)
        if addr.port == 0:
            continue
        key = (addr.host, addr.port)
        if key in tcp:
            problems.append((loc, f"same address as {_dotted(tcp[key])}"))
        tcp.setdefault(key, loc)
    if m.metrics.enabled and m.metrics.listen is None and not m.mi.enabled:
        problems.append((("metrics", "listen"), "needed when [mi] is disabled"))
