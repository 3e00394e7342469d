"""OpenSIPS's cJSON, as a codec: JSON decoded and printed the way OpenSIPS's bundled cJSON does.

OpenSIPS parses and prints JSON with its own copy of cJSON (``lib/cJSON.c``), which differs
from a plain JSON library in ways a peer can see:

* an object keeps every member in order, duplicate names included, and a lookup finds the
  first (:class:`JObject`, from :func:`loads_json`);
* numbers are doubles, printed by ``print_number`` (``1.5`` prints ``1.500000``,
  :func:`compact_json`), and read as C ``int`` by ``valueint`` (:func:`cjson_valueint`);
* strings are escaped by ``print_string_ptr``: ``\\" \\\\ \\b \\f \\n \\r \\t``, other controls as
  ``\\u00xx``, everything else raw; a NUL ends the string (:func:`cjson_string`,
  :func:`cjson_bytes_string` for raw bytes).

The MI replies, ingest and the Event Interface payload all print through this module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_JSON_DEPTH",
    "FloatText",
    "JObject",
    "cjson_bytes_string",
    "cjson_string",
    "cjson_valueint",
    "compact_json",
    "loads_json",
]

INT_MIN = -2147483648
INT_MAX = 2147483647
"""C ``int`` range: cJSON's ``valueint`` and OpenSIPS's event params."""


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
_BYTE_ESCAPES = {ord(c): e.encode() for c, e in _ESCAPES.items()}
_NEEDS_ESCAPE_BYTES = re.compile(rb'["\\\x00-\x1f]')


def cjson_string(s: str) -> str:
    """``s`` as a quoted JSON string, escaped as cJSON ``print_string_ptr`` does (cut at NUL)."""
    s = s.partition("\x00")[0]  # C strings end at NUL
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), s) + '"'


def cjson_bytes_string(raw: bytes) -> bytes:
    """:func:`cjson_string` over raw bytes (not necessarily UTF-8, copied as they are)."""
    esc = _NEEDS_ESCAPE_BYTES.sub(lambda m: _BYTE_ESCAPES.get(m[0][0], b"\\u%04x" % m[0][0]), raw)
    return b'"' + esc + b'"'


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
        return cjson_string(value)
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
        f"{cjson_string(k)}:{compact_json(v, cjson_numbers=cjson_numbers)}" for k, v in items
    )
    return "{" + inner + "}"
