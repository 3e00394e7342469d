"""Configuration as operators keep it: secrets from files / the environment / systemd
credentials, EVENT_KAFKA_* overrides, command-line log flags, one-line logs, syslog."""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from event_kafka.devkafka import free_port
from event_kafka.service.config import ConfigError, load_config_text
from tests.service.ops_helpers import get, running_service
from tests.support import ServeProcess, wait_until

SECRET = "Gr3y-H3r0n-Secret-51"
EVENT_KAFKA = str(Path(sys.executable).parent / "event-kafka")

SASL = "g.security.protocol=SASL_PLAINTEXT&g.sasl.mechanism=PLAIN&g.sasl.username=sip"


def broker_id(ref: str) -> str:
    return f'broker_ids = ["[k1]127.0.0.1:1/t?{SASL}&g.sasl.password={ref}"]\n'


# -- secret references ---------------------------------------------------------------------------


def test_password_from_a_file_the_environment_or_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "kafka-pass").write_text(SECRET + "\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka-pass").write_text(SECRET)
    for ref, env in (
        (f"${{file:{tmp_path / 'kafka-pass'}}}", {}),
        ("${file:kafka-pass}", {}),  # relative: next to the configuration file
        ("${env:KAFKA_PASS}", {"KAFKA_PASS": SECRET}),
        ("${cred:kafka-pass}", {"CREDENTIALS_DIRECTORY": str(creds)}),
    ):
        s = load_config_text(broker_id(ref), "x.toml", base_dir=tmp_path, environ=env)
        assert s.brokers["k1"].global_props["sasl.password"] == SECRET, ref
        assert SECRET not in repr(s) and SECRET not in str(s.brokers["k1"]) + s.summary()


def test_mi_token_from_a_reference(tmp_path: Path) -> None:
    s = load_config_text('[mi]\ntoken = "${env:MI_TOKEN}"\n', environ={"MI_TOKEN": "t0k3n-abc"})
    assert s.token == "t0k3n-abc"


def refused(text: str, **kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "ek.toml", **kw)  # type: ignore[arg-type]
    return str(info.value)


def test_missing_or_bad_references_name_the_key_and_line(tmp_path: Path) -> None:
    text = "# secrets\n\n" + broker_id("${env:KAFKA_PASS}")
    assert refused(text, environ={}) == (
        "ek.toml:3: broker_ids[0]: ${env:KAFKA_PASS}: environment variable KAFKA_PASS is not set"
    )
    msg = refused(broker_id("${file:nope}"), base_dir=tmp_path, environ={})
    assert msg == (
        f"ek.toml:1: broker_ids[0]: ${{file:nope}}: cannot read {tmp_path}/nope: "
        "No such file or directory"
    )
    msg = refused(broker_id("${cred:kafka-pass}"), environ={})
    assert "CREDENTIALS_DIRECTORY is not set" in msg
    msg = refused(broker_id("${cred:../etc/passwd}"), environ={"CREDENTIALS_DIRECTORY": "/x"})
    assert "a credential name is a plain file name" in msg
    sub = '[events]\npublish = ["E"]\n[[subscriptions]]\nevent = "E"\n'
    sub += 'socket = "kafka:127.0.0.1:1/t?g.sasl.password=pre${env:P}"\n'
    assert refused(sub, environ={"P": "x"}).startswith(
        "ek.toml:5: subscriptions[0].socket: ${env:P}: a reference must be a whole property value"
    )
    assert "'${' that is not" in refused(broker_id("${env:P"), environ={})
    assert "unknown reference kind 'vault'" in refused(broker_id("${vault:x}"), environ={})
    assert "empty value" in refused(broker_id("${env:P}"), environ={"P": ""})


def test_resolved_secrets_never_appear_in_errors() -> None:
    # '&' cannot live in a socket value: refused without showing the value.
    msg = refused(broker_id("${env:P}"), environ={"P": SECRET + "&g.linger.ms=1"})
    assert "contains '&' or '='" in msg and SECRET not in msg
    # Another problem in the same socket: the error quotes the socket, password masked.
    text = broker_id("${env:P}").replace("g.sasl.username=sip", "g.sasl.usernme=sip")
    msg = refused(text, environ={"P": SECRET})
    assert "usernme" in msg and SECRET not in msg
    # Even in a property that is not a secret, a resolved value is redacted from errors.
    text = 'broker_ids = ["[k1]127.0.0.1:1/t?g.linger.ms=${env:P}"]\n'
    msg = refused(text, environ={"P": SECRET})
    assert "g.linger.ms" in msg and SECRET not in msg


@pytest.mark.asyncio
async def test_resolved_secret_stays_out_of_logs_mi_and_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "pass").write_text(SECRET)
    config = broker_id("${file:pass}") + (
        '[events]\npublish = ["E"]\n[[subscriptions]]\nevent = "E"\n'
        'socket = "kafka:127.0.0.1:1/t2?g.sasl.password=${file:pass}"\n'
        '[kafka]\nflush_timeout = 0\n[mi]\nlisten = "127.0.0.1:0"\n'
        '[logging]\nlevel = "DEBUG"\n'
    )
    caplog.set_level(logging.DEBUG)
    async with running_service(tmp_path, config, environ={}) as svc:
        assert svc.ek.kafka_publish("k1", "m") == 1
        assert svc.ek.evi.raise_event("E", {"a": 1}) == 1
        pages = [(await get(svc, "/metrics"))[1]]
        for method in ("subscribers_list", "get_statistics", "events_list"):
            body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
            reply = await svc.dispatcher.handle(body)
            pages.append(orjson.dumps(reply).decode())
        assert any("*****" in p for p in pages)  # the sockets are shown, masked
        for page in pages:
            assert SECRET not in page
    assert SECRET not in caplog.text


# -- environment and command line ----------------------------------------------------------------


def test_environment_overrides_are_typed_and_checked() -> None:
    env = {
        "EVENT_KAFKA_MI__LISTEN": "127.0.0.1:9999",
        "EVENT_KAFKA_MI__MAX_CONNECTIONS": "12",
        "EVENT_KAFKA_METRICS__CHECK_BROKERS": "true",
        "EVENT_KAFKA_LOGGING__LEVEL": "DEBUG",
        "EVENT_KAFKA_INGEST__UDP__LISTEN": "127.0.0.1:0",
        "EVENT_KAFKA_EVENTS__PUBLISH": '["E_A", "E_B"]',
        "EVENT_KAFKA_CACHE": "/not/a/setting",  # no '__': not a setting
    }
    m = load_config_text('[mi]\nlisten = "127.0.0.1:8888"\n', environ=env).model
    assert m.mi.listen == "127.0.0.1:9999" and m.mi.max_connections == 12
    assert m.metrics.check_brokers is True and m.logging.level == "DEBUG"
    assert m.ingest.udp is not None and m.ingest.udp.listen == "127.0.0.1:0"
    assert m.events.publish == ["E_A", "E_B"]
    # the command line wins over the environment
    m = load_config_text("", environ=env, overrides={"logging.level": "ERROR"}).model
    assert m.logging.level == "ERROR"


def test_bad_environment_overrides_name_the_variable() -> None:
    msg = refused("", environ={"EVENT_KAFKA_MI__MAX_CONNECTIONS": "many"})
    assert msg.startswith(
        "ek.toml (value from EVENT_KAFKA_MI__MAX_CONNECTIONS): mi.max_connections"
    )
    msg = refused("", environ={"EVENT_KAFKA_MI__MAX_CONNECTIONS": "0"})
    assert "greater than or equal to 1" in msg and "EVENT_KAFKA_MI__MAX_CONNECTIONS" in msg
    msg = refused("", environ={"EVENT_KAFKA_MI__LISTN": "127.0.0.1:1"})
    assert msg == "ek.toml (value from EVENT_KAFKA_MI__LISTN): mi.listn: no such setting" + (
        " (or not a single value)"
    )
    assert "no such setting" in refused("", environ={"EVENT_KAFKA_MI__": "x"})
    assert "no such setting" in refused("", environ={"EVENT_KAFKA_INGEST__UDP": "x"})


def test_command_line_log_flags(tmp_path: Path) -> None:
    port = free_port()
    config = f'[mi]\nlisten = "127.0.0.1:{port}"\n[logging]\nlevel = "ERROR"\n'
    flags = ["--log-level", "debug", "--log-format", "json"]
    with ServeProcess(tmp_path, config, port, args=flags) as d:
        d.start()
        # The "started" record is what this test reads (readiness was /health/live).
        wait_until(lambda: "started (pid" in d.log(), 30, "the started record")
        assert d.stop() == 0
    lines = d.log().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is one JSON record
    started = next(r for r in records if "started (pid" in r["message"])
    assert started["level"] == "INFO"  # the file said ERROR: the flag won
    # sub-second, with a UTC offset
    when = datetime.fromisoformat(started["time"])
    assert when.utcoffset() is not None and "." in started["time"]
    assert abs(when.timestamp() - time.time()) < 120


def test_syslog_address_is_checked() -> None:
    msg = refused('[logging]\noutput = "syslog"\nsyslog_address = "localhost"\n')
    assert msg.startswith(
        "ek.toml:3: logging.syslog_address: a Unix socket path (/dev/log) or host:port"
    )
