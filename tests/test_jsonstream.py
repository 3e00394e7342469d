"""The concatenated-JSON splitter (event_stream's wire format, ``event_kafka.jsonstream``):
where a stream is cut into segments never changes the objects it yields."""

from __future__ import annotations

import orjson
import pytest

from event_kafka.jsonstream import StreamError, StreamSplitter

# Strings holding braces, brackets, escaped quotes and an escaped backslash right before the
# closing quote: a splitter that tracked nesting without strings, or escapes without state
# across segments, ends an object in the wrong place.
OBJECTS = [
    b'{"a":"}"}',
    b'{"b":[1,{"c":"]"}],"d":"\\"{"}',
    b'{"e":"\\\\"}',
    b'{"f":"\\\\\\"}{"}',
    b'{"g":{"h":[[],{}]},"i":"\\u007b"}',
]
STREAM = b" \r\n".join(OBJECTS) + b"\n"


def _feed_all(s: StreamSplitter, segments: list[bytes]) -> list[bytes]:
    return [obj for seg in segments for obj in s.feed(seg)]


def test_objects_are_valid_json_and_split_as_written() -> None:
    assert all(isinstance(orjson.loads(o), dict) for o in OBJECTS)  # the fixture is sound
    assert StreamSplitter().feed(STREAM) == OBJECTS


def test_every_cut_point_gives_the_same_objects() -> None:
    for cut in range(len(STREAM) + 1):
        got = _feed_all(StreamSplitter(), [STREAM[:cut], STREAM[cut:]])
        assert got == OBJECTS, f"cut at byte {cut}: {STREAM[:cut]!r} | {STREAM[cut:]!r}"


def test_byte_by_byte_gives_the_same_objects() -> None:
    s = StreamSplitter()
    got = _feed_all(s, [STREAM[i : i + 1] for i in range(len(STREAM))])
    assert got == OBJECTS
    assert s.pending == 0


def test_pending_counts_an_incomplete_object_only() -> None:
    s = StreamSplitter()
    assert s.feed(b'  {"a":') == [] and s.pending == len(b'{"a":')
    assert s.feed(b"1}  ") == [b'{"a":1}'] and s.pending == 0


def test_junk_between_objects_stops_the_stream_keeping_what_came_before() -> None:
    with pytest.raises(StreamError, match="expected '\\{'") as e:
        StreamSplitter().feed(b'{"a":1} x{"b":2}')
    assert e.value.objects == [b'{"a":1}']


def test_a_pending_object_larger_than_max_size_is_refused() -> None:
    s = StreamSplitter(max_size=64)
    assert s.feed(b'{"ok":"' + b"x" * 40 + b'"}') != []  # under the limit
    with pytest.raises(StreamError, match="larger than 64 bytes"):
        for _ in range(10):
            s.feed(b'{"a":"' + b"y" * 20)  # never closed: grows by 26 bytes a segment


def test_nesting_deeper_than_max_depth_is_refused() -> None:
    ok = b'{"a":' * 3 + b"1" + b"}" * 3
    assert StreamSplitter(max_depth=3).feed(ok) == [ok]
    with pytest.raises(StreamError, match="deeper than 3"):
        StreamSplitter(max_depth=3).feed(b"{" + b'"a":[' * 3)
