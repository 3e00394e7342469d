"""Taking over the writers of dead processes: locking them and recovering their files.

A writer's lock file is flock'ed for the life of its process (and then of its adopter), so a
lock that can be taken is a writer nobody owns. Its segments are scanned once: a torn tail is
cut (the file truncated back), damage in the middle skipped, seqs that went missing count as
acked, and fully acked segments are deleted. Nothing here raises for damage.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable

from .acks import AckState, load_acks
from .files import close_fd, open_regular, unlink
from .record import body_seq, body_ts
from .segment import FileRecovery, Scan, Segment

__all__ = ["STALE_TMP_S", "drop_stale_locktmp", "scan_writer", "try_lock"]

STALE_TMP_S = 60.0  # a writer's lock file is named within microseconds of its creation


def try_lock(directory: str, wid: str) -> int | None:
    """The flock'ed lock fd of dead writer ``wid``, or None (alive, or taken by another)."""
    path = os.path.join(directory, f"{wid}.lock")
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)
    except OSError:
        return None  # not a regular file, or cannot be made: not ours to take
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # An adopter that finished before we opened it deleted that file: ours is stale.
        st, fst = os.stat(path), os.fstat(fd)
        if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
            raise FileNotFoundError
    except OSError:
        close_fd(fd)
        return None
    return fd


def drop_stale_locktmp(directory: str, wid: str) -> None:
    """A writer that died between creating and naming its lock file left nothing else.

    Its creator holds it unlocked for a moment (between open and flock): only a file older
    than :data:`STALE_TMP_S` and not locked is stale."""
    path = os.path.join(directory, f".{wid}.lock.tmp")
    try:
        fd = open_regular(path, os.O_RDWR)
    except OSError:
        return
    try:
        if time.time() - os.fstat(fd).st_mtime < STALE_TMP_S:
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        unlink(path)
    except OSError:
        pass  # being created right now
    finally:
        close_fd(fd)


def scan_writer(
    directory: str,
    wid: str,
    segs: list[tuple[int, str]],
    report: Callable[[FileRecovery], None],
) -> tuple[AckState, list[Segment], int, int]:
    """Recover locked dead writer ``wid`` from its files: its acks, the segments that still
    hold unacked records (others are deleted), its last seq and the ts_ms of its first
    record on disk (its age). ``segs`` are its segment (number, name) pairs in order; what
    was found damaged goes to ``report``."""
    ack_path = os.path.join(directory, f"{wid}.ack")
    unlink(ack_path + ".tmp")
    acks, note = load_acks(ack_path)
    if note:
        report(FileRecovery(ack_path, note=note))
    kept: list[Segment] = []
    prev = first_ts = 0
    for n, name in segs:
        path = os.path.join(directory, name)
        fr = FileRecovery(path)
        seg = Segment(n, path)
        try:
            with open(open_regular(path, os.O_RDWR), "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                scan = Scan(f, 0, size)
                for _off, _nxt, body in scan.frames():
                    seq = body_seq(body)
                    if seq <= prev:
                        fr.skipped_regions += 1  # CRC-valid but out of place: ignore
                        continue
                    if seq > prev + 1:
                        acks.add_gap(prev + 1, seq - 1)  # lost to damage (or deleted)
                    prev = seq
                    if not first_ts:
                        first_ts = body_ts(body)
                    fr.records += 1
                    if not seg.first_seq:
                        seg.first_seq = seq
                    seg.last_seq = seq
                    if not acks.acked(seq):
                        seg.live += 1
                if scan.tail is not None:
                    fr.cut_bytes = size - scan.tail
                    size = scan.tail
                    os.ftruncate(f.fileno(), size)
            fr.skipped_bytes = scan.skipped_bytes
            fr.skipped_regions += scan.skipped_regions
        except OSError as e:
            fr.note = f"unreadable, left in place: {e.strerror}"
            report(fr)
            continue
        seg.size = size
        if not fr.records:
            fr.note = fr.note or ("empty segment, deleted" if not size else "deleted")
        spare = not fr.cut_bytes and not size and n == segs[-1][0]  # made ahead, unused
        if not spare and (fr.note or fr.cut_bytes or fr.skipped_bytes or fr.skipped_regions):
            report(fr)
        if seg.live:
            kept.append(seg)
        else:
            unlink(path)
    if prev:
        acks.dirty = True
    return acks, kept, prev, first_ts
