"""The sections of the TOML file, as pydantic models (cross-references are checked by
:mod:`.checks`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
)

from .fields import (
    BrokerIdStr,
    EventName,
    ListenStr,
    NonEmpty,
    Seconds,
    SocketStr,
    _property_names,
    _syslog_address,
)


class _Model(BaseModel):
    # strict: TOML is typed, so "8888" for a port is a mistake to report, not to coerce.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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
