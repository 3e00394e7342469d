"""The spool store across processes (issue 14): crashes, adoption, fork, full disks.

Real processes (os.fork, a subprocess, a tmpfs) and no Kafka. Children always leave with
os._exit; each is waited for with a deadline and killed by PID if it hangs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from event_kafka.spool import OwnerSpool, SpoolError, SpoolSettings
from event_kafka.spool import store as store_mod
from tests.support.children import fork_child, in_child, wait_child
from tests.support.waiting import wait_until

DEADLINE = 20.0


def _locked_elsewhere(path: Path) -> bool:
    """Whether some open file description holds the flock of ``path``."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _value(seq: int) -> bytes:
    return b"v%08d" % seq * 4


def test_crash_then_adopt_reads_every_unacked_record_exactly_once(tmp_path: Path) -> None:
    acked = set(range(1, 400, 2)) | set(range(400, 600))

    def child() -> int:
        s = OwnerSpool(tmp_path, SpoolSettings(segment_bytes=8192))
        for seq in range(1, 1001):
            assert s.append(_value(seq), b"k").seq == seq
            if seq == 700:
                for a in acked:
                    s.ack(s.writer_id, a)
                s.sync()  # the acks before this point are on disk
        os._exit(0)  # mid-stream: no close, no final persist

    assert in_child(child, DEADLINE) == 0
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        (wid,) = s.adopt()
        recs = list(s.read(wid, 0))
        assert [r.seq for r in recs] == [q for q in range(1, 1001) if q not in acked]
        assert all(r.value == _value(r.seq) for r in recs)
        assert s.pending() == len(recs) and not s.recovery.files
    finally:
        s.close()


def test_sigkill_while_appending_loses_no_returned_record(tmp_path: Path) -> None:
    r, w = os.pipe()

    def child() -> int:
        os.close(r)
        s = OwnerSpool(tmp_path, SpoolSettings(segment_bytes=16384))
        seq = 0
        while True:
            seq += 1
            assert s.append(_value(seq)).seq == seq
            os.write(w, struct.pack("<I", seq))  # after append returned

    pid = fork_child(child)
    os.close(w)
    data = bytearray()
    while len(data) < 4 * 3000:
        chunk = os.read(r, 65536)
        assert chunk, "child died"
        data += chunk
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    returned = len(data) // 4
    assert struct.unpack_from("<I", data, (returned - 1) * 4)[0] == returned
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        (wid,) = s.adopt()
        seqs = [rec.seq for rec in s.read(wid, 0) if rec.value == _value(rec.seq)]
        # Every returned record, in order, once; at most the one in progress beyond.
        assert seqs[:returned] == list(range(1, returned + 1))
        assert len(seqs) <= returned + 1
    finally:
        s.close()


def test_two_processes_adopting_at_once_take_each_dead_writer_once(tmp_path: Path) -> None:
    dead = set()
    for _ in range(6):
        rd, wr = os.pipe()

        def writer(wr: int = wr) -> int:
            s = OwnerSpool(tmp_path, SpoolSettings())
            for _ in range(20):
                s.append(b"x")
            os.write(wr, s.writer_id.encode())
            os._exit(0)  # dies holding nothing: its lock goes with it

        assert in_child(writer, DEADLINE) == 0
        os.close(wr)
        dead.add(os.read(rd, 64).decode())
        os.close(rd)

    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    bye_r, bye_w = os.pipe()

    def adopter() -> int:
        os.read(go_r, 1)
        s = OwnerSpool(tmp_path, SpoolSettings())
        ids = s.adopt()
        n = sum(1 for w in ids for _ in s.read(w, 0))
        os.write(out_w, (json.dumps([ids, n]) + "\n").encode())
        os.read(bye_r, 1)  # hold the locks until both have adopted
        s.close()
        return 0

    pids = [fork_child(adopter) for _ in range(2)]
    os.write(go_w, b"gg")
    os.close(out_w)
    answers = []
    buf = b""
    while len(answers) < 2:
        chunk = os.read(out_r, 4096)
        assert chunk, "an adopter died"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        answers += [json.loads(line) for line in lines]
    os.write(bye_w, b"xx")
    assert [wait_child(p, DEADLINE) for p in pids] == [0, 0]
    (a, na), (b, nb) = answers
    assert not set(a) & set(b), "a writer adopted twice"
    assert set(a) | set(b) == dead
    assert na + nb == 20 * len(dead)


def test_forked_child_gets_its_own_writer_and_leaves_the_parents_lock(tmp_path: Path) -> None:
    s = OwnerSpool(tmp_path, SpoolSettings(fsync=0.05))
    try:
        s.append(b"parent-1")  # the background thread runs when the fork comes
        parent = s.writer_id
        plock = tmp_path / f"{parent}.lock"
        r, w = os.pipe()

        def child() -> int:
            os.close(r)
            s.after_fork_in_child()  # already done by the fork hook: a no-op now
            assert _locked_elsewhere(plock)
            mine = s.writer_id
            assert mine != parent
            for i in range(5):
                s.append(b"child-%d" % i)
            assert [x.seq for x in s.read(mine, 0)] == [1, 2, 3, 4, 5]
            assert list(s.read(parent, 0)) == []  # forgotten, not shared
            assert s.adopt() == []  # the parent is alive
            assert _locked_elsewhere(plock)
            os.write(w, mine.encode())
            os._exit(0)  # dies without close

        pid = fork_child(child)
        os.close(w)
        mine = os.read(r, 64).decode()
        os.close(r)
        assert wait_child(pid, DEADLINE) == 0
        assert _locked_elsewhere(plock)  # the child's exit did not unlock the parent
        s.append(b"parent-2")
        assert [x.value for x in s.read(parent, 0)] == [b"parent-1", b"parent-2"]
        assert s.adopt() == [mine]
        assert [x.value for x in s.read(mine, 0)] == [b"child-%d" % i for i in range(5)]
    finally:
        s.close()


_EFBIG_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from pathlib import Path
    from event_kafka.spool import OwnerSpool, SpoolError, SpoolSettings

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    s = OwnerSpool(Path(sys.argv[1]), SpoolSettings(segment_bytes=1 << 20))
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    n = 0
    while True:
        try:
            s.append(b"%08d" % (n + 1) * 25)
        except SpoolError as e:
            err = e
            break
        n += 1
    try:
        s.append(b"%08d" % (n + 1) * 25)
        again = "accepted while full"
    except SpoolError:
        again = "refused"
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the disk is freed
    s.append(b"%08d" % (n + 1) * 25)
    n += 1
    print(json.dumps({"n": n, "errno": err.errno, "msg": str(err), "again": again}))
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_efbig_is_a_clear_error_loses_nothing_and_recovers(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _EFBIG_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    res = json.loads(out.stdout)
    assert res["errno"] == errno.EFBIG and res["again"] == "refused"
    assert ".seg" in res["msg"] and str(tmp_path) in res["msg"]
    assert os.strerror(errno.EFBIG) in res["msg"]
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        (wid,) = s.adopt()
        values = [r.value for r in s.read(wid, 0)]
        assert values == [b"%08d" % q * 25 for q in range(1, res["n"] + 1)]
        assert not s.recovery.files  # the failed writes left no torn bytes
    finally:
        s.close()


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], timeout=10, check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with _tmpfs(tmp_path / "mnt", "size=64k,mode=0700") as mnt:
        yield mnt


def test_read_only_file_system_is_a_clear_error(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "size=64k,mode=0700,ro") as mnt:
        with pytest.raises(SpoolError) as ei:
            OwnerSpool(mnt / "owner", SpoolSettings())
        assert ei.value.errno == errno.EROFS
        assert str(mnt / "owner") in str(ei.value)
        assert os.strerror(errno.EROFS) in str(ei.value)


def test_disk_full_is_a_clear_error_loses_nothing_and_recovers(tiny_tmpfs: Path) -> None:
    d = tiny_tmpfs / "owner"
    s = OwnerSpool(d, SpoolSettings(segment_bytes=8192))
    wid = s.writer_id
    recs = []
    with pytest.raises(SpoolError) as ei:
        for _ in range(10_000):
            recs.append(s.append(b"z" * 300))
    assert ei.value.errno == errno.ENOSPC
    assert os.strerror(errno.ENOSPC) in str(ei.value) and str(d) in str(ei.value)
    with pytest.raises(SpoolError):
        s.append(b"z" * 300)  # still full: refused again, not half-written
    half = len(recs) // 2
    for rec in recs[:half]:  # delivered: their segments go, space comes back
        s.ack(wid, rec.seq)
    more = wait_until(lambda: _try_append(s), timeout=5, what="an append once space is freed")
    assert more.seq == recs[-1].seq + 1
    s.close()
    t = OwnerSpool(d, SpoolSettings())
    try:
        assert t.adopt() == [wid]
        seqs = [r.seq for r in t.read(wid, 0)]
        assert seqs == [r.seq for r in recs[half:]] + [more.seq]
        assert not [f for f in t.recovery.files if f.cut_bytes or f.skipped_bytes]
    finally:
        t.close()


def _try_append(s: OwnerSpool) -> object:
    try:
        return s.append(b"z" * 300)
    except SpoolError:
        return None


def test_writers_starting_while_others_adopt_never_fail(tmp_path: Path) -> None:
    """Forked workers starting together: one's adopt() must never take (or delete) the lock
    file another is creating."""

    real_flock = fcntl.flock

    def slow_to_lock_its_tmp(fd: int, op: int) -> None:
        # Widen the moment between creating the lock file and locking it (microseconds in
        # real life) so that the race shows in a short test.
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(".lock.tmp"):
            time.sleep(0.005)  # the widened race window (injected), not a wait
            assert os.path.exists(path), "an adopter deleted a lock file being created"
        real_flock(fd, op)

    def worker() -> int:
        store_mod.fcntl = types.SimpleNamespace(  # type: ignore[assignment]
            flock=slow_to_lock_its_tmp, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB
        )
        for _ in range(100):
            s = OwnerSpool(tmp_path, SpoolSettings())
            for w in s.adopt():
                for r in s.read(w, 0):
                    s.ack(w, r.seq)
            s.append(b"x")  # left unacked: the next round's adopters drain it
            s.close()
        return 0

    pids = [fork_child(worker) for _ in range(4)]
    assert [wait_child(p, 60) for p in pids] == [0, 0, 0, 0]
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        n = sum(1 for w in s.adopt() for _ in s.read(w, 0))
        assert 0 < n <= 400
        assert not s.recovery.files
    finally:
        s.close()
