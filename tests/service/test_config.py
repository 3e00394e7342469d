"""Service configuration: every error names its key path and line; secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_kafka.errors import ConfigError
from event_kafka.service.config import (
    KeyLines,
    ServiceConfig,
    ServiceSettings,
    check_subscriber_socket,
    load_config,
    load_config_text,
    parse_listen,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "event-kafka.toml"


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "svc.toml")
    return str(info.value)


# -- good files ---------------------------------------------------------------------------------


def test_example_config_is_valid() -> None:
    s = load_config(EXAMPLE)
    assert s.broker_id_names == ("k1", "dlq")
    assert "E_ACC_CDR" in s.published_events
    assert s.model.mi.default_report_route == "main"
    assert s.listen("udp") is not None and s.listen("tcp") is not None


def test_empty_file_gives_defaults() -> None:
    s = load_config_text("")
    m = s.model
    assert s.brokers == {} and s.token is None
    assert m.mi.listen == "127.0.0.1:8888" and m.mi.path == "/mi"
    assert m.kafka.flush_timeout == 10.0
    assert m.ingest.udp is None and m.ingest.tcp is None
    assert m.metrics.enabled and m.metrics.listen is None
    assert s.summary().startswith("0 broker_id(s)")


def test_subscribed_events_are_published_in_order() -> None:
    s = load_config_text(
        """
        [events]
        publish = ["E_B", "E_A"]
        [[subscriptions]]
        event = "E_C"
        socket = "kafka:127.0.0.1:9092/t"
        [[subscriptions]]
        event = "E_A"
        socket = "udp:127.0.0.1:9999"
        """
    )
    assert s.published_events == ("E_B", "E_A", "E_C")


def test_udp_and_tcp_subscriber_sockets() -> None:
    s = load_config_text(
        """
        [[subscriptions]]
        event = "E"
        socket = "udp:127.0.0.1:9999"
        [[subscriptions]]
        event = "E"
        socket = "tcp:127.0.0.1:9999/method"
        """
    )
    assert len(s.model.subscriptions) == 2
    assert check_subscriber_socket("udp:127.0.0.1:9") == check_subscriber_socket("udp:127.0.0.1:9")
    assert check_subscriber_socket("tcp:127.0.0.1:9") != check_subscriber_socket(
        "tcp:127.0.0.1:9/m"
    )


def test_token_file_relative_to_config_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cr3t-t0ken\n")
    cfg = tmp_path / "svc.toml"
    cfg.write_text('[mi]\ntoken_file = "token"\n')
    s = load_config(cfg)
    assert s.token == "s3cr3t-t0ken"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in s.summary()


def test_inline_token_hidden_from_repr() -> None:
    s = load_config_text('[mi]\ntoken = "hunter2hunter2"\n')
    assert s.token == "hunter2hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in repr(s.model)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:80", "127.0.0.1", 80),
        ("[::1]:0", "::1", 0),
        ("localhost:65535", "localhost", 65535),
    ],
)
def test_parse_listen(text: str, host: str, port: int) -> None:
    addr = parse_listen(text)
    assert (addr.host, addr.port) == (host, port)
    assert parse_listen(str(addr)) == addr


@pytest.mark.parametrize(
    "text", ["8888", ":80", "h:", "h:x", "h:70000", "::1:80", "[::1]80", "[zz]:1"]
)
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


# -- errors: key path and line ------------------------------------------------------------------


def test_unknown_keys_everywhere_with_lines() -> None:
    msg = refused(
        """broker_ids = []
bogus = 1

[mi]
listen = "127.0.0.1:1"
lisen = "x"

[[subscriptions]]
event = "E"
socket = "kafka:h:1/t"

[[subscriptions]]
event = "E2"
socket = "kafka:h:1/t"
expires = 5
"""
    )
    lines = msg.splitlines()
    assert "svc.toml:2: bogus: unknown key" in lines
    assert "svc.toml:6: mi.lisen: unknown key" in lines
    assert "svc.toml:15: subscriptions[1].expires: unknown key" in lines


def test_wrong_types_are_not_coerced() -> None:
    msg = refused(
        '[mi]\nmax_request_bytes = "65536"\nread_timeout = true\n[kafka]\nflush_timeout = -1\n'
    )
    assert "svc.toml:2: mi.max_request_bytes: Input should be a valid integer" in msg
    assert "svc.toml:3: mi.read_timeout:" in msg
    assert "svc.toml:5: kafka.flush_timeout: Input should be greater than or equal to 0" in msg


def test_bad_broker_id_line_of_element_and_secret_masked() -> None:
    msg = refused(
        """broker_ids = [
  "[k1]127.0.0.1:9092/t1",
  "[k2]127.0.0.1:9092/t2?g.sasl.password=TopSecret&g.no.such.prop=1",
]
"""
    )
    assert msg.startswith("svc.toml:3: broker_ids[1]: invalid broker_id")
    assert "no.such.prop" in msg
    assert "TopSecret" not in msg


def test_duplicate_broker_id() -> None:
    msg = refused('broker_ids = ["[k1]h:1/a", "[k2]h:1/b", "[k1]h:1/c"]\n')
    assert "svc.toml:1: broker_ids[2]: duplicate broker id [k1] (first in broker_ids[0])" in msg


def test_bad_subscription_socket_names_its_line_and_masks() -> None:
    msg = refused(
        """[[subscriptions]]
event = "E_OK"
socket = "kafka:h:1/t"

[[subscriptions]]
event = "E_BAD"
socket = "kafka:h:1/t?g.sasl.password=pw123456&t.acks=maybe"
"""
    )
    assert msg.startswith("svc.toml:7: subscriptions[1].socket: invalid Kafka socket")
    assert "pw123456" not in msg


@pytest.mark.parametrize(
    ("socket", "needle"),
    [
        ("Kafka:h:1/t", "unknown transport"),
        ("udp:127.0.0.1", "udp"),
        ("tcp:127.0.0.1:0", "tcp"),
        ("nosuch:x", "unknown transport"),
        ("", "subscriptions[0].socket"),
    ],
)
def test_bad_sockets(socket: str, needle: str) -> None:
    msg = refused(f'[[subscriptions]]\nevent = "E"\nsocket = "{socket}"\n')
    assert "subscriptions[0].socket" in msg and needle in msg


def test_duplicate_subscription() -> None:
    msg = refused(
        '[[subscriptions]]\nevent = "E"\nsocket = "kafka:h:1/t?t.acks=1&g.linger.ms=5"\n'
        '[[subscriptions]]\nevent = "E"\nsocket = "kafka:h:1/t?g.linger.ms=5&t.acks=1"\n'
    )
    assert "svc.toml:4: subscriptions[1]: same event and socket as subscriptions[0]" in msg


def test_event_names() -> None:
    msg = refused(f'[events]\npublish = ["E_OK", "{"X" * 65}"]\n')
    assert "events.publish[1]: event name 'XXXXXXXXXXXXXXXXXXXX'... is 65 bytes long" in msg
    assert "events.publish[0]: event name must not be empty" in refused(
        '[events]\npublish = [""]\n'
    )
    # The library's one rule (event_name.py): bytes, not characters; printable, no space.
    assert "is 66 bytes long: at most 64" in refused(f'[events]\npublish = ["{"€" * 22}"]\n')
    for bad in ("E X", "E\\nX", "E\\u007fX", "E\\u200bX", "E\\u0085X"):
        assert "non-printable character at position 1" in refused(
            f'[events]\npublish = ["{bad}"]\n'
        ), bad
    assert load_config_text(f'[events]\npublish = ["{"€" * 21}", "E_É:x/y"]\n')


def test_empty_or_special_config_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    for text in ("", "\n  \n", "# only a comment\n"):
        empty.write_text(text)
        with pytest.raises(ConfigError, match="the file has no settings"):
            load_config(empty)
    empty.write_text("[mi]\n")  # one table: every default, on purpose
    assert load_config(empty).model.mi.listen == "127.0.0.1:8888"
    assert load_config_text("").brokers == {}  # text API: defaults (library use, tests)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # no writer: a blocking open would never return
    for special in (fifo, tmp_path, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="cannot read the configuration file"):
            load_config(special)
    big = tmp_path / "big.toml"
    big.write_text("# x\n" * (1024 * 1024 // 4 + 1))
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_config(big)


def test_report_route_references() -> None:
    msg = refused(
        """broker_ids = ["[k1]h:1/t"]
[report_routes.main]
dead_letter = "nope"
[report_routes._internal]
[mi]
default_report_route = "missing"
"""
    )
    assert "svc.toml:3: report_routes.main.dead_letter: unknown broker_id [nope]" in msg
    assert "svc.toml:4: report_routes._internal: a route name" in msg
    assert "svc.toml:6: mi.default_report_route: no [report_routes.missing]" in msg


def test_report_route_log_values() -> None:
    msg = refused('[report_routes.r]\nlog = "sometimes"\n')
    assert "svc.toml:2: report_routes.r.log: Input should be 'none', 'failure' or 'all'" in msg


def test_token_problems(tmp_path: Path) -> None:
    assert "set either mi.token or mi.token_file" in refused(
        '[mi]\ntoken = "a"\ntoken_file = "/x"\n'
    )
    msg = refused(f'[mi]\ntoken_file = "{tmp_path}/none"\n')
    assert "svc.toml:2: mi.token_file: cannot read" in msg
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in refused(f'[mi]\ntoken_file = "{tmp_path}/empty"\n')
    msg = refused('[mi]\ntoken = "two words"\n')
    assert "whitespace" in msg and "two words" not in msg


def test_listen_addresses() -> None:
    msg = refused('[mi]\nlisten = "127.0.0.1:99999"\n')
    assert "svc.toml:2: mi.listen: port must be 0-65535" in msg
    msg = refused('[mi]\nlisten = "127.0.0.1:9000"\n[metrics]\nlisten = "127.0.0.1:9000"\n')
    assert "svc.toml:4: metrics.listen: same address as mi.listen" in msg
    msg = refused('[ingest.tcp]\nlisten = "127.0.0.1:8888"\n')
    assert "ingest.tcp.listen: same address as mi.listen" in msg
    # UDP and TCP may share a port number.
    load_config_text('[ingest.udp]\nlisten = "127.0.0.1:9"\n[ingest.tcp]\nlisten = "127.0.0.1:9"\n')
    assert "metrics.listen: needed when [mi] is disabled" in refused("[mi]\nenabled = false\n")


def test_missing_required_key() -> None:
    assert "svc.toml:1: ingest.udp.listen: missing (required)" in refused("[ingest.udp]\n")


def test_invalid_toml_reports_tomllib_line() -> None:
    msg = refused('broker_ids = [\n"a",\n[mi\n')
    assert msg.startswith("svc.toml: invalid TOML:") and "line 3" in msg


def test_unreadable_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path) -> None:
    p = tmp_path / "secret.toml"
    p.write_text("")
    p.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config(p)


def test_all_problems_reported_at_once() -> None:
    msg = refused('a = 1\n[mi]\nlisten = "x"\n[kafka]\nflush_timeout = "1"\n')
    assert len(msg.splitlines()) == 3


# -- the key scanner ----------------------------------------------------------------------------


def test_key_lines() -> None:
    text = '''title = "x"
a.b.c = 1
"quoted key" = 2
s = """
fake = 1
"""
arr = [
  1,   # one
  [2, 3],
  { x = 1 },
  "four, with comma",
]
[t]
k = 1
[[at]]
k = 1
[at.sub]
k = 2
[[at]]
k = 3
'''
    kl = KeyLines(text)
    assert kl.line_of(("title",)) == 1
    assert kl.line_of(("a", "b", "c")) == 2
    assert kl.line_of(("quoted key",)) == 3
    assert kl.line_of(("fake",)) is None
    assert [kl.line_of(("arr", i)) for i in range(4)] == [8, 9, 10, 11]
    assert kl.line_of(("t", "k")) == 14
    assert kl.line_of(("at", 0, "k")) == 16
    assert kl.line_of(("at", 0, "sub", "k")) == 18
    assert kl.line_of(("at", 1, "k")) == 20
    assert kl.line_of(("at", 1, "nothing")) == 19  # falls back to the table


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_accepted_or_refused_cleanly(text: str) -> None:
    try:
        result = load_config_text(text)
    except ConfigError:
        return
    assert isinstance(result, ServiceSettings)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "[mi]",
                "[kafka]",
                "[[subscriptions]]",
                "[ingest.udp]",
                'listen = "127.0.0.1:1"',
                'event = "E"',
                'socket = "kafka:h:1/t"',
                "flush_timeout = 1",
                "x = 1",
                'broker_ids = ["[a]h:1/t"]',
                "[report_routes.r]",
                'dead_letter = "a"',
            ]
        ),
        max_size=12,
    )
)
def test_structured_fuzz_never_crashes(lines: list[str]) -> None:
    try:
        load_config_text("\n".join(lines))
    except ConfigError as exc:
        # Every problem line names a place.
        for line in str(exc).splitlines():
            assert line.startswith("<config>")


# -- errors never echo secrets (issue 12 item 8) ------------------------------------------------

_PASTED = "[k9]127.0.0.1:9092/t?g.sasl.username=u&g.sasl.password=hunter2&g.ssl.key.pem=hunter2"
_Q = '"' + _PASTED + '"'

# A config error for every string-valued key (and key names) holding a pasted broker_id.
SECRET_ECHO_CASES = {
    "broker_ids": f"broker_ids = [{_Q}, {_Q}]",  # duplicate id
    "broker_ids bad": 'broker_ids = ["[k1]h/t?g.sasl.password=hunter2&g.linger.ms=-1"]',
    "dead_letter": f'broker_ids = ["[k1]h/t"]\n[report_routes.r]\ndead_letter = {_Q}',
    "default_report_route": f"[mi]\ndefault_report_route = {_Q}",
    "mi.listen": f'[mi]\nlisten = "127.0.0.1:{_PASTED}"',
    "mi.listen v6": '[mi]\nlisten = "[::1]:g.sasl.password=hunter2"',
    "metrics.listen": f"[metrics]\nlisten = {_Q}",
    "ingest.udp.listen": f"[ingest.udp]\nlisten = {_Q}",
    "ingest.tcp.listen": f"[ingest.tcp]\nlisten = {_Q}",
    "mi.token_file": f"[mi]\ntoken_file = {_Q}",
    "mi.path": f"[mi]\npath = {_Q}",
    "mi.allow_properties": f"[mi]\nallow_properties = [{_Q}]",
    "logging.level": f"[logging]\nlevel = {_Q}",
    "subscriptions.socket": f'[[subscriptions]]\nevent = "E"\nsocket = {_Q}',
    "subscriptions.socket udp": (
        '[[subscriptions]]\nevent = "E"\nsocket = "udp:g.sasl.password=hunter2:1"'
    ),
    "subscriptions.socket scheme": (
        '[[subscriptions]]\nevent = "E"\nsocket = "x.sasl.password=hunter2:1"'
    ),
    "subscriptions.event": f'[[subscriptions]]\nevent = {_Q}\nsocket = "kafka:h/t"',
    "events.publish": f"[events]\npublish = [{_Q}]",
    "unknown key": f"{_Q} = 1",
    "route name": f'broker_ids = ["[k1]h/t"]\n[report_routes.{_Q}]\nlog = "all"',
    "unknown table key": f"[mi]\n{_Q} = true",
}


@pytest.mark.parametrize("text", SECRET_ECHO_CASES.values(), ids=SECRET_ECHO_CASES.keys())
def test_config_errors_never_echo_secrets(text: str, tmp_path: Path) -> None:
    message = refused(text)
    assert "hunter2" not in message
    assert message.count("\n") < 5  # a real error, one line per problem


def _leaf_keys(model: type, prefix: str = "") -> list[tuple[str, bool]]:
    """Every setting of the config model: (dotted key, takes a list)."""
    import typing

    out: list[tuple[str, bool]] = []
    for name, f in model.model_fields.items():  # type: ignore[attr-defined]
        key = prefix + (f.alias or name)
        kinds = (f.annotation, *typing.get_args(f.annotation))
        sub = next((t for t in kinds if isinstance(t, type) and hasattr(t, "model_fields")), None)
        if sub is not None:
            out += _leaf_keys(sub, key + ".")
        else:
            out.append((key, typing.get_origin(f.annotation) is list))
    return out


def _config_with(key: str, value: str) -> str:
    table, _, leaf = key.rpartition(".")
    if table == "subscriptions":
        given = {"event": '"E"', "socket": '"kafka:h/t"', leaf: value}
        return "[[subscriptions]]\n" + "".join(f"{k} = {v}\n" for k, v in given.items())
    if table == "report_routes":
        return f'broker_ids = ["[k1]h/t"]\n[report_routes.r]\n{leaf} = {value}\n'
    return (f"[{table}]\n" if table else "") + f"{leaf} = {value}\n"


@pytest.mark.parametrize(("key", "is_list"), _leaf_keys(ServiceConfig), ids=lambda v: str(v))
def test_no_setting_echoes_a_pasted_secret(key: str, is_list: bool) -> None:
    """The class, not a list: every key of the model, present and future, given a pasted
    broker_id with a password, either accepts it or refuses it without showing the secret."""
    text = _config_with(key, f"[{_Q}]" if is_list else _Q)
    try:
        load_config_text(text)
    except ConfigError as exc:
        assert "hunter2" not in str(exc)


# -- [mi] allow_properties (issue 12 item 1) ---------------------------------------------------


def test_mi_allow_properties_widens_the_mi_policy() -> None:
    cfg = load_config_text('[mi]\nallow_properties = ["ssl.ca.location"]')
    assert cfg.mi_policy.allow == {"ssl.ca.location"}
    assert not cfg.mi_policy.trusted
    assert load_config_text("").mi_policy.allow == frozenset()


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ('["ssl.ca.locaton"]', "unknown librdkafka property 'ssl.ca.locaton'"),
        ('["ssl.*"]', "unknown librdkafka property 'ssl.*'"),
        ('["g.ssl.ca.location"]', "without the g. prefix"),
    ],
)
def test_mi_allow_properties_names_must_be_catalogued(names: str, fragment: str) -> None:
    message = refused(f"[mi]\nallow_properties = {names}")
    assert "mi.allow_properties" in message and fragment in message


def test_config_file_sockets_are_trusted() -> None:
    # The operator's own file may use any property librdkafka accepts.
    load_config_text(
        'broker_ids = ["[k1]h/t?g.ssl.ca.location=/etc/ssl/ca.pem"]\n'
        '[[subscriptions]]\nevent = "E"\nsocket = "kafka:h/t?g.ssl.providers=default"'
    )
