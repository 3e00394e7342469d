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

import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from ..address import format_address
from ..errors import ConfigError
from ..event_name import check_event_name
from ..kafka_socket import KafkaSocket, mask_secrets, parse_broker_id, parse_socket
from ..properties import PropertyPolicy, redact, untrusted_policy
from ..transports import BUILTIN_TRANSPORTS, TransportContext, split_socket
from .sources import apply_environment, apply_overrides, resolve_references

__all__ = [
    "ConfigError",
    "IngestSection",
    "KafkaSection",
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
    "load_config",
    "load_config_text",
]

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# Field types


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A ``host:port`` to bind (``[v6]:port`` for IPv6). Port 0 asks the kernel for one."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def parse_listen(text: str) -> ListenAddress:
    """Parse ``host:port`` / ``[v6addr]:port``; raises ValueError naming what is wrong."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError("expected [IPv6]:port")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_shown(host)!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("write IPv6 addresses as [addr]:port")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 0-65535, not {_shown(port_text)!r}")
    return ListenAddress(host, int(port_text))


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _broker_id(value: str) -> str:
    parse_broker_id(value)
    return value


def _socket(value: str) -> str:
    check_subscriber_socket(value)
    return value


def _event_name(value: str) -> str:
    return check_event_name(value)  # the library's rule (EventNameError is a ValueError)


def _syslog_address(value: str) -> str:
    if not value.startswith("/"):
        try:
            parse_listen(value)
        except ValueError as exc:
            raise ValueError(f"a Unix socket path (/dev/log) or host:port: {exc}") from None
    return value


def _shown(value: str) -> str:
    # Every user value an error echoes: a broker_id pasted in the wrong key keeps its secrets.
    return mask_secrets(value)


def _property_names(value: list[str]) -> list[str]:
    try:
        untrusted_policy(value)
    except ConfigError as exc:
        raise ValueError(_shown(str(exc))) from None
    return value


def mi_policy(allow: Iterable[str]) -> PropertyPolicy:
    """The property policy of sockets that arrive over the MI, widened by ``allow``."""
    return untrusted_policy(
        allow, source="the MI", hint="the operator can allow it in [mi] allow_properties"
    )


def _name(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


ListenStr = Annotated[str, AfterValidator(_listen)]
EventName = Annotated[str, AfterValidator(_event_name)]
NonEmpty = Annotated[str, AfterValidator(_name)]
BrokerIdStr = Annotated[str, AfterValidator(_broker_id)]
SocketStr = Annotated[str, AfterValidator(_socket)]
Seconds = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    # strict: TOML is typed, so "8888" for a port is a mistake to report, not to coerce.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------------------------
# Sections


class KafkaSection(_Model):
    """Producer-wide settings (per-broker settings go in the ``broker_id`` properties)."""

    flush_timeout: Seconds = 10.0
    """Seconds SIGTERM waits for in-flight messages; what is left gets a failure report."""
    queue_full_wait: Seconds = 0.0
    """Seconds ``kafka_publish`` may wait on a full producer queue before returning -1."""


class SpoolSection(_Model):
    """The durable spool (:mod:`event_kafka.spool.lane`): with ``dir`` set, every broker_id
    and ``kafka:`` subscriber writes each record to disk before librdkafka gets it, and it
    leaves only once the broker acknowledged it; what a stopped or killed service left is
    delivered by the next start. Unset (default): no spool."""

    dir: str | None = None
    """The spool directory (created 0700; relative to the configuration file's directory)."""
    max_bytes: Annotated[int, Field(gt=0)] = 1 << 30
    """Bytes per owner (broker_id, subscriber) directory; past it publishing returns -1."""
    max_age: Annotated[float, Field(gt=0)] | None = None
    """Seconds after which a record not yet sent gets a failure report (unset: never)."""
    fsync: Literal["never", "always"] | Annotated[float, Field(gt=0, lt=3600)] = "never"
    """``never``: survives a crash of the service, not of the machine; ``always``: an fsync
    per record; seconds: an fsync that often."""
    max_total_bytes: Annotated[int, Field(gt=0)] | None = None
    """Bytes of the whole spool (every directory); unset: only ``max_bytes`` per directory.
    Set it when MI callers may subscribe: each subscriber is a directory of ``max_bytes``."""
    exclude_broker_ids: list[NonEmpty] = []
    """broker_ids that publish without the spool (e.g. a high-volume, loss-tolerant one)."""


class EventsSection(_Model):
    """Events this service publishes in its Event Interface."""

    publish: list[EventName] = []
    auto_publish: bool = False
    """Publish unknown event names met by ingest or ``raise_event`` instead of refusing them."""
    auto_publish_max: Annotated[int, Field(ge=0)] = 1000
    """Bound on auto-published names, so a misbehaving sender cannot grow memory forever."""
    event_header: bool = True
    """``kafka:`` event records carry an ``event`` header (the event name); ``false`` writes
    them exactly as OpenSIPS does, with no headers. Needs a restart to change."""


class Subscription(_Model):
    """A static subscriber: created at start, never expires, owned by this file."""

    event: EventName
    socket: SocketStr = Field(repr=False)


class ReportRouteConfig(_Model):
    """Actions run for each delivery report of a ``kafka_publish`` naming this route."""

    log: Literal["none", "failure", "all"] = "failure"
    dead_letter: str | None = None
    """A broker_id that receives every message that failed (same key and value)."""
    count: bool = True
    """Count reports per route and status (``event_kafka_report_route_reports_total``)."""


class MISection(_Model):
    """The management interface: JSON-RPC 2.0 over HTTP, compatible with OpenSIPS mi_http."""

    enabled: bool = True
    listen: ListenStr = "127.0.0.1:8888"
    path: Annotated[str, Field(pattern=r"^/[!-~]*$")] = "/mi"
    token: SecretStr | None = None
    """Bearer token required on /mi (prefer ``token_file``: the file is not world-readable)."""
    token_file: str | None = None
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 65536
    read_timeout: Seconds = 10.0
    """Seconds a client has to send a whole request (headers and body) before it is cut off."""
    max_connections: Annotated[int, Field(ge=1)] = 64
    report_wait_timeout: Seconds = 30.0
    """Longest ``kafka_publish ... wait`` waits for the delivery report."""
    default_report_route: str | None = None
    max_subscriptions: Annotated[int, Field(ge=0)] = 256
    """MI ``event_subscribe`` subscribers at once (static ones do not count); more: error 429."""
    command_timeout: Annotated[float, Field(gt=0)] = 10.0
    """Seconds an MI command may run (off the event loop); then a 408 error reply."""
    allow_properties: Annotated[list[str], AfterValidator(_property_names)] = []
    """librdkafka properties MI sockets may set beyond the safe list (exact names, e.g.
    ``ssl.ca.location``): each one lets any MI caller make the service use that property."""


class UdpIngest(_Model):
    """event_datagram receiver: one JSON-RPC notification per datagram."""

    listen: ListenStr
    max_datagram: Annotated[int, Field(ge=512, le=65535)] = 65535


class TcpIngest(_Model):
    """event_stream receiver: JSON objects back to back on persistent connections."""

    listen: ListenStr
    max_buffer: Annotated[int, Field(ge=1024)] = 1024 * 1024
    """Largest single notification (bytes); a bigger one closes the connection."""
    max_connections: Annotated[int, Field(ge=1)] = 256
    idle_timeout: Seconds = 0.0
    """Close connections silent for this long (0: never, like OpenSIPS's own sender)."""
    event_param: str | None = None
    """event_stream's ``event_param``: take the event name from this first param, drop it."""


class IngestSection(_Model):
    udp: UdpIngest | None = None
    tcp: TcpIngest | None = None


class MetricsSection(_Model):
    """Prometheus ``/metrics`` and ``/health/*``."""

    enabled: bool = True
    listen: ListenStr | None = None
    """A separate listener for /metrics and /health; unset: served on the MI listener."""
    check_brokers: bool = False
    """``/health/ready`` also needs one reachable bootstrap server per broker list."""
    check_timeout: Seconds = 2.0
    ready_broker_timeout: Seconds = 30.0
    """``/health/ready`` fails while a producer has reached no broker for this long (0: off)."""
    statistics_interval_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 0
    """librdkafka statistics every N ms, exported as ``event_kafka_rdkafka_*`` (0: off)."""


class LoggingSection(_Model):
    """One record per line, to stderr (journald) or syslog; ``json``: one object per line."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    output: Literal["stderr", "syslog"] = "stderr"
    syslog_address: Annotated[str, AfterValidator(_syslog_address)] = "/dev/log"
    """A Unix socket path, or ``host:port`` (UDP)."""
    syslog_facility: Literal[
        "daemon", "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
        "local7",
    ] = "daemon"  # fmt: skip
    rate_limit_interval: Seconds = 10.0
    """At most one line per interval for repetitive problems (malformed input, failures)."""


class ServiceConfig(_Model):
    """The whole file, as validated by pydantic (cross-references are checked afterwards)."""

    broker_ids: list[BrokerIdStr] = Field(default=[], repr=False)
    kafka: KafkaSection = KafkaSection()
    spool: SpoolSection = SpoolSection()
    events: EventsSection = EventsSection()
    subscriptions: list[Subscription] = []
    report_routes: dict[str, ReportRouteConfig] = {}
    mi: MISection = MISection()
    ingest: IngestSection = IngestSection()
    metrics: MetricsSection = MetricsSection()
    logging: LoggingSection = LoggingSection()


# --------------------------------------------------------------------------------------------
# The loaded result


@dataclass(frozen=True)
class ServiceSettings:
    """A configuration file that passed every check, plus what was derived from it.

    ``brokers`` maps each broker ID to its parsed socket (in file order); ``token`` is the MI
    bearer token (from ``mi.token`` or ``mi.token_file``), never printed by ``repr``.
    """

    model: ServiceConfig = field(repr=False)
    path: str
    brokers: dict[str, KafkaSocket]
    token: str | None = field(default=None, repr=False)
    spool_dir: Path | None = None
    """``spool.dir`` resolved against the file's directory (``None``: no spool)."""

    @property
    def broker_id_names(self) -> tuple[str, ...]:
        return tuple(self.brokers)

    @property
    def mi_policy(self) -> PropertyPolicy:
        """Which librdkafka properties a socket subscribed over the MI may set."""
        return mi_policy(self.model.mi.allow_properties)

    @property
    def published_events(self) -> tuple[str, ...]:
        """``events.publish`` plus every event with a static subscriber (OpenSIPS publishes
        the events named by a script's ``subscribe_event`` at start-up too), in file order."""
        names = dict.fromkeys(self.model.events.publish)
        names.update(dict.fromkeys(s.event for s in self.model.subscriptions))
        return tuple(names)

    def listen(self, section: Literal["mi", "metrics", "udp", "tcp"]) -> ListenAddress | None:
        """The parsed listen address of a section, or None when it is disabled/unset."""
        m = self.model
        text: str | None
        if section == "mi":
            text = m.mi.listen if m.mi.enabled else None
        elif section == "metrics":
            text = m.metrics.listen if m.metrics.enabled else None
        elif section == "udp":
            text = m.ingest.udp.listen if m.ingest.udp else None
        else:
            text = m.ingest.tcp.listen if m.ingest.tcp else None
        return parse_listen(text) if text is not None else None

    def summary(self) -> str:
        """One line for logs and ``--check`` (no secrets)."""
        m = self.model
        parts = [
            f"{len(self.brokers)} broker_id(s)",
            f"{len(self.published_events)} event(s)",
            f"{len(m.subscriptions)} static subscription(s)",
            f"{len(m.report_routes)} report route(s)",
        ]
        for name in _SECTIONS:
            addr = self.listen(name)
            if addr is not None:
                parts.append(f"{name} on {addr}")
        return ", ".join(parts)


_SECTIONS: tuple[Literal["mi", "metrics", "udp", "tcp"], ...] = ("mi", "metrics", "udp", "tcp")


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> ServiceSettings:
    """Read and validate the TOML file at ``path``, with ``EVENT_KAFKA_*__*`` variables of
    ``environ`` (default: the process environment) and ``overrides`` applied over it.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES` (a FIFO or device is
    refused without blocking) and hold at least one setting: an empty file (truncated while
    being rewritten, or the wrong path) is refused rather than read as "every default".

    Raises:
        ConfigError: listing every problem as ``file:line: key.path: what is wrong``.
    """
    p = Path(path)
    try:
        data = _read_regular_file(p, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 (byte {exc.start})") from None
    return load_config_text(
        text, str(p), base_dir=p.parent, environ=environ, overrides=overrides, allow_empty=False
    )


MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file larger than this is refused (it is not one)."""


def load_config_text(
    text: str,
    path: str = "<config>",
    base_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    allow_empty: bool = True,
) -> ServiceSettings:
    """Validate configuration ``text`` (``path`` is only used in messages).

    ``base_dir`` resolves a relative ``mi.token_file`` and ``${file:...}``; ``environ``
    (default ``os.environ``) gives ``EVENT_KAFKA_*__*`` overrides and ``${env:...}`` values;
    ``overrides`` (``{"logging.level": "DEBUG"}``, the command line) win over both. See
    :mod:`.sources`. ``allow_empty=False`` (files, see :func:`load_config`) refuses a text
    with no settings at all.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deep") from None
    if not raw and not allow_empty:
        # Most likely truncated (a rewrite in progress) or the wrong file: running on every
        # default would drop every broker_id, subscription and the MI token.
        raise ConfigError(
            f"{path}: the file has no settings (empty or only comments): refused; to run "
            "with every default, write at least one table, e.g. [mi]"
        )
    lines = KeyLines(text)
    problems: list[tuple[Loc, str]] = []
    env = os.environ if environ is None else environ
    origin = apply_environment(raw, ServiceConfig, env, problems)
    origin.update(apply_overrides(raw, ServiceConfig, overrides or {}, problems))
    secrets = resolve_references(
        raw, problems, base_dir=base_dir, environ=env, read_file=_read_token_file
    )
    if problems:
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets))
    try:
        model = ServiceConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            problems.append((tuple(err["loc"]), _pydantic_message(err)))
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets)) from None
    brokers, token = _cross_check(model, problems, base_dir)
    spool_dir = _check_spool(model, brokers, problems, base_dir)
    if problems:
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets))
    return ServiceSettings(
        model=model, path=path, brokers=brokers, token=token, spool_dir=spool_dir
    )


# --------------------------------------------------------------------------------------------
# Checks pydantic cannot do alone


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
        tf = Path(m.mi.token_file)
        if not tf.is_absolute() and base_dir is not None:
            tf = base_dir / tf
        try:
            token = _read_token_file(tf)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            problems.append((("mi", "token_file"), f"cannot read {_shown(str(tf))}: {reason}"))
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
    d = Path(sp.dir).expanduser()
    if not d.is_absolute() and base_dir is not None:
        d = base_dir / d
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


def _read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file; ValueError for anything else (FIFO,
    device, directory, socket) or a bigger file. O_NONBLOCK: opening a FIFO cannot block."""
    if "\0" in str(path):
        raise ValueError("NUL character in the path")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _read_token_file(path: Path) -> str:
    """At most 4 KiB of a regular file (O_NONBLOCK: a FIFO cannot block the load)."""
    data = _read_regular_file(path, 4096)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None


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


def check_subscriber_socket(text: str) -> tuple[str, object]:
    """Validate a subscriber socket; return ``(scheme, destination)``, equal for sockets that
    denote the same subscriber (the transport's *match*).

    ``kafka:`` sockets go through :func:`~event_kafka.kafka_socket.parse_socket` (with its
    librdkafka property checks); other schemes through the built-in Event Interface
    transport (``udp:``, ``tcp:``...), which resolves the host. Nothing is opened.

    Raises:
        SocketError: with a message that hides secret values.
    """
    scheme, rest = split_socket(text, BUILTIN_TRANSPORTS)
    if scheme == "kafka":
        return "kafka", parse_socket(text)
    transport = BUILTIN_TRANSPORTS[scheme](TransportContext())
    try:
        dest = transport.parse(rest)
        dest.close()
    finally:
        transport.close()
    return scheme, dest


# --------------------------------------------------------------------------------------------
# Messages


_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    msg = str(err.get("msg", "invalid value"))
    for prefix in _PYDANTIC_PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = (
                part
                if re.fullmatch(r"[A-Za-z0-9_-]+", part)
                else json.dumps(_shown(part), ensure_ascii=False)
            )
            out += f".{text}" if out else text
    return out or "(top level)"


def _format(
    path: str,
    lines: KeyLines,
    problems: Iterable[tuple[Loc, str]],
    origin: Mapping[Loc, str] | None = None,
) -> str:
    out = []
    for loc, msg in problems:
        line = lines.line_of(loc)
        where = f"{path}:{line}" if line is not None else path
        source = next((v for k, v in (origin or {}).items() if tuple(loc[: len(k)]) == k), None)
        if source is not None:  # the value came from the environment / command line
            where = f"{path} (value from {source})"
        msg = msg.replace("\r", "\\r").replace("\n", "\\n")  # values echoed raw: one line
        out.append(f"{where}: {_dotted(loc)}: {msg}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Key -> line: tomllib gives no positions, so scan the text for them.

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_KEYVAL = re.compile(rf"^\s*({_DOTTED})\s*=\s*(.*)$")
_PART = re.compile(rf"\s*({_KEY})\s*(?:\.|$)")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for m in _PART.finditer(dotted):
        token = m.group(1)
        if token[0] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return tuple(parts)


class KeyLines:
    """Where each key, table and array element of a TOML text is (1-based line numbers).

    A best-effort scanner, not a TOML parser: it runs only on text tomllib accepted, and only
    to point at a line; anything it cannot place falls back to the enclosing table.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[Loc, int] = {}
        self._scan(text.splitlines())

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc`` or of its closest enclosing key that was found."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def _scan(self, lines: list[str]) -> None:
        table: Loc = ()
        array_index: dict[tuple[str, ...], int] = {}
        i = 0
        while i < len(lines):
            line = lines[i]
            lineno = i + 1
            i += 1
            if m := _ARRAY_TABLE.match(line):
                names = _split_key(m.group(1))
                array_index[names] = array_index.get(names, -1) + 1
                table = (*self._resolve(names, array_index), array_index[names])
                self.lines.setdefault(table, lineno)
                continue
            if m := _TABLE.match(line):
                table = self._resolve(_split_key(m.group(1)), array_index)
                self.lines.setdefault(table, lineno)
                continue
            m = _KEYVAL.match(line)
            if not m:
                continue
            loc = table + _split_key(m.group(1))
            self.lines.setdefault(loc, lineno)
            value = m.group(2)
            if value.startswith(('"""', "'''")):
                i = self._skip_multiline(lines, i, value)
            elif value.startswith("["):
                i = self._scan_array(lines, i - 1, m.start(2), loc)

    @staticmethod
    def _resolve(names: tuple[str, ...], array_index: dict[tuple[str, ...], int]) -> Loc:
        # [a.b] right after [[a]] means "b in the last element of a".
        out: list[str | int] = []
        for n in range(1, len(names) + 1):
            out.append(names[n - 1])
            if n < len(names) and names[:n] in array_index:
                out.append(array_index[names[:n]])
        return tuple(out)

    @staticmethod
    def _skip_multiline(lines: list[str], i: int, value: str) -> int:
        delim = value[:3]
        if value.count(delim) >= 2:
            return i
        while i < len(lines):
            i += 1
            if delim in lines[i - 1]:
                break
        return i

    def _scan_array(self, lines: list[str], row: int, col: int, loc: Loc) -> int:
        """Record the line of each top-level element of the array starting at lines[row][col];
        return the index of the line after it."""
        depth = 0
        index = 0
        expecting = True
        quote: str | None = None
        while row < len(lines):
            text = lines[row]
            while col < len(text):
                ch = text[col]
                if quote is not None:
                    if ch == "\\" and quote == '"':
                        col += 1
                    elif ch == quote:
                        quote = None
                elif ch == "#":
                    break
                elif ch in "\"'":
                    if depth == 1 and expecting:
                        self.lines.setdefault((*loc, index), row + 1)
                        expecting = False
                    quote = ch
                elif ch in "[{":
                    if depth == 1 and expecting:
                        self.lines.setdefault((*loc, index), row + 1)
                        expecting = False
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        return row + 1
                elif ch == "," and depth == 1:
                    index += 1
                    expecting = True
                elif not ch.isspace() and depth == 1 and expecting:
                    self.lines.setdefault((*loc, index), row + 1)
                    expecting = False
                col += 1
            row += 1
            col = 0
        return row
