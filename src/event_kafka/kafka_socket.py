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
    _SENSITIVE_WORDS,
    MASK,
    TRUSTED,
    PropertyMap,
    PropertyPolicy,
    Scope,
    check_property,
    is_sensitive,
    mask_properties,
    property_info,
)

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
_SCOPES: dict[str, Scope] = {"g.": "global", "t.": "topic"}
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


def _printable(text: str) -> str:
    """``text`` as is when printable, else with its control characters escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def mask_secrets(text: str) -> str:
    """Any user text (a socket, a broker_id, a value pasted in the wrong place) as it may be
    shown in an error or a log line: secret-looking ``name=value`` values hidden, and after a
    ``?`` every value that is not a known harmless property. Linear time.

    >>> mask_secrets("[k1]h:9092/t?g.sasl.password=hunter2&t.acks=1")
    '[k1]h:9092/t?g.sasl.password=*****&t.acks=1'
    """
    return _mask_glued(_masked(text, 0))


# Where a name ends when it is quoted in a message or written in a socket.
_TOKEN_END = frozenset("=&?'\" ,;()[]\t\r\n")


def _mask_glued(text: str) -> str:
    """Hide what is glued to a secret-looking word where no ``=`` separates them: a missing
    ``=`` (``g.sasl.passwordhunter2``) or a wrong separator (``g.sasl.password:hunter2``)
    turns the secret into part of a "property name" that errors quote.

    A token that is a catalogued property (``sasl.oauthbearer.assertion.private.key.pem``) is
    kept. Linear: each hit scans its token once and later hits inside it are skipped.
    """
    lowered = text.lower()
    hits = sorted((i, i + len(word)) for word in _SENSITIVE_WORDS for i in _find_all(lowered, word))
    out: list[str] = []
    done = 0  # text[:done] is copied to out (or masked)
    skip = 0  # hits before this are inside a token already judged
    for start, word_end in hits:
        if start < skip:
            continue
        end = word_end
        while end < len(text) and text[end] not in _TOKEN_END:
            end += 1
        skip = end
        if end == word_end:
            continue  # the word ends the name: what follows is a separator
        first = start
        while first > done and text[first - 1] not in _TOKEN_END:
            first -= 1
        token = text[first:end]
        bare = token[2:] if token[:2] in _SCOPES else token
        if any(property_info(scope, bare) is not None for scope in ("global", "topic")):
            continue
        out.append(text[done:word_end])
        out.append(MASK)
        done = end
    out.append(text[done:])
    return "".join(out)


def _find_all(text: str, word: str) -> Iterator[int]:
    i = text.find(word)
    while i >= 0:
        yield i
        i = text.find(word, i + len(word))


def _starts_pair(chunk: str) -> bool:
    """Whether an ``&``-separated chunk starts a new property (``g.x=``, ``t.x=``, ``key=``)."""
    return chunk.startswith("key=") or (chunk[:2] in _SCOPES and "=" in chunk)


def _masked(text: str, body: int) -> str:
    """``text`` with property values hidden unless known to be harmless.

    Works on raw, possibly malformed input, in one pass (it runs on every rejected input, so
    it must stay linear whatever the input). A value is shown only for ``key`` and for
    catalogued, non-sensitive ``g.``/``t.`` properties: an unknown name may be a misspelt
    password. A masked value swallows following ``&`` chunks that do not start a new pair, in
    case the secret itself contained ``&``.
    """
    question = text.find("?", body)
    if question < 0:
        return _mask_secret_pairs(text)
    out: list[str] = []
    swallowing = False
    for chunk in text[question + 1 :].split("&"):
        if swallowing and not _starts_pair(chunk):
            if not chunk:
                out.append("")  # keep a stray '&' visible: the error may be about it
            continue
        name, eq, value = chunk.partition("=")
        if not eq and chunk and not _name_is_shown(chunk):
            # No '=': a secret glued to a cut name (g.sasl.passhunter2) shows as the name.
            swallowing = False
            out.append(MASK)
            continue
        swallowing = bool(eq) and not _value_is_shown(name, value)
        out.append(f"{name}={MASK}" if swallowing else chunk)
    return _mask_secret_pairs(text[: question + 1] + "&".join(out))


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_VALUE_END = re.compile(r"[&?]")  # one character class: a search never backtracks


def _mask_secret_pairs(text: str) -> str:
    """Hide the value of every secret-looking ``name=value`` anywhere in ``text``: before any
    ``?``, or inside another value. The value runs to the next ``&`` or ``?``.

    Linear: each ``=`` is visited once, the name before it is scanned back only to the
    previous ``=`` or masked value, and a masked value is skipped, never rescanned.
    """
    out: list[str] = []
    done = 0  # text[:done] is settled (copied to out)
    eq = text.find("=")
    while eq >= 0:
        start = eq
        while start > done and text[start - 1] in _NAME_CHARS:
            start -= 1
        name = text[start:eq].lower()
        if not any(word in name for word in _SENSITIVE_WORDS):
            eq = text.find("=", eq + 1)
            continue
        end_match = _VALUE_END.search(text, eq + 1)
        end = end_match.start() if end_match else len(text)
        out.append(text[done : eq + 1])
        out.append(MASK)
        done = end
        eq = text.find("=", end)
    out.append(text[done:])
    return "".join(out)


def _name_is_shown(name: str) -> bool:
    """A bare name after the ``?`` is shown only when it is ``key`` or catalogued."""
    if name == "key":
        return True
    return name[:2] in _SCOPES and not is_sensitive(name) and _is_known(name[2:])


def _value_is_shown(name: str, value: str) -> bool:
    if "=" in value:  # not a value (none holds '='): maybe a secret pair glued to it
        return False
    if name == "key":  # shown only as the grammar knows it; anything else may hide a secret
        if value == "callid":
            return True
        param = value.removeprefix("param:")
        return param != value and bool(param) and all(c in _NAME_CHARS for c in param)
    if name[:2] not in _SCOPES or is_sensitive(name):
        return False
    return _is_known(name[2:])


def _is_known(name: str) -> bool:
    """Whether librdkafka knows ``name`` in any scope (also as ``topic.<name>``)."""
    bare = name.removeprefix("topic.")
    try:
        return any(property_info(s, n) is not None for s in _SCOPES.values() for n in (name, bare))
    except Exception:  # never let error reporting fail; hiding is the safe side
        return False


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
