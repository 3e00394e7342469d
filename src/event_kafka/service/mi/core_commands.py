"""The MI's own commands: ``which``, ``version``, ``uptime``, ``get_statistics``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ...cjson import cjson_valueint
from .errors import MIError, bad_type
from .jsonrpc import MIDispatcher
from .params import Params
from .protocol import MIService

__all__ = ["CoreCommands", "package_version", "server_string"]


def package_version() -> str:
    try:
        return version("event-kafka")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def server_string() -> str:
    """``event-kafka X.Y.Z (confluent-kafka A, librdkafka B)`` for ``version``."""
    try:
        import confluent_kafka

        client, lib = confluent_kafka.__version__, confluent_kafka.libversion()[0]
        libs = f" (confluent-kafka {client}, librdkafka {lib})"
    except Exception:  # pragma: no cover
        libs = ""
    return f"event-kafka {package_version()}{libs}"


def _ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


@dataclass
class CoreCommands:
    """The handlers; ``dispatcher`` returns the dispatcher they are installed in."""

    service: MIService
    dispatcher: Callable[[], MIDispatcher | None]
    server: str = field(default_factory=server_string)

    def which(self, p: Params) -> Any:
        d = self.dispatcher()
        assert d is not None
        if not p.has("command"):
            return d.names()
        name = p.string("command")
        if name.endswith(":") and len(name) > 1:
            found = [n for n in d.names() if n.startswith(name)]
            if found:
                return found
            raise MIError(404, "unknown MI command")
        cmd = d.lookup(name)
        if cmd is None:
            raise MIError(404, "unknown MI command")
        return [list(r.params) for r in cmd.recipes]

    def version(self, p: Params) -> Any:
        return {"Server": self.server}

    def uptime(self, p: Params) -> Any:
        now = time.time()
        started = self.service.started_at
        return {
            "Now": _ctime(now),
            "Up since": _ctime(started),
            "Up time": f"{int(now - started)} [sec]",
        }

    def get_statistics(self, p: Params) -> Any:
        wanted = p.array("statistics")
        groups = self.service.statistics()
        out: dict[str, int | float] = {}
        found = False
        for item in wanted:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise bad_type("statistics", array_item=True)
            name = item if isinstance(item, str) else str(cjson_valueint(item))
            if name == "all":
                for g, stats in groups.items():
                    out.update({f"{g}:{n}": v for n, v in stats.items()})
                found = True
            elif len(name) > 1 and name.endswith(":"):
                group_stats = groups.get(name[:-1])
                if group_stats is not None:
                    out.update({f"{name}{n}": v for n, v in group_stats.items()})
                    found = True
            else:
                group, sep, stat = name.rpartition(":")
                for g, stats in groups.items():
                    if (not sep or g == group) and stat in stats:
                        out[f"{g}:{stat}"] = stats[stat]
                        found = True
                        break
        if not found:
            raise MIError(404, "Statistics Not Found")
        return out
