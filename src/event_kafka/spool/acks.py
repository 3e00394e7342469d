"""Which records of a writer are acked: a low watermark and a compact set above it.

Memory follows what is in flight, not what was ever written: every seq up to ``low`` is
acked, ``above`` holds acked seqs past the first unacked one, and ``gaps`` are seq ranges
known to be absent (lost to damage, found by a recovery scan) that count as acked so that the
watermark moves past them. Persisted as JSON in ``<writer>.ack`` (write-temp + os.replace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import orjson

from .segment import open_regular

__all__ = ["AckState", "load_acks", "save_acks"]

_MAX_FILE = 64 << 20  # more is damage: the set above the watermark follows what is in flight


@dataclass(slots=True)
class AckState:
    low: int = 0
    above: set[int] = field(default_factory=set)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint, inclusive
    dirty: bool = False

    def acked(self, seq: int) -> bool:
        if seq <= self.low or seq in self.above:
            return True
        return bool(self.gaps) and any(a <= seq <= b for a, b in self.gaps)

    def add(self, seq: int) -> bool:
        """Mark ``seq`` acked; False if it already was. O(1) amortised."""
        if seq <= self.low or seq in self.above:
            return False
        if self.gaps and any(a <= seq <= b for a, b in self.gaps):
            return False
        self.dirty = True
        if seq == self.low + 1:
            self.low = seq
            self._advance()
        else:
            self.above.add(seq)
        return True

    def add_gap(self, first: int, last: int) -> None:
        """Seqs ``first..last`` are absent: count them as acked."""
        if last <= self.low:
            return
        self.gaps.append((max(first, self.low + 1), last))
        self.gaps.sort()
        self._advance()

    def _advance(self) -> None:
        # The watermark moves before the entry goes, so that a reader asking acked() from
        # another thread never sees an acked seq as not acked.
        above, gaps = self.above, self.gaps
        while True:
            nxt = self.low + 1
            if nxt in above:
                self.low = nxt
                above.discard(nxt)
            elif gaps and gaps[0][0] <= nxt:
                self.low = max(self.low, gaps[0][1])
                del gaps[0]
            else:
                return

    def to_json(self) -> bytes:
        return orjson.dumps({"low": self.low, "above": sorted(self.above)})


def load_acks(path: str) -> tuple[AckState, str]:
    """The acks saved at ``path`` and a note ("" if fine). A missing file is no acks; an
    unparsable one is reported and ignored (its records are replayed: duplicates, never loss)."""
    try:
        with open(open_regular(path), "rb") as f:
            data = f.read(_MAX_FILE)
    except FileNotFoundError:
        return AckState(), ""
    except OSError as e:
        return AckState(), f"unreadable ack file ignored: {e.strerror}"
    try:
        obj = orjson.loads(data)
        low = obj["low"]
        above = obj["above"]
        if (
            type(low) is not int
            or low < 0
            or type(above) is not list
            or any(type(s) is not int or s <= low for s in above)
        ):
            raise ValueError("bad fields")
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as e:
        return AckState(), f"unparsable ack file ignored ({e}): its records are replayed"
    st = AckState(low=low, above=set(above))
    st._advance()
    return st, ""


def save_acks(path: str, data: bytes, fsync: bool) -> None:
    """Replace ``path`` atomically with ``data``. Raises OSError."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
