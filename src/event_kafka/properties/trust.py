"""Trust: which librdkafka properties a socket from an untrusted source (the MI's
``event_subscribe``) may set, the classification of every property, and the policies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from .librdkafka import _PREFIX, Scope, property_info

# Trusted sockets (the operator's config file, the library caller's own code) may set any
# property librdkafka accepts. Sockets from untrusted sources (the MI's event_subscribe) get
# an allow-list: properties that cannot load code, run commands, read or write local files or
# fetch URLs. Every property of the catalogue is classified below, by its g./t. name;
# tests/test_property_trust.py walks the live catalogue and fails on an unclassified one, and an
# unclassified property (a newer librdkafka) is refused from untrusted sources meanwhile.

LOADS_CODE = "loads code"
RUNS_COMMAND = "runs a command"
READS_FILE = "reads a local file"
WRITES_FILE = "writes local files"
FETCHES_URL = "fetches a URL"
FROM_CODE = "set from code only"


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SAFE_FOR_UNTRUSTED = _names("""
    g.builtin.features g.client.id g.metadata.broker.list g.bootstrap.servers
    g.message.max.bytes g.message.copy.max.bytes g.receive.message.max.bytes
    g.max.in.flight.requests.per.connection g.max.in.flight g.metadata.recovery.strategy
    g.metadata.recovery.rebootstrap.trigger.ms g.topic.metadata.refresh.interval.ms
    g.metadata.max.age.ms g.topic.metadata.refresh.fast.interval.ms
    g.topic.metadata.refresh.fast.cnt g.topic.metadata.refresh.sparse
    g.topic.metadata.propagation.max.ms g.socket.timeout.ms g.socket.blocking.max.ms
    g.socket.send.buffer.bytes g.socket.receive.buffer.bytes g.socket.keepalive.enable
    g.socket.nagle.disable g.socket.max.fails g.broker.address.ttl g.broker.address.family
    g.socket.connection.setup.timeout.ms g.connections.max.idle.ms g.reconnect.backoff.jitter.ms
    g.reconnect.backoff.ms g.reconnect.backoff.max.ms g.statistics.interval.ms g.log_level
    g.log.thread.name g.enable.random.seed g.log.connection.close g.api.version.request
    g.api.version.request.timeout.ms g.api.version.fallback.ms g.broker.version.fallback
    g.allow.auto.create.topics g.security.protocol g.ssl.cipher.suites g.ssl.curves.list
    g.ssl.sigalgs.list g.ssl.key.password g.ssl.key.pem g.ssl.certificate.pem g.https.ca.pem
    g.ssl.ca.pem g.ssl.ca.certificate.stores g.ssl.keystore.password
    g.enable.ssl.certificate.verification g.ssl.endpoint.identification.algorithm
    g.sasl.mechanisms g.sasl.mechanism g.sasl.username
    g.sasl.password g.sasl.oauthbearer.config g.enable.sasl.oauthbearer.unsecure.jwt
    g.sasl.oauthbearer.method g.sasl.oauthbearer.client.id
    g.sasl.oauthbearer.client.credentials.client.id
    g.sasl.oauthbearer.client.credentials.client.secret g.sasl.oauthbearer.client.secret
    g.sasl.oauthbearer.scope g.sasl.oauthbearer.extensions g.sasl.oauthbearer.sub.claim.name
    g.sasl.oauthbearer.grant.type g.sasl.oauthbearer.assertion.algorithm
    g.sasl.oauthbearer.assertion.private.key.passphrase
    g.sasl.oauthbearer.assertion.private.key.pem g.sasl.oauthbearer.assertion.claim.aud
    g.sasl.oauthbearer.assertion.claim.exp.seconds g.sasl.oauthbearer.assertion.claim.iss
    g.sasl.oauthbearer.assertion.claim.jti.include g.sasl.oauthbearer.assertion.claim.nbf.seconds
    g.sasl.oauthbearer.assertion.claim.sub g.sasl.oauthbearer.metadata.authentication.type
    g.group.id g.group.instance.id g.partition.assignment.strategy g.session.timeout.ms
    g.heartbeat.interval.ms g.group.protocol.type g.group.protocol g.group.remote.assignor
    g.coordinator.query.interval.ms g.max.poll.interval.ms g.enable.auto.commit
    g.auto.commit.interval.ms g.enable.auto.offset.store g.queued.min.messages
    g.queued.max.messages.kbytes g.fetch.wait.max.ms g.fetch.queue.backoff.ms
    g.fetch.message.max.bytes g.max.partition.fetch.bytes g.fetch.max.bytes g.fetch.min.bytes
    g.fetch.error.backoff.ms g.isolation.level g.enable.partition.eof g.check.crcs g.client.rack
    g.max.poll.records g.share.acknowledgement.mode g.transactional.id g.transaction.timeout.ms
    g.enable.idempotence g.enable.gapless.guarantee g.queue.buffering.max.messages
    g.queue.buffering.max.kbytes g.queue.buffering.max.ms g.linger.ms g.message.send.max.retries
    g.retries g.retry.backoff.ms g.retry.backoff.max.ms g.queue.buffering.backpressure.threshold
    g.compression.codec g.compression.type g.batch.num.messages g.batch.size
    g.delivery.report.only.error g.sticky.partitioning.linger.ms g.client.dns.lookup
    g.enable.metrics.push
    t.request.required.acks t.acks t.request.timeout.ms t.message.timeout.ms
    t.delivery.timeout.ms t.queuing.strategy t.produce.offset.report t.partitioner
    t.compression.codec t.compression.type t.compression.level t.auto.commit.enable
    t.enable.auto.commit t.auto.commit.interval.ms t.auto.offset.reset
    t.offset.store.sync.interval.ms t.consume.callback.max.messages
""")

# Why each other property is for trusted sources only.
_TRUSTED_ONLY: dict[str, str] = {
    "g.plugin.library.paths": LOADS_CODE,
    "g.ssl.providers": LOADS_CODE + " (OpenSSL providers are shared libraries)",
    "g.ssl.engine.location": LOADS_CODE,
    "g.ssl.engine.id": LOADS_CODE + " (OpenSSL loads the engine it names)",
    "g.sasl.kerberos.kinit.cmd": RUNS_COMMAND,
    # Interpolated into sasl.kerberos.kinit.cmd, which runs through a shell.
    "g.sasl.kerberos.service.name": RUNS_COMMAND + " (part of sasl.kerberos.kinit.cmd)",
    "g.sasl.kerberos.principal": RUNS_COMMAND + " (part of sasl.kerberos.kinit.cmd)",
    "g.sasl.kerberos.keytab": RUNS_COMMAND + " (part of sasl.kerberos.kinit.cmd)",
    "g.sasl.kerberos.min.time.before.relogin": RUNS_COMMAND + " (how often kinit runs)",
    "g.ssl.key.location": READS_FILE,
    "g.ssl.certificate.location": READS_FILE,
    "g.ssl.ca.location": READS_FILE,
    "g.https.ca.location": READS_FILE,
    "g.ssl.crl.location": READS_FILE,
    "g.ssl.keystore.location": READS_FILE,
    "g.sasl.oauthbearer.assertion.private.key.file": READS_FILE,
    "g.sasl.oauthbearer.assertion.file": READS_FILE,
    "g.sasl.oauthbearer.assertion.jwt.template.file": READS_FILE,
    "g.offset.store.method": WRITES_FILE + " (offset.store.method=file)",
    "t.offset.store.method": WRITES_FILE + " (offset.store.method=file)",
    "t.offset.store.path": WRITES_FILE,
    "g.sasl.oauthbearer.token.endpoint.url": FETCHES_URL,
    "g.debug": "fills the service's log (and may show connection details)",
    "g.topic.blacklist": "runs regular expressions inside librdkafka",
    "g.log.queue": "takes librdkafka's log lines away from event-kafka",
    "g.internal.termination.signal": "sends a signal to the process's threads",
    **dict.fromkeys(
        _names("""g.enabled_events g.error_cb g.throttle_cb g.stats_cb g.log_cb
        g.background_event_cb
        g.socket_cb g.connect_cb g.closesocket_cb g.open_cb g.resolve_cb g.opaque
        g.default_topic_conf g.ssl_key g.ssl_certificate g.ssl_ca g.ssl_engine_callback_data
        g.ssl.certificate.verify_cb g.oauthbearer_token_refresh_cb g.interceptors
        g.consume_cb g.rebalance_cb g.offset_commit_cb g.dr_cb g.dr_msg_cb
        t.partitioner_cb t.msg_order_cmp t.opaque"""),
        FROM_CODE,
    ),
}

# Safe properties whose other values are not: (values allowed from untrusted sources, why
# the others are not). Compared case-insensitively for enums, exactly for sasl.mechanisms.
_SAFE_VALUES: dict[str, tuple[frozenset[str], str]] = {
    "g.sasl.mechanisms": (
        frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"}),
        RUNS_COMMAND + " (GSSAPI runs sasl.kerberos.kinit.cmd)",
    ),
    "g.sasl.oauthbearer.method": (frozenset({"default"}), FETCHES_URL + " (oidc)"),
    "g.sasl.oauthbearer.metadata.authentication.type": (
        frozenset({"none"}),
        FETCHES_URL + " (cloud metadata credentials)",
    ),
}
_SAFE_VALUES["g.sasl.mechanism"] = _SAFE_VALUES["g.sasl.mechanisms"]
_CASE_SENSITIVE_VALUES = frozenset({"g.sasl.mechanisms", "g.sasl.mechanism"})
# Memory limits an untrusted socket may lower but not raise past librdkafka's default: a
# producer pointed at a hostile broker must not be allowed to grow the service without bound.
_AT_MOST_DEFAULT = _names("""
    g.receive.message.max.bytes g.message.max.bytes g.message.copy.max.bytes
    g.queue.buffering.max.messages g.queue.buffering.max.kbytes g.batch.size
    g.batch.num.messages
""")
UNCLASSIFIED = "not classified by this event-kafka (a newer librdkafka)"


def property_risk(scope: Scope, name: str, value: str | None = None) -> str | None:
    """Why property ``name`` (no ``g.``/``t.`` prefix) is for trusted sources only, or
    ``None`` when a socket from an untrusted source may set it (to ``value``, if given).

    Example::

        >>> property_risk("global", "linger.ms") is None
        True
        >>> property_risk("global", "ssl.providers")
        'loads code (OpenSSL providers are shared libraries)'
    """
    key = _PREFIX[scope] + name
    if key in _TRUSTED_ONLY:
        return _TRUSTED_ONLY[key]
    if key not in _SAFE_FOR_UNTRUSTED:
        return UNCLASSIFIED
    if key in _AT_MOST_DEFAULT and value is not None:
        return _above_default(scope, name, value)
    rule = _SAFE_VALUES.get(key)
    if rule is not None and value is not None:
        allowed, why = rule
        shown = value if key in _CASE_SENSITIVE_VALUES else value.lower()
        if shown not in allowed:
            return why
    return None


def _above_default(scope: Scope, name: str, value: str) -> str | None:
    info = property_info(scope, name)
    default = info.default if info is not None else ""
    digits = value.strip(" ")
    # Plain decimal only: librdkafka also reads hex and octal (strtol base 0).
    plain = digits.isascii() and digits.isdigit() and len(digits) < 12
    if plain and default.isdigit() and int(digits) <= int(default):
        return None
    return f"grows memory: a plain number at most librdkafka's default ({default or '?'})"


def classification() -> dict[str, str | None]:
    """Every classified ``g.``/``t.`` name: its risk, or ``None`` if safe (for tests/docs)."""
    out: dict[str, str | None] = dict.fromkeys(_SAFE_FOR_UNTRUSTED)
    out.update(_TRUSTED_ONLY)
    return out


@dataclass(frozen=True, slots=True)
class PropertyPolicy:
    """Which librdkafka properties a socket may set, by where the socket comes from.

    :data:`TRUSTED` (the default everywhere in the library: the caller's own code, the
    operator's config file) allows every property librdkafka accepts. An untrusted policy
    (:func:`untrusted_policy`) allows only properties that cannot load code, run commands,
    touch local files or fetch URLs, plus the names in ``allow``.
    """

    trusted: bool = True
    allow: frozenset[str] = frozenset()
    """Extra property names allowed (canonical names: aliases resolved)."""
    source: str = "an untrusted source"
    """Named in refusals: ``not allowed from <source>``."""
    hint: str = ""
    """How to widen the policy, appended to refusals."""

    def refusal(self, scope: Scope, name: str, value: str) -> str | None:
        """Why this policy refuses ``name=value`` (bare name), or ``None``."""
        if self.trusted:
            return None
        risk = property_risk(scope, name, value)
        if risk is None or _canonical(name) in self.allow:
            return None
        return self._refused(risk)

    def combined_refusal(self, global_props: Mapping[str, str]) -> tuple[str, str] | None:
        """``(property, why)`` when properties that are safe one by one are not together.

        SASL without ``sasl.mechanisms`` means librdkafka's default, GSSAPI, which runs
        ``sasl.kerberos.kinit.cmd``.
        """
        if self.trusted or "sasl.mechanisms" in self.allow:
            return None
        protocol = global_props.get("security.protocol", "").lower()
        if protocol.startswith("sasl") and not {"sasl.mechanisms", "sasl.mechanism"} & set(
            global_props
        ):
            why = f"{RUNS_COMMAND} (SASL without g.sasl.mechanisms is GSSAPI, which runs kinit)"
            return "security.protocol", self._refused(why)
        return None

    def _refused(self, risk: str) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{risk}; not allowed from {self.source}{hint}"


TRUSTED = PropertyPolicy()
"""Every property librdkafka accepts (the library's default)."""


_BOTH: tuple[Scope, ...] = ("global", "topic")


def _canonical(name: str) -> str:
    for scope in _BOTH:
        info = property_info(scope, name)
        if info is not None:
            return info.alias_of or name
    return name


def untrusted_policy(
    allow: Iterable[str] = (), *, source: str = "an untrusted source", hint: str = ""
) -> PropertyPolicy:
    """The allow-list policy for sockets from ``source``, widened by the ``allow`` names.

    Each name in ``allow`` is an exact librdkafka property name without ``g.``/``t.`` (an
    alias allows its target too).

    Raises:
        ConfigError: a name librdkafka does not know.
    """
    names: set[str] = set()
    for name in allow:
        if not any(property_info(s, name) is not None for s in _BOTH):
            bare = name[2:] if name[:2] in ("g.", "t.") else ""
            if bare and any(property_info(s, bare) is not None for s in _BOTH):
                raise ConfigError(f"write {bare!r} without the {name[:2]} prefix")
            raise ConfigError(f"unknown librdkafka property {name!r}")
        names.add(_canonical(name))
    return PropertyPolicy(False, frozenset(names), source, hint)
