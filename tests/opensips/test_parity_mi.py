"""MI parity: the same requests, in the same order, to OpenSIPS's mi_http and to
``event-kafka serve``; each step's replies are compared under a decision:

* ``same``: identical replies;
* ``ids``: identical once event ids are dropped (OpenSIPS numbers its core events first);
* ``data``: same code and message; event-kafka adds ``data`` saying what is wrong;
* ``data-text``: same code and message, another ``data`` text (see the check);
* ``ek-rejects``: OpenSIPS says OK and fails later (in the Kafka worker's log); event-kafka
  checks up front (decisions 2 and 4 of the spec) and answers 400 with the reason;
* a function: a decided difference, checked by it (the reason is in its docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.opensips.osbed import Pair
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.opensips

Reply = dict[str, Any]


def _drop_ids(value: Any) -> Any:
    # Event ids differ (OpenSIPS registers its core events first); ttl may tick by a second.
    if isinstance(value, dict):
        return {
            k: ("<ttl>" if k == "ttl" and isinstance(v, int) else _drop_ids(v))
            for k, v in value.items()
            if k != "id" or "name" not in value
        }
    if isinstance(value, list):
        return [_drop_ids(v) for v in value]
    return value


def kafka_lookup_is_404_on_opensips(os_r: Reply, ek_r: Reply) -> None:
    """subscribers_list <event> <kafka socket>: OpenSIPS's kafka_evi_match compares broker
    pointers, so a parsed socket never matches (404); event-kafka finds the subscriber."""
    assert os_r["error"] == {"code": 404, "message": "Subscriber does not exist"}
    assert ek_r["result"]["Event"]["Subscriber"]["socket"].startswith("kafka:")


def kafka_resubscribe_duplicates(os_r: Reply, ek_r: Reply) -> None:
    """The same kafka socket subscribed three times (plain, refresh 100, refresh 200):
    OpenSIPS keeps three subscribers (no match), event-kafka one with the last expire."""
    os_subs = os_r["result"]["Event"]["Subscribers"]
    ek_subs = ek_r["result"]["Event"]["Subscribers"]
    assert [s["expire"] for s in os_subs] == [200, 100, 3600]  # newest first
    assert [s["expire"] for s in ek_subs] == [200]


def unsubscribed_at_once(os_r: Reply, ek_r: Reply) -> None:
    """expire=0 on a udp socket: OpenSIPS keeps it until the next expiry sweep (it shows
    ``"ttl":"expired"`` meanwhile); event-kafka removes it at once."""
    subs = os_r["result"]["Event"]["Subscribers"]
    assert subs == [{"socket": subs[0]["socket"], "expire": 0, "ttl": "expired"}]
    assert ek_r["result"] == {"Event": {}}


def kafka_expire0_keeps_subscriber(os_r: Reply, ek_r: Reply) -> None:
    """expire=0 on a kafka socket: OpenSIPS adds a 0-second subscriber beside the old ones
    (no match); event-kafka removes the one subscriber."""
    expires = [s["expire"] for s in os_r["result"]["Event"]["Subscribers"]]
    assert expires == [0, 200, 100, 3600]
    assert ek_r["result"] == {"Event": {}}


def _steps(bootstrap: str) -> list[tuple[str, Any, str | Callable[[Reply, Reply], None]]]:
    udp = f"udp:127.0.0.1:{free_udp_port()}"
    kafka = f"kafka:{bootstrap}/mi-parity"
    return [
        ("event_subscribe", None, "same"),
        ("event_subscribe", ["E_MI0"], "same"),
        ("event_subscribe", ["E_NOPE", udp], "data"),
        ("event_subscribe", ["", udp], "data-text"),
        ("event_subscribe", ["E_MI0", ""], "data-text"),
        ("event_subscribe", ["E_MI0", "kafka:"], "data"),
        ("event_subscribe", ["E_MI0", "Kafka:h:1/t"], "data"),
        # Not "kafka" without a colon: the EVI core hands event_kafka a length of -1, and
        # OpenSIPS reads past the string (seen: a 400, or an abort on a double free).
        ("event_subscribe", ["E_MI0", f"{kafka}?g.x=1&"], "data"),
        ("event_subscribe", ["E_MI4", f"{kafka}?key=other"], "ek-rejects"),
        ("event_subscribe", ["E_MI4", f"{kafka}?g.nosuch=1"], "ek-rejects"),
        ("event_subscribe", ["E_MI4", f"{kafka}?acks=all"], "ek-rejects"),
        ("event_subscribe", ["E_MI0", udp, -1], "same"),
        ("event_subscribe", ["E_MI0", udp, "x"], "same"),
        ("event_subscribe", {"event": "E_MI0", "socket": udp, "expire": "100"}, "same"),
        ("subscribers_list", ["E_MI0"], "ids"),
        ("event_subscribe", ["E_MI0", udp, 200], "same"),  # refresh
        ("subscribers_list", ["E_MI0"], "ids"),
        ("subscribers_list", ["E_MI0", udp], "ids"),
        ("subscribers_list", ["E_MI0", "udp:127.0.0.1:9"], "same"),
        ("subscribers_list", ["E_MI1"], "same"),
        ("subscribers_list", ["E_NOPE"], "same"),
        ("event_subscribe", ["E_MI0", udp, 0], "same"),
        ("subscribers_list", ["E_MI0"], unsubscribed_at_once),
        ("event_subscribe", ["E_MI2", kafka], "same"),
        ("event_subscribe", ["E_MI2", kafka, 100], "same"),
        ("event_subscribe", ["E_MI2", kafka, 200], "same"),
        ("subscribers_list", ["E_MI2"], kafka_resubscribe_duplicates),
        ("subscribers_list", ["E_MI2", kafka], kafka_lookup_is_404_on_opensips),
        ("event_subscribe", ["E_MI2", kafka, 0], "same"),
        ("subscribers_list", ["E_MI2"], kafka_expire0_keeps_subscriber),
        ("events_list", None, "events"),
        ("raise_event", None, "same"),
        ("raise_event", ["E_NOPE"], "same"),
        ("raise_event", ["E_MI3"], "same"),  # no subscribers: 480
        ("event_subscribe", ["E_MI3", udp], "same"),
        ("raise_event", ["E_MI3", "notjson"], "same"),
        ("raise_event", ["E_MI3", "[1]"], "same"),
        ("raise_event", {"event": "E_MI3", "params": {"a": 1}}, "same"),
        ("raise_event", {"event": "E_MI3", "params": True}, "same"),
        ("raise_event", {"event": "E_MI3", "params": [True]}, "same"),
        ("raise_event", {"event": "E_MI3", "params": [{"a": 1}]}, "same"),
        ("raise_event", {"event": "E_MI3", "params": 5}, "same"),
        ("raise_event", {"event": "E_MI3", "bogus": 1}, "same"),
        ("raise_event", ["E_MI3", '{"a":1}'], "same"),
        ("nosuch_cmd", None, "same"),
    ]


@pytest.fixture(scope="module")
def replies(pair: Pair) -> list[tuple[str, Any, Any, Reply, Reply]]:
    """The whole scenario, in order (steps depend on the ones before)."""
    out = []
    for method, params, decision in _steps(pair.bootstrap):
        os_r, ek_r = pair.both(method, params)
        out.append((method, params, decision, os_r, ek_r))
    return out


STEP_IDS = [f"{i:02d}-{m}" for i, (m, _, _) in enumerate(_steps("B"))]


@pytest.mark.parametrize("step", range(len(STEP_IDS)), ids=STEP_IDS)
def test_mi_step(replies: list[tuple[str, Any, Any, Reply, Reply]], step: int) -> None:
    _, _, decision, os_r, ek_r = replies[step]
    if decision == "same":
        assert ek_r == os_r
    elif decision == "ids":
        assert _drop_ids(ek_r) == _drop_ids(os_r)
    elif decision == "data":
        assert "data" not in os_r["error"]
        assert {k: v for k, v in ek_r["error"].items() if k != "data"} == os_r["error"]
        assert ek_r["error"]["data"]
    elif decision == "data-text":
        # An empty string: OpenSIPS says "Bad type for parameter", event-kafka "Empty value".
        assert ek_r["error"]["code"] == os_r["error"]["code"] == -32602
        assert ek_r["error"]["message"] == os_r["error"]["message"]
        assert "Bad type" in os_r["error"]["data"] and "Empty value" in ek_r["error"]["data"]
    elif decision == "ek-rejects":
        assert os_r["result"] == "OK"
        assert ek_r["error"]["code"] == 400 and ek_r["error"]["message"] == "Bad parameter value"
        assert ek_r["error"]["data"]
    elif decision == "events":
        # OpenSIPS lists its core events too; the events both publish are listed alike.
        os_names = [e["name"] for e in os_r["result"]["Events"]]
        ek_names = [e["name"] for e in ek_r["result"]["Events"]]
        assert all(e.startswith("E_CORE_") for e in set(os_names) - set(ek_names))
        assert set(ek_names) <= set(os_names)
        assert all(set(e) == {"name", "id"} for e in ek_r["result"]["Events"])
    else:
        decision(os_r, ek_r)


def test_invalid_json_and_envelopes(pair: Pair) -> None:
    for body in (
        b"nonsense",
        b'{"jsonrpc":"2.0","id":1}',
        b'{"jsonrpc":"1.0","id":1,"method":"events_list"}',
        b'{"jsonrpc":"2.0","id":"s","method":"which","params":[1,2,3]}',
    ):
        assert pair.ek.call_raw(body) == pair.os.call_raw(body), body
