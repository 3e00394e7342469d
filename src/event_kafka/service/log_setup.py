"""The service's logging: one handler on the root logger, to stderr or syslog, text or JSON.

Text records stay on one line (newlines escaped), so journald and syslog never split one;
JSON records are one object per line with the traceback as a field. (Not ``logging.py``:
that name would shadow the standard library inside this package.)
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from datetime import datetime
from typing import Any

import orjson

from .config import LoggingSection, parse_listen

__all__ = ["setup_logging"]


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601, local time with offset, milliseconds: ``2026-05-01T12:00:00.123+02:00``."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; the traceback is a field, its newlines escaped by JSON."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class _LineFormatter(logging.Formatter):
    """Text, one record per line: newlines (multi-line messages, tracebacks) are escaped, so
    journald and syslog never split a record or take a line for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


_HANDLER_TAG = "_event_kafka_service"


def _syslog_handler(cfg: LoggingSection) -> logging.Handler:
    address: str | tuple[str, int] = cfg.syslog_address
    if not cfg.syslog_address.startswith("/"):
        addr = parse_listen(cfg.syslog_address)
        address = (addr.host, addr.port)  # UDP, as syslog over the network usually is
    handler = logging.handlers.SysLogHandler(
        address=address,
        facility=logging.handlers.SysLogHandler.facility_names[cfg.syslog_facility],
    )
    handler.ident = f"event-kafka[{os.getpid()}]: "
    return handler


def setup_logging(cfg: LoggingSection) -> None:
    """One handler on the root logger: stderr (journald takes stderr under systemd) or
    syslog (``output = "syslog"``; a Unix socket such as /dev/log, or UDP host:port).

    Raises:
        OSError: the syslog socket cannot be opened.
    """
    handler: logging.Handler
    if cfg.output == "syslog":
        handler = _syslog_handler(cfg)  # first: on failure the old handlers stay
        text_format = "%(levelname)s %(name)s: %(message)s"  # syslog adds time and host
    else:
        handler = logging.StreamHandler(sys.stderr)
        text_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    setattr(handler, _HANDLER_TAG, True)
    if cfg.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_LineFormatter(text_format))
    root.addHandler(handler)
    root.setLevel(cfg.level)
