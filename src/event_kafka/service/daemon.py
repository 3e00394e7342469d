"""``event-kafka serve``: the process around the :class:`~.service.Service`.

It loads the file, sets up logging (:mod:`.log_setup`), runs the service on an asyncio loop,
and maps signals onto it:

* ``SIGTERM`` / ``SIGINT``: stop accepting, flush for ``kafka.flush_timeout`` seconds, exit 0;
* ``SIGHUP``: reload the file, all or nothing (:mod:`.reload`).

Exit status: 0 after a clean stop, 78 (``EX_CONFIG``) for a configuration error, 1 when the
service cannot start (e.g. an address in use). With systemd (``Type=notify``) it reports
``READY=1``, ``RELOADING=1`` and ``STOPPING=1`` (:mod:`.systemd`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from .config import ConfigError, ServiceSettings, load_config
from .log_setup import setup_logging
from .mi import package_version
from .service import Service
from .systemd import sd_notify

__all__ = ["EX_CONFIG", "EX_START", "run", "serve_command"]

log = logging.getLogger("event_kafka.service")

EX_CONFIG = 78  # sysexits.h: systemd's RestartPreventExitStatus stops retrying a bad file
EX_START = 1


async def _main(settings: ServiceSettings, overrides: Mapping[str, str]) -> int:
    service = Service(settings)
    service.overrides = overrides
    try:
        await service.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EX_START
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, service.request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, service.request_reload, "SIGHUP")
    log.info(
        "event-kafka %s started (pid %d): %s", package_version(), os.getpid(), settings.summary()
    )
    sd_notify("READY=1")
    try:
        await service.wait_stopped()
        # Handlers stay installed while flushing: a second SIGTERM must not cut the flush
        # short (it is logged); systemd's TimeoutStopSec is the hard limit.
        await service.shutdown()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


def run(config_path: str | Path, overrides: Mapping[str, str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the process exit status.

    ``overrides`` are settings given on the command line (``{"logging.level": "DEBUG"}``);
    they win over the file and the environment, at start and at each reload.

    Example::

        raise SystemExit(run("/etc/event-kafka/event-kafka.toml"))
    """
    overrides = dict(overrides or {})
    try:
        settings = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        print(f"event-kafka: configuration refused:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        setup_logging(settings.model.logging)
    except OSError as exc:
        print(
            f"event-kafka: cannot open syslog {settings.model.logging.syslog_address}: {exc}",
            file=sys.stderr,
        )
        return EX_START
    return asyncio.run(_main(settings, overrides))


def serve_command(config: Path, check: bool, overrides: Mapping[str, str] | None = None) -> int:
    """``event-kafka serve -c FILE [--check] [--log-level L] [--log-format F]``: run, or
    (``check``) only validate the file."""
    if not check:
        return run(config, overrides)
    try:
        settings = load_config(config, overrides=overrides)
    except ConfigError as exc:
        print(f"event-kafka: configuration refused:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"{config}: OK ({settings.summary()})")
    return 0
