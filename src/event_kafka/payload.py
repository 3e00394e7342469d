"""The Event Interface payload: the JSON-RPC notification OpenSIPS sends for an event.

OpenSIPS builds it in ``evi_build_payload`` with its bundled cJSON
(``cJSON_PrintUnformatted``). The contract here is byte-for-byte the same text for every
valid UTF-8 input (spec §5.2, §9 item 8):

* compact, no trailing newline; keys in the order ``id`` (only when non-zero), ``jsonrpc``,
  ``method``, ``params`` (only when there is at least one param);
* named params give a JSON object in list order (duplicate names kept), positional params
  give a JSON array;
* ints are C ``int`` (``-2147483648..2147483647``) printed in decimal, ``None`` is ``null``;
* strings are escaped like cJSON ``print_string_ptr``: ``\\"`` ``\\\\`` ``\\b`` ``\\f``
  ``\\n`` ``\\r`` ``\\t``, other characters below U+0020 as ``\\u00xx`` (lowercase hex),
  everything else (``/``, U+007F, non-ASCII) raw UTF-8;
* a NUL character ends the string (OpenSIPS handles C strings), in values, param names and
  the method alike.

orjson produces exactly these escapes (checked for every code point, see the tests), so the
hot path is one ``orjson.dumps`` call after a cheap type check. NULs, duplicate names, mapping
types other than ``dict``, type subclasses, the ``id`` and the event_stream options take the
exact (slower) path, which still escapes every piece of text with orjson.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import orjson

from .cjson import INT_MAX, INT_MIN, cjson_bytes_string

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "ParamValue",
    "Params",
    "build_payload",
    "build_payload_with_id",
]

ParamValue: TypeAlias = int | str | None
"""One event param value: a C ``int``, a string, or ``None`` (a NULL string, printed ``null``)."""

Params: TypeAlias = (
    Mapping[str, ParamValue] | Sequence[ParamValue | tuple[str | None, ParamValue]] | None
)
"""Event params: a mapping (named), a sequence of ``(name, value)`` pairs (named, duplicates
kept), a sequence of values (positional), or ``None``. See :func:`build_payload`. (One
``Sequence`` of a union rather than a union of ``Sequence`` types, so that mypy accepts a
literal like ``[3, "5"]``.)"""


_dumps = orjson.dumps
_NOT_SEQUENCES = (str, bytes, bytearray, memoryview)


def build_payload(
    event: str,
    params: Params = None,
    *,
    method_override: str | None = None,
    event_param: str | None = None,
    surrogateescape: bool = False,
) -> bytes:
    """Build the JSON-RPC notification OpenSIPS sends for ``event``, byte for byte.

    Example::

        >>> build_payload("E_PIKE_BLOCKED", {"ip": "192.168.2.11"})
        b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11"}}'
        >>> build_payload("E_MY_EVENT", [3, "5", -7, 0])
        b'{"jsonrpc":"2.0","method":"E_MY_EVENT","params":[3,"5",-7,0]}'
        >>> build_payload("E_X", [("dup", "a"), ("dup", "b")])
        b'{"jsonrpc":"2.0","method":"E_X","params":{"dup":"a","dup":"b"}}'

    Args:
        event: the event name, a non-empty ``str`` (the event name rule, 64 bytes, is
            checked where events are published, not here: event_name.py).
        params: the event params; no params (``None``, an empty mapping or sequence) means no
            ``params`` key at all.

            * ``Mapping[str, value]``: named, in iteration order.
            * a sequence whose **first** element is a ``tuple`` of length 2 with a ``str``
              first item: named ``(name, value)`` pairs, order and duplicate names kept.
              Every later element must be a 2-tuple too; a later name of ``None`` gives the
              key ``""``, as an unnamed param after a named one does in OpenSIPS.
            * any other sequence: positional values, a JSON array. (A tuple can never be a
              value, so this rule is unambiguous.)

            ``str``/``bytes`` are not accepted as ``params``. Values are ``int`` in C ``int``
            range (``bool`` is refused), ``str`` or ``None``.
        method_override: event_stream's ``tcp:host:port/method`` form: this replaces the
            event name as ``method``.
        event_param: event_stream's ``event_param`` modparam: when the event has params, the
            event name is added as an extra first param under this name (first array element
            for positional params).
        surrogateescape: text may hold U+DC80..U+DCFF standing for bytes that are not UTF-8
            (Python's ``surrogateescape``, how ingest keeps what OpenSIPS sent); they are
            written back as those raw bytes, as OpenSIPS copies such bytes. Without it they
            are refused like any lone surrogate.

    Returns:
        The UTF-8 payload, without a trailing newline.

    Raises:
        TypeError: a value, name or argument of the wrong type (the message names the param
            by name or ``#index``).
        ValueError: an empty event name, an int outside C ``int`` range, or text that is not
            valid UTF-8 (a lone surrogate).
    """
    # Hot path: the common shapes (dict, list/tuple of values or of pairs with distinct names,
    # no params; plain str and in-range int values; no NUL) go straight to orjson, whose
    # escaping is cJSON's. Anything else, including every error, is handled (and explained)
    # by _build.
    if (
        method_override is None
        and event_param is None
        and type(event) is str
        and event
        and "\x00" not in event
    ):
        try:
            if type(params) is dict:
                for k, v in params.items():
                    if type(v) is str:
                        if "\x00" in v:
                            break
                    elif v is not None and (type(v) is not int or not INT_MIN <= v <= INT_MAX):
                        break
                    if "\x00" in k:  # a non-str key raises TypeError here or in orjson
                        break
                else:
                    if params:
                        return _dumps({"jsonrpc": "2.0", "method": event, "params": params})
                    return _dumps({"jsonrpc": "2.0", "method": event})
            elif type(params) is list or type(params) is tuple:
                if not params:
                    return _dumps({"jsonrpc": "2.0", "method": event})
                if type(params[0]) is tuple:  # named pairs (or an error)
                    for pair in params:
                        if type(pair) is not tuple or len(pair) != 2:
                            break
                        k, v = pair
                        if type(k) is not str or "\x00" in k:
                            break
                        if type(v) is str:
                            if "\x00" in v:
                                break
                        elif v is not None and (type(v) is not int or not INT_MIN <= v <= INT_MAX):
                            break
                    else:
                        obj = dict(params)
                        if len(obj) == len(params):  # else duplicate names: exact path
                            return _dumps({"jsonrpc": "2.0", "method": event, "params": obj})
                else:
                    for v in params:
                        if type(v) is str:
                            if "\x00" in v:
                                break
                        elif v is not None and (type(v) is not int or not INT_MIN <= v <= INT_MAX):
                            break
                    else:
                        return _dumps({"jsonrpc": "2.0", "method": event, "params": params})
            elif params is None:
                return _dumps({"jsonrpc": "2.0", "method": event})
        except TypeError:
            pass  # a lone surrogate or a bad key: _build names the culprit
    return _build(event, params, 0, method_override, event_param, surrogateescape)


def build_payload_with_id(
    event: str,
    params: Params,
    id: int,
    *,
    method_override: str | None = None,
    event_param: str | None = None,
    surrogateescape: bool = False,
) -> bytes:
    """Build the payload with a JSON-RPC ``"id"`` first, as event_stream's reliable mode does.

    Example::

        >>> build_payload_with_id("E_X", {"n": 1}, 915243442)
        b'{"id":915243442,"jsonrpc":"2.0","method":"E_X","params":{"n":1}}'

    ``id`` must be a non-zero C ``int`` (OpenSIPS omits the key when the id is 0: use
    :func:`build_payload` for that). Everything else is as in :func:`build_payload`.
    """
    if type(id) is not int:
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"id must be int, not {type(id).__name__}")
        id = int(id)  # an IntEnum prints as its value
    if id == 0:
        raise ValueError("id must be non-zero (OpenSIPS omits the id when it is 0)")
    if not INT_MIN <= id <= INT_MAX:
        raise ValueError(f"id {id} is outside C int range [{INT_MIN}, {INT_MAX}]")
    return _build(event, params, id, method_override, event_param, surrogateescape)


# --- exact path ---------------------------------------------------------------------------


def _build(
    event: object,
    params: object,
    id_: int,
    method_override: object,
    event_param: object,
    surrogateescape: bool = False,
) -> bytes:
    """The reference implementation: full checks, NUL truncation, duplicate names."""
    method = name = _text("event name", event, non_empty=True)
    if method_override is not None:
        method = _text("method_override", method_override, non_empty=True)
    named, positional = _normalize(params)
    if event_param is not None:
        key = _text("event_param", event_param)
        if named:
            named.insert(0, (key, name))
        elif positional:
            positional.insert(0, name)

    head: dict[str, Any] = {"id": id_} if id_ else {}
    head["jsonrpc"] = "2.0"
    head["method"] = method
    try:
        if positional:
            head["params"] = positional
        elif named:
            obj = dict(named)
            if len(obj) != len(named):
                # Duplicate names (maybe only after NUL truncation) can't live in a dict:
                # splice the object in by hand, still escaping every piece with orjson.
                body = b",".join([_dumps(k) + b":" + _dumps(v) for k, v in named])
                return _dumps(head)[:-1] + b',"params":{' + body + b"}}"
            head["params"] = obj
        return _dumps(head)
    except TypeError:
        # All types were checked above, so orjson only refuses text that is not UTF-8.
        if surrogateescape:
            try:
                return _build_bytes(id_, method, named, positional)
            except UnicodeEncodeError:
                pass  # a surrogate surrogateescape does not produce: name it below
        _find_bad_text(event, method_override, event_param, params)
        raise  # pragma: no cover - _find_bad_text always raises


def _bytes_string(s: str) -> bytes:
    """cJSON ``print_string_ptr`` over the raw bytes ``s`` stands for (surrogateescape)."""
    return cjson_bytes_string(s.encode("utf-8", "surrogateescape"))


def _bytes_value(v: ParamValue) -> bytes:
    if v is None:
        return b"null"
    if type(v) is int:
        return b"%d" % v
    assert isinstance(v, str)
    return _bytes_string(v)


def _build_bytes(
    id_: int,
    method: str,
    named: list[tuple[str, ParamValue]] | None,
    positional: list[ParamValue] | None,
) -> bytes:
    """:func:`_build` for text holding surrogateescape bytes (orjson refuses those)."""
    out = [b'{"id":%d,' % id_ if id_ else b"{", b'"jsonrpc":"2.0","method":', _bytes_string(method)]
    if positional:
        out += [b',"params":[', b",".join(map(_bytes_value, positional)), b"]"]
    elif named:
        body = b",".join(_bytes_string(k) + b":" + _bytes_value(v) for k, v in named)
        out += [b',"params":{', body, b"}"]
    out.append(b"}")
    return b"".join(out)


def _normalize(
    params: object,
) -> tuple[list[tuple[str, ParamValue]] | None, list[ParamValue] | None]:
    """Check ``params``; return ``(named_pairs, None)`` or ``(None, positional_values)``."""
    if params is None:
        return None, None
    kind = type(params)
    # Exact type checks first: the Mapping/Sequence ABC checks are slow.
    if kind is dict or (kind is not list and kind is not tuple and isinstance(params, Mapping)):
        named: list[tuple[str, ParamValue]] = []
        for k, v in params.items():  # type: ignore[attr-defined]
            if type(k) is not str:
                if not isinstance(k, str):
                    raise TypeError(
                        f"param names must be str, not {type(k).__name__} ({_short(k)})"
                    )
                k = str.__str__(k)  # orjson refuses str subclasses as keys
            named.append((_cut(k), _value(v, k)))
        return named, None
    if (
        kind is list
        or kind is tuple
        or (isinstance(params, Sequence) and not isinstance(params, _NOT_SEQUENCES))
    ):
        seq: Sequence[object] = params  # type: ignore[assignment]
        if not seq:
            return None, None
        first = seq[0]
        if type(first) is not tuple or len(first) != 2 or not isinstance(first[0], str):
            return None, [_value(v, i) for i, v in enumerate(seq)]
        named = []
        for i, pair in enumerate(seq):
            if type(pair) is not tuple or len(pair) != 2:
                raise TypeError(
                    f"params[{i}] must be a (name, value) pair like params[0], "
                    f"not {type(pair).__name__} ({_short(pair)})"
                )
            k, v = pair
            if type(k) is not str:
                if k is None:
                    k = ""  # OpenSIPS: an unnamed param after a named one gets key ""
                elif isinstance(k, str):
                    k = str.__str__(k)
                else:
                    raise TypeError(
                        f"params[{i}]: param name must be str or None, "
                        f"not {type(k).__name__} ({_short(k)})"
                    )
            named.append((_cut(k), _value(v, k)))
        return named, None
    raise TypeError(
        "params must be a mapping, a sequence of (name, value) tuples, a sequence of values "
        f"or None, not {kind.__name__}"
    )


def _value(v: object, where: str | int) -> ParamValue:
    """Check one value; ``where`` (name or index) is only used to word an error."""
    if type(v) is str:
        return _cut(v)
    if v is None:
        return None
    if type(v) is int and INT_MIN <= v <= INT_MAX:
        return v
    label = f"param #{where}" if isinstance(where, int) else f"param {where!r}"
    if isinstance(v, bool):
        # bool is an int subclass; OpenSIPS has no boolean params, so say so rather than
        # silently printing 1/0 (or true/false).
        raise TypeError(f"{label}: bool is not a valid value (use int, str or None): {v!r}")
    if isinstance(v, int):
        if INT_MIN <= v <= INT_MAX:
            return int(v)  # an IntEnum prints as its value
        raise ValueError(f"{label}: int {v} is outside C int range [{INT_MIN}, {INT_MAX}]")
    if isinstance(v, str):
        return _cut(str.__str__(v))
    hint = " (named pairs need a str name in params[0])" if type(v) is tuple else ""
    raise TypeError(
        f"{label}: {type(v).__name__} is not a valid value (use int, str or None): "
        f"{_short(v)}{hint}"
    )


def _cut(s: str) -> str:
    """A C string ends at the first NUL."""
    return s if "\x00" not in s else s.partition("\x00")[0]


def _text(label: str, s: object, *, non_empty: bool = False) -> str:
    if type(s) is not str:
        if not isinstance(s, str):
            raise TypeError(f"{label} must be str, not {type(s).__name__} ({_short(s)})")
        s = str.__str__(s)
    if non_empty and not s:
        raise ValueError(f"{label} must not be empty")
    return _cut(s)


def _find_bad_text(
    event: object, method_override: object, event_param: object, params: object
) -> None:
    """Raise ValueError naming the first string that is not valid UTF-8 (a lone surrogate)."""
    labelled: list[tuple[str, object]] = [
        ("event name", event),
        ("method_override", method_override),
        ("event_param", event_param),
    ]
    if isinstance(params, Mapping):
        for k, v in params.items():
            labelled += [(f"param name {k!r}", k), (f"param {k!r}", v)]
    elif isinstance(params, Sequence):
        for i, item in enumerate(params):
            if type(item) is tuple and len(item) == 2:
                labelled += [(f"param name {item[0]!r}", item[0]), (f"param {item[0]!r}", item[1])]
            else:
                labelled.append((f"param #{i}", item))
    for label, s in labelled:
        if isinstance(s, str):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"{label} is not valid UTF-8 text ({exc.reason} at index {exc.start})"
                ) from None
    raise ValueError("payload text is not valid UTF-8")  # pragma: no cover - defensive


def _short(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."
