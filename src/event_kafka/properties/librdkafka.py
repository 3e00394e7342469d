"""librdkafka's property catalogue, read from the librdkafka that confluent-kafka actually
loads (through ctypes and ``rd_kafka_conf_properties_show``), and its validator
(``rd_kafka_conf_set`` on a scratch configuration); without ctypes, a slower fallback that
lets ``confluent_kafka.Producer`` parse a configuration (see the package docstring)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import ConfigError

log = logging.getLogger("event_kafka.properties")

Scope = Literal["global", "topic"]
_PREFIX: dict[Scope, str] = {"global": "g.", "topic": "t."}


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
