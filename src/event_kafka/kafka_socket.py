"""Kafka socket and ``broker_id`` grammar.

An event socket is ``kafka:brokers/topic[?properties]``; a ``broker_id`` modparam is
``[ID]brokers/topic[?properties]``. ``properties`` is ``name=value`` pairs joined by ``&``:
``g.<name>`` for librdkafka global properties, ``t.<name>`` for topic properties, and
``key=callid``. The grammar is OpenSIPS's (see docs/opensips-event-kafka.md §1-§2), made
stricter as decided in §9: empty brokers, topic or property names, ``key=`` other than
``callid`` (or the extension below), duplicate properties and any property librdkafka would
reject are errors at parse time. Nothing is trimmed or decoded.

One event-kafka extension: ``key=param:<name>`` takes the record key from the event parameter
``<name>`` (events that reach the service over MI or ingest carry no SIP message, so
``key=callid`` cannot key them). ``strict=True`` asks for OpenSIPS's grammar and refuses it.

Example::

    >>> s = parse_socket("kafka:127.0.0.1:9092/sip?t.acks=all&g.linger.ms=100&key=callid")
    >>> s.address, s.key_callid, dict(s.topic_props)
    ('127.0.0.1:9092/sip', True, {'acks': 'all'})
    >>> parse_broker_id("[k1]127.0.0.1:9092/topic1?g.linger.ms=100")[0]
    'k1'
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .errors import SocketError
from .properties import (
    TRUSTED,
    PropertyMap,
    PropertyPolicy,
    Scope,
    check_property,
    mask_properties,
    property_info,
)
from .socket_mask import _SCOPES, _mask_glued, _masked, _printable, mask_secrets

__all__ = [
    "KafkaSocket",
    "check_command",
    "current_policy",
    "mask_secrets",
    "parse_broker_id",
    "parse_socket",
    "using_policy",
]

PREFIX = "kafka:"
_WHITESPACE = " \t\r\n"  # what OpenSIPS skips around a broker_id's [ID]
# Kafka's own topic name rule (kafka.common.internals.Topic): a socket naming any other topic
# can never deliver, so it is refused when parsed rather than failing on every event.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_TOPIC_MAX = 249
KEY_PARAM = "key=param:"
# Event parameter names for key=param: (OpenSIPS's are identifiers such as callid, ip, aor).
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_HINT = "write key=callid or key=param:<event parameter name>"


@dataclass(frozen=True, slots=True)
class KafkaSocket:
    """A parsed Kafka socket: immutable, hashable, compared by value.

    Two sockets are equal when brokers, topic, properties and ``key_callid`` are equal; the
    order in which properties were written does not matter. ``str()`` and ``repr()`` mask
    secret values. Build sockets with :func:`parse_socket` / :func:`parse_broker_id`: the
    constructor itself validates nothing.

    Example::

        >>> s = parse_socket("kafka:h1:9092,h2:9092/events?g.sasl.password=pw&t.acks=1")
        >>> str(s)
        'kafka:h1:9092,h2:9092/events?g.sasl.password=*****&t.acks=1'
        >>> s == parse_socket(s.to_text(unmasked=True))
        True
    """

    brokers: str
    topic: str
    global_props: PropertyMap = field(default_factory=PropertyMap)
    """librdkafka global properties, ``g.`` prefix removed."""
    topic_props: PropertyMap = field(default_factory=PropertyMap)
    """librdkafka topic properties, ``t.`` prefix removed."""
    key_callid: bool = False
    """``key=callid``: use the SIP Call-ID as record key (no effect for a ``broker_id``)."""
    key_param: str | None = None
    """``key=param:<name>`` (event-kafka extension): the record key is the value of the event
    parameter ``<name>``; no such parameter (or ``null``, or ``""``), no key."""

    def __post_init__(self) -> None:
        # Accept plain dicts from direct construction; keep the fields hashable.
        for name in ("global_props", "topic_props"):
            value = getattr(self, name)
            if not isinstance(value, PropertyMap):
                object.__setattr__(self, name, PropertyMap(value))

    @property
    def address(self) -> str:
        """``brokers/topic``, as OpenSIPS prints a subscriber (``subscribers_list``)."""
        return f"{self.brokers}/{self.topic}"

    @property
    def producer_key(self) -> tuple[str, PropertyMap, PropertyMap]:
        """Hashable key of the producer configuration: sockets with equal keys share one
        producer (the topic name and ``key_callid`` do not matter to the producer)."""
        return (self.brokers, self.global_props, self.topic_props)

    def producer_config(self) -> dict[str, str]:
        """The confluent-kafka ``Producer`` configuration for this socket.

        Topic properties are written ``topic.<name>``: librdkafka puts those in the default
        topic configuration, so ``g.compression.codec`` and ``t.compression.codec`` can
        coexist. The caller adds its callbacks (``on_delivery``, ``error_cb``...).
        """
        config = {"bootstrap.servers": self.brokers, **self.global_props}
        config.update({f"topic.{name}": value for name, value in self.topic_props.items()})
        return config

    def secret_values(self) -> tuple[str, ...]:
        """The non-empty secret property values (for :func:`~event_kafka.properties.redact`)."""
        return self.global_props.secret_values() + self.topic_props.secret_values()

    def to_text(self, *, unmasked: bool = False, prefix: str = PREFIX) -> str:
        """Canonical text: properties sorted, ``g.`` then ``t.`` then ``key=...``.

        Secrets are masked unless ``unmasked=True``; parsing the unmasked text gives an equal
        socket. ``prefix=""`` gives the form used after ``[ID]`` in a ``broker_id``.
        """
        pairs: list[str] = []
        for tag, props in (("g.", self.global_props), ("t.", self.topic_props)):
            shown = props if unmasked else mask_properties(props)
            pairs += [f"{tag}{name}={value}" for name, value in shown.items()]
        if self.key_callid:
            pairs.append("key=callid")
        if self.key_param is not None:
            pairs.append(f"{KEY_PARAM}{self.key_param}")
        query = "?" + "&".join(pairs) if pairs else ""
        return f"{prefix}{self.brokers}/{self.topic}{query}"

    def __str__(self) -> str:
        return self.to_text()


# --------------------------------------------------------------------------------------------
# Parsing


class _Input:
    """The text being parsed and how to quote it in an error without leaking secrets."""

    def __init__(self, text: str, kind: str, body: int) -> None:
        self.text, self.kind, self.body = text, kind, body

    def error(self, what: str, position: int | None, detail: str = "") -> SocketError:
        """``invalid <kind> '<masked text>': <what> at position <n>[: <detail>]``."""
        where = "" if position is None else f" at position {position}"
        # Names, key= values and librdkafka's reasons echo the input: keep the error one line.
        what, detail = _printable(what), _printable(detail)
        detail = f": {detail}" if detail else ""
        quoted = _masked(self.text, self.body)
        message = f"invalid {self.kind} {quoted!r}: {what}{where}{detail}"
        return SocketError(_mask_glued(message), position)


def _check_text(src: _Input) -> None:
    text = src.text
    if "\0" in text:
        raise src.error("NUL character", text.index("\0"))
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            # from None: the original exception holds the whole unmasked text.
            raise src.error("invalid Unicode character", exc.start) from None


def _parse_body(src: _Input, start: int, *, policy: PropertyPolicy, strict: bool) -> KafkaSocket:
    """Parse ``brokers/topic[?properties]`` from ``src.text[start:]``."""
    text, end = src.text, len(src.text)
    question = text.find("?", start)
    head_end = end if question < 0 else question
    slash = text.find("/", start, head_end)
    if slash < 0:
        if question >= 0:
            raise src.error("missing topic", question, "'?' comes before any '/'")
        raise src.error("missing topic", end, "expected brokers/topic")
    second = text.find("/", slash + 1, head_end)
    if second >= 0:
        raise src.error("unexpected '/'", second, "brokers and topic cannot contain '/'")
    if slash == start:
        raise src.error("empty brokers before '/'", slash)
    topic = text[slash + 1 : head_end]
    if not topic:
        raise src.error("missing topic after '/'", head_end)
    _check_topic(src, topic, slash + 1)
    global_props: dict[str, str] = {}
    topic_props: dict[str, str] = {}
    key_callid = False
    key_param: str | None = None
    if question >= 0:
        pairs = _split_pairs(src, question + 1)
        seen: dict[str, int] = {}
        canonical: dict[tuple[Scope, str], tuple[str, int]] = {}
        for pos, name, value in pairs:
            if name in seen:
                raise src.error(
                    f"duplicate property {name}", pos, f"first written at position {seen[name]}"
                )
            seen[name] = pos
            if name == "key":
                if value == "callid":
                    key_callid = True
                else:
                    key_param = _key_param(src, value, pos, strict)
                continue
            scope = _SCOPES.get(name[:2])
            if scope is None:
                raise src.error(f"property {name}", pos, _prefix_hint(name))
            bare = name[2:]
            reason = check_property(scope, bare, value, policy=policy)
            if reason is not None:
                raise src.error(f"property {name}", pos, reason)
            info = property_info(scope, bare)
            same = (scope, info.alias_of or bare) if info else (scope, bare)
            if same in canonical:
                other, other_pos = canonical[same]
                reason = f"alias of {other} at position {other_pos}, the same librdkafka property"
                raise src.error(f"property {name}", pos, reason)
            canonical[same] = (name, pos)
            (global_props if scope == "global" else topic_props)[bare] = value
        combined = policy.combined_refusal(global_props)
        if combined is not None:
            prop, reason = combined
            raise src.error(f"property g.{prop}", seen[f"g.{prop}"], reason)
    return KafkaSocket(
        brokers=text[start:slash],
        topic=topic,
        global_props=PropertyMap(global_props),
        topic_props=PropertyMap(topic_props),
        key_callid=key_callid,
        key_param=key_param,
    )


def _key_param(src: _Input, value: str, pos: int, strict: bool) -> str:
    """The parameter name of ``key=param:<name>``, or the error for an unsupported ``key=``."""
    if not value.startswith("param:"):
        raise src.error(f"unsupported key={value}", pos, _KEY_HINT)
    if strict:
        detail = "key=param: is an event-kafka extension; OpenSIPS knows only key=callid"
        raise src.error(f"key={value} with strict OpenSIPS grammar", pos, detail)
    name = value[len("param:") :]
    if not _PARAM_NAME.fullmatch(name):
        detail = "a parameter name is 1-64 ASCII letters, digits, '_', '.' or '-'"
        raise src.error(f"invalid parameter name in key={value}", pos + len(KEY_PARAM), detail)
    return name


def _check_topic(src: _Input, topic: str, at: int) -> None:
    bad = _TOPIC_CHARS.match(topic)
    length = bad.end() if bad else 0
    if length < len(topic):
        char = topic[length]
        detail = "Kafka topic names use only ASCII letters, digits, '.', '_' and '-'"
        raise src.error(f"character {char!r} in topic", at + length, detail)
    if len(topic) > _TOPIC_MAX:
        raise src.error("topic too long", at + _TOPIC_MAX, f"at most {_TOPIC_MAX} characters")
    if topic in (".", ".."):
        raise src.error(f"invalid Kafka topic name {topic!r}", at)


def _split_pairs(src: _Input, start: int) -> list[tuple[int, str, str]]:
    """Split ``name=value&...`` (from ``start`` to the end) into (position, name, value)."""
    text = src.text
    if start == len(text):
        raise src.error("missing properties after '?'", start - 1)
    pairs: list[tuple[int, str, str]] = []
    pos = start
    for chunk in text[start:].split("&"):
        eq = chunk.find("=")
        if eq < 0:
            if pos == len(text):
                raise src.error("missing property name: trailing '&'", pos - 1)
            if not chunk:
                raise src.error("missing property name: '&' without a property before it", pos)
            detail = "each property is name=value; '&' cannot appear in a value"
            raise src.error("missing property name: no '='", pos, detail)
        second = chunk.find("=", eq + 1)
        if second >= 0:
            raise src.error("unexpected '='", pos + second, "a value cannot contain '='")
        if eq == 0:
            raise src.error("empty property name", pos)
        pairs.append((pos, chunk[:eq], chunk[eq + 1 :]))
        pos += len(chunk) + 1
    return pairs


def _prefix_hint(name: str) -> str:
    for tag, scope in _SCOPES.items():
        if property_info(scope, name) is not None:
            return f"unknown property prefix in {name!r}; write {tag}{name}"
    return f"unknown property prefix in {name!r}; write g.<name> or t.<name> (or key=...)"


# The policy of sockets parsed in the current context: how EventInterface.subscribe(...,
# policy=...) reaches the kafka transport without every transport's parse() taking it.
_POLICY: ContextVar[PropertyPolicy | None] = ContextVar("event_kafka_socket_policy", default=None)


def current_policy() -> PropertyPolicy:
    """The policy sockets are parsed with here: set by :func:`using_policy`, else trusted."""
    return _POLICY.get() or TRUSTED


@contextlib.contextmanager
def using_policy(policy: PropertyPolicy | None) -> Iterator[None]:
    """Parse sockets with ``policy`` inside the block (``None``: leave it as it is)."""
    if policy is None:
        yield
        return
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def parse_socket(
    text: str, *, policy: PropertyPolicy | None = None, strict: bool = False
) -> KafkaSocket:
    """Parse an event socket ``kafka:brokers/topic[?properties]``.

    Every property is checked against librdkafka (name, scope, value) now, at subscribe time.
    ``policy`` says which properties the socket's source may set; ``None`` means
    :func:`current_policy`, which trusts the caller (any property librdkafka accepts) unless
    inside :func:`using_policy`. Pass :func:`~event_kafka.properties.untrusted_policy` for a
    socket from outside (a network request): properties that load code, run commands, touch
    local files or fetch URLs are then refused.
    ``strict=True``: OpenSIPS's grammar only, so the ``key=param:`` extension is an error.

    Example::

        >>> s = parse_socket("kafka:127.0.0.1:9092/topic1?t.message.timeout.ms=1000&key=callid")
        >>> s.brokers, s.topic, s.topic_props["message.timeout.ms"], s.key_callid
        ('127.0.0.1:9092', 'topic1', '1000', True)
        >>> parse_socket("kafka:h/t?g.acks=all")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        event_kafka.errors.SocketError: ...: acks is a topic-level property: write t.acks

    Raises:
        SocketError: for any rejected input; ``.position`` is the offending index.
    """
    src = _Input(text, "Kafka socket", 0)
    _check_text(src)
    if not text.startswith(PREFIX):
        if text[: len(PREFIX)].lower() == PREFIX:
            raise src.error(
                "unknown transport", 0, "transport names are case-sensitive: write 'kafka:'"
            )
        raise src.error("not a Kafka socket", 0, "it must start with 'kafka:'")
    if len(text) == len(PREFIX):
        raise src.error("no socket specified after 'kafka:'", len(PREFIX))
    return _parse_body(src, len(PREFIX), policy=policy or current_policy(), strict=strict)


def parse_broker_id(
    text: str, *, policy: PropertyPolicy | None = None, strict: bool = False
) -> tuple[str, KafkaSocket]:
    """Parse a ``broker_id`` modparam value ``[ID]brokers/topic[?properties]``.

    Whitespace (space, tab, CR, LF) before ``[`` and after ``]`` is skipped; the ID is
    everything up to the first ``]``, untrimmed, and must not be empty (an empty ID cannot be
    told apart from a missing one in ``kafka_publish``). There is no ``kafka:`` prefix.
    ``key=callid`` (and ``key=param:<name>``, refused with ``strict=True``) is accepted and
    kept in the socket but has no effect for ``kafka_publish``.
    ``policy`` is as for :func:`parse_socket` (by default trusted, as start-up configuration).
    Duplicate IDs are for the caller to detect.

    Example::

        >>> bid, sock = parse_broker_id("[k1]127.0.0.1:9092/topic1?g.linger.ms=100&t.acks=all")
        >>> bid, sock.address, dict(sock.global_props)
        ('k1', '127.0.0.1:9092/topic1', {'linger.ms': '100'})

    Raises:
        SocketError: for any rejected input; ``.position`` is the offending index.
    """
    opening = len(text) - len(text.lstrip(_WHITESPACE))
    closing = text.find("]", opening)
    question = text.find("?")
    body = closing + 1 if closing >= 0 else opening
    if 0 <= question < body:
        body = question  # a '?' before the ID's end: mask from it (the safe side)
    src = _Input(text, "broker_id", body)
    _check_text(src)
    if opening == len(text) or text[opening] != "[":
        raise src.error("cannot find broker id start", opening, "expected '['")
    if closing < 0:
        raise src.error("cannot find broker id end", len(text), "missing ']'")
    broker_id = text[opening + 1 : closing]
    if not broker_id:
        raise src.error("empty broker id", closing)
    start = closing + 1
    start += len(text[start:]) - len(text[start:].lstrip(_WHITESPACE))
    if start == len(text):
        raise src.error("missing brokers/topic after the broker id", start)
    if text.startswith(PREFIX, start):
        raise src.error(
            "'kafka:'", start, "broker_id takes no kafka: prefix; write [ID]brokers/topic"
        )
    return broker_id, _parse_body(src, start, policy=policy or current_policy(), strict=strict)


def check_command(text: str, *, strict: bool = False) -> tuple[int, str]:
    """``event-kafka check TEXT``: parse a socket or (if it starts with ``[``) a broker_id.

    Returns ``(0, JSON)`` describing the result with secrets masked, or ``(2, message)``.
    ``strict=True`` refuses event-kafka's grammar extension (``key=param:``).

    Example::

        >>> code, out = check_command("kafka:h:9092/t?g.sasl.password=pw")
        >>> code, json.loads(out)["global_props"]
        (0, {'sasl.password': '*****'})
    """
    broker_id: str | None = None
    try:
        if text.lstrip(_WHITESPACE).startswith("["):
            broker_id, socket = parse_broker_id(text, strict=strict)
            canonical = f"[{broker_id}]" + socket.to_text(prefix="")
        else:
            socket = parse_socket(text, strict=strict)
            canonical = socket.to_text()
    except SocketError as exc:
        return 2, str(exc)
    result: dict[str, Any] = {
        "kind": "broker_id" if broker_id is not None else "socket",
        "id": broker_id,
        "brokers": socket.brokers,
        "topic": socket.topic,
        "global_props": mask_properties(socket.global_props),
        "topic_props": mask_properties(socket.topic_props),
        "key_callid": socket.key_callid,
        "key_param": socket.key_param,
        "address": socket.address,
        "canonical": canonical,
    }
    return 0, json.dumps(result, indent=2, ensure_ascii=False)
