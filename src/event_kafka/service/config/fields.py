"""Field types of the configuration: listen addresses, broker_ids, subscriber sockets, event
names, MI property names, each checked by the library's own grammar."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from ...address import format_address
from ...errors import ConfigError
from ...event_name import check_event_name
from ...kafka_socket import mask_secrets, parse_broker_id, parse_socket
from ...properties import PropertyPolicy, untrusted_policy
from ...transports import BUILTIN_TRANSPORTS, TransportContext, split_socket


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A ``host:port`` to bind (``[v6]:port`` for IPv6). Port 0 asks the kernel for one."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def parse_listen(text: str) -> ListenAddress:
    """Parse ``host:port`` / ``[v6addr]:port``; raises ValueError naming what is wrong."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError("expected [IPv6]:port")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_shown(host)!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("write IPv6 addresses as [addr]:port")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 0-65535, not {_shown(port_text)!r}")
    return ListenAddress(host, int(port_text))


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _broker_id(value: str) -> str:
    parse_broker_id(value)
    return value


def _socket(value: str) -> str:
    check_subscriber_socket(value)
    return value


def _event_name(value: str) -> str:
    return check_event_name(value)  # the library's rule (EventNameError is a ValueError)


def _syslog_address(value: str) -> str:
    if not value.startswith("/"):
        try:
            parse_listen(value)
        except ValueError as exc:
            raise ValueError(f"a Unix socket path (/dev/log) or host:port: {exc}") from None
    return value


def _shown(value: str) -> str:
    # Every user value an error echoes: a broker_id pasted in the wrong key keeps its secrets.
    return mask_secrets(value)


def _property_names(value: list[str]) -> list[str]:
    try:
        untrusted_policy(value)
    except ConfigError as exc:
        raise ValueError(_shown(str(exc))) from None
    return value


def mi_policy(allow: Iterable[str]) -> PropertyPolicy:
    """The property policy of sockets that arrive over the MI, widened by ``allow``."""
    return untrusted_policy(
        allow, source="the MI", hint="the operator can allow it in [mi] allow_properties"
    )


def _name(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


ListenStr = Annotated[str, AfterValidator(_listen)]
EventName = Annotated[str, AfterValidator(_event_name)]
NonEmpty = Annotated[str, AfterValidator(_name)]
BrokerIdStr = Annotated[str, AfterValidator(_broker_id)]
SocketStr = Annotated[str, AfterValidator(_socket)]
Seconds = Annotated[float, Field(ge=0)]


def check_subscriber_socket(text: str) -> tuple[str, object]:
    """Validate a subscriber socket; return ``(scheme, destination)``, equal for sockets that
    denote the same subscriber (the transport's *match*).

    ``kafka:`` sockets go through :func:`~event_kafka.kafka_socket.parse_socket` (with its
    librdkafka property checks); other schemes through the built-in Event Interface
    transport (``udp:``, ``tcp:``...), which resolves the host. Nothing is opened.

    Raises:
        SocketError: with a message that hides secret values.
    """
    scheme, rest = split_socket(text, BUILTIN_TRANSPORTS)
    if scheme == "kafka":
        return "kafka", parse_socket(text)
    transport = BUILTIN_TRANSPORTS[scheme](TransportContext())
    try:
        dest = transport.parse(rest)
        dest.close()
    finally:
        transport.close()
    return scheme, dest
