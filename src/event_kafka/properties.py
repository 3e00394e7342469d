"""librdkafka configuration properties: catalogue, validation and secret masking.

The catalogue is read from the librdkafka that confluent-kafka actually loads (through ctypes
and ``rd_kafka_conf_properties_show``), so it always matches the library in use: no property
table is copied into this package. Values are validated by librdkafka itself
(``rd_kafka_conf_set`` / ``rd_kafka_topic_conf_set`` on a scratch configuration).

If the library cannot be reached through ctypes (another platform, a non-wheel build), a slower
fallback validates by letting ``confluent_kafka.Producer`` parse a configuration that is
guaranteed to fail on a second, known-bad sentinel property, so no client is ever created. The
fallback cannot tell consumer-only properties or aliases apart; everything else works.

Example::

    >>> check_property("topic", "acks", "all") is None
    True
    >>> check_property("global", "acks", "all")
    'acks is a topic-level property: write t.acks'
    >>> mask_properties({"sasl.username": "u", "sasl.password": "p4ss"})
    {'sasl.username': 'u', 'sasl.password': '*****'}
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import functools
import glob
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ConfigError

__all__ = [
    "MASK",
    "TRUSTED",
    "Catalogue",
    "PropertyInfo",
    "PropertyMap",
    "PropertyPolicy",
    "Scope",
    "SupportsSecrets",
    "catalogue",
    "check_property",
    "classification",
    "is_sensitive",
    "mask_properties",
    "parse_catalogue",
    "property_info",
    "property_risk",
    "redact",
    "secret_values",
    "untrusted_policy",
    "validation_backend",
]

log = logging.getLogger(__name__)

Scope = Literal["global", "topic"]
MASK = "*****"
_PREFIX: dict[Scope, str] = {"global": "g.", "topic": "t."}

# --------------------------------------------------------------------------------------------
# Secrets

# Substrings that mark a secret anywhere in a name: catches every librdkafka password/secret
# property and also misspelt or future ones (better to over-mask than to leak).
_SENSITIVE_WORDS = ("password", "secret", "passphrase", "private.key")
# Private key material and free-form blobs that may carry credentials. Public certificates
# (ssl.certificate.pem, ssl.ca.pem) are not secret and stay visible.
_SENSITIVE_NAMES = (
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.extensions",
)


def is_sensitive(name: str) -> bool:
    """Whether the value of property ``name`` is a secret that must never be shown.

    ``name`` may carry a ``g.``/``t.`` prefix. Example: ``is_sensitive("g.sasl.password")``.
    """
    lowered = name.lower()
    if any(word in lowered for word in _SENSITIVE_WORDS):
        return True
    return any(lowered == n or lowered.endswith("." + n) for n in _SENSITIVE_NAMES)


def mask_properties(props: Mapping[str, str]) -> dict[str, str]:
    """Copy of ``props`` with every sensitive value replaced by ``*****``."""
    return {name: MASK if is_sensitive(name) else value for name, value in props.items()}


def secret_values(props: Mapping[str, str]) -> tuple[str, ...]:
    """The non-empty values of the sensitive properties in ``props``."""
    return tuple(v for n, v in props.items() if v and is_sensitive(n))


@runtime_checkable
class SupportsSecrets(Protocol):
    """Anything that can list the secret values it holds (e.g. a ``KafkaSocket``)."""

    def secret_values(self) -> tuple[str, ...]: ...


def redact(text: str, secrets: SupportsSecrets | Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` by ``*****``.

    Use it on strings that may echo configuration values, such as librdkafka error strings
    and log lines::

        redact(str(kafka_error), socket)       # a KafkaSocket
        redact(line, ["p4ssw0rd"])
    """
    values = secrets.secret_values() if isinstance(secrets, SupportsSecrets) else tuple(secrets)
    # Longest first, so a secret that contains another one is replaced whole.
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class PropertyMap(Mapping[str, str]):
    """Immutable, hashable ``name -> value`` mapping whose ``repr`` masks secrets.

    Equality ignores insertion order. Example: ``PropertyMap({"linger.ms": "5"})``.
    """

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._data = dict(sorted(dict(items).items()))

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"PropertyMap({mask_properties(self._data)!r})"

    def secret_values(self) -> tuple[str, ...]:
        """The non-empty sensitive values held."""
        return secret_values(self._data)


# --------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True, slots=True)
class PropertyInfo:
    """One row of librdkafka's configuration table."""

    name: str
    scope: Scope
    role: str  # "C" consumer only, "P" producer only, "*" both
    range: str
    default: str
    type: str  # "integer", "string", "see dedicated API", ...
    alias_of: str | None
    description: str

    @property
    def code_only(self) -> bool:
        """Callbacks, opaque pointers and similar: settable only through a dedicated C API."""
        return self.type == "see dedicated API"


@dataclass(frozen=True, slots=True)
class Catalogue:
    """librdkafka's property tables, by scope."""

    library: str
    version: str
    global_props: Mapping[str, PropertyInfo]
    topic_props: Mapping[str, PropertyInfo]

    def table(self, scope: Scope) -> Mapping[str, PropertyInfo]:
        return self.global_props if scope == "global" else self.topic_props


# A table row: the Default column may itself contain "||" (sasl.kerberos.kinit.cmd), so the
# row is anchored on the Importance column instead of being split on "|".
_ROW = re.compile(
    r"^(?P<name>[^\s|]+)\s*\|\s*(?P<role>[CP*])\s*\|\s*(?P<range>.*?)\s*\|\s*(?P<default>.*?)"
    r"\s*\|\s*(?:low|medium|high)\s*\|\s*(?P<desc>.*)$"
)
_TYPE = re.compile(r"\*Type: (?P<type>[^*]+)\*\s*$")
_ALIAS = re.compile(r"(?:\*\*DEPRECATED\*\* )?Alias for `(?P<target>[^`]+)`")


def parse_catalogue(markdown: str) -> tuple[dict[str, PropertyInfo], dict[str, PropertyInfo]]:
    """Parse ``rd_kafka_conf_properties_show`` output into (global, topic) tables."""
    tables: dict[Scope, dict[str, PropertyInfo]] = {"global": {}, "topic": {}}
    scope: Scope | None = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            scope = "global" if "Global" in line else "topic" if "Topic" in line else None
            continue
        row = _ROW.match(line)
        if scope is None or row is None:
            continue
        desc = row["desc"]
        type_match = _TYPE.search(desc)
        alias = _ALIAS.match(desc)
        tables[scope][row["name"]] = PropertyInfo(
            name=row["name"],
            scope=scope,
            role=row["role"],
            range=row["range"],
            default=row["default"],
            type=type_match["type"].strip() if type_match else "",
            alias_of=alias["target"] if alias else None,
            description=desc,
        )
    if not tables["global"] or not tables["topic"]:
        raise ValueError("librdkafka property tables not found")
    return tables["global"], tables["topic"]


# --------------------------------------------------------------------------------------------
# Backends: how properties are looked up and validated


class _Backend(Protocol):
    description: str

    def info(self, scope: Scope, name: str) -> PropertyInfo | None: ...

    def names(self) -> Iterable[tuple[Scope, str]]: ...

    def set(self, scope: Scope, name: str, value: str) -> str | None: ...


_CONF_FUNCS = ("new", "set", "destroy")


class _CtypesBackend:
    """Direct calls into the librdkafka shared object bundled with confluent-kafka."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        # conf_set(conf, name, value, errstr, errstr_size)
        set_args = [ctypes.c_void_p, *[ctypes.c_char_p] * 3, ctypes.c_size_t]
        # Per scope: (conf_new, conf_set, conf_destroy).
        self._api: dict[Scope, tuple[Any, Any, Any]] = {}
        kinds: tuple[tuple[Scope, str], ...] = (("global", "conf"), ("topic", "topic_conf"))
        for scope, kind in kinds:
            new, setter, destroy = (getattr(lib, f"rd_kafka_{kind}_{f}") for f in _CONF_FUNCS)
            new.restype, new.argtypes = ctypes.c_void_p, []
            setter.restype, setter.argtypes = ctypes.c_int, set_args
            destroy.restype, destroy.argtypes = None, [ctypes.c_void_p]
            self._api[scope] = (new, setter, destroy)
        lib.rd_kafka_conf_properties_show.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_version_str.restype = ctypes.c_char_p
        lib.rd_kafka_version.restype = ctypes.c_int
        self._lib = lib
        version = lib.rd_kafka_version_str().decode()
        global_props, topic_props = parse_catalogue(self._show())
        self.catalogue = Catalogue(path, version, global_props, topic_props)
        self.description = f"ctypes: librdkafka {version} at {path}"

    def _show(self) -> str:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "fdopen"):
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.fdopen.restype, libc.fdopen.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        # A temporary file, not a pipe: the ~70 KB table would fill a pipe and block the writer.
        with tempfile.TemporaryFile() as tmp:
            fd = os.dup(tmp.fileno())
            stream = libc.fdopen(fd, b"w")
            if not stream:
                os.close(fd)
                raise OSError("fdopen failed")
            self._lib.rd_kafka_conf_properties_show(stream)
            libc.fclose(stream)
            tmp.seek(0)
            return tmp.read().decode("utf-8", "replace")

    def info(self, scope: Scope, name: str) -> PropertyInfo | None:
        return self.catalogue.table(scope).get(name)

    def names(self) -> Iterable[tuple[Scope, str]]:
        for scope in ("global", "topic"):
            for name in self.catalogue.table(scope):
                yield scope, name

    def set(self, scope: Scope, name: str, value: str) -> str | None:
        new, setter, destroy = self._api[scope]
        errstr = ctypes.create_string_buffer(512)  # fresh: librdkafka keeps it on success
        conf = new()
        if not conf:
            raise MemoryError("rd_kafka_conf_new failed")
        try:
            rc = setter(conf, name.encode(), value.encode(), errstr, len(errstr))
        finally:
            destroy(conf)
        if rc == 0:  # RD_KAFKA_CONF_OK; -1 invalid value, -2 unknown name
            return None
        return errstr.value.decode("utf-8", "replace").strip() or f"error {rc}"


class _ProbeBackend:
    """Fallback: let confluent-kafka parse ``{name: value, <bad sentinel>}``.

    The sentinel always fails, so no client is created; when the error is the sentinel's own,
    the property before it was accepted. ``topic.<name>`` is only accepted for topic-level
    names, which tells the scope.
    """

    _SENTINELS = (("enable.idempotence", "maybe"), ("socket.keepalive.enable", "maybe"))

    def __init__(self, reason: str) -> None:
        self.description = f"confluent_kafka.Producer probe (ctypes unavailable: {reason})"
        self._sentinel_errors = {n: self._run({n: v}) for n, v in self._SENTINELS}

    @staticmethod
    def _run(conf: dict[str, str]) -> str:
        import confluent_kafka

        try:
            confluent_kafka.Producer(conf)
        except confluent_kafka.KafkaException as exc:
            return str(exc.args[0].str()) if exc.args else str(exc)
        except Exception as exc:  # TypeError etc. for confluent-kafka's own callback keys
            return str(exc)
        return ""  # cannot happen: the sentinel is invalid

    def _probe(self, key: str, value: str) -> str | None:
        sentinel, bad = next((n, v) for n, v in self._SENTINELS if n != key)
        error = self._run({key: value, sentinel: bad})
        return None if error == self._sentinel_errors[sentinel] else error

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one instance per process
    def info(self, scope: Scope, name: str) -> PropertyInfo | None:
        unknown = "No such configuration property"
        topic_error = self._probe("topic." + name, "") or ""
        is_topic = not topic_error.startswith(unknown)
        error = topic_error if scope == "topic" else self._probe(name, "") or ""
        dedicated = "dedicated" in error or "callable" in error
        # The global dict also takes topic names; without the tables, a name known at topic
        # level counts as topic-only (so g.acks gets its hint), unless it is a callback.
        if error.startswith(unknown) or (scope == "global" and is_topic and not dedicated):
            return None
        kind = "see dedicated API" if dedicated else ""
        return PropertyInfo(name, scope, "*", "", "", kind, None, "")

    def names(self) -> Iterable[tuple[Scope, str]]:
        return ()

    def set(self, scope: Scope, name: str, value: str) -> str | None:
        return self._probe(name if scope == "global" else "topic." + name, value)


def _library_candidates() -> list[str]:
    import confluent_kafka

    pkg = os.path.dirname(confluent_kafka.__file__)
    found = sorted(glob.glob(pkg + ".libs/librdkafka*.so*"))  # Linux wheels (auditwheel)
    found += sorted(glob.glob(os.path.join(pkg, ".dylibs", "librdkafka*.dylib")))  # macOS
    system = ctypes.util.find_library("rdkafka")  # confluent-kafka built against the system lib
    if system:
        found.append(system)
    return found


@functools.cache
def _backend() -> _Backend:
    import confluent_kafka

    wanted = confluent_kafka.libversion()[1]
    problems: list[str] = []
    for path in _library_candidates():
        try:
            backend = _CtypesBackend(path)
        except (OSError, AttributeError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        # Only the library confluent-kafka really uses describes what it will accept.
        if backend._lib.rd_kafka_version() == wanted:
            return backend
        problems.append(f"{path}: version {backend.catalogue.version} is not the one in use")
    reason = "; ".join(problems) or "librdkafka shared object not found"
    log.warning("librdkafka catalogue unavailable, using slower fallback: %s", reason)
    return _ProbeBackend(reason)


def validation_backend() -> str:
    """Human-readable description of how properties are validated (for diagnostics)."""
    return _backend().description


def catalogue() -> Catalogue:
    """librdkafka's property catalogue (cached).

    Raises:
        ConfigError: the catalogue cannot be read (the fallback validator is in use).
    """
    backend = _backend()
    if isinstance(backend, _CtypesBackend):
        return backend.catalogue
    raise ConfigError(f"librdkafka property catalogue unavailable; {backend.description}")


def property_info(scope: Scope, name: str) -> PropertyInfo | None:
    """The catalogue row of ``name`` (without ``g.``/``t.`` prefix) in ``scope``, if any."""
    return _backend().info(scope, name)


# --------------------------------------------------------------------------------------------
# Validation

_BROKER_NAMES = frozenset({"bootstrap.servers", "metadata.broker.list"})
# Set by event-kafka's producer core; a user value would break delivery reporting or logging.
# fmt: off
_OWNED = frozenset({
    "dr_cb", "dr_msg_cb", "delivery.report.only.error", "on_delivery", "error_cb", "stats_cb",
    "throttle_cb", "log_cb", "logger", "oauth_cb", "default.topic.config", "enabled_events",
})
# fmt: on
_UNSUPPORTED = {
    "transactional.id": "event-kafka does not use transactions (they need begin/commit calls "
    "from code)",
}


def _unknown(scope: Scope, name: str, backend: _Backend) -> str:
    other: Scope = "topic" if scope == "global" else "global"
    if backend.info(other, name) is not None:
        what = "a topic-level" if other == "topic" else "a global"
        return f"{name} is {what} property: write {_PREFIX[other]}{name}"
    # librdkafka accepts "topic.<name>" as a global spelling of a topic property; we want t.
    if name.startswith("topic.") and backend.info("topic", name[6:]) is not None:
        return f"{name[6:]} is a topic-level property: write t.{name[6:]}"
    hint = ""
    candidates = [f"{_PREFIX[s]}{n}" for s, n in backend.names()]
    close = difflib.get_close_matches(_PREFIX[scope] + name, candidates, n=1, cutoff=0.8)
    if close:
        hint = f"; did you mean {close[0]}?"
    return f"unknown librdkafka property {name!r}{hint}"


# --------------------------------------------------------------------------------------------
# Trust: what a socket from an untrusted source may set
#
# Trusted sockets (the operator's config file, the library caller's own code) may set any
# property librdkafka accepts. Sockets from untrusted sources (the MI's event_subscribe) get
# an allow-list: properties that cannot load code, run commands, read or write local files or
# fetch URLs. Every property of the catalogue is classified below, by its g./t. name;
# tests/test_properties.py walks the live catalogue and fails on an unclassified one, and an
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


def check_property(
    scope: Scope, name: str, value: str, *, policy: PropertyPolicy = TRUSTED
) -> str | None:
    """Check one librdkafka property for a producer; return ``None`` or the reason it is bad.

    ``name`` has no ``g.``/``t.`` prefix; ``scope`` says which one was written. The reason is
    safe to show: secret values are masked. ``policy`` says which properties the socket's
    source may set (:data:`TRUSTED`: any; see :func:`untrusted_policy`).

    Example::

        >>> check_property("global", "linger.ms", "-5")  # doctest: +ELLIPSIS
        'invalid value: ...value -5 is outside allowed range 0..900000'
    """
    prefix = _PREFIX[scope]
    if not name:
        return "empty property name"
    if name in _BROKER_NAMES:
        return f"write the brokers in the socket (brokers/topic), not as {prefix}{name}"
    if name in _OWNED:
        return f"{name} is set by event-kafka itself"
    if name in _UNSUPPORTED:
        return f"{name} is not supported: {_UNSUPPORTED[name]}"
    try:
        name.encode()
        value.encode()
    except UnicodeEncodeError:
        return f"{prefix}{name}: name or value is not valid Unicode"
    backend = _backend()
    info = backend.info(scope, name)
    if info is None:
        return _unknown(scope, name, backend)
    if info.code_only:
        return f"{name} can only be set from code (librdkafka: see dedicated API)"
    if info.role == "C":
        return f"{name} is a consumer property, has no effect on a producer"
    refused = policy.refusal(scope, name, value)
    if refused is not None:
        return refused
    if name == "plugin.library.paths":
        return None  # rd_kafka_conf_set would dlopen the plugins right now, in this process
    error = backend.set(scope, name, value)
    if error is None:
        return None
    if is_sensitive(name):
        error = redact(error, [value])
    return f"invalid value: {error}"
