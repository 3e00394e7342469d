"""OwnerSpool: one owner's directory of append-only segment logs, one writer per process.

Files per writer: ``<writer>.lock`` (flock held while the writer or its adopter lives),
``<writer>-<n:08d>.seg`` (frames, see record.py) and ``<writer>.ack`` (acked state). A frame
is copied into a shared mapping of the segment (blocks allocated ahead with
``posix_fallocate``; with fsync "always": one ``os.write`` on an O_APPEND descriptor), so
once :meth:`OwnerSpool.append` returns the record is in the page cache and survives the death
of the process; the fsync policy decides what survives a power cut. A segment's allocated but
unused tail (zeros) is cut when it is closed, or by the adopter after a crash.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import fcntl
import logging
import mmap
import os
import secrets
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import forksafe
from ..errors import SpoolError, SpoolFullError
from .acks import AckState, save_acks, snapshot_json
from .background import background
from .files import close_fd, errlog, fsync_dir, mkdirs, open_regular, spool_error, unlink
from .record import SpoolRecord, body_seq, decode_body, encode_frame
from .recovery import drop_stale_locktmp, scan_writer, try_lock
from .segment import (
    MARK_EVERY,
    FileRecovery,
    RecoveryReport,
    Scan,
    Segment,
    classify,
    segment_name,
)
from .settings import SpoolSettings

__all__ = ["OwnerSpool"]

log = logging.getLogger("event_kafka.spool")

ACK_PERIOD = 0.1  # seconds between persists of the acks (a crash forgets at most this much)
_MAX_REPORTED = 1000  # unknown files reported per spool (a directory full of junk stays bounded)
_OPEN_SEG = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
GROW = 256 << 10
"""Bytes a mapped segment grows by at once (allocated with ``posix_fallocate``): one syscall
per ~1000 records instead of one per record, and never a SIGBUS on a full disk."""


@dataclass(slots=True)
class _Writer:
    id: str
    lock_fd: int
    own: bool
    segments: list[Segment] = field(default_factory=list)
    acks: AckState = field(default_factory=AckState)
    last_seq: int = 0
    fd: int = -1  # own writer: the current segment, open O_APPEND (-1: none yet)
    seg_n: int = 0  # own writer: the last segment number taken (created or being created)
    spare: tuple[int, str, int] | None = None  # own writer: next segment made ahead (n, path, fd)
    mm: mmap.mmap | None = None  # own writer: the current segment mapped (not "always")
    mm_len: int = 0  # bytes of the current segment allocated (and mapped)
    mm_kept: int = 0  # pages before this offset were dropped from the mapping (see _grow)


def _first_seq(s: Segment) -> int:
    return s.first_seq


class OwnerSpool:
    """One owner's directory (a broker_id or an event subscriber), as this process sees it.

    Example::

        spool = OwnerSpool(Path("/var/spool/ek/broker_id/cdr"), SpoolSettings())
        rec = spool.append(b"value", key=b"k")          # on disk when it returns
        spool.ack(rec.writer, rec.seq)                  # delivered: may be deleted
        for w in spool.adopt():                         # writers of dead processes
            for r in spool.read(w, 0): ...

    ``__init__`` never raises for damage in the directory (see :attr:`recovery`); it raises
    :class:`SpoolError` if the directory cannot be created or written.
    """

    recovery: RecoveryReport

    def __init__(self, directory: Path, settings: SpoolSettings | None = None) -> None:
        self.directory = Path(directory)
        self.settings = settings = settings or SpoolSettings()
        self._dir = str(self.directory)
        self._max_bytes = settings.max_bytes
        self._segment_bytes = settings.segment_bytes
        self._always = settings.fsync == "always"
        # Appends copy into a shared mapping of the segment (page cache: survives the death
        # of the process like a write) rather than os.write: no syscall, so the GIL is not
        # handed to another thread on every record. "always" writes and fdatasyncs instead.
        self._mapped = not self._always
        fs = settings.fsync
        self._interval: float | None = None if isinstance(fs, str) else float(fs)
        self._lock = forksafe.lock()
        # Serialises the background work (fsyncs, ack files, deleting finished writers) with
        # sync() and close(): never an fsync of a descriptor that close() is closing.
        self._bg_lock = forksafe.lock()
        self.recovery = RecoveryReport()
        self._reported: set[str] = set()
        self._closed = False
        self._reset()
        mkdirs(self._dir)
        with self._lock:
            self._open_writer()
        forksafe.register(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._writer: _Writer | None = None
        self._writer_id = ""  # of self._writer (it only changes in a forked child)
        self._ackq: deque[tuple[str, int]] = deque()  # acks not applied yet (see ack())
        self._writers: dict[str, _Writer] = {}
        self._finished: list[_Writer] = []  # writers with nothing left: files to delete
        self._retired: list[int] = []  # segment fds to fsync then close (interval policy)
        self._doomed: list[str] = []  # acked segments to unlink (background)
        self._bytes = 0
        self._pending = 0
        self._unsynced = False
        self._dir_dirty = False
        self._registered = False  # with the process's background thread
        self._next_fsync = self._next_ack = 0.0

    # -- writer ------------------------------------------------------------------------------

    @property
    def writer_id(self) -> str:
        """This process's writer (opened on first use in a forked child)."""
        with self._lock:
            return self._open_writer().id

    def _open_writer(self) -> _Writer:
        """The writer of this process, created if needed (lock held)."""
        w = self._writer
        if w is not None:
            return w
        if self._closed:
            raise SpoolError(f"spool {self._dir} is closed")
        for attempt in (1, 2, 3):
            try:
                nw = self._new_writer()
            except SpoolError as e:
                # ENOENT: the directory was removed under us (an operator's cleanup).
                if e.errno != errno_mod.ENOENT or attempt == 3:
                    raise
                with contextlib.suppress(SpoolError):
                    mkdirs(self._dir)
                continue
            self._writer = self._writers[nw.id] = nw
            self._writer_id = nw.id
            return nw
        raise AssertionError("unreachable")

    def _new_writer(self) -> _Writer:
        wid = secrets.token_hex(8)
        tmp = os.path.join(self._dir, f".{wid}.lock.tmp")
        path = os.path.join(self._dir, f"{wid}.lock")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise spool_error("cannot create the writer lock", tmp, e) from None
        try:
            # Locked before it gets its name, so that no adopter can ever take a live writer.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(OSError):  # the PID is for people; a full disk may refuse
                os.write(fd, b"%d\n" % os.getpid())
            os.rename(tmp, path)
        except OSError as e:
            close_fd(fd)
            unlink(tmp)
            raise spool_error("cannot create the writer lock", path, e) from None
        if self._always or self._interval is not None:
            fsync_dir(self._dir)
        return _Writer(wid, fd, own=True)

    # -- hot path ----------------------------------------------------------------------------

    def append(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        route: str | None = None,
    ) -> SpoolRecord:
        """Spool one record: in the OS's page cache (copied into the segment's shared
        mapping, or one ``write`` with fsync "always") before it returns.

        Thread-safe. Raises :class:`SpoolFullError` past ``max_bytes``, :class:`SpoolError`
        when the file system refuses (the record is then not spooled; a later call tries
        again), ValueError for a record that cannot be framed."""
        seq, ts_ms = self.put(value, key, headers, route)
        return SpoolRecord(self._writer_id, seq, ts_ms, key, value, headers, route)

    def put(
        self,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        route: str | None,
    ) -> tuple[int, int]:
        """:meth:`append` without building a :class:`SpoolRecord` (the lane's hot path):
        returns the record's ``(seq, ts_ms)`` in this process's writer."""
        with self._lock:
            w = self._writer or self._open_writer()
            seq = w.last_seq + 1
            ts_ms = time.time_ns() // 1_000_000
            frame = encode_frame(seq, ts_ms, key, value, headers, route)
            n = len(frame)
            if self._bytes + n > self._max_bytes:
                self._make_room(w, n)
            if w.fd < 0 or (w.segments[-1].size and w.segments[-1].size + n > self._segment_bytes):
                self._rotate(w)
            seg = w.segments[-1]
            if self._mapped:
                end = seg.size + n
                if end > w.mm_len:
                    self._grow(w, seg, end)
                w.mm[seg.size : end] = frame  # type: ignore[index]
            else:
                self._write(w, seg, frame, n)
            if not (seq - seg.first_seq) % MARK_EVERY:
                seg.marks.append(seg.size)
            seg.size += n
            seg.last_seq = seq
            seg.live += 1
            w.last_seq = seq
            self._bytes += n
            self._pending += 1
            self._unsynced = True
            if not self._registered:
                self._register()
        return seq, ts_ms

    def _write(self, w: _Writer, seg: Segment, frame: bytes, n: int) -> None:
        """Write one frame with ``os.write`` (fsync "always"); lock held."""
        try:
            done = os.write(w.fd, frame)
            if done != n:  # short write: the rest fails with the reason (ENOSPC, EFBIG)
                done += os.write(w.fd, frame[done:])
            if self._always:
                os.fdatasync(w.fd)
        except OSError as e:
            self._undo(w, seg)
            raise spool_error("cannot write", seg.path, e) from None

    def _grow(self, w: _Writer, seg: Segment, end: int) -> None:
        """Allocate and map more of the current segment (lock held). The blocks are allocated
        before the mapping reaches them: a full disk is an error here, never a SIGBUS."""
        new = max(end, min(w.mm_len + GROW, self._segment_bytes))
        try:
            os.posix_fallocate(w.fd, w.mm_len, new - w.mm_len)
            if w.mm is None:
                w.mm = mmap.mmap(w.fd, new)
                w.mm_kept = 0
            else:
                w.mm.resize(new)
                # The pages written so far stay in the page cache (and on disk), but out of
                # this process's RSS: otherwise each owner's writer would add up to a
                # segment (16 MiB) of resident memory. Never written again (append-only).
                done = seg.size - seg.size % mmap.PAGESIZE
                if done > w.mm_kept:
                    with contextlib.suppress(OSError):
                        w.mm.madvise(mmap.MADV_DONTNEED, w.mm_kept, done - w.mm_kept)
                    w.mm_kept = done
        except (OSError, ValueError) as e:
            with contextlib.suppress(OSError):
                os.ftruncate(w.fd, w.mm_len)
            if isinstance(e, OSError):
                raise spool_error("cannot write", seg.path, e) from None
            raise SpoolError(f"spool: cannot map {seg.path}: {e}") from None
        w.mm_len = new

    def _unmap(self, w: _Writer, seg: Segment | None) -> None:
        """Unmap the current segment and cut its unused allocated tail (lock held)."""
        mm, w.mm = w.mm, None
        if mm is None:
            return
        mm.close()
        if seg is not None and w.mm_len > seg.size:
            with contextlib.suppress(OSError):
                os.ftruncate(w.fd, seg.size)
        w.mm_len = 0

    def _undo(self, w: _Writer, seg: Segment) -> None:
        """Cut what a failed append left of its frame, so that the next frame follows the last
        good one (lock held)."""
        try:
            if os.fstat(w.fd).st_size != seg.size:
                os.ftruncate(w.fd, seg.size)
        except OSError:
            # Could not cut: leave this segment (reads stop at seg.size, an adopter cuts the
            # tail) and start a fresh one with the next append.
            if seg.live == 0:
                self._delete_segment(w, seg)
            else:
                self._release_fd(w.fd)
                w.fd = -1

    def _make_room(self, w: _Writer, n: int) -> None:
        self._drain_acks()
        cur = w.segments[-1] if w.fd >= 0 else None
        if cur is not None and cur.live == 0 and cur.size:
            self._delete_segment(w, cur)  # everything acked: no need to wait for a rotation
        if self._bytes + n > self._max_bytes:
            raise SpoolFullError(
                f"spool {self._dir} is full: {self._bytes} B in segments with unacknowledged "
                f"records, max_bytes {self._max_bytes} B; record of {n} B refused",
                errno_mod.ENOSPC,
                self._dir,
            )

    def _rotate(self, w: _Writer) -> None:
        if w.spare is not None:
            # Made ahead by the background thread: creating a file can take milliseconds
            # (the journal) and appends wait on this lock meanwhile.
            n, path, fd = w.spare
            w.spare = None
        else:
            n = w.seg_n + 1
            path = os.path.join(self._dir, segment_name(w.id, n))
            try:
                fd = os.open(path, _OPEN_SEG, 0o600)
            except OSError as e:
                raise spool_error("cannot create segment", path, e) from None
            w.seg_n = n
            if self._always:
                fsync_dir(self._dir)
            elif self._interval is not None:
                self._dir_dirty = True
        old = w.segments[-1] if w.fd >= 0 else None
        if old is not None:
            self._unmap(w, old)
            self._release_fd(w.fd)
        w.fd = fd
        w.segments.append(Segment(n, path, first_seq=w.last_seq + 1, last_seq=w.last_seq))
        if old is not None and old.live == 0:
            self._delete_segment(w, old)

    def _make_spare(self) -> None:
        """Create the own writer's next segment ahead of need once the current one is half
        full (background thread, no lock held while the file is created)."""
        with self._lock:
            w = self._writer
            if (
                self._closed
                or w is None
                or w.spare is not None
                or w.fd < 0
                or w.segments[-1].size * 2 < self._segment_bytes
            ):
                return
            n = w.seg_n = w.seg_n + 1  # taken: an inline rotation meanwhile uses the next
        path = os.path.join(self._dir, segment_name(w.id, n))
        try:
            fd = os.open(path, _OPEN_SEG, 0o600)
        except OSError:
            return  # the rotation will try inline and report the error to the caller
        if self._always or self._interval is not None:
            fsync_dir(self._dir)
        with self._lock:
            if not self._closed and self._writer is w and w.fd >= 0 and w.segments[-1].n < n:
                w.spare = (n, path, fd)
                return
        close_fd(fd)  # overtaken by an inline rotation (or closed): never out of order
        unlink(path)

    def _release_fd(self, fd: int) -> None:
        if self._interval is not None:
            self._retired.append(fd)  # the background thread fsyncs then closes it
        else:
            close_fd(fd)

    # -- acks --------------------------------------------------------------------------------

    def ack(self, writer: str, seq: int) -> None:
        """Record ``seq`` of ``writer`` as done (delivered, or failed with its report).

        Cheap and thread-safe, and never waits: the ack is queued and applied under the lock
        when it is free (now, or by the next user of the store's state). Waiting for the lock
        here would hand the GIL back and forth with a publishing thread that holds it in
        ``append`` (a convoy: one delivery report served per switch interval). Persisted every
        ~100 ms and by :meth:`sync` and :meth:`close`. A segment whose records are all acked is
        deleted (the current one of a live writer when it rotates). Unknown writers and seqs
        are ignored; acking twice is harmless."""
        self._ackq.append((writer, seq))
        lock = self._lock
        if lock.acquire(False):
            try:
                self._drain_acks()
            finally:
                lock.release()

    def _drain_acks(self) -> None:
        """Apply the queued acks (lock held)."""
        q = self._ackq
        while q:
            writer, seq = q.popleft()
            w = self._writers.get(writer)
            if w is None or seq > w.last_seq or seq < 1 or not w.acks.add(seq):
                continue
            segs = w.segments
            if not segs:
                continue
            seg = segs[0]
            if seq > seg.last_seq:
                seg = segs[-1]
                if seq < seg.first_seq:
                    i = bisect_right(segs, seq, key=_first_seq) - 1
                    seg = segs[i]
            if not seg.first_seq <= seq <= seg.last_seq:
                continue
            seg.live -= 1
            self._pending -= 1
            if seg.live == 0 and not (w.fd >= 0 and seg is segs[-1]):
                self._delete_segment(w, seg)

    def _delete_segment(self, w: _Writer, seg: Segment) -> None:
        """Forget and delete a segment whose records are all acked (lock held)."""
        if w.fd >= 0 and seg is w.segments[-1]:
            self._unmap(w, None)
            self._release_fd(w.fd)
            w.fd = -1
        w.segments.remove(seg)
        self._bytes -= seg.size
        self._pending -= seg.live
        # Unlinked by the background thread: a big file takes milliseconds to delete.
        self._doomed.append(seg.path)
        if not w.own and not w.segments:
            del self._writers[w.id]
            self._finished.append(w)

    # -- reading -----------------------------------------------------------------------------

    def read(self, writer: str, after_seq: int = 0) -> Iterator[SpoolRecord]:
        """Records of ``writer`` with seq > ``after_seq`` not acked yet, from disk, in seq
        order. Follows the rotation of a live writer and stops at its current end; streams
        frame by frame (memory does not grow with the backlog). A segment that cannot be
        read ends the iteration (logged): never a later record before an earlier one."""
        with self._lock:
            self._drain_acks()
            w = self._writers.get(writer)
        if w is None:
            return
        done_n = 0
        while True:
            with self._lock:
                if self._ackq:
                    self._drain_acks()
                if self._writers.get(writer) is not w:
                    return
                seg = next(
                    (s for s in w.segments if s.n > done_n and s.last_seq > after_seq and s.live),
                    None,
                )
                if seg is None:
                    return
                hint_seq, hint_off = seg.hint
                start = hint_off if 0 < hint_seq <= after_seq else 0
                i = (after_seq + 1 - seg.first_seq) // MARK_EVERY
                if i > 0 and seg.marks:
                    start = max(start, seg.marks[min(i, len(seg.marks) - 1)])
            more = yield from self._read_segment(w, seg, start, after_seq)
            if not more:
                return
            done_n = seg.n

    def _read_segment(
        self, w: _Writer, seg: Segment, pos: int, after_seq: int
    ) -> Generator[SpoolRecord, None, bool]:
        """Records of one segment; returns whether later segments may follow (False: the
        current end of a live writer, or a segment that could not be read)."""
        try:
            f = open(open_regular(seg.path), "rb", buffering=0)  # noqa: SIM115 - with below
        except FileNotFoundError:
            with self._lock:  # deleted: all its records were acked, unless it is still listed
                return seg not in w.segments
        except OSError as e:
            errlog.warning("spool: cannot read %s: %s", seg.path, e.strerror)
            return False
        acks, lock = w.acks, self._lock
        try:
            with f:
                while True:
                    with lock:
                        end = seg.size
                        # Appends go to the current segment only: any other one is complete.
                        current = w.fd >= 0 and w.segments[-1] is seg
                    if pos >= end:
                        return not current
                    scan = Scan(f, pos, end)
                    for _off, nxt, body in scan.frames():
                        seq = body_seq(body)
                        seg.hint = (seq, nxt)
                        pos = nxt
                        if seq <= after_seq:
                            continue
                        with lock:
                            if self._ackq:
                                self._drain_acks()
                            done = acks.acked(seq)
                        if not done:
                            rec = decode_body(w.id, body)
                            if rec is not None:
                                yield rec
                    if scan.tail is not None:
                        return True  # damage at the end, lost: later segments follow
        except OSError as e:
            errlog.warning("spool: cannot read %s: %s", seg.path, e.strerror)
            return False

    # -- adoption ----------------------------------------------------------------------------

    def adopt(self) -> list[str]:
        """Take over the writers of dead processes in this directory.

        A writer whose lock file can be flock'ed has no live process: it is locked (so that
        no other process adopts it too), scanned (torn tail cut, damage skipped, all reported
        in :attr:`recovery`) and its unacked records become readable with :meth:`read` and
        ackable with :meth:`ack`. Returns the ids of adopted writers that have records left,
        oldest first (by the time of the first record each still has on disk): replaying
        them in this order keeps per-key order across a chain of crashed processes. A writer
        with nothing left is deleted."""
        if self._pid != os.getpid():
            self.after_fork_in_child()
        with self._lock:
            if self._closed:
                return []
            own = self._writer.id if self._writer else None
            known = set(self._writers)
        names = self._listdir()
        locked: dict[str, int] = {}
        for wid, kind in {(c[0], c[1]) for c in map(classify, names) if c}:
            if kind == "locktmp":
                drop_stale_locktmp(self._dir, wid)
            elif wid != own and wid not in known and wid not in locked:
                fd = try_lock(self._dir, wid)
                if fd is not None:
                    locked[wid] = fd
        self._report_unknown(names)
        if not locked:
            return []
        groups: dict[str, list[tuple[int, str]]] = {wid: [] for wid in locked}
        for name in self._listdir():  # again: the listing may predate the deaths
            c = classify(name)
            if c and c[0] in groups and c[1] == "seg":
                groups[c[0]].append((c[2], name))
        adopted: list[tuple[int, str]] = []
        for wid in sorted(locked):
            acks, segs, last, first_ts = scan_writer(
                self._dir, wid, sorted(groups[wid]), self._report
            )
            w = _Writer(wid, locked[wid], own=False, segments=segs, acks=acks, last_seq=last)
            with self._lock:
                if not w.segments:
                    self._finished.append(w)
                elif self._closed or os.getpid() != self._pid:
                    close_fd(w.lock_fd)  # closed (or forked) meanwhile: leave it
                else:
                    self._writers[wid] = w
                    self._bytes += sum(s.size for s in w.segments)
                    self._pending += sum(s.live for s in w.segments)
                    adopted.append((first_ts, wid))
                    if not self._registered:
                        self._register()
        if self._finished:
            self._persist()
        return [wid for _, wid in sorted(adopted)]

    def _listdir(self) -> list[str]:
        try:
            return os.listdir(self._dir)
        except OSError as e:
            errlog.warning("spool: cannot list %s: %s", self._dir, e.strerror)
            return []

    def _report_unknown(self, names: list[str]) -> None:
        for name in names:
            if classify(name) is None and name not in self._reported:
                if len(self._reported) >= _MAX_REPORTED:
                    return
                self._reported.add(name)
                path = os.path.join(self._dir, name)
                self._report(FileRecovery(path, note="unknown file, ignored"))

    def _report(self, fr: FileRecovery) -> None:
        with self._lock:
            self.recovery.files.append(fr)
        log.warning(
            "spool recovery: %s: %s%d records, %d B cut (torn tail), %d B in %d damaged "
            "region(s) skipped",
            fr.path,
            fr.note + "; " if fr.note else "",
            fr.records,
            fr.cut_bytes,
            fr.skipped_bytes,
            fr.skipped_regions,
        )

    # -- background: fsync and ack persistence ----------------------------------------------

    def _register(self) -> None:
        self._registered = True
        now = time.monotonic()
        self._next_ack = now + ACK_PERIOD
        self._next_fsync = now + (self._interval or 0.0)
        background.add(self)

    def _background_step(self, now: float) -> float:
        """Fsync and persist the acks when due (the background thread); returns the time
        until the next is due."""
        with self._bg_lock:
            if self._closed:
                return ACK_PERIOD
            interval = self._interval
            if interval is not None and now >= self._next_fsync:
                self._next_fsync = now + interval
                self._fsync_pass()
            if now >= self._next_ack:
                self._next_ack = now + ACK_PERIOD
                self._persist_locked()
            elif self._doomed:
                self._unlink_doomed()
            self._make_spare()
            due = self._next_ack if interval is None else min(self._next_ack, self._next_fsync)
        return max(due - now, 0.001)

    def _fsync_pass(self) -> None:
        with self._lock:
            w = self._writer
            fd = w.fd if (w is not None and w.fd >= 0 and self._unsynced) else -1
            self._unsynced = False
            retired, self._retired = self._retired, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        for rfd in retired:
            with contextlib.suppress(OSError):
                os.fdatasync(rfd)
            close_fd(rfd)
        if fd >= 0:
            try:
                os.fdatasync(fd)
            except OSError as e:
                errlog.warning("spool %s: fsync failed: %s", self._dir, e.strerror)
        if dir_dirty:
            fsync_dir(self._dir)

    def sync(self) -> None:
        """Persist the acks now and, unless the policy is "never", fsync what was written."""
        with self._bg_lock:
            if self._closed:
                return
            if self._interval is not None:
                self._fsync_pass()
            self._persist_locked()

    def _unlink_doomed(self) -> None:
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for path in doomed:
            unlink(path)

    def _persist(self) -> None:
        with self._bg_lock:
            self._persist_locked()

    def _persist_locked(self) -> None:
        """Write the acks of writers whose state changed; delete the files of writers with
        nothing left (their lock file last, then unlock). ``_bg_lock`` held."""
        with self._lock:  # one view: a finished writer's last segments are in this doomed
            self._drain_acks()
            doomed, self._doomed = self._doomed, []
            todo = []
            for w in self._writers.values():
                if w.acks.dirty:
                    w.acks.dirty = False
                    todo.append((w, w.acks.snapshot()))  # serialised below, off the lock
            finished, self._finished = self._finished, []
        for path in doomed:  # segments before lock files: never records without a lock
            unlink(path)
        fsync = self._always or self._interval is not None
        for w, snap in todo:
            path = os.path.join(self._dir, f"{w.id}.ack")
            try:
                save_acks(path, snapshot_json(snap), fsync)
            except OSError as e:
                w.acks.dirty = True
                errlog.warning("spool: cannot save %s: %s", path, e.strerror)
        for w in finished:
            base = os.path.join(self._dir, w.id)
            unlink(base + ".ack.tmp")
            unlink(base + ".ack")
            unlink(base + ".lock")
            close_fd(w.lock_fd)

    # -- accounting, close, fork -------------------------------------------------------------

    def pending(self) -> int:
        """Records appended or adopted and not acked yet."""
        if self._ackq:
            with self._lock:
                self._drain_acks()
        return self._pending

    def pending_of(self, writer: str) -> int:
        """Records of ``writer`` (ours or adopted) not acked yet; 0 for an unknown writer."""
        with self._lock:
            self._drain_acks()
            w = self._writers.get(writer)
            return sum(s.live for s in w.segments) if w is not None else 0

    def pending_bytes(self) -> int:
        """Bytes of this process's segment files (own and adopted) not deleted yet: what
        ``max_bytes`` limits."""
        if self._ackq:
            with self._lock:
                self._drain_acks()
        return self._bytes

    def close(self) -> None:
        """Persist the acks, delete fully acked files and unlock. Unacked records stay on
        disk for the next process to adopt. Idempotent."""
        if self._pid != os.getpid():  # forked from C without after_fork: never the parent's
            self.after_fork_in_child()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        background.discard(self)
        with self._bg_lock:
            self._close_files()

    def _close_files(self) -> None:
        with self._lock:
            self._drain_acks()
            w = self._writer
            if w is not None and w.fd >= 0:
                cur = w.segments[-1]
                self._unmap(w, cur)
                if self._interval is not None and self._unsynced:
                    with contextlib.suppress(OSError):
                        os.fdatasync(w.fd)
                close_fd(w.fd)
                w.fd = -1
                if cur.live == 0:
                    self._delete_segment(w, cur)
            if w is not None and w.spare is not None:
                close_fd(w.spare[2])
                self._doomed.append(w.spare[1])
                w.spare = None
            for rfd in self._retired:
                with contextlib.suppress(OSError):
                    os.fdatasync(rfd)
                close_fd(rfd)
            self._retired = []
            for x in list(self._writers.values()):
                if not x.segments:
                    del self._writers[x.id]
                    self._finished.append(x)
        self._persist_locked()
        with self._lock:
            for x in self._writers.values():
                close_fd(x.lock_fd)  # unlock: the next process adopts what is left
            self._writers.clear()
            self._writer = None

    def after_fork_in_child(self) -> None:
        """In a forked child: close the inherited descriptors without unlocking (a flock
        belongs to the open file description, which the parent still holds) and forget
        everything; the next append opens a new writer. Idempotent per process."""
        if self._pid == os.getpid():
            return
        fds = [w.lock_fd for w in self._writers.values()]
        fds += [w.lock_fd for w in self._finished]
        fds += self._retired
        if self._writer is not None and self._writer.fd >= 0:
            fds.append(self._writer.fd)
        if self._writer is not None and self._writer.spare is not None:
            fds.append(self._writer.spare[2])
        if self._writer is not None and self._writer.mm is not None:
            with contextlib.suppress(Exception):
                self._writer.mm.close()  # the child's mapping only
        for fd in fds:
            close_fd(fd)  # never flock(LOCK_UN): that would unlock the parent's writer too
        self._reset()

    _after_fork_in_child = after_fork_in_child

    def __repr__(self) -> str:
        return f"<OwnerSpool {self._dir} pending={self._pending} bytes={self._bytes}>"
