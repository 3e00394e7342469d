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
    "Catalogue",
    "PropertyInfo",
    "PropertyMap",
    "Scope",
    "SupportsSecrets",
    "catalogue",
    "check_property",
    "is_sensitive",
    "mask_properties",
    "parse_catalogue",
    "property_info",
    "redact",
    "secret_values",
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
# Load or run external code. Event sockets can arrive at run time over MI, so these are only
# allowed in broker_id (start-up configuration, as trusted as the script itself).
_RUNS_CODE = frozenset({"plugin.library.paths", "ssl.engine.location", "sasl.kerberos.kinit.cmd"})
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


def check_property(scope: Scope, name: str, value: str, *, trusted: bool = False) -> str | None:
    """Check one librdkafka property for a producer; return ``None`` or the reason it is bad.

    ``name`` has no ``g.``/``t.`` prefix; ``scope`` says which one was written. The reason is
    safe to show: secret values are masked. ``trusted=True`` (start-up configuration such as
    ``broker_id``) also allows properties that load or run external code.

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
    if name in _RUNS_CODE and not trusted:
        return f"{name} loads or runs external code: set it in a broker_id, not in an event socket"
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
    if name == "plugin.library.paths":
        return None  # rd_kafka_conf_set would dlopen the plugins right now, in this process
    error = backend.set(scope, name, value)
    if error is None:
        return None
    if is_sensitive(name):
        error = redact(error, [value])
    return f"invalid value: {error}"
