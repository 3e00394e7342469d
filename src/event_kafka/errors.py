"""Exceptions raised by event-kafka.

Every error a caller can catch has a name here; all derive from :class:`EventKafkaError`.
The configuration errors also derive from :class:`ValueError`, so code that only knows the
standard library can still catch them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EventKafkaError", "SocketError", "SpoolError", "SpoolFullError"]


class EventKafkaError(Exception):
    """Base class of every exception raised on purpose by event-kafka."""


class ConfigError(EventKafkaError, ValueError):
    """Invalid configuration (modparams, service settings, librdkafka properties)."""


class SocketError(EventKafkaError, ValueError):
    """A Kafka socket or ``broker_id`` text was rejected.

    The message quotes the input with secret values masked, says what is wrong and where.

    Attributes:
        position: 0-based index into the input text of the offending character (or of the
            start of the offending property); ``len(text)`` when something is missing at the
            end; ``None`` when the problem has no single place.
    """

    position: int | None

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class SpoolError(EventKafkaError, OSError):
    """The durable spool cannot write (disk full, read-only, permission...).

    The message names the path and the system's error text; ``errno`` and ``filename`` are set
    when the cause is an ``OSError``. Nothing already spooled is lost; a later call tries again.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:  # OSError's would be "[Errno n] strerror: filename"
        return str(self.args[0])


class SpoolFullError(SpoolError):
    """The spool reached its ``max_bytes`` limit: the record was not accepted."""
