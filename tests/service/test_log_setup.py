"""Logging (``event_kafka.service.log_setup``): one record per line, JSON, syslog."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from event_kafka.service.config import LoggingSection
from event_kafka.service.log_setup import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def _log_an_exception() -> None:
    log = logging.getLogger("event_kafka.test")
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        log.exception("failed:\n%s", "multi\nline")


@pytest.mark.usefixtures("restore_logging")
def test_json_logging_applies_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LoggingSection(level="WARNING", format="json"))
    logging.getLogger("event_kafka.test").warning("hello %s", "world")
    logging.getLogger("event_kafka.test").info("not shown")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = orjson.loads(line)
    assert record["level"] == "WARNING" and record["message"] == "hello world"
    assert record["logger"] == "event_kafka.test"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_record_per_line(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LoggingSection(level="INFO", format=fmt))  # type: ignore[arg-type]
    _log_an_exception()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    if fmt == "json":
        record = orjson.loads(lines[0])
        assert record["message"] == "failed:\nmulti\nline"
        assert "Traceback" in record["exception"] and "second line" in record["exception"]
        assert "." in record["time"]
    else:
        assert "failed:\\nmulti\\nline" in lines[0] and "Traceback" in lines[0]
        assert "ValueError: first line\\nsecond line" in lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_syslog_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        port = sink.getsockname()[1]
        cfg = LoggingSection(
            output="syslog", syslog_address=f"127.0.0.1:{port}", syslog_facility="local3"
        )
        setup_logging(cfg)
        _log_an_exception()
        data = sink.recv(65535).decode()
    # <PRI> = facility local3 (19) * 8 + error (3)
    assert data.startswith(f"<{19 * 8 + 3}>event-kafka[{os.getpid()}]: ERROR event_kafka.test: ")
    assert "\n" not in data.rstrip("\x00\n") and "second line" in data


@pytest.mark.usefixtures("restore_logging")
def test_syslog_on_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        sink.settimeout(10)
        setup_logging(LoggingSection(output="syslog", syslog_address=path, format="json"))
        logging.getLogger("event_kafka.test").warning("hello")
        data = sink.recv(65535).decode()
    record = orjson.loads(data[data.index("{") :].rstrip("\x00"))
    assert record["message"] == "hello" and record["level"] == "WARNING"
