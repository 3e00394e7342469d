"""librdkafka property catalogue, validation and secret masking (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator

import confluent_kafka
import pytest

from event_kafka import properties
from event_kafka.errors import ConfigError
from event_kafka.properties import (
    MASK,
    PropertyInfo,
    PropertyMap,
    catalogue,
    check_property,
    is_sensitive,
    mask_properties,
    parse_catalogue,
    property_info,
    redact,
    secret_values,
    validation_backend,
)

# --------------------------------------------------------------------------------------------
# Catalogue (from the librdkafka confluent-kafka loads)


def test_catalogue_comes_from_the_loaded_library() -> None:
    cat = catalogue()
    assert cat.version == confluent_kafka.libversion()[0]
    assert "ctypes" in validation_backend()
    assert len(cat.global_props) > 100
    assert len(cat.topic_props) > 10
    assert catalogue() is cat  # cached


@pytest.mark.parametrize(
    ("scope", "name", "role", "alias_of"),
    [
        ("global", "linger.ms", "P", "queue.buffering.max.ms"),
        ("global", "queue.buffering.max.ms", "P", None),
        ("global", "client.id", "*", None),
        ("global", "group.id", "C", None),
        ("global", "topic.metadata.refresh.interval.ms", "*", None),
        ("global", "compression.codec", "P", None),
        ("topic", "compression.codec", "P", None),
        ("topic", "compression.type", "P", "compression.codec"),
        ("topic", "acks", "P", "request.required.acks"),
        ("topic", "message.timeout.ms", "P", None),
    ],
)
def test_catalogue_rows(
    scope: properties.Scope, name: str, role: str, alias_of: str | None
) -> None:
    info = property_info(scope, name)
    assert info is not None
    assert (info.name, info.scope, info.role, info.alias_of) == (name, scope, role, alias_of)


@pytest.mark.parametrize(
    ("scope", "name"), [("topic", "linger.ms"), ("global", "acks"), ("global", "nope.nope")]
)
def test_catalogue_scope(scope: properties.Scope, name: str) -> None:
    assert property_info(scope, name) is None


@pytest.mark.parametrize(
    ("scope", "name"),
    [
        ("global", "dr_msg_cb"),
        ("global", "opaque"),
        ("global", "error_cb"),
        ("topic", "partitioner_cb"),
    ],
)
def test_callbacks_are_code_only(scope: properties.Scope, name: str) -> None:
    info = property_info(scope, name)
    assert info is not None and info.code_only


def test_parse_catalogue_handles_pipes_in_default_column() -> None:
    text = "\n".join(
        [
            "## Global configuration properties",
            "",
            "Property | C/P | Range | Default | Importance | Description",
            "---------|-----|-------|--------:|------------|------------",
            "a.b      |  *  | 0 .. 5 | 1 | low | Thing. <br>*Type: integer*",
            'k.cmd    |  *  |        | kinit -k || kinit -t "x" | low | Command <br>*Type: string*',
            "x.y      |  P  |        |   | high | Alias for `a.b`: Thing. <br>*Type: integer*",
            "",
            "## Topic configuration properties",
            "",
            "cb       |  P  |        |   | low | Callback <br>*Type: see dedicated API*",
        ]
    )
    global_props, topic_props = parse_catalogue(text)
    assert global_props["a.b"] == PropertyInfo(
        "a.b", "global", "*", "0 .. 5", "1", "integer", None, "Thing. <br>*Type: integer*"
    )
    assert global_props["k.cmd"].default == 'kinit -k || kinit -t "x"'
    assert global_props["x.y"].alias_of == "a.b"
    assert topic_props["cb"].code_only


def test_parse_catalogue_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_catalogue("no tables here")


# --------------------------------------------------------------------------------------------
# check_property


@pytest.mark.parametrize(
    ("scope", "name", "value"),
    [
        ("global", "linger.ms", "100"),
        ("global", "linger.ms", "5.5"),  # float property
        ("global", "queue.buffering.max.ms", "0"),
        ("global", "enable.idempotence", "true"),
        ("global", "compression.codec", "lz4"),
        ("global", "compression.type", "zstd"),
        ("global", "topic.metadata.refresh.interval.ms", "1000"),
        ("global", "sasl.password", "anything at all"),
        ("global", "client.id", ""),
        ("global", "debug", "broker,topic"),
        ("global", "security.protocol", "sasl_ssl"),
        ("topic", "acks", "all"),
        ("topic", "acks", "-1"),
        ("topic", "request.required.acks", "1"),
        ("topic", "message.timeout.ms", "1000"),
        ("topic", "partitioner", "murmur2_random"),
        ("topic", "compression.codec", "inherit"),
    ],
)
def test_valid_properties(scope: properties.Scope, name: str, value: str) -> None:
    assert check_property(scope, name, value) is None


@pytest.mark.parametrize(
    ("scope", "name", "value", "expected"),
    [
        ("global", "acks", "all", "acks is a topic-level property: write t.acks"),
        ("global", "message.timeout.ms", "1", "message.timeout.ms is a topic-level property"),
        ("global", "topic.acks", "1", "acks is a topic-level property: write t.acks"),
        ("topic", "linger.ms", "5", "linger.ms is a global property: write g.linger.ms"),
        ("topic", "topic.metadata.refresh.interval.ms", "5", "write g.topic.metadata.refresh"),
        ("global", "foo.bar", "1", "unknown librdkafka property 'foo.bar'"),
        ("global", "lingr.ms", "1", "did you mean g.linger.ms?"),
        ("topic", "akcs", "1", "did you mean t.acks?"),
        (
            "topic",
            "acks",
            "bogus",
            'invalid value: Invalid value for configuration property "request',
        ),
        ("global", "linger.ms", "-5", "value -5 is outside allowed range 0..900000"),
        ("global", "linger.ms", "abc", "invalid value"),
        ("global", "linger.ms", "", "cannot be set to empty value"),
        ("global", "compression.codec", "brotli", 'Invalid value "brotli"'),
        ("global", "enable.idempotence", "maybe", "Expected bool value"),
        ("topic", "partitioner", "nope", "invalid value"),
        ("global", "group.id", "g", "group.id is a consumer property, has no effect on a producer"),
        ("global", "enable.auto.commit", "true", "consumer property"),
        ("topic", "auto.offset.reset", "earliest", "consumer property"),
        ("global", "opaque", "x", "opaque can only be set from code"),
        ("global", "background_event_cb", "x", "can only be set from code"),
        ("global", "ssl_key", "x", "can only be set from code"),
        ("topic", "partitioner_cb", "x", "can only be set from code"),
        ("global", "dr_cb", "x", "dr_cb is set by event-kafka itself"),
        ("global", "dr_msg_cb", "x", "set by event-kafka itself"),
        ("global", "delivery.report.only.error", "true", "set by event-kafka itself"),
        ("global", "error_cb", "x", "set by event-kafka itself"),
        ("global", "stats_cb", "x", "set by event-kafka itself"),
        ("global", "on_delivery", "x", "set by event-kafka itself"),
        ("global", "logger", "x", "set by event-kafka itself"),
        ("global", "bootstrap.servers", "h:1", "write the brokers in the socket"),
        ("global", "metadata.broker.list", "h:1", "write the brokers in the socket"),
        ("topic", "bootstrap.servers", "h:1", "not as t.bootstrap.servers"),
        ("global", "transactional.id", "x", "does not use transactions"),
        ("global", "", "x", "empty property name"),
        ("global", "client.id", "\ud800", "not valid Unicode"),
    ],
)
def test_invalid_properties(scope: properties.Scope, name: str, value: str, expected: str) -> None:
    reason = check_property(scope, name, value)
    assert reason is not None
    assert expected in reason


def test_trusted_allows_code_loading_properties_without_loading_them() -> None:
    # Not dlopen'ed at parse time: a missing file is accepted here (the producer reports it).
    assert check_property("global", "plugin.library.paths", "/nonexistent") is None
    assert check_property("global", "ssl.engine.location", "/x") is None
    assert check_property("global", "sasl.kerberos.kinit.cmd", "kinit") is None


class _EchoBackend:
    """A backend whose librdkafka errors echo the value, like real ones often do."""

    description = "echo"

    def info(self, scope: properties.Scope, name: str) -> PropertyInfo | None:
        return PropertyInfo(name, scope, "*", "", "", "string", None, "")

    def names(self) -> tuple[()]:
        return ()

    def set(self, scope: properties.Scope, name: str, value: str) -> str | None:
        return f'Invalid value "{value}" for configuration property "{name}"'


def test_librdkafka_reason_never_echoes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(properties.validation, "_backend", lambda: _EchoBackend())
    reason = check_property("global", "sasl.password", "hunter2hunter2")
    assert reason is not None and "hunter2" not in reason and MASK in reason
    reason = check_property("global", "client.id", "visible")
    assert reason is not None and "visible" in reason  # not a secret: shown


# --------------------------------------------------------------------------------------------
# Fallback validator (no ctypes)


@pytest.fixture
def probe_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    properties.librdkafka._backend.cache_clear()
    monkeypatch.setattr(properties.librdkafka, "_library_candidates", lambda: [])
    try:
        yield
    finally:
        properties.librdkafka._backend.cache_clear()


@pytest.mark.usefixtures("probe_backend")
def test_fallback_is_used_when_ctypes_fails() -> None:
    assert "Producer probe" in validation_backend()
    with pytest.raises(ConfigError, match="catalogue unavailable"):
        catalogue()


@pytest.mark.usefixtures("probe_backend")
@pytest.mark.parametrize(
    ("scope", "name", "value", "expected"),
    [
        ("global", "linger.ms", "5", None),
        ("global", "topic.metadata.refresh.interval.ms", "5", None),
        ("topic", "acks", "all", None),
        ("topic", "message.timeout.ms", "100", None),
        ("global", "sasl.password", "x", None),
        ("global", "acks", "all", "acks is a topic-level property: write t.acks"),
        ("topic", "linger.ms", "5", "linger.ms is a global property: write g.linger.ms"),
        ("global", "foo.bar", "1", "unknown librdkafka property"),
        ("topic", "acks", "bogus", "invalid value"),
        ("global", "linger.ms", "-5", "outside allowed range"),
        ("global", "enable.idempotence", "maybe", "Expected bool value"),
        ("global", "socket.keepalive.enable", "maybe", "Expected bool value"),
        ("global", "dr_msg_cb", "x", "set by event-kafka itself"),
        ("global", "opaque", "x", "can only be set from code"),
    ],
)
def test_fallback_validation(
    scope: properties.Scope, name: str, value: str, expected: str | None
) -> None:
    reason = check_property(scope, name, value)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


# --------------------------------------------------------------------------------------------
# Secrets


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("sasl.password", True),
        ("g.sasl.password", True),
        ("ssl.key.password", True),
        ("ssl.keystore.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("sasl.oauthbearer.client.credentials.client.secret", True),
        ("sasl.oauthbearer.assertion.private.key.passphrase", True),
        ("sasl.oauthbearer.assertion.private.key.pem", True),
        ("ssl.key.pem", True),
        ("ssl_key", True),
        ("sasl.oauthbearer.config", True),
        ("some.future.Secret.thing", True),
        ("sasl.username", False),
        ("ssl.key.location", False),
        ("ssl.certificate.pem", False),
        ("ssl.ca.pem", False),
        ("linger.ms", False),
        ("client.id", False),
    ],
)
def test_is_sensitive(name: str, sensitive: bool) -> None:
    assert is_sensitive(name) is sensitive


def test_mask_and_secret_values() -> None:
    props = {"sasl.username": "u", "sasl.password": "pw", "ssl.key.password": ""}
    assert mask_properties(props) == {
        "sasl.username": "u",
        "sasl.password": MASK,
        "ssl.key.password": MASK,
    }
    assert secret_values(props) == ("pw",)  # empty values are not secrets to hunt for


def test_redact() -> None:
    assert redact("auth failed for pw123 (pw123)", ["pw123"]) == "auth failed for ***** (*****)"
    assert redact("abcdef", ["abc", "abcdef", ""]) == MASK  # longest first, empty ignored
    holder = PropertyMap({"sasl.password": "s3cr3t", "client.id": "me"})
    assert redact("me: s3cr3t", holder) == "me: *****"


def test_property_map() -> None:
    a = PropertyMap({"b": "2", "a": "1"})
    b = PropertyMap([("a", "1"), ("b", "2")])
    assert a == b and hash(a) == hash(b)
    assert a == {"a": "1", "b": "2"}
    assert a != PropertyMap({"a": "1"})
    assert list(a) == ["a", "b"] and len(a) == 2 and a["a"] == "1"
    assert not hasattr(a, "__setitem__")
    masked = repr(PropertyMap({"sasl.password": "s3cr3t"}))
    assert "s3cr3t" not in masked and MASK in masked
