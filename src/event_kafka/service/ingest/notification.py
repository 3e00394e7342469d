"""Decoding one OpenSIPS notification, and the pass-through rules.

An OpenSIPS event_datagram/event_stream sends each event as its JSON-RPC notification
(``docs/opensips-event-kafka.md`` §7). It is a **pass-through**: the bytes forwarded are
exactly what OpenSIPS sent, whatever they are (an empty ``"params":{}``, bytes that are not
UTF-8, members or numbers OpenSIPS would not write). Only two things are taken out, because
OpenSIPS's own ``kafka:`` socket does not write them either: event_stream's reliable-mode
``"id"`` (cut from the bytes when it is the first member, as OpenSIPS writes it) and the
``event_param`` param (the payload is then rebuilt from the params).

Refused (:class:`IngestError`): not one JSON object, nested deeper than :data:`MAX_DEPTH`,
no ``"method"`` (a non-empty UTF-8 string within the event-name limit), an ``"id"`` that
cannot be answered.

Params are decoded too, for the transports that rebuild the payload (``tcp:`` with
``/method`` or reliable mode): a JSON object gives named params in order (duplicate names
kept), an array positional params. ``int`` (in C ``int`` range), ``str`` and ``null`` are
kept; bytes that are not UTF-8 stay in the text as surrogateescape characters and are written
back raw. Other values cannot come from OpenSIPS and are kept as text: an int outside C
``int`` range or a non-integer number as written, ``true``/``false`` as ``"true"``/``"false"``,
an object or array as its compact JSON text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ...cjson import INT_MAX, INT_MIN, FloatText, JObject, compact_json
from ...event_name import event_name_problem
from ...jsonstream import MAX_DEPTH
from ...payload import Params, build_payload

__all__ = ["MAX_DEPTH", "IngestError", "Notification", "parse_notification"]


class IngestError(ValueError):
    """A malformed notification. ``id`` is its JSON-RPC id when it could be read (so a
    reliable-mode sender can still be answered), ``code``/``message`` the JSON-RPC error."""

    def __init__(
        self, reason: str, id: Any = None, code: int = -32600, message: str = "Invalid Request"
    ) -> None:
        super().__init__(reason)
        self.id = id
        self.code = code
        self.message = message


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 0.4 us per event
class Notification:
    """One ingested event: its name, params (as :func:`~event_kafka.payload.build_payload`
    takes them) and, for event_stream's reliable mode, the request id."""

    event: str
    params: Params
    id: Any = None
    has_id: bool = False
    payload: bytes | None = None
    """The bytes to forward: what the sender sent (reliable-mode id and ``event_param`` taken
    out). Raising sends them as they are; ``params`` only serve transports that rebuild."""


# event_stream's reliable mode writes the id as the first member.
_ID_FIRST = re.compile(rb'\{"id":-?[0-9]+,')
_WS_CHARS = " \t\r\n"
_DECODER = json.JSONDecoder(
    object_pairs_hook=JObject, parse_float=FloatText, parse_constant=FloatText, strict=False
)  # strict=False: a raw control character in a string is the sender's business, kept as is


def parse_notification(raw: bytes, *, event_param: str | None = None) -> Notification:
    """Decode one JSON-RPC notification as OpenSIPS's event_datagram/event_stream send it.

    ``event_param`` mirrors event_stream's modparam of that name: when set and the first
    param has that name (or, for positional params, always), the event name is taken from it
    and it is removed, undoing what the sender added.

    Raises:
        IngestError: what is wrong (never quoting the input at length).
    """
    if event_param is None:
        fast = _parse_canonical(raw)
        if fast is not None:
            return fast
    return _parse_exact(raw, event_param)


def _parse_exact(raw: bytes, event_param: str | None) -> Notification:
    """:func:`parse_notification` by the order- and duplicate-preserving decoder."""
    obj = _decode(raw)
    if not isinstance(obj, JObject):
        raise IngestError(f"not a JSON object but {_json_type(obj)}")
    has_id = "id" in obj
    rid = obj.get("id")
    if isinstance(rid, FloatText):
        rid = float(rid)
    if has_id and (
        isinstance(rid, bool) or not (rid is None or isinstance(rid, int | str | float))
    ):
        raise IngestError("'id' must be a number, a string or null")
    if isinstance(rid, int) and not -(2**63) <= rid < 2**64:
        raise IngestError("'id' is outside the 64-bit integer range")
    if isinstance(rid, str) and not _is_text(rid):
        raise IngestError("'id' is not valid UTF-8")
    method = obj.get("method")
    if not isinstance(method, str) or isinstance(method, FloatText) or not method:
        raise IngestError('"method" must be a non-empty string', rid)
    params: list[Any] | None = None
    p = obj.get("params")
    if isinstance(p, JObject):
        params = [(k, _value(v)) for k, v in p.pairs] or None
    elif isinstance(p, list):
        params = [_value(v) for v in p] or None
    event = method
    stripped = False
    if event_param is not None and params:
        first = params[0]
        if isinstance(first, tuple):
            if first[0] == event_param:
                event = _event_from_param(first[1], rid)
                params, stripped = params[1:] or None, True
        else:
            event = _event_from_param(first, rid)
            params, stripped = params[1:] or None, True
    if not _is_text(event):
        raise IngestError("the event name is not valid UTF-8", rid)
    problem = event_name_problem(event)
    if problem is not None:
        raise IngestError(problem, rid)
    payload = raw
    if stripped or has_id:
        m = None if stripped else _ID_FIRST.match(raw)
        if m is not None:
            payload = b"{" + raw[m.end() :]
        else:
            try:
                payload = build_payload(event, params, surrogateescape=True)
            except ValueError as exc:
                raise IngestError(f"cannot rebuild the payload: {exc}", rid) from None
    return Notification(event, params, rid, has_id, payload)


def _decode(raw: bytes) -> Any:
    """One JSON value, whatever bytes its strings hold (non-UTF-8 kept as surrogateescape)."""
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_WS_CHARS))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except RecursionError:
        raise IngestError(f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        raise IngestError(
            f"not JSON: {_short(str(exc))}", code=-32700, message="Parse error"
        ) from None
    if text[end:].strip(_WS_CHARS):
        raise IngestError(
            f"not JSON: extra data at position {end}", code=-32700, message="Parse error"
        )
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(value, MAX_DEPTH):
        raise IngestError(f"nested deeper than {MAX_DEPTH}")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, list | JObject):
            if depth > limit:
                return True
            items = v if isinstance(v, list) else [x for _, x in v.pairs]
            stack.extend((x, depth + 1) for x in items)
    return False


def _is_text(s: str) -> bool:
    """No surrogates: the text was valid UTF-8 (and had no lone \\uD800-\\uDFFF escape)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_canonical(raw: bytes) -> Notification | None:
    """The fast path: a notification byte-identical to what OpenSIPS (and build_payload) writes.

    orjson decodes ~10x faster than the order- and duplicate-preserving decoder; re-encoding
    the result and finding the very same bytes proves nothing was lost (no duplicate names,
    key order kept, every number as written). Params must be what the exact path keeps as they
    are (strings, null, integers in C ``int`` range): anything else takes the exact slow path.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    # Only the envelope OpenSIPS writes: anything more (an id, other members, however deep)
    # is the exact path's to check.
    if type(obj) is not dict or len(obj) != 2 + ("params" in obj) or obj.get("jsonrpc") != "2.0":
        return None
    method = obj.get("method")
    if type(method) is not str or not _valid_name(method):
        return None
    params = obj.get("params")
    if type(params) is dict:
        values: Any = params.values()
    elif type(params) is list or params is None:
        values = params or ()
    else:
        return None
    for v in values:
        # bool, float, nested, or an int the exact path would keep as text: slow path.
        if v is None or type(v) is str or (type(v) is int and INT_MIN <= v <= INT_MAX):
            continue
        return None
    if orjson.dumps(obj) != raw:
        return None
    # A dict keeps the order (and, proven above, had no duplicates): build_payload's fastest form.
    return Notification(method, params or None, payload=raw)


# Event names already found valid: the check is then one set lookup. Bounded, since names
# come from the network; past the bound names are checked each time, as before.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 1024


def _valid_name(name: str) -> bool:
    if name in _VALID_NAMES:
        return True
    if event_name_problem(name) is not None:
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)
    return True


def _event_from_param(value: Any, rid: Any) -> str:
    if not isinstance(value, str) or not value:
        raise IngestError("the event_param value must be a non-empty string", rid)
    return value


def _value(v: Any) -> int | str | None:
    """A JSON value as an event param value (see the module docstring for the rules)."""
    if v is None:
        return None
    if isinstance(v, FloatText):
        return str.__str__(v)
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return v if INT_MIN <= v <= INT_MAX else str(v)
    return compact_json(v, cjson_numbers=False)


def _json_type(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    return "a boolean" if isinstance(v, bool) else "a number"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
