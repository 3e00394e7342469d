"""The durable spool (issue 14): records on disk before they go to Kafka.

One :class:`OwnerSpool` per owner directory (a broker_id or an event subscriber); see
``docs/spool.md``.
"""

from __future__ import annotations

from ..errors import SpoolError, SpoolFullError
from .record import SpoolRecord
from .segment import FileRecovery, RecoveryReport
from .settings import FsyncPolicy, SpoolSettings
from .store import OwnerSpool

__all__ = [
    "FileRecovery",
    "FsyncPolicy",
    "OwnerSpool",
    "RecoveryReport",
    "SpoolError",
    "SpoolFullError",
    "SpoolRecord",
    "SpoolSettings",
]
