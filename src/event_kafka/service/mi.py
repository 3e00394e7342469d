"""The management interface: OpenSIPS-compatible JSON-RPC 2.0, with no transport in it.

:class:`MIDispatcher` turns one request body (``bytes``) into one response ``dict`` (or
``None`` for a notification), exactly as OpenSIPS's ``mi/mi.c`` does for mi_http: the same
validation order, the same parameter *recipes* (named or positional), the same error codes,
messages and ``data`` details. :func:`service_commands` is the command table of
``event-kafka serve``:

================================  ================================  =========================
command (aliases)                 params (recipes)                  result
================================  ================================  =========================
``event_subscribe``               event socket [expire]             ``"OK"``
(``evi:subscribe``, ``subscribe``)
``events_list`` (``evi:list``)    —                                 ``{"Events": [...]}``
``subscribers_list``              [event [socket]]                  ``{"Events": [...]}`` /
(``evi:subscribers``)                                               ``{"Event": {...}}``
``raise_event`` (``evi:raise``)   event [params]                    ``"OK"``
``kafka_publish``                 broker_id message [key            ``"OK"`` or the delivery
                                  [report_route [wait]]]            report (``wait``)
``get_statistics``                statistics (array)                ``{"group:name": n}``
(``statistics:get``)
``version``, ``uptime``           —                                 ``{"Server": ...}`` ...
``which``                         [command]                         command names / recipes
================================  ================================  =========================

It is pure (no sockets), so the HTTP server is a thin shell around it and it can be fuzzed
directly::

    dispatcher = MIDispatcher(service_commands(service))
    reply = await dispatcher.handle(b'{"jsonrpc":"2.0","id":1,"method":"version"}')

The JSON helpers shared with :mod:`.ingest` live here too: :func:`loads_json` keeps every
member of an object in order (:class:`JObject`), as cJSON does, and :func:`compact_json`
prints a value the way OpenSIPS's cJSON would.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from ..errors import SocketError
from ..event_interface import UnknownEventError
from ..event_name import event_name_problem
from ..payload import INT_MAX, INT_MIN
from ..properties import PropertyPolicy, untrusted_policy
from ..report import Report

if TYPE_CHECKING:
    from ..connector import EventKafka

__all__ = [
    "Command",
    "FloatText",
    "JObject",
    "MIDispatcher",
    "MIError",
    "MIService",
    "Params",
    "Recipe",
    "compact_json",
    "error_response",
    "loads_json",
    "service_commands",
]

log = logging.getLogger("event_kafka.service.mi")

# JSON-RPC codes and messages, as in OpenSIPS mi/mi.h.
PARSE_ERROR = (-32700, "Parse error")
INVALID_REQUEST = (-32600, "Invalid Request")
METHOD_NOT_FOUND = (-32601, "Method not found")
INVALID_PARAMS = (-32602, "Invalid params")
SERVER_ERROR = (-32000, "Server error")
DET_AMBIGUOUS = "Ambiguous call, use named parameters instead"
DET_NO_PARAMS = "Too few or too many parameters"
DET_MATCH_PARAMS = "Named parameters do not match"
DET_NULL = "Command handler returned null"
TOO_MANY_SUBSCRIPTIONS = (429, "Too many subscriptions")

DEFAULT_EXPIRE = 3600  # OpenSIPS DEFAULT_EXPIRE for MI subscriptions

Response: TypeAlias = dict[str, Any]

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


# --------------------------------------------------------------------------------------------
# JSON as cJSON sees it


class JObject(dict[str, Any]):
    """A decoded JSON object: a dict of the *first* value of each name (cJSON's lookup
    semantics) that also keeps every member in order in :attr:`pairs` (cJSON iterates all of
    them, duplicates included)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        for k, v in pairs:
            self.setdefault(k, v)
        self.pairs = pairs


class FloatText(str):
    """A JSON number with a fraction or exponent, kept as the text it was written as."""

    __slots__ = ()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=JObject, parse_constant=_no_constants)
_DECODER_FLOAT_TEXT = json.JSONDecoder(
    object_pairs_hook=JObject, parse_float=FloatText, parse_constant=_no_constants
)


def loads_json(text: str, *, float_text: bool = False) -> Any:
    """Decode one JSON value (surrounding whitespace allowed, nothing else).

    Objects become :class:`JObject`; with ``float_text``, non-integer numbers become
    :class:`FloatText`. ``NaN``/``Infinity`` are refused.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError`` is a ``ValueError``), or nested too deep.
    """
    decoder = _DECODER_FLOAT_TEXT if float_text else _DECODER
    try:
        value, end = decoder.raw_decode(text, _skip_ws(text, 0))
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if _skip_ws(text, end) != len(text):
        raise ValueError(f"extra data after the JSON value at position {end}")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH or _SURROGATE_ESCAPE.search(text):
        _check_decoded(value)
    return value


MAX_JSON_DEPTH = 100
"""Deepest JSON accepted (OpenSIPS payloads nest 2 deep): compact_json recursion stays safe."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_decoded(value: Any) -> None:
    """Refuse what cannot be printed again: a string holding an unpaired UTF-16 surrogate
    (from a \\uD800-\\uDFFF escape), nesting deeper than MAX_JSON_DEPTH. Iterative."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("invalid \\u escape: unpaired UTF-16 surrogate") from None
        elif isinstance(v, list | dict):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            if isinstance(v, list):
                stack.extend((x, depth + 1) for x in v)
            else:
                for k, x in v.pairs if isinstance(v, JObject) else v.items():
                    stack.append((k, depth))
                    stack.append((x, depth + 1))


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m else pos


def cjson_valueint(number: float | int) -> int:
    """cJSON's ``valueint`` of a number: truncated toward zero, saturated to C ``int``."""
    if isinstance(number, float) and math.isnan(number):
        return 0
    if number >= INT_MAX:
        return INT_MAX
    if number <= INT_MIN:
        return INT_MIN
    return int(number)


_LONG_MIN = -(2**63)
_DBL_EPSILON = 2.220446049250313e-16


def _c_long(x: float) -> int:
    """C ``(long)x`` on x86-64: truncation; out of range (or NaN) is undefined behaviour in C,
    and ``cvttsd2si`` then yields LONG_MIN."""
    if x != x or not _LONG_MIN <= x < 2.0**63:
        return _LONG_MIN
    return int(x)


def _cjson_floor(x: float) -> float:
    """lib/cJSON.c ``myfloor`` (OpenSIPS never defines HAVE_LIBMATH, so this is its FLOOR):
    not a floor at all beyond C ``long`` range or for negative integers, whose
    ``x - 0.9999999999999999`` usually rounds to ``x - 1``."""
    if x > 0:
        return float(_c_long(x))
    return float(_c_long(x - 0.9999999999999999))


def _cjson_number(value: int | float) -> str:
    """lib/cJSON.c ``print_number`` (OpenSIPS 3.6.8), rule by rule.

    cJSON stores every number as a double; ``valueint`` is it truncated and saturated to
    C ``int``. Because its FLOOR is :func:`_cjson_floor`, integral doubles print ``%.0f`` only
    when non-negative below 2^63 or in [-2^63, -2^53]; other integral values outside C
    ``int`` range (``1e30``, ``-1e19``, ``-3e9``) fall through to ``%e``.
    """
    try:
        d = float(value)
    except OverflowError:  # an int beyond double range: strtod gives +-HUGE_VAL
        d = math.inf if value > 0 else -math.inf
    if d == 0:  # -0.0 included
        return "0"
    vi = cjson_valueint(d)
    if abs(vi - d) <= _DBL_EPSILON and INT_MIN <= d <= INT_MAX:
        return str(vi)  # "%d"
    if d != d or math.isinf(d):  # cJSON's (d * 0) != 0
        return "null"
    if abs(_cjson_floor(d) - d) <= _DBL_EPSILON and abs(d) < 1.0e60:
        return f"{d:.0f}"
    if abs(d) < 1.0e-6 or abs(d) > 1.0e9:
        return f"{d:e}"
    return f"{d:f}"


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _cjson_string(s: str) -> str:
    s = s.partition("\x00")[0]  # C strings end at NUL
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), s) + '"'


def compact_json(value: Any, *, cjson_numbers: bool = True) -> str:
    """Print ``value`` compactly as OpenSIPS's cJSON (``cJSON_PrintUnformatted``) would.

    Strings are escaped like cJSON (``/`` and non-ASCII raw, controls as ``\\u00xx``);
    :class:`JObject` members are printed in order, duplicates included. Numbers follow cJSON's
    ``print_number`` (``1.5`` prints ``1.500000``) unless ``cjson_numbers=False``, which keeps
    :class:`FloatText` as written and prints ints in full.

    >>> compact_json(JObject([("a", [1, True, None]), ("b", "x/y")]))
    '{"a":[1,true,null],"b":"x/y"}'
    >>> compact_json(1.5), compact_json(FloatText("1.5"), cjson_numbers=False)
    ('1.500000', '1.5')
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, FloatText):
        return _cjson_number(float(value)) if cjson_numbers else str.__str__(value)
    if isinstance(value, str):
        return _cjson_string(value)
    if isinstance(value, int | float):
        if cjson_numbers or isinstance(value, float):
            return _cjson_number(value)
        return str(value)
    if isinstance(value, JObject):
        items: Iterable[tuple[str, Any]] = value.pairs
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        inner = ",".join(compact_json(v, cjson_numbers=cjson_numbers) for v in value)
        return f"[{inner}]"
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")
    inner = ",".join(
        f"{_cjson_string(k)}:{compact_json(v, cjson_numbers=cjson_numbers)}" for k, v in items
    )
    return "{" + inner + "}"


# --------------------------------------------------------------------------------------------
# Errors and responses


class MIError(Exception):
    """A JSON-RPC error reply: ``{"code": code, "message": message[, "data": data]}``.

    ``data`` must never hold a secret: it is sent to the client as is.
    """

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(f"{code} {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def of(cls, pair: tuple[int, str], data: str | None = None) -> MIError:
        return cls(pair[0], pair[1], data)


def error_response(code: int, message: str, data: str | None = None, id: Any = None) -> Response:
    """A JSON-RPC error response object (member order as OpenSIPS prints it)."""
    err: dict[str, Any] = {"code": code, "message": message}
    if data:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id}


def _result_response(result: Any, id: Any) -> Response:
    return {"jsonrpc": "2.0", "result": result, "id": id}


# --------------------------------------------------------------------------------------------
# Commands and parameters


@dataclass(frozen=True, slots=True)
class Recipe:
    """One accepted parameter list of a command (OpenSIPS ``mi_recipe_t``).

    ``named_only`` recipes are skipped for positional calls, so optional parameters can be
    given by name in any combination without making positional calls ambiguous.
    """

    params: tuple[str, ...]
    named_only: bool = False


Handler: TypeAlias = Callable[["Params"], Any]
"""A command implementation: returns the ``result`` (or an awaitable of it), raises MIError."""


@dataclass(frozen=True, slots=True)
class Command:
    """An MI command: its name, aliases, recipes, handler and one line of help."""

    name: str
    recipes: tuple[Recipe, ...]
    handler: Handler
    help: str = ""
    aliases: tuple[str, ...] = ()


class Params:
    """The parameters of one call, read through the recipe that matched (as OpenSIPS's
    ``get_mi_*_param``): positional values are looked up by the recipe's names."""

    __slots__ = ("_item", "recipe")

    def __init__(self, item: JObject | list[Any] | None, recipe: Recipe) -> None:
        self._item = item
        self.recipe = recipe

    def has(self, name: str) -> bool:
        return name in self.recipe.params

    def raw(self, name: str) -> Any:
        """The JSON value of ``name``; MIError(-32000) if the recipe has no such param (a bug)."""
        if self._item is None or name not in self.recipe.params:
            raise MIError.of(SERVER_ERROR, "Failed to handle parameter")
        if isinstance(self._item, list):
            return self._item[self.recipe.params.index(name)]
        return self._item[name]

    def string(self, name: str) -> str:
        """A string param; a number is accepted and printed as an int (OpenSIPS ``sint2str``)."""
        value = self.raw(name)
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(cjson_valueint(value))
        raise bad_type(name)

    def integer(self, name: str) -> int:
        """An int param: a number (truncated, saturated) or a string holding a decimal int."""
        value = self.raw(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cjson_valueint(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
            if len(value.lstrip("+-").lstrip("0")) > 10:  # beyond C int: saturate, no int()
                return INT_MIN if value.startswith("-") else INT_MAX
            return cjson_valueint(int(value))
        raise bad_type(name)

    def flag(self, name: str) -> bool:
        """A yes/no param: ``true``/``false``, ``1``/``0``, or the strings ``1 0 y n yes no
        true false`` (any case). Anything else is an error rather than a silent default."""
        value = self.raw(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            if value in (0, 1):
                return bool(value)
        elif isinstance(value, str):
            low = value.lower()
            if low in ("1", "y", "yes", "true"):
                return True
            if low in ("0", "n", "no", "false"):
                return False
        raise bad_type(name)

    def array(self, name: str) -> list[Any]:
        """A non-empty array param."""
        value = self.raw(name)
        if not isinstance(value, list):
            raise bad_type(name)
        if not value:
            raise MIError.of(INVALID_PARAMS, f"Empty array in parameter '{name}'")
        return value


def bad_type(name: str, array_item: bool = False) -> MIError:
    """OpenSIPS's ``init_mi_param_error`` for a parameter of the wrong type."""
    what = "array item in parameter" if array_item else "parameter"
    return MIError.of(INVALID_PARAMS, f"Bad type for {what} '{name}'")


def _match_recipe(recipes: Sequence[Recipe], params: JObject | list[Any] | None) -> Recipe:
    """OpenSIPS ``get_cmd_recipe``: by count for positional params, by count then names for
    named ones; the error detail says which of the two failed."""
    if params is None:
        for r in recipes:
            if not r.params:
                return r
        raise MIError.of(INVALID_PARAMS, DET_NO_PARAMS)
    positional = isinstance(params, list)
    count = len(params) if isinstance(params, list) else len(params.pairs)
    match: Recipe | None = None
    count_matched = False
    for r in recipes:
        if not r.params or len(r.params) != count:
            continue
        if positional:
            if r.named_only:
                continue
            if match is not None:
                raise MIError.of(INVALID_PARAMS, DET_AMBIGUOUS)
            match = r
        else:
            count_matched = True
            assert isinstance(params, JObject)
            if all(name in params for name in r.params):
                return r
    if match is not None:
        return match
    raise MIError.of(INVALID_PARAMS, DET_MATCH_PARAMS if count_matched else DET_NO_PARAMS)


Offload: TypeAlias = Callable[[Callable[[], Any]], Awaitable[Any]]
"""``await offload(fn)`` runs ``fn()`` off the event loop (raises MIError on its budget)."""

_INLINE_PARSE = 4096  # smaller bodies parse in microseconds: not worth a thread hop


def _parse(body: bytes | str) -> Any:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
    return loads_json(text)


def _valid_id(rid: Any) -> bool:
    """A JSON-RPC id: null, a string or a number (not a bool, and an int any JSON encoder of
    ours can echo back)."""
    if rid is None or isinstance(rid, str | float):
        return True
    return isinstance(rid, int) and not isinstance(rid, bool) and _INT64_MIN <= rid <= _UINT64_MAX


class MIDispatcher:
    """Runs JSON-RPC requests against a command table; no I/O of its own.

    Example::

        d = MIDispatcher([Command("ping", (Recipe(()),), lambda p: "pong")])
        await d.handle(b'{"jsonrpc":"2.0","id":7,"method":"ping"}')
        # {'jsonrpc': '2.0', 'result': 'pong', 'id': 7}

    Batches (a JSON array) are answered with -32600 Invalid Request, as OpenSIPS does.
    """

    def __init__(self, commands: Iterable[Command], offload: Offload | None = None) -> None:
        self.offload = offload
        """Runs parsing of big bodies and every synchronous handler off the event loop
        (:class:`~event_kafka.service.workers.WorkerPool`); ``None``: inline."""
        self.commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        for cmd in commands:
            self.add(cmd)
        self.requests = 0
        self.errors = 0

    def add(self, cmd: Command) -> None:
        """Register ``cmd`` under its name and aliases (a taken name is a programming error)."""
        for name in (cmd.name, *cmd.aliases):
            if name in self._by_name:
                raise ValueError(f"MI command {name!r} already registered")
            self._by_name[name] = cmd
        self.commands.append(cmd)

    def lookup(self, name: str) -> Command | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """Every callable name, each command followed by its aliases (``which``)."""
        return [n for c in self.commands for n in (c.name, *c.aliases)]

    async def handle(self, body: bytes | str) -> Response | None:
        """Answer one request body; ``None`` means no reply (a JSON-RPC notification)."""
        self.requests += 1
        try:
            if self.offload is not None and len(body) > _INLINE_PARSE:
                request = await self.offload(lambda: _parse(body))
            else:
                request = _parse(body)
        except ValueError:  # also UnicodeDecodeError
            self.errors += 1
            return error_response(*PARSE_ERROR)
        except MIError as exc:  # the offload's time budget or queue limit
            self.errors += 1
            return error_response(exc.code, exc.message, exc.data)
        reply = await self.handle_request(request)
        if reply is not None and "error" in reply:
            self.errors += 1
        return reply

    async def handle_request(self, req: Any) -> Response | None:
        """Answer one decoded request (what :meth:`handle` does after parsing)."""
        if not isinstance(req, dict):
            return error_response(*INVALID_REQUEST)
        has_id = "id" in req
        rid = req.get("id")
        invalid = False
        if has_id and not _valid_id(rid):
            invalid, rid = True, None
        if req.get("jsonrpc") != "2.0":
            invalid = True
        method = req.get("method")
        if not isinstance(method, str):
            invalid = True
        params = req.get("params")
        if "params" in req and not isinstance(params, list | dict):
            invalid = True
        if invalid:
            # Even a notification hears about an invalid request (OpenSIPS does the same).
            return error_response(*INVALID_REQUEST, id=rid)
        assert isinstance(method, str)
        if not params:
            params = None
        elif isinstance(params, dict) and not isinstance(params, JObject):
            params = JObject(list(params.items()))
        try:
            result = await self._run(method, params)
        except MIError as exc:
            response = error_response(exc.code, exc.message, exc.data, rid)
        else:
            response = _result_response(result, rid)
        return response if has_id else None

    async def _run(self, method: str, params: JObject | list[Any] | None) -> Any:
        cmd = self._by_name.get(method)
        if cmd is None:
            raise MIError.of(METHOD_NOT_FOUND)
        recipe = _match_recipe(cmd.recipes, params)
        handler, args = cmd.handler, Params(params, recipe)
        try:
            if self.offload is not None and not inspect.iscoroutinefunction(handler):
                result = await self.offload(lambda: handler(args))
            else:
                result = handler(args)
            if isinstance(result, Awaitable):
                result = await result
        except MIError:
            raise
        except Exception:
            # Never leak internals (or a secret inside an exception message) to the client.
            log.exception("MI command %s failed", cmd.name)
            raise MIError.of(SERVER_ERROR, "Internal error") from None
        if result is None:
            raise MIError.of(SERVER_ERROR, DET_NULL)
        return result


# --------------------------------------------------------------------------------------------
# The service's commands


class MIService(Protocol):
    """What the command table needs from the running service."""

    @property
    def ek(self) -> EventKafka: ...

    @property
    def started_at(self) -> float:
        """``time.time()`` when the service started."""

    @property
    def report_wait_timeout(self) -> float: ...

    @property
    def default_report_route(self) -> str | None: ...

    def report_routes(self) -> Collection[str]:
        """The report route names ``kafka_publish`` may name now."""

    def statistics(self) -> Mapping[str, Mapping[str, int | float]]:
        """``{group: {name: value}}``, read now."""

    def is_static(self, event: str, socket: str) -> bool:
        """Whether ``socket`` is a static (config file) subscriber of ``event``."""

    # Optional: ``socket_policy``, the PropertyPolicy of MI sockets (default: MI_POLICY).


MI_POLICY = untrusted_policy(
    source="the MI", hint="the operator can allow it in [mi] allow_properties"
)
"""What MI sockets may set when the service names no policy: the safe list only."""


def _socket_policy(service: MIService) -> PropertyPolicy:
    # Sockets over the MI come from the network: never trusted, whatever the service says.
    policy = getattr(service, "socket_policy", None)
    return policy if isinstance(policy, PropertyPolicy) and not policy.trusted else MI_POLICY


def package_version() -> str:
    try:
        return version("event-kafka")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def server_string() -> str:
    """``event-kafka X.Y.Z (confluent-kafka A, librdkafka B)`` for ``version``."""
    try:
        import confluent_kafka

        client, lib = confluent_kafka.__version__, confluent_kafka.libversion()[0]
        libs = f" (confluent-kafka {client}, librdkafka {lib})"
    except Exception:  # pragma: no cover
        libs = ""
    return f"event-kafka {package_version()}{libs}"


def _ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


SubscriptionCount = Callable[[], tuple[int, int]]
"""``() -> (MI subscriptions now, the limit)`` (static ones from the file do not count)."""


@dataclass
class _Commands:
    service: MIService
    dispatcher: Callable[[], MIDispatcher | None]
    subscriptions: SubscriptionCount | None = None
    server: str = field(default_factory=server_string)
    # Check-then-subscribe is atomic: handlers run on several worker threads.
    _sub_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- core ---------------------------------------------------------------------------------

    def which(self, p: Params) -> Any:
        d = self.dispatcher()
        assert d is not None
        if not p.has("command"):
            return d.names()
        name = p.string("command")
        if name.endswith(":") and len(name) > 1:
            found = [n for n in d.names() if n.startswith(name)]
            if found:
                return found
            raise MIError(404, "unknown MI command")
        cmd = d.lookup(name)
        if cmd is None:
            raise MIError(404, "unknown MI command")
        return [list(r.params) for r in cmd.recipes]

    def version(self, p: Params) -> Any:
        return {"Server": self.server}

    def uptime(self, p: Params) -> Any:
        now = time.time()
        started = self.service.started_at
        return {
            "Now": _ctime(now),
            "Up since": _ctime(started),
            "Up time": f"{int(now - started)} [sec]",
        }

    def get_statistics(self, p: Params) -> Any:
        wanted = p.array("statistics")
        groups = self.service.statistics()
        out: dict[str, int | float] = {}
        found = False
        for item in wanted:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise bad_type("statistics", array_item=True)
            name = item if isinstance(item, str) else str(cjson_valueint(item))
            if name == "all":
                for g, stats in groups.items():
                    out.update({f"{g}:{n}": v for n, v in stats.items()})
                found = True
            elif len(name) > 1 and name.endswith(":"):
                group_stats = groups.get(name[:-1])
                if group_stats is not None:
                    out.update({f"{name}{n}": v for n, v in group_stats.items()})
                    found = True
            else:
                group, sep, stat = name.rpartition(":")
                for g, stats in groups.items():
                    if (not sep or g == group) and stat in stats:
                        out[f"{g}:{stat}"] = stats[stat]
                        found = True
                        break
        if not found:
            raise MIError(404, "Statistics Not Found")
        return out

    # -- Event Interface ------------------------------------------------------------------------

    def event_subscribe(self, p: Params) -> Any:
        event = _event_name(p)
        socket = _non_empty(p, "socket")
        expire = DEFAULT_EXPIRE
        if p.has("expire"):
            expire = p.integer("expire")
            if expire < 0:
                raise MIError.of(INVALID_PARAMS, "Negative expire value")
        if self.service.is_static(event, socket):
            if expire == 0:
                raise MIError(
                    400,
                    "Bad parameter value",
                    "static subscription (configuration file): remove it there and reload",
                )
            return "OK"  # already subscribed for good: a refresh changes nothing
        try:
            policy = _socket_policy(self.service)
            with self._sub_lock:
                if expire != 0:
                    self._check_room(event, socket)
                # expire=0 unsubscribes (decision §9.5; OpenSIPS adds a 0-second subscriber).
                self.service.ek.evi.subscribe(event, socket, expire=expire, policy=policy)
        except UnknownEventError:
            raise MIError(400, "Bad parameter value", f"event {event!r} is not published") from None
        except SocketError as exc:
            # SocketError messages mask secret property values.
            raise MIError(400, "Bad parameter value", _safe_detail(exc)) from None
        except (ValueError, RuntimeError) as exc:
            raise MIError(400, "Bad parameter value", _safe_detail(exc)) from None
        return "OK"

    async def _off_loop(self, fn: Callable[[], int]) -> int:
        # kafka_publish may wait on a full queue (kafka.queue_full_wait) or build a producer.
        d = self.dispatcher()
        if d is None or d.offload is None:
            return fn()
        return int(await d.offload(fn))

    def _check_room(self, event: str, socket: str) -> None:
        """MIError 429 when ``mi.max_subscriptions`` is reached and this is a new subscriber
        (refreshing an existing one is always allowed)."""
        if self.subscriptions is None:
            return
        in_use, limit = self.subscriptions()
        if (
            in_use < limit
            or self.service.ek.evi.find_subscriber(
                event, socket, policy=_socket_policy(self.service)
            )
            is not None
        ):
            return
        raise MIError(
            *TOO_MANY_SUBSCRIPTIONS,
            f"{in_use} MI subscriptions already: the limit is mi.max_subscriptions = {limit}",
        )

    def events_list(self, p: Params) -> Any:
        return {"Events": [e.to_mi() for e in self.service.ek.evi.list_events()]}

    def subscribers_list(self, p: Params) -> Any:
        evi = self.service.ek.evi
        if not p.has("event"):
            return {"Events": [e.to_mi() for e in evi.list_subscribers()]}
        name = _event_name(p)
        try:
            (event,) = evi.list_subscribers(name)
        except UnknownEventError:
            raise MIError(404, "Event not published") from None
        if not p.has("socket"):
            return {"Event": event.to_mi() if event.subscribers else {}}
        try:
            policy = _socket_policy(self.service)
            sub = evi.find_subscriber(name, p.string("socket"), policy=policy)
        except (SocketError, LookupError, ValueError):
            sub = None  # OpenSIPS: a socket that does not parse matches nobody
        if sub is None:
            raise MIError(404, "Subscriber does not exist")
        return {"Event": {"name": event.name, "id": event.id, "Subscriber": sub.to_mi()}}

    def raise_event(self, p: Params) -> Any:
        evi = self.service.ek.evi
        name = _event_name(p)
        try:
            # Counts expired-but-not-yet-removed subscribers too, like evi_probe_event.
            subscribed = evi.subscriber_count(name)
        except UnknownEventError:
            raise MIError(404, "Event not registered") from None
        if not subscribed:
            raise MIError(480, "Temporarily Unavailable")
        params: Any = None
        if p.has("params"):
            params = raise_event_params(p.raw("params"))
        try:
            evi.raise_event(name, params)
        except UnknownEventError:
            raise MIError(404, "Event not registered") from None
        except (TypeError, ValueError) as exc:
            raise MIError(400, "Bad Params", _safe_detail(exc)) from None
        return "OK"

    # -- kafka_publish -----------------------------------------------------------------------

    async def kafka_publish(self, p: Params) -> Any:
        ek = self.service.ek
        broker_id = p.string("broker_id")
        message = p.string("message")
        key = (p.string("key") if p.has("key") else None) or None
        route = p.string("report_route") if p.has("report_route") else None
        if route is None:
            route = self.service.default_report_route
        elif route == "":
            route = None  # explicitly none, even when a default is configured
        wait = p.flag("wait") if p.has("wait") else False
        if broker_id not in ek.brokers:
            raise MIError(400, "Bad parameter value", f"unknown broker_id [{broker_id}]")
        if route is not None and route not in self.service.report_routes():
            raise MIError(400, "Bad parameter value", f"unknown report route {route!r}")
        if not wait:
            if await self._off_loop(lambda: ek.kafka_publish(broker_id, message, key, route)) != 1:
                raise MIError(500, "Cannot Publish", "not accepted by the producer (see stats)")
            return "OK"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Report] = loop.create_future()

        def on_report(report: Report) -> None:
            # Runs on a librdkafka poll thread: hand over to the loop.
            # RuntimeError: the loop is gone (shutdown), nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, report)

        rc = await self._off_loop(
            lambda: ek.kafka_publish(broker_id, message, key, route, on_report=on_report)
        )
        if rc != 1:
            raise MIError(500, "Cannot Publish", "not accepted by the producer (see stats)")
        timeout = self.service.report_wait_timeout
        try:
            report = await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            raise MIError(
                408,
                "Request Timeout",
                f"no delivery report within {timeout:g} s; the message was accepted and is "
                "still in flight (its report goes to the report route)",
            ) from None
        return report.as_dict()


def _settle(fut: asyncio.Future[Report], report: Report) -> None:
    if not fut.done():
        fut.set_result(report)


def _event_name(p: Params) -> str:
    value = _non_empty(p, "event")
    problem = event_name_problem(value)
    if problem is not None:  # the one rule (event_name.py): never an event, say why
        raise MIError(400, "Bad parameter value", problem)
    return value


def _non_empty(p: Params, name: str) -> str:
    value = p.string(name)
    if not value:
        raise MIError.of(INVALID_PARAMS, f"Empty value for parameter '{name}'")
    return value


def _safe_detail(exc: Exception) -> str:
    # Library errors about events and sockets mask secrets themselves; still cap the length,
    # keeping the end: a socket error quotes the (long) input first and says why last.
    text = str(exc)
    return text if len(text) <= 300 else text[:97] + "..." + text[-200:]


def raise_event_params(value: Any) -> Any:
    """The event params of MI ``raise_event``, as OpenSIPS's ``w_mi_raise_event`` builds them.

    * an array → positional **string** params (numbers printed as ints);
    * a string holding a JSON object → named params: numbers become ints (truncated),
      strings stay strings, anything else (bool, null, object, array) becomes its compact
      JSON text;
    * an empty array → no params; anything else → 400 "No Params" / "Bad Params".
    """
    if isinstance(value, list):
        if not value:
            return None
        out: list[str] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise MIError(400, "Bad Params")
            out.append(item if isinstance(item, str) else str(cjson_valueint(item)))
        return out
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MIError(400, "No Params")
    text = value if isinstance(value, str) else str(cjson_valueint(value))
    try:
        obj = loads_json(text)
    except ValueError:
        raise MIError(400, "Bad Params") from None
    if not isinstance(obj, JObject):
        raise MIError(400, "Bad Params")
    pairs: list[tuple[str, int | str | None]] = []
    for k, v in obj.pairs:
        if isinstance(v, int | float) and not isinstance(v, bool):
            pairs.append((k, cjson_valueint(v)))
        elif isinstance(v, str):
            pairs.append((k, v))
        else:
            pairs.append((k, compact_json(v)))
    return pairs or None


# -- the table --------------------------------------------------------------------------------


def service_commands(
    service: MIService,
    dispatcher: Callable[[], MIDispatcher | None],
    subscriptions: SubscriptionCount | None = None,
) -> list[Command]:
    """The command table of ``event-kafka serve``.

    ``dispatcher`` returns the dispatcher the table is installed in (``which`` lists it);
    ``subscriptions`` (optional) bounds ``event_subscribe`` (error 429 at the limit).
    """
    c = _Commands(service, dispatcher, subscriptions)
    none = Recipe(())
    publish_recipes = [
        Recipe(("broker_id", "message")),
        Recipe(("broker_id", "message", "key")),
        Recipe(("broker_id", "message", "key", "report_route")),
        Recipe(("broker_id", "message", "key", "report_route", "wait")),
    ]
    # Any other combination of the optional params, by name only.
    for extra in (("wait",), ("report_route",), ("report_route", "wait"), ("key", "wait")):
        publish_recipes.append(Recipe(("broker_id", "message", *extra), named_only=True))
    return [
        Command(
            "event_subscribe",
            (Recipe(("event", "socket")), Recipe(("event", "socket", "expire"))),
            c.event_subscribe,
            "subscribes a socket to an event (expire: seconds, default 3600, 0 unsubscribes)",
            ("evi:subscribe", "subscribe"),
        ),
        Command("events_list", (none,), c.events_list, "lists the published events", ("evi:list",)),
        Command(
            "subscribers_list",
            (none, Recipe(("event",)), Recipe(("event", "socket"))),
            c.subscribers_list,
            "lists the subscribers (of an event / one subscriber)",
            ("evi:subscribers",),
        ),
        Command(
            "raise_event",
            (Recipe(("event",)), Recipe(("event", "params"))),
            c.raise_event,
            "raises an event (params: array, or a string holding a JSON object)",
            ("evi:raise",),
        ),
        Command(
            "kafka_publish",
            tuple(publish_recipes),
            c.kafka_publish,
            "publishes a message to a broker_id (wait=1: reply with the delivery report)",
        ),
        Command(
            "get_statistics",
            (Recipe(("statistics",)),),
            c.get_statistics,
            'prints statistics: ["all"], ["group:"] or names',
            ("statistics:get",),
        ),
        Command("version", (none,), c.version, "prints the version"),
        Command("uptime", (none,), c.uptime, "prints when the service started and for how long"),
        Command(
            "which",
            (none, Recipe(("command",))),
            c.which,
            "lists the MI commands, or the parameter lists of one",
        ),
    ]
