"""What tests and benchmarks need from a test broker, and the error of this package."""

from __future__ import annotations

from typing import Protocol


class DevKafkaError(RuntimeError):
    """The local broker could not be fetched, started or reached."""


class Broker(Protocol):
    """What tests and benchmarks need from a running broker."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def stop(self) -> None: ...
