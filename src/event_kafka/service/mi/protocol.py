"""What the MI commands need from the running service (:class:`MIService`), and the
property policy MI sockets are held to."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Protocol

from ...properties import PropertyPolicy, untrusted_policy

if TYPE_CHECKING:
    from ...connector import EventKafka

__all__ = ["MI_POLICY", "MIService", "SubscriptionCount", "socket_policy"]


class MIService(Protocol):
    """What the command table needs from the running service."""

    @property
    def ek(self) -> EventKafka: ...

    @property
    def started_at(self) -> float:
        """``time.time()`` when the service started."""

    @property
    def report_wait_timeout(self) -> float: ...

    @property
    def default_report_route(self) -> str | None: ...

    def report_routes(self) -> Collection[str]:
        """The report route names ``kafka_publish`` may name now."""

    def statistics(self) -> Mapping[str, Mapping[str, int | float]]:
        """``{group: {name: value}}``, read now."""

    def is_static(self, event: str, socket: str) -> bool:
        """Whether ``socket`` is a static (config file) subscriber of ``event``."""

    # Optional: ``socket_policy``, the PropertyPolicy of MI sockets (default: MI_POLICY).


MI_POLICY = untrusted_policy(
    source="the MI", hint="the operator can allow it in [mi] allow_properties"
)
"""What MI sockets may set when the service names no policy: the safe list only."""


def socket_policy(service: MIService) -> PropertyPolicy:
    # Sockets over the MI come from the network: never trusted, whatever the service says.
    policy = getattr(service, "socket_policy", None)
    return policy if isinstance(policy, PropertyPolicy) and not policy.trusted else MI_POLICY


SubscriptionCount = Callable[[], tuple[int, int]]
"""``() -> (MI subscriptions now, the limit)`` (static ones from the file do not count)."""
