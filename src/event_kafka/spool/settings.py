"""The limits and durability of one owner's spool (``[spool]`` of the service's file, or
``EventKafka(spool_dir=...)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["FsyncPolicy", "SpoolSettings"]

FsyncPolicy = Literal["never", "always"] | float


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """Limits and durability of one owner's spool."""

    max_bytes: int = 1 << 30  # this process's writer + what it adopted (files not yet deleted)
    max_age: float | None = None  # seconds; older records are expired by the lane
    fsync: FsyncPolicy = "never"  # "never", "always" or seconds between background fsyncs
    segment_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if type(self.max_bytes) is not int or self.max_bytes <= 0:
            raise ConfigError(f"spool max_bytes must be a positive integer, not {self.max_bytes!r}")
        if type(self.segment_bytes) is not int or self.segment_bytes <= 0:
            raise ConfigError(
                f"spool segment_bytes must be a positive integer, not {self.segment_bytes!r}"
            )
        if self.max_age is not None and not (
            isinstance(self.max_age, int | float)
            and not isinstance(self.max_age, bool)
            and self.max_age > 0
        ):
            raise ConfigError(f"spool max_age must be positive seconds, not {self.max_age!r}")
        f = self.fsync
        if f not in ("never", "always") and not (
            isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < 3600
        ):
            raise ConfigError(
                f'spool fsync must be "never", "always" or seconds in (0, 3600), not {f!r}'
            )
