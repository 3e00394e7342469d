"""Service-side counters: plain dataclasses of ints, read as ``{name: value}`` one way.

Each listener, route or connection keeps its counters in a dataclass (typed fields, nothing
hand-written); :func:`counter_dict` is how :mod:`.metrics` and ``get_statistics`` read one.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["counter_dict"]


def counter_dict(counters: DataclassInstance) -> dict[str, int]:
    """``{field: value}`` of a counters dataclass, in field order.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     sent: int = 2
    ...     failed: int = 0
    >>> counter_dict(C())
    {'sent': 2, 'failed': 0}
    """
    return {f.name: getattr(counters, f.name) for f in fields(counters)}
