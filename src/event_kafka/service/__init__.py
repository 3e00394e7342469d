"""``event-kafka serve``: the module as a daemon.

One TOML file configures it (:mod:`.config`); opensips-cli drives it over the management
interface (:mod:`.mi`, served by :mod:`.http`); a real OpenSIPS feeds it events through
``udp:``/``tcp:`` subscriptions (:mod:`.ingest`); Prometheus scrapes it (:mod:`.metrics`).
:class:`~.service.Service` builds, starts and stops all of it (:mod:`.reload`,
:mod:`.readiness`); :mod:`.daemon` is the process around it (signals, logging, exit status).
:func:`run` starts it and returns the exit status::

    from event_kafka.service import run
    raise SystemExit(run("/etc/event-kafka/event-kafka.toml"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ConfigError, ServiceSettings, load_config

if TYPE_CHECKING:
    from .daemon import EX_CONFIG, run, serve_command

__all__ = ["EX_CONFIG", "ConfigError", "ServiceSettings", "load_config", "run", "serve_command"]


def __getattr__(name: str) -> Any:
    # The daemon pulls in aiohttp and prometheus-client; validating a file should not.
    if name in ("EX_CONFIG", "run", "serve_command"):
        from . import daemon

        return getattr(daemon, name)
    raise AttributeError(name)
