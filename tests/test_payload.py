"""The Event Interface payload is byte-for-byte OpenSIPS's (spec §5.2, §9 item 8)."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from event_kafka.payload import (
    INT_MAX,
    INT_MIN,
    Params,
    ParamValue,
    build_payload,
    build_payload_with_id,
)

# --- §5.2 vectors, copied from the spec (checked there against OpenSIPS's lib/cJSON.c) -------


def test_spec_pike_blocked() -> None:
    assert (
        build_payload("E_PIKE_BLOCKED", {"ip": "192.168.2.11"})
        == b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11"}}'
    )


def test_spec_no_params() -> None:
    assert build_payload("E_NOPARAMS") == b'{"jsonrpc":"2.0","method":"E_NOPARAMS"}'


def test_spec_positional() -> None:
    assert (
        build_payload("E_MY_EVENT", [3, "5", -7, 0])
        == b'{"jsonrpc":"2.0","method":"E_MY_EVENT","params":[3,"5",-7,0]}'
    )


SPEC_X_PARAMS: list[tuple[str | None, ParamValue]] = [
    ("s", 'q"b\\s/t\tn\nr\rx\x01y\x7f\u00e9'),
    ("n", 2147483647),
    ("m", -2147483648),
    ("nul", None),
    ("dup", "a"),
    ("dup", "b"),
]
SPEC_X = (
    b'{"id":915243442,"jsonrpc":"2.0","method":"E_X","params":{"s":"q\\"b\\\\s/t\\tn\\nr\\rx'
    b'\\u0001y\x7f\xc3\xa9","n":2147483647,"m":-2147483648,"nul":null,"dup":"a","dup":"b"}}'
)


def test_spec_escapes_limits_null_duplicates_and_id() -> None:
    assert build_payload_with_id("E_X", SPEC_X_PARAMS, 915243442) == SPEC_X


def test_spec_same_without_id() -> None:
    assert build_payload("E_X", SPEC_X_PARAMS) == SPEC_X.replace(b'"id":915243442,', b"")


def test_spec_nul_truncates_and_unnamed_later_param_gets_empty_key() -> None:
    assert (
        build_payload("E_Y", [("k", "a\x00b"), (None, "unnamed")])
        == b'{"jsonrpc":"2.0","method":"E_Y","params":{"k":"a","":"unnamed"}}'
    )


# --- own vectors -------------------------------------------------------------------------


def test_non_bmp_utf8_passes_raw() -> None:
    out = build_payload("E", {"e": "\U0001f600 ok \u2028"})
    assert out == '{"jsonrpc":"2.0","method":"E","params":{"e":"\U0001f600 ok \u2028"}}'.encode()


SHORT = {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}


@pytest.mark.parametrize("code", range(1, 32))
def test_each_control_char(code: int) -> None:
    expected = SHORT.get(code, b"\\u%04x" % code)
    assert build_payload("E", ["<" + chr(code) + ">"]) == (
        b'{"jsonrpc":"2.0","method":"E","params":["<' + expected + b'>"]}'
    )


def test_control_char_hex_is_lowercase() -> None:
    assert b"\\u001f" in build_payload("E", ["\x1f\x1a\x0b"])
    assert b"\\u001a\\u000b" in build_payload("E", ["\x1f\x1a\x0b"])


def test_nul_is_not_escaped_but_cuts() -> None:
    assert build_payload("E", ["\x00abc"]) == b'{"jsonrpc":"2.0","method":"E","params":[""]}'
    assert (
        build_payload("E", {"a": "x\x00"}) == b'{"jsonrpc":"2.0","method":"E","params":{"a":"x"}}'
    )


def test_nul_in_names_and_method() -> None:
    assert (
        build_payload("E_A\x00junk", {"k\x00x": 1})
        == b'{"jsonrpc":"2.0","method":"E_A","params":{"k":1}}'
    )


def test_nul_truncation_can_make_duplicate_names() -> None:
    assert (
        build_payload("E", {"a\x00x": 1, "a\x00y": 2})
        == b'{"jsonrpc":"2.0","method":"E","params":{"a":1,"a":2}}'
    )


def test_empty_strings() -> None:
    assert build_payload("E", {"": ""}) == b'{"jsonrpc":"2.0","method":"E","params":{"":""}}'
    assert build_payload("E", ["", None]) == b'{"jsonrpc":"2.0","method":"E","params":["",null]}'


def test_names_and_method_are_escaped() -> None:
    assert (
        build_payload('E"\\\n', {'k"\\/\t\x02': 1})
        == b'{"jsonrpc":"2.0","method":"E\\"\\\\\\n","params":{"k\\"\\\\/\\t\\u0002":1}}'
    )


@pytest.mark.parametrize("empty", [None, {}, [], (), MappingProxyType({})])
def test_no_params_means_no_params_key(empty: Params) -> None:
    assert build_payload("E", empty) == b'{"jsonrpc":"2.0","method":"E"}'


def test_param_forms_agree() -> None:
    expected = b'{"jsonrpc":"2.0","method":"E","params":{"a":1,"b":"x"}}'
    assert build_payload("E", {"a": 1, "b": "x"}) == expected
    assert build_payload("E", OrderedDict([("a", 1), ("b", "x")])) == expected
    assert build_payload("E", MappingProxyType({"a": 1, "b": "x"})) == expected
    assert build_payload("E", [("a", 1), ("b", "x")]) == expected
    assert build_payload("E", (("a", 1), ("b", "x"))) == expected


def test_positional_tuple_and_order() -> None:
    assert (
        build_payload("E", (None, 1, "a"))
        == b'{"jsonrpc":"2.0","method":"E","params":[null,1,"a"]}'
    )


def test_int_limits() -> None:
    assert build_payload("E", [INT_MIN, INT_MAX, 0]) == (
        b'{"jsonrpc":"2.0","method":"E","params":[-2147483648,2147483647,0]}'
    )


@pytest.mark.parametrize("bad", [INT_MAX + 1, INT_MIN - 1, 2**64, -(2**70)])
def test_int_out_of_range_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match=r"param 'n': int .* outside C int range"):
        build_payload("E", {"n": bad})
    with pytest.raises(ValueError, match=r"param #1: int"):
        build_payload("E", [1, bad])


@pytest.mark.parametrize("bad", [True, False])
def test_bool_rejected(bad: bool) -> None:
    with pytest.raises(TypeError, match=r"param 'flag': bool is not a valid value"):
        build_payload("E", {"flag": bad})
    with pytest.raises(TypeError, match=r"param #0: bool"):
        build_payload("E", [bad])


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [(1.5, "float"), (1.0, "float"), (b"x", "bytes"), ({"a": 1}, "dict"), ([1], "list")],
)
def test_other_value_types_rejected(bad: object, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"param 'v': {type_name} is not a valid value"):
        build_payload("E", {"v": bad})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=rf"param #0: {type_name}"):
        build_payload("E", [bad])  # type: ignore[list-item]


def test_str_and_int_subclasses_accepted_as_values() -> None:
    class Code(enum.IntEnum):
        BUSY = 486

    class Tag(str):
        pass

    assert build_payload("E", {"c": Code.BUSY, "t": Tag("x")}) == (
        b'{"jsonrpc":"2.0","method":"E","params":{"c":486,"t":"x"}}'
    )
    assert build_payload("E", {Tag("k"): 1}) == b'{"jsonrpc":"2.0","method":"E","params":{"k":1}}'


@pytest.mark.parametrize("bad", ["abc", b"abc", bytearray(b"ab"), {1, 2}, 5, iter([1])])
def test_params_of_wrong_kind_rejected(bad: object) -> None:
    with pytest.raises(TypeError, match="params must be"):
        build_payload("E", bad)  # type: ignore[arg-type]


def test_non_str_names_rejected() -> None:
    with pytest.raises(TypeError, match="param names must be str, not int"):
        build_payload("E", {1: "a"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"params\[1\]: param name must be str or None"):
        build_payload("E", [("a", 1), (2, 3)])  # type: ignore[list-item]


def test_named_pairs_must_all_be_pairs() -> None:
    with pytest.raises(TypeError, match=r"params\[1\] must be a \(name, value\) pair"):
        build_payload("E", [("a", 1), 3])
    with pytest.raises(TypeError, match=r"params\[1\] must be a \(name, value\) pair"):
        build_payload("E", [("a", 1), ("b", 2, 3)])  # type: ignore[list-item]


def test_first_pair_without_str_name_is_not_a_pair() -> None:
    with pytest.raises(TypeError, match=r"param #0: tuple .*named pairs need a str name"):
        build_payload("E", [(None, 1), ("a", 2)])


def test_event_name_checks() -> None:
    with pytest.raises(ValueError, match="event name must not be empty"):
        build_payload("", {"a": 1})
    with pytest.raises(TypeError, match="event name must be str, not bytes"):
        build_payload(b"E")  # type: ignore[arg-type]
    # The 64-character rule belongs to publishing, not here.
    assert build_payload("E" * 200).startswith(b'{"jsonrpc":"2.0","method":"EEE')


@pytest.mark.parametrize(
    ("event", "params", "label"),
    [
        ("E\ud800", None, "event name"),
        ("E\ud800", {"a": 1}, "event name"),
        ("E", {"a": "x\udcff"}, "param 'a'"),
        ("E", {"a\udcff": 1}, "param name 'a\\\\udcff'"),
        ("E", ["ok", "x\udcff"], "param #1"),
        ("E", [("a", "x\udcff")], "param 'a'"),
        ("E", [("a", "x"), ("a", "\udcff")], "param 'a'"),
    ],
)
def test_lone_surrogates_rejected_with_name(event: str, params: Params, label: str) -> None:
    with pytest.raises(ValueError, match=rf"^{label} is not valid UTF-8 text"):
        build_payload(event, params)


def test_method_override() -> None:
    assert build_payload("E_X", {"a": 1}, method_override="my.method") == (
        b'{"jsonrpc":"2.0","method":"my.method","params":{"a":1}}'
    )
    with pytest.raises(ValueError, match="method_override must not be empty"):
        build_payload("E_X", method_override="")


def test_event_param() -> None:
    named = build_payload("E_X", {"a": 1}, event_param="event", method_override="m")
    assert named == b'{"jsonrpc":"2.0","method":"m","params":{"event":"E_X","a":1}}'
    positional = build_payload("E_X", [1], event_param="event")
    assert positional == b'{"jsonrpc":"2.0","method":"E_X","params":["E_X",1]}'
    # OpenSIPS adds it only when the event has params.
    assert build_payload("E_X", None, event_param="event") == b'{"jsonrpc":"2.0","method":"E_X"}'
    assert build_payload("E_X", {}, event_param="event") == b'{"jsonrpc":"2.0","method":"E_X"}'


def test_with_id_key_first() -> None:
    assert build_payload_with_id("E", None, 1) == b'{"id":1,"jsonrpc":"2.0","method":"E"}'
    assert build_payload_with_id("E", [1], -5, method_override="m") == (
        b'{"id":-5,"jsonrpc":"2.0","method":"m","params":[1]}'
    )
    assert build_payload_with_id("E", None, INT_MAX).startswith(b'{"id":2147483647,')


@pytest.mark.parametrize(
    ("bad", "exc"),
    [(0, ValueError), (INT_MAX + 1, ValueError), (INT_MIN - 1, ValueError), (True, TypeError)],
)
def test_with_id_rejects(bad: int, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        build_payload_with_id("E", None, bad)


def test_hot_and_exact_paths_agree() -> None:
    params: dict[str, ParamValue] = {
        "ip": "10.0.0.1",
        "port": 5060,
        "why": None,
        "esc": '"\\\t\x01',
    }
    fast = build_payload("E", params)
    # Only the event_param / override options force the exact path; "" as override would
    # be refused, so compare through an equal override.
    exact = build_payload("E", params, method_override="E")
    assert fast == exact
    assert build_payload("E", list(params.values())) == build_payload(
        "E", list(params.values()), method_override="E"
    )


# --- properties --------------------------------------------------------------------------


def c_string(s: str) -> bytes:
    """cJSON print_string_ptr over the UTF-8 bytes of a C string, written out plainly."""
    raw = s.encode("utf-8").split(b"\x00")[0]
    out = bytearray(b'"')
    for byte in raw:
        if byte == 0x22:
            out += b'\\"'
        elif byte == 0x5C:
            out += b"\\\\"
        elif byte == 0x08:
            out += b"\\b"
        elif byte == 0x0C:
            out += b"\\f"
        elif byte == 0x0A:
            out += b"\\n"
        elif byte == 0x0D:
            out += b"\\r"
        elif byte == 0x09:
            out += b"\\t"
        elif byte < 0x20:
            out += b"\\u%04x" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def c_value(v: ParamValue) -> bytes:
    if v is None:
        return b"null"
    if isinstance(v, int):
        return b"%d" % v
    return c_string(v)


def reference_payload(event: str, params: list[Any] | dict[str, Any] | None) -> bytes:
    """evi_build_payload as a straightforward transcription."""
    out = b'{"jsonrpc":"2.0","method":' + c_string(event)
    if not params:
        return out + b"}"
    if isinstance(params, dict):
        params = list(params.items())
    first = params[0]
    if isinstance(first, tuple):
        body = b",".join(c_string(k or "") + b":" + c_value(v) for k, v in params)
        return out + b',"params":{' + body + b"}}"
    return out + b',"params":[' + b",".join(c_value(v) for v in params) + b"]}"


any_text = st.text(st.characters(exclude_categories=["Cs"]))  # may contain NUL
clean_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
c_ints = st.integers(min_value=INT_MIN, max_value=INT_MAX)


def values(text: st.SearchStrategy[str]) -> st.SearchStrategy[ParamValue]:
    return st.one_of(st.none(), c_ints, text)


def params_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.dictionaries(text, values(text), max_size=6),
        st.lists(values(text), max_size=6),
        st.lists(st.tuples(text, values(text)), min_size=1, max_size=6),
    )


@given(
    event=clean_text.filter(bool),
    params=params_of(clean_text),
)
def test_property_structure(event: str, params: Any) -> None:
    payload = build_payload(event, params)
    payload.decode("utf-8")  # valid UTF-8
    doc = json.loads(payload, object_pairs_hook=list)
    if not params:
        assert doc == [("jsonrpc", "2.0"), ("method", event)]
        return
    assert [k for k, _ in doc] == ["jsonrpc", "method", "params"]
    assert doc[0][1] == "2.0"
    assert doc[1][1] == event
    got = doc[2][1]
    if isinstance(params, dict):
        assert got == list(params.items())
    elif isinstance(params[0], tuple):
        assert got == params  # order and duplicate names kept
    else:
        assert got == params


@given(event=any_text.filter(bool), params=params_of(any_text))
def test_property_matches_reference(event: str, params: Any) -> None:
    expected = reference_payload(event, params)
    assert build_payload(event, params) == expected
    # The exact path (taken with any option) and the tuple form give the same bytes.
    assert build_payload(event, params, method_override=event) == expected
    if isinstance(params, list):
        assert build_payload(event, tuple(params)) == expected


def test_every_code_point_matches_reference() -> None:
    # All of Unicode except surrogates (not UTF-8) and NUL (cuts the string): orjson's
    # escaping must equal cJSON's for each of them.
    text = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert (
        build_payload("E", [text])
        == b'{"jsonrpc":"2.0","method":"E","params":[' + c_string(text) + b"]}"
    )
    assert build_payload(text, {text: text}, method_override=text).count(c_string(text)) == 3


@given(s=any_text)
def test_property_string_escaping_matches_reference(s: str) -> None:
    assert (
        build_payload("E", [s]) == b'{"jsonrpc":"2.0","method":"E","params":[' + c_string(s) + b"]}"
    )


def test_surrogateescape_writes_the_raw_bytes_back() -> None:
    """Ingest keeps OpenSIPS's non-UTF-8 bytes as surrogateescape text; a rebuilt payload
    (tcp: with /method or reliable mode) carries them raw, escaped like cJSON does."""
    raw = b'q"\\\x01\xff\xc3/\xc3\xa9'
    v = raw.decode("utf-8", "surrogateescape")
    want = b'{"jsonrpc":"2.0","method":"E","params":{"a":"q\\"\\\\\\u0001\xff\xc3/\xc3\xa9"}}'
    assert build_payload("E", {"a": v}, surrogateescape=True) == want
    assert build_payload_with_id(
        "E", [v, 1, None], 7, surrogateescape=True, method_override="M"
    ) == (
        b'{"id":7,"jsonrpc":"2.0","method":"M","params":["q\\"\\\\\\u0001\xff\xc3/\xc3\xa9",1,null]}'
    )
    # Same text as the orjson path when there is nothing to escape back.
    assert build_payload("E", {"a": "é\x7f"}, surrogateescape=True) == build_payload(
        "E", {"a": "é\x7f"}
    )
    with pytest.raises(ValueError, match="not valid UTF-8"):
        build_payload("E", {"a": v})  # refused unless asked for
    with pytest.raises(ValueError, match="not valid UTF-8"):
        build_payload("E", {"a": "\ud800"}, surrogateescape=True)  # not from surrogateescape
