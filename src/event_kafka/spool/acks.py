"""Which records of a writer are acked: a low watermark and disjoint ranges above it.

Memory follows what is in flight, not what was ever written: every seq up to ``low`` is
acked, and acked seqs past the first unacked one are kept as sorted ranges, so a stuck record
with a million acked ones behind it costs one range, and k unacked records in flight cost at
most k ranges. Seq ranges known to be absent (lost to damage, found by a recovery scan) are
added as acked so that the watermark moves past them. Persisted as JSON in ``<writer>.ack``
(write-temp + os.replace).
"""

from __future__ import annotations

import os
from bisect import bisect_right

import orjson

from .files import open_regular

__all__ = ["AckState", "load_acks", "save_acks", "snapshot_json"]

_MAX_FILE = 64 << 20  # more is damage: the ranges follow what is in flight


class AckState:
    """Acked seqs of one writer. Not thread-safe: the store's lock guards every call."""

    __slots__ = ("_ends", "_head", "_starts", "dirty", "low")

    def __init__(self, low: int = 0) -> None:
        self.low = low
        # Ranges [starts[i], ends[i]] for i >= _head: sorted, disjoint, not adjacent, all
        # above low + 1. Popping the front moves _head (compacted now and then), so the
        # watermark advances in O(1) amortised.
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._head = 0
        self.dirty = False

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Acked ranges above the watermark (inclusive)."""
        h = self._head
        return list(zip(self._starts[h:], self._ends[h:], strict=True))

    def acked(self, seq: int) -> bool:
        if seq <= self.low:
            return True
        i = bisect_right(self._starts, seq, self._head) - 1
        return i >= self._head and self._ends[i] >= seq

    def add(self, seq: int) -> bool:
        """Mark ``seq`` acked; False if it already was. O(1) amortised for acks in order,
        O(log k) plus a small memmove otherwise (k: ranges held)."""
        low = self.low
        if seq <= low:
            return False
        starts, ends, h = self._starts, self._ends, self._head
        if seq == low + 1:
            if h < len(starts) and starts[h] == seq + 1:
                self.low = ends[h]
                self._pop_front()
            else:
                self.low = seq
            self.dirty = True
            return True
        i = bisect_right(starts, seq, h) - 1
        if i >= h and ends[i] >= seq:
            return False
        self.dirty = True
        left = i >= h and ends[i] == seq - 1
        right = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if left and right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif left:
            ends[i] = seq
        elif right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq)
        return True

    def add_gap(self, first: int, last: int) -> None:
        """Seqs ``first..last`` are absent: count them as acked (recovery only)."""
        self.add_ranges([(first, last)])

    def add_ranges(self, new: list[tuple[int, int]]) -> None:
        """Mark these inclusive ranges acked at once (recovery and loading: O(k log k))."""
        merged = sorted([*self.ranges, *((max(a, self.low + 1), b) for a, b in new)])
        starts: list[int] = []
        ends: list[int] = []
        low = self.low
        for a, b in merged:
            if b < a:
                continue
            if a <= low + 1:
                low = max(low, b)
            elif ends and a <= ends[-1] + 1:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        # Ranges that became contiguous with the new watermark fold into it.
        i = 0
        while i < len(starts) and starts[i] <= low + 1:
            low = max(low, ends[i])
            i += 1
        self.low = low
        self._starts, self._ends, self._head = starts[i:], ends[i:], 0
        self.dirty = True

    def _pop_front(self) -> None:
        self._head += 1
        if self._head > 64 and self._head * 2 > len(self._starts):
            del self._starts[: self._head], self._ends[: self._head]
            self._head = 0

    def snapshot(self) -> tuple[int, list[int], list[int]]:
        """A copy to serialise later (two C-level slices: cheap under the store's lock)."""
        h = self._head
        return self.low, self._starts[h:], self._ends[h:]

    def to_json(self) -> bytes:
        return snapshot_json(self.snapshot())

    def __repr__(self) -> str:
        return f"AckState(low={self.low}, ranges={len(self._starts) - self._head})"


def snapshot_json(snap: tuple[int, list[int], list[int]]) -> bytes:
    """The ``.ack`` file's content for a :meth:`AckState.snapshot`."""
    low, starts, ends = snap
    return orjson.dumps({"low": low, "ranges": list(zip(starts, ends, strict=True))})


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
        ranges = obj["ranges"]
        if type(low) is not int or low < 0 or type(ranges) is not list:
            raise ValueError("bad fields")
        for r in ranges:
            if (
                type(r) is not list
                or len(r) != 2
                or type(r[0]) is not int
                or type(r[1]) is not int
                or not low < r[0] <= r[1]
            ):
                raise ValueError(f"bad range {r!r:.40}")
        st = AckState(low)
        st.add_ranges([(a, b) for a, b in ranges])
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as e:
        return AckState(), f"unparsable ack file ignored ({e}): its records are replayed"
    st.dirty = False
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
