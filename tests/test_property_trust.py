"""Trust levels for socket properties: the allow-list for untrusted sources (issue 12 item 1).

No broker needed: the catalogue is the one of the librdkafka confluent-kafka loads.
"""

from __future__ import annotations

import re

import pytest

from event_kafka import properties
from event_kafka.errors import ConfigError, SocketError
from event_kafka.kafka_socket import parse_broker_id, parse_socket
from event_kafka.properties import (
    TRUSTED,
    catalogue,
    check_property,
    classification,
    property_risk,
    untrusted_policy,
)

MI = untrusted_policy(source="the MI", hint="the operator can allow it in [mi] allow_properties")
PREFIX = {"global": "g.", "topic": "t."}


def test_every_catalogue_property_is_classified() -> None:
    """A new librdkafka property fails here until someone decides whether it is safe."""
    table = classification()
    cat = catalogue()
    missing = [
        PREFIX[scope] + name
        for scope in ("global", "topic")
        for name in cat.table(scope)  # type: ignore[arg-type]
        if PREFIX[scope] + name not in table
    ]
    assert missing == [], "classify these in properties.py (_SAFE_FOR_UNTRUSTED or _TRUSTED_ONLY)"


# Words in librdkafka's own description that say a property takes a path, a command, a
# library or a URL. Another property's name in `backquotes` does not count.
_RISKY_WORDS = re.compile(
    r"\b(paths?|files?|location|commands?|cmd|librar(y|ies)|plugins?|engines?|providers?"
    r"|urls?|endpoints?|director(y|ies)|shell|keytab|dlopen|executes?|runs?)\b",
    re.IGNORECASE,
)
# Reviewed: allowed from untrusted sources although their description has such a word.
_REVIEWED_SAFE = {
    "g.builtin.features": "only checks the build's features",
    "g.https.ca.pem": "the certificate itself, not a path",
    "g.ssl.ca.certificate.stores": "Windows store names; ignored on other systems",
    "g.ssl.endpoint.identification.algorithm": "none or https: hostname checking",
    "g.sasl.oauthbearer.grant.type": "an enum sent to the identity provider",
    "g.sasl.oauthbearer.assertion.algorithm": "an enum: the signing algorithm",
    "g.sasl.oauthbearer.metadata.authentication.type": "only 'none' (checked by value)",
    "t.auto.commit.enable": "legacy consumer only",
    "t.enable.auto.commit": "legacy consumer only",
    "t.offset.store.sync.interval.ms": "fsync interval; the file needs offset.store.method",
}


def test_catalogue_properties_that_take_a_path_command_or_library_are_trusted_only() -> None:
    """Walks librdkafka's own table at run time: a property whose description speaks of a
    path, file, command, library or URL must be trusted-only (or reviewed above), so a new
    librdkafka property of that kind cannot be waved onto the allow-list by mistake."""
    table = classification()
    cat = catalogue()
    wrong = []
    for scope in ("global", "topic"):
        for name, info in cat.table(scope).items():  # type: ignore[arg-type]
            key = PREFIX[scope] + name
            desc = re.sub(r"`[^`]*`", "", info.description)
            if not (_RISKY_WORDS.search(desc) or _RISKY_WORDS.search(name.replace(".", " "))):
                continue
            if table.get(key, properties.UNCLASSIFIED) is None and key not in _REVIEWED_SAFE:
                wrong.append(key)
    assert wrong == [], "these look like they take a path/command/library: classify them"
    assert all(table.get(k, "") is None for k in _REVIEWED_SAFE)  # the review is not stale


def test_no_property_is_both_safe_and_trusted_only() -> None:
    assert not properties.trust._SAFE_FOR_UNTRUSTED & properties.trust._TRUSTED_ONLY.keys()


def test_unclassified_property_is_refused_from_untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a property added by a newer librdkafka meets until it is classified.
    monkeypatch.setattr(
        properties.trust,
        "_SAFE_FOR_UNTRUSTED",
        properties.trust._SAFE_FOR_UNTRUSTED - {"g.linger.ms"},
    )
    assert property_risk("global", "linger.ms") == properties.UNCLASSIFIED
    assert check_property("global", "linger.ms", "5", policy=MI) is not None
    assert check_property("global", "linger.ms", "5") is None


# The probes and their class: each must be refused from the MI, accepted when trusted.
TRUSTED_ONLY_PROBES = [
    ("g.ssl.providers", "/tmp/evil", "loads code"),
    ("g.plugin.library.paths", "/tmp/evil.so", "loads code"),
    ("g.ssl.engine.location", "/tmp/evil.so", "loads code"),
    ("g.ssl.engine.id", "dynamic", "loads code"),
    ("g.sasl.kerberos.kinit.cmd", "touch /tmp/pwned", "runs a command"),
    ("g.sasl.kerberos.principal", "x; touch /tmp/pwned", "runs a command"),
    ("g.sasl.kerberos.keytab", "/etc/krb5.keytab", "runs a command"),
    ("g.sasl.kerberos.min.time.before.relogin", "1", "runs a command"),
    ("g.security.protocol", "SASL_PLAINTEXT", "runs a command"),  # no mechanism: GSSAPI
    ("g.sasl.mechanisms", "GSSAPI", "runs a command"),
    ("g.sasl.mechanism", "GSSAPI", "runs a command"),
    ("g.ssl.ca.location", "/etc/shadow", "reads a local file"),
    ("g.ssl.key.location", "/etc/shadow", "reads a local file"),
    ("g.ssl.keystore.location", "/etc/shadow", "reads a local file"),
    ("g.ssl.crl.location", "/etc/shadow", "reads a local file"),
    ("g.ssl.certificate.location", "/etc/shadow", "reads a local file"),
    ("g.https.ca.location", "/etc/shadow", "reads a local file"),
    ("g.sasl.oauthbearer.assertion.file", "/etc/shadow", "reads a local file"),
    ("g.sasl.oauthbearer.assertion.private.key.file", "/etc/shadow", "reads a local file"),
    ("g.sasl.oauthbearer.assertion.jwt.template.file", "/etc/shadow", "reads a local file"),
    ("g.sasl.oauthbearer.token.endpoint.url", "http://169.254.169.254/", "fetches a URL"),
    ("g.sasl.oauthbearer.method", "oidc", "fetches a URL"),
    ("g.sasl.oauthbearer.metadata.authentication.type", "azure_imds", "fetches a URL"),
    ("g.debug", "all", "fills the service's log"),
    ("g.receive.message.max.bytes", "2147483647", "grows memory"),
    ("g.queue.buffering.max.kbytes", "0x7fffffff", "grows memory"),
    ("g.queue.buffering.max.messages", "100001", "grows memory"),
    ("g.internal.termination.signal", "15", "sends a signal"),
]


@pytest.mark.parametrize(("prop", "value", "why"), TRUSTED_ONLY_PROBES)
def test_untrusted_socket_refuses(prop: str, value: str, why: str) -> None:
    text = f"kafka:h:9092/t?t.acks=1&{prop}={value}"
    with pytest.raises(SocketError) as info:
        parse_socket(text, policy=MI)
    msg = str(info.value)
    assert info.value.position == 24
    assert f"property {prop} at position 24: {why}" in msg
    assert "not allowed from the MI (the operator can allow it in [mi] allow_properties)" in msg
    # The library caller's own code and the operator's config are trusted (the default).
    sock = parse_socket(text) if prop != "g.debug" else parse_socket(text, policy=TRUSTED)
    assert sock.global_props[prop[2:]] == value


@pytest.mark.parametrize(
    "prop",
    [
        "g.linger.ms=5", "t.acks=all", "g.sasl.mechanisms=SCRAM-SHA-512",
        "g.sasl.mechanism=PLAIN", "g.security.protocol=SSL", "g.sasl.username=u",
        "g.sasl.password=p", "g.ssl.ca.pem=x", "g.sasl.oauthbearer.method=default",
        "g.compression.codec=lz4", "t.message.timeout.ms=1000", "g.client.id=ek",
        "g.queue.buffering.max.messages=100000", "g.receive.message.max.bytes=1000000",
    ],
)  # fmt: skip
def test_untrusted_socket_accepts_safe_properties(prop: str) -> None:
    parse_socket(f"kafka:h:9092/t?{prop}", policy=MI)


def test_sasl_needs_an_explicit_safe_mechanism_from_untrusted_sources() -> None:
    parse_socket("kafka:h/t?g.security.protocol=SASL_SSL&g.sasl.mechanism=PLAIN", policy=MI)
    with pytest.raises(SocketError, match=r"without g\.sasl\.mechanisms is GSSAPI") as info:
        parse_socket("kafka:h/t?t.acks=1&g.security.protocol=sasl_ssl", policy=MI)
    assert info.value.position == 19
    parse_socket(
        "kafka:h/t?g.security.protocol=sasl_ssl", policy=untrusted_policy(["sasl.mechanisms"])
    )


def test_broker_id_takes_a_policy_too() -> None:
    why = r"loads code \(OpenSSL providers are shared libraries\); not allowed from the MI"
    with pytest.raises(SocketError, match=why):
        parse_broker_id("[k]h/t?g.ssl.providers=x", policy=MI)
    assert parse_broker_id("[k]h/t?g.ssl.providers=x")[1].global_props["ssl.providers"] == "x"


def test_operator_widens_by_exact_name() -> None:
    wide = untrusted_policy(["ssl.ca.location", "sasl.mechanism"], source="the MI")
    parse_socket("kafka:h/t?g.ssl.ca.location=/etc/ssl/ca.pem", policy=wide)
    # An alias allows its target (the same librdkafka property) and the reverse.
    parse_socket("kafka:h/t?g.sasl.mechanisms=GSSAPI", policy=wide)
    with pytest.raises(SocketError, match=r"ssl\.key\.location"):
        parse_socket("kafka:h/t?g.ssl.key.location=/x", policy=wide)
    with pytest.raises(SocketError, match=r"ssl\.crl\.location"):
        parse_socket("kafka:h/t?g.ssl.crl.location=/x", policy=wide)


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["ssl.ca.*"], "unknown librdkafka property 'ssl.ca.*'"),
        (["ssl.providerz"], "unknown librdkafka property 'ssl.providerz'"),
        (["g.ssl.providers"], "write 'ssl.providers' without the g. prefix"),
        ([""], "unknown librdkafka property ''"),
    ],
)
def test_widening_with_an_unknown_name_is_an_error(names: list[str], error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("*", r"\*")):
        untrusted_policy(names)
