"""The one rule for event names (issue 12 item 7), at every library entry point."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from event_kafka import EventKafka
from event_kafka.event_interface import EventInterface, UnknownEventError
from event_kafka.event_name import (
    MAX_EVENT_NAME,
    EventNameError,
    check_event_name,
    event_name_problem,
)

GOOD = ["E_ACC_CDR", "E", "e.x-y:z/1", "É" * 32, "E" * MAX_EVENT_NAME, "事件"]
BAD = [
    "",
    "E X",
    "E\nINJECTED",
    "E\r",
    "E\t",
    "E\x00",
    "E\x7f",  # DEL
    "E\x85",  # C1 control (NEL)
    "E\u200b",  # zero-width space (format)
    "E\u202e",  # right-to-left override (format)
    "E\u2028",  # line separator
    "E\ud800",  # lone surrogate
    "E\U000e0001",  # tag character (format)
    "E" * (MAX_EVENT_NAME + 1),
    "€" * 22,  # 22 characters, 66 bytes: the limit is bytes, as in OpenSIPS
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert event_name_problem(name) is None
    assert check_event_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names(name: str) -> None:
    with pytest.raises(EventNameError) as info:
        check_event_name(name)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and "\r" not in str(info.value)  # safe in a log line


@pytest.mark.parametrize("tail", [" x", "x" * MAX_EVENT_NAME])
def test_a_secret_pasted_as_an_event_name_is_not_quoted(tail: str) -> None:
    # The message quotes the name's first 20 characters: a password may be among them.
    problem = event_name_problem("g.sasl.password=hunter2" + tail)
    assert problem is not None and "hunt" not in problem and "g.sasl.password=" in problem


def test_not_a_string() -> None:
    with pytest.raises(EventNameError, match="must be str, not int"):
        check_event_name(42)


@pytest.fixture
def evi() -> Iterator[EventInterface]:
    ek = EventKafka(flush_timeout=0.0)
    try:
        yield ek.evi
    finally:
        ek.close(0.0)


@pytest.mark.parametrize("name", ["E\nX", "E X", "€" * 22])
def test_every_library_entry_point(evi: EventInterface, name: str) -> None:
    with pytest.raises(EventNameError):
        evi.publish_event(name)
    # Never published, and said why: not a mere "unknown event".
    for call in (
        lambda: evi.subscribe(name, "udp:127.0.0.1:9"),
        lambda: evi.raise_event(name),
        lambda: evi.raise_event_script(name),
        lambda: evi.subscriber_count(name),
    ):
        with pytest.raises(EventNameError):
            call()
    with pytest.raises(UnknownEventError):
        evi.raise_event("E_VALID_BUT_UNKNOWN")
    assert evi.list_events() == []


@pytest.mark.parametrize("name", GOOD + BAD)
def test_config_and_ingest_give_the_library_verdict(name: str) -> None:
    """One validator: the config file and an ingested notification accept exactly the names
    the library accepts (the MI's commands: tests/service/test_mi.py)."""
    import json

    from event_kafka.errors import ConfigError
    from event_kafka.service.config import load_config_text
    from event_kafka.service.ingest import IngestError, parse_notification

    ok = event_name_problem(name) is None
    quoted = json.dumps(name)  # TOML basic strings take JSON's escapes
    try:
        load_config_text(f"[events]\npublish = [{quoted}]\n")
        config_ok = True
    except ConfigError:
        config_ok = False
    try:
        parse_notification(f'{{"jsonrpc":"2.0","method":{quoted}}}'.encode())
        ingest_ok = True
    except IngestError:
        ingest_ok = False
    assert (config_ok, ingest_ok) == (ok, ok)
