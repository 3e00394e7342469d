"""``event-kafka migrate``: turn an opensips.cfg's event_kafka settings into a service config.

What is read (everything else in the script is ignored):

* ``modparam("event_kafka", "broker_id", "[ID]brokers/topic?props")`` → ``broker_ids``. The
  module name is matched as OpenSIPS does (``modparam.c``: a case-insensitive POSIX regex
  searched in the module name, so ``"event_kafka"``, ``"kafka"`` and ``"event_.*"`` all apply).
* ``subscribe_event("E_NAME", "kafka:...")`` with literal arguments → ``[[subscriptions]]``;
  OpenSIPS must then send those events to the service's ingest instead (see the notes printed).
* ``kafka_publish(..., "route")`` with a literal route name → ``[report_routes.route]``.

The text is split with OpenSIPS's own lexical rules (``cfg.lex``): ``#`` comments to the end of
the line, nested ``/* */`` comments, ``"..."`` strings with ``\\n \\r \\a \\t \\" \\\\ \\xHH
\\ooo`` escapes and backslash-newline continuations, ``'...'`` strings taken literally. Every
entry is checked with the library's own parser and the result with the service's own config
loader before anything is printed; problems name the cfg line and keep secrets masked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import ConfigError, SocketError
from .kafka_socket import KafkaSocket, parse_broker_id, parse_socket
from .posix_regex import ere_search
from .properties import is_sensitive

__all__ = ["Migration", "Token", "migrate_cfg", "tokenize"]

MODULE = "event_kafka"


@dataclass(frozen=True, slots=True)
class Token:
    """A lexical token: ``kind`` is ``"str"``, ``"word"`` or ``"punct"``."""

    kind: str
    value: str
    line: int


class CfgSyntaxError(ValueError):
    """The script cannot be split into tokens (an unterminated string or comment)."""


_ESCAPES = {"n": "\n", "r": "\r", "a": "\a", "t": "\t", '"': '"', "\\": "\\"}
_WORD = re.compile(r"[A-Za-z0-9_.$:@-]+")
_OCTAL = re.compile(r"[0-7]{2,3}")
_HEX = re.compile(r"[0-9a-fA-F]{1,2}")


def tokenize(text: str) -> list[Token]:
    """Split opensips.cfg text into tokens, dropping whitespace and comments (linear time).

    Raises:
        CfgSyntaxError: an unterminated string or block comment, naming its first line.
    """
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\b\f":
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            start, depth = line, 0
            while i < n:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                    if depth == 0:
                        break
                else:
                    line += text[i] == "\n"
                    i += 1
            else:
                raise CfgSyntaxError(f"line {start}: unterminated /* comment")
        elif c == '"':
            start, buf, i = line, [], i + 1
            while True:
                if i >= n:
                    raise CfgSyntaxError(f'line {start}: unterminated " string')
                ch = text[i]
                if ch == '"':
                    i += 1
                    break
                if ch == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in _ESCAPES:
                        buf.append(_ESCAPES[nxt])
                        i += 2
                        continue
                    if nxt == "\n":  # an escaped newline is eaten
                        line += 1
                        i += 2
                        continue
                    if nxt == "x" and (m := _HEX.match(text, i + 2)):
                        buf.append(chr(int(m[0], 16)))
                        i = m.end()
                        continue
                    if m := _OCTAL.match(text, i + 1):
                        buf.append(chr(int(m[0], 8) & 0xFF))
                        i = m.end()
                        continue
                line += ch == "\n"
                buf.append(ch)
                i += 1
            out.append(Token("str", "".join(buf), start))
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise CfgSyntaxError(f"line {line}: unterminated ' string")
            value = text[i + 1 : end]
            out.append(Token("str", value, line))
            line += value.count("\n")
            i = end + 1
        elif m := _WORD.match(text, i):
            out.append(Token("word", m[0], line))
            i = m.end()
        else:
            out.append(Token("punct", c, line))
            i += 1
    return out


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    line: int
    args: list[list[Token]]


def _calls(tokens: list[Token], names: frozenset[str]) -> list[_Call]:
    """``name(arg, arg, ...)`` for the given function names; each arg is its token list."""
    calls: list[_Call] = []
    i, n = 0, len(tokens)
    while i < n:
        t = tokens[i]
        if not (t.kind == "word" and t.value in names and i + 1 < n and tokens[i + 1].value == "("):
            i += 1
            continue
        args: list[list[Token]] = [[]]
        depth, j = 1, i + 2
        while j < n and depth:
            tok = tokens[j]
            if tok.kind == "punct" and tok.value in "([{":
                depth += 1
            elif tok.kind == "punct" and tok.value in ")]}":
                depth -= 1
                if depth == 0:
                    break
            if depth == 1 and tok.kind == "punct" and tok.value == ",":
                args.append([])
            else:
                args[-1].append(tok)
            j += 1
        calls.append(_Call(t.value, t.line, args if args != [[]] else []))
        i = j + 1
    return calls


def _literal(arg: list[Token]) -> Token | None:
    return arg[0] if len(arg) == 1 and arg[0].kind == "str" else None


@dataclass
class Migration:
    """The result: ``toml`` (empty when there are ``problems``), ``problems`` (each naming
    a cfg line; secrets masked) and ``notes`` (what the operator must still do)."""

    toml: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _toml_str(s: str) -> str:
    # JSON string syntax is TOML's basic string, except that TOML also forbids raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def migrate_cfg(text: str, source: str = "opensips.cfg") -> Migration:
    """Convert opensips.cfg ``text`` (``source`` names it in messages and comments)."""
    from .service.config import load_config_text

    result = Migration()
    try:
        tokens = tokenize(text)
    except CfgSyntaxError as exc:
        result.problems.append(f"{source}: {exc}")
        return result
    brokers: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    subs: list[tuple[str, str, int]] = []
    routes: dict[str, int] = {}
    inline: list[str] = []  # entries holding a secret in clear text
    wanted = frozenset(("modparam", "subscribe_event", "kafka_publish"))
    for call in _calls(tokens, wanted):
        where = f"{source}:{call.line}"
        if call.name == "modparam":
            if len(call.args) != 3 or _literal(call.args[0]) is None:
                continue
            module = _literal(call.args[0])
            assert module is not None
            try:  # not re: a backtracking search of a hostile pattern takes minutes
                applies = ere_search(module.value, MODULE)
            except ValueError as exc:
                applies = False  # OpenSIPS refuses it at start-up, whatever module it meant
                result.problems.append(f"{where}: invalid module regex in modparam: {exc}")
            if not applies:
                continue
            param = _literal(call.args[1])
            if param is None or param.value != "broker_id":
                name = param.value if param is not None else "?"
                result.problems.append(
                    f"{where}: event_kafka has no parameter {name!r} (only broker_id)"
                )
                continue
            value = _literal(call.args[2])
            if value is None:
                result.problems.append(f"{where}: broker_id must be a quoted string")
                continue
            try:
                bid, parsed = parse_broker_id(value.value)
            except SocketError as exc:
                result.problems.append(f"{source}:{value.line}: {exc}")
                continue
            if bid in first_line:
                result.problems.append(
                    f"{source}:{value.line}: broker id [{bid}] already defined "
                    f"at line {first_line[bid]}"
                )
                continue
            first_line[bid] = value.line
            brokers.append((value.value, value.line))
            inline += [f"broker_id [{bid}] {n}" for n in _secret_names(parsed)]
        elif call.name == "subscribe_event":
            if len(call.args) < 2:
                continue
            event, sock = _literal(call.args[0]), _literal(call.args[1])
            if sock is None or not sock.value.startswith("kafka:"):
                continue  # udp:/tcp:/rabbitmq: subscribers stay in OpenSIPS
            if event is None:
                result.notes.append(
                    f"{where}: subscribe_event with a variable event name: add its "
                    "[[subscriptions]] entry by hand"
                )
                continue
            try:
                sub = parse_socket(sock.value)
            except SocketError as exc:
                result.problems.append(f"{source}:{sock.line}: {exc}")
                continue
            subs.append((event.value, sock.value, call.line))
            inline += [f"subscription {event.value} {n}" for n in _secret_names(sub)]
        elif len(call.args) >= 4:  # kafka_publish(id, msg, key, route)
            route = _literal(call.args[3])
            if route is not None and route.value:
                routes.setdefault(route.value, call.line)
    if re.search(r"\b(?:include_file|import_file)\b", text):
        result.notes.append(f"{source} includes other files: run migrate on each of them too")
    if not brokers and not subs and not result.problems:
        result.problems.append(
            f'{source}: no modparam("event_kafka", "broker_id", ...) and no '
            'subscribe_event(..., "kafka:...") found'
        )
    if result.problems:
        return result
    toml = _render(source, brokers, subs, routes)
    try:
        load_config_text(toml, f"<generated from {source}>")
    except ConfigError as exc:
        result.problems.append(str(exc))
        return result
    result.toml = toml
    if subs:
        result.notes.append(
            "OpenSIPS must now send those events to this service: replace each "
            'subscribe_event("E", "kafka:...") by subscribe_event("E", "udp:HOST:PORT") '
            'and set [ingest.udp] listen = "HOST:PORT"'
        )
    if routes:
        result.notes.append(
            "report routes run service actions (log, dead_letter, count), not script: "
            "review each [report_routes.*] table"
        )
    if inline:
        result.notes.append(
            f"secrets written in clear ({', '.join(inline)}): keep them out of the file with "
            "${file:PATH}, ${cred:NAME} (systemd LoadCredential=) or ${env:VAR} as the value"
        )
    return result


def _secret_names(sock: KafkaSocket) -> list[str]:
    """The ``g.``/``t.`` names of the sensitive properties a socket holds (never values)."""
    props = [("g", sock.global_props), ("t", sock.topic_props)]
    return [f"{s}.{n}" for s, m in props for n in m if is_sensitive(n)]


def _render(
    source: str,
    brokers: list[tuple[str, int]],
    subs: list[tuple[str, str, int]],
    routes: dict[str, int],
) -> str:
    out = [f"# event-kafka service configuration, generated from {source}", ""]
    if brokers:
        out.append("broker_ids = [")
        out += [f"  {_toml_str(text)},  # {source}:{line}" for text, line in brokers]
        out += ["]", ""]
    for event, sock, line in subs:
        out += [
            f"# {source}:{line}: subscribe_event",
            "[[subscriptions]]",
            f"event = {_toml_str(event)}",
            f"socket = {_toml_str(sock)}",
            "",
        ]
    for name, line in routes.items():
        out += [
            f"# {source}:{line}: kafka_publish report route {name}",
            f"[report_routes.{_toml_str(name)}]",
            'log = "failure"',
            "",
        ]
    return "\n".join(out)
