"""Segment files: their names, what the store knows of each, and a scan that never raises.

A scan streams a file in chunks (bounded memory), yields every frame whose header and body
CRCs match and resynchronises on the next magic after damage. Damage followed by a valid
frame is *skipped* (counted); damage running to the end of the file is a torn tail (*cut*).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from .record import HEAD, MAGIC

__all__ = [
    "FileRecovery",
    "RecoveryReport",
    "Scan",
    "Segment",
    "classify",
    "segment_name",
]

WRITER_RE = r"[0-9a-f]{16}"
_NAME = re.compile(
    rf"(?P<w>{WRITER_RE})(?:-(?P<n>[0-9]{{8}})\.seg|\.lock|\.ack|\.ack\.tmp)|\.(?P<t>{WRITER_RE})\.lock\.tmp"
)
_CHUNK = 256 << 10


def read_fully(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the file): one read may return less."""
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def segment_name(writer: str, n: int) -> str:
    return f"{writer}-{n:08d}.seg"


def classify(name: str) -> tuple[str, str, int] | None:
    """(writer, kind, segment number) of a spool file name; None for a name the spool never
    makes. kind is one of seg, lock, ack, acktmp, locktmp."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    if m["t"]:
        return m["t"], "locktmp", 0
    writer = m["w"]
    if m["n"]:
        return writer, "seg", int(m["n"])
    return writer, {".lock": "lock", ".ack": "ack", ".ack.tmp": "acktmp"}[name[16:]], 0


@dataclass(slots=True)
class Segment:
    """One segment file of a writer as the store tracks it."""

    n: int
    path: str
    first_seq: int = 0  # 0: no record yet
    last_seq: int = 0
    size: int = 0  # bytes written (a live writer's reads stop here)
    live: int = 0  # records present and not acked
    # Where a reader last was (seq, offset of the next frame), one tuple so that concurrent
    # readers never pair one's seq with another's offset: the next read() starts there.
    hint: tuple[int, int] = (0, 0)


@dataclass(slots=True)
class FileRecovery:
    """What opening or adopting found in one file."""

    path: str
    records: int = 0  # valid records found
    cut_bytes: int = 0  # torn tail removed (the file was truncated back)
    skipped_bytes: int = 0  # damaged bytes between valid frames
    skipped_regions: int = 0
    note: str = ""  # e.g. "unknown file, ignored", "empty segment, deleted"


@dataclass(slots=True)
class RecoveryReport:
    """Per file, what opening and adopting the owner directory found (only damaged or
    unexpected files are listed)."""

    files: list[FileRecovery] = field(default_factory=list)

    @property
    def cut_bytes(self) -> int:
        return sum(f.cut_bytes for f in self.files)

    @property
    def skipped_bytes(self) -> int:
        return sum(f.skipped_bytes for f in self.files)

    @property
    def skipped_regions(self) -> int:
        return sum(f.skipped_regions for f in self.files)

    @property
    def torn(self) -> int:
        """Files whose tail was cut."""
        return sum(1 for f in self.files if f.cut_bytes)


class Scan:
    """Frames of ``f`` between ``start`` (a frame boundary) and ``end``; damage is recorded in
    ``skipped`` (bytes, regions) and ``tail`` (offset of a torn tail, or None)."""

    def __init__(self, f: BinaryIO, start: int, end: int) -> None:
        self._f = f
        self._start = start
        self._end = end
        self.skipped_bytes = 0
        self.skipped_regions = 0
        self.tail: int | None = None

    def frames(self) -> Iterator[tuple[int, int, bytes]]:
        """(offset, offset of the next frame, body) of each intact frame, in file order."""
        f, end = self._f, self._end
        f.seek(self._start)
        buf = bytearray()
        base = self._start  # file offset of buf[0]
        i = 0
        bad: int | None = None  # file offset where the current damaged run began
        hsize = HEAD.size
        crc32 = zlib.crc32
        while True:
            avail = len(buf) - i
            if avail < hsize:
                del buf[:i]
                base += i
                i = 0
                chunk = f.read(min(_CHUNK, end - base - len(buf)))
                if not chunk:
                    break
                buf += chunk
                continue
            if buf.startswith(MAGIC, i):
                _, ln, bcrc, hcrc = HEAD.unpack_from(buf, i)
                need = hsize + ln
                if crc32(memoryview(buf)[i : i + 12]) == hcrc and base + i + need <= end:
                    if avail < need:
                        del buf[:i]
                        base += i
                        i = 0
                        buf += read_fully(f, need - len(buf))
                        if len(buf) < need:  # the file shrank under us: treat as its end
                            end = base + len(buf)
                            continue
                    body = bytes(buf[i + hsize : i + need])
                    if crc32(body) == bcrc:
                        if bad is not None:
                            self._skipped(bad, base + i)
                            bad = None
                        yield base + i, base + i + need, body
                    elif bad is None:
                        bad = base + i
                    # A damaged body behind an intact header: skip the whole frame (linear).
                    i += need
                    continue
            if bad is None:
                bad = base + i
            j = buf.find(MAGIC, i + 1)
            i = j if j >= 0 else max(i + 1, len(buf) - len(MAGIC) + 1)
        if i < len(buf) and bad is None:
            bad = base + i
        if bad is not None:
            self.tail = bad

    def _skipped(self, start: int, stop: int) -> None:
        self.skipped_bytes += stop - start
        self.skipped_regions += 1
