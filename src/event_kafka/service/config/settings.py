"""The loaded result: a configuration file that passed every check, plus what was derived."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...kafka_socket import KafkaSocket
from ...properties import PropertyPolicy
from .fields import ListenAddress, mi_policy, parse_listen
from .schema import ServiceConfig


@dataclass(frozen=True)
class ServiceSettings:
    """A configuration file that passed every check, plus what was derived from it.

    ``brokers`` maps each broker ID to its parsed socket (in file order); ``token`` is the MI
    bearer token (from ``mi.token`` or ``mi.token_file``), never printed by ``repr``.
    """

    model: ServiceConfig = field(repr=False)
    path: str
    brokers: dict[str, KafkaSocket]
    token: str | None = field(default=None, repr=False)
    spool_dir: Path | None = None
    """``spool.dir`` resolved against the file's directory (``None``: no spool)."""

    @property
    def broker_id_names(self) -> tuple[str, ...]:
        return tuple(self.brokers)

    @property
    def mi_policy(self) -> PropertyPolicy:
        """Which librdkafka properties a socket subscribed over the MI may set."""
        return mi_policy(self.model.mi.allow_properties)

    @property
    def published_events(self) -> tuple[str, ...]:
        """``events.publish`` plus every event with a static subscriber (OpenSIPS publishes
        the events named by a script's ``subscribe_event`` at start-up too), in file order."""
        names = dict.fromkeys(self.model.events.publish)
        names.update(dict.fromkeys(s.event for s in self.model.subscriptions))
        return tuple(names)

    def listen(self, section: Literal["mi", "metrics", "udp", "tcp"]) -> ListenAddress | None:
        """The parsed listen address of a section, or None when it is disabled/unset."""
        m = self.model
        text: str | None
        if section == "mi":
            text = m.mi.listen if m.mi.enabled else None
        elif section == "metrics":
            text = m.metrics.listen if m.metrics.enabled else None
        elif section == "udp":
            text = m.ingest.udp.listen if m.ingest.udp else None
        else:
            text = m.ingest.tcp.listen if m.ingest.tcp else None
        return parse_listen(text) if text is not None else None

    def summary(self) -> str:
        """One line for logs and ``--check`` (no secrets)."""
        m = self.model
        parts = [
            f"{len(self.brokers)} broker_id(s)",
            f"{len(self.published_events)} event(s)",
            f"{len(m.subscriptions)} static subscription(s)",
            f"{len(m.report_routes)} report route(s)",
        ]
        for name in _SECTIONS:
            addr = self.listen(name)
            if addr is not None:
                parts.append(f"{name} on {addr}")
        return ", ".join(parts)


_SECTIONS: tuple[Literal["mi", "metrics", "udp", "tcp"], ...] = ("mi", "metrics", "udp", "tcp")
