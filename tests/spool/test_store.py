"""The on-disk spool store (issue 14): append, read, ack, rotation, limits, persistence.

Pure: no Kafka. Process-level behaviour (crash, adopt, fork, disk full) is in
test_store_process.py; damaged files in test_store_damage.py.
"""

from __future__ import annotations

import os
import random
import stat
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from event_kafka.errors import ConfigError
from event_kafka.spool import (
    OwnerSpool,
    SpoolError,
    SpoolFullError,
    SpoolRecord,
    SpoolSettings,
)
from event_kafka.spool import store as store_mod
from event_kafka.spool.acks import AckState, load_acks, save_acks
from event_kafka.spool.background import background
from tests.support.waiting import wait_until


def _segments(d: Path) -> list[str]:
    """Segments holding records (not the empty one the background thread makes ahead)."""
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".seg") and p.stat().st_size)


def _seqs(spool: OwnerSpool, writer: str, after: int = 0) -> list[int]:
    return [r.seq for r in spool.read(writer, after)]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[OwnerSpool]:
    s = OwnerSpool(tmp_path / "owner", SpoolSettings(segment_bytes=4096))
    yield s
    s.close()


def test_round_trip_keeps_every_field_none_and_empty_apart(spool: OwnerSpool) -> None:
    cases: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None, str | None]] = [
        (b"v", b"k", [("h", b"1"), ("é", b"\x00\xff")], "route"),
        (None, None, None, None),
        (b"", b"", [], ""),
        (b"x" * 10_000, None, [("a", b"")], None),
    ]
    recs = [spool.append(v, k, h, r) for v, k, h, r in cases]
    assert [r.seq for r in recs] == [1, 2, 3, 4]
    assert all(r.writer == spool.writer_id and len(r.writer) == 16 for r in recs)
    back = list(spool.read(spool.writer_id, 0))
    assert back == recs
    assert [(r.value, r.key, r.headers, r.route) for r in back] == cases
    assert spool.pending() == 4
    assert spool.pending_bytes() == sum(
        os.path.getsize(spool.directory / n) for n in _segments(spool.directory)
    )


def test_read_skips_acked_and_starts_after_seq(spool: OwnerSpool) -> None:
    w = spool.writer_id
    for i in range(50):
        spool.append(b"%d" % i)
    for seq in (1, 2, 3, 10, 20):
        spool.ack(w, seq)
    spool.ack(w, 10)  # twice: harmless
    spool.ack(w, 999)  # unknown seq and writer: ignored
    spool.ack("0" * 16, 1)
    assert spool.pending() == 45
    expected = [s for s in range(1, 51) if s not in (1, 2, 3, 10, 20)]
    assert _seqs(spool, w) == expected
    assert _seqs(spool, w, 30) == list(range(31, 51))
    assert _seqs(spool, w, 30) == list(range(31, 51))  # again, from the reader's hint
    assert _seqs(spool, w, 50) == []
    assert list(spool.read("f" * 16, 0)) == []


def test_rotation_and_fully_acked_segments_are_deleted(spool: OwnerSpool) -> None:
    w = spool.writer_id
    recs = [spool.append(b"x" * 100, b"k") for _ in range(200)]  # ~26 KiB: 7 segments
    segs = _segments(spool.directory)
    assert len(segs) >= 6
    assert segs[0] == f"{w}-00000001.seg"
    assert _seqs(spool, w) == list(range(1, 201))
    full = spool.pending_bytes()
    # Out of order, newest first: segments are deleted only once all their records are.
    for r in reversed(recs[:60]):
        spool.ack(w, r.seq)
    spool.sync()  # the background thread unlinks (a big file takes milliseconds)
    left = _segments(spool.directory)
    assert left[0] != segs[0] and len(left) < len(segs)
    assert spool.pending_bytes() < full
    assert spool.pending() == 140
    assert _seqs(spool, w) == list(range(61, 201))
    for r in recs[60:]:
        spool.ack(w, r.seq)
    spool.sync()
    # Everything acked: only the current segment stays (a live writer keeps appending to it).
    assert _segments(spool.directory) == [left[-1]]
    assert spool.pending() == 0
    assert _seqs(spool, w) == []


def test_ack_memory_follows_what_is_in_flight(spool: OwnerSpool) -> None:
    w = spool.writer_id
    for _ in range(6000):
        spool.append(b"v")
    acks = spool._writers[w].acks
    for seq in range(2, 3001):  # seq 1 stuck: everything acked behind it is one range
        spool.ack(w, seq)
    assert acks.low == 0 and acks.ranges == [(2, 3000)]
    for seq in range(3001, 6001):  # every third one stuck too: one range per stuck record
        if seq % 3:
            spool.ack(w, seq)
    assert len(acks.ranges) == 1000 == spool.pending() - 1
    spool.ack(w, 1)
    assert acks.low == 3002 and len(acks.ranges) == 999
    for seq in range(3003, 6001, 3):
        spool.ack(w, seq)
    assert acks.low == 6000 and not acks.ranges and spool.pending() == 0


def test_ack_state_agrees_with_a_plain_set() -> None:
    rng = random.Random(14)
    for _ in range(20):
        st, ref = AckState(), set()
        n = rng.randint(1, 400)
        for _ in range(n * 2):
            seq = rng.randint(1, n)
            if rng.random() < 0.05:
                a = rng.randint(1, n)
                b = a + rng.randint(0, 5)
                st.add_gap(a, b)
                ref.update(range(a, b + 1))
            else:
                assert st.add(seq) == (seq not in ref)
                ref.add(seq)
            low = 0
            while low + 1 in ref:
                low += 1
            assert st.low == low
            assert all(st.acked(q) == (q in ref) for q in range(1, n + 8))
            held = [q for r in st.ranges for q in range(r[0], r[1] + 1)]
            assert held == sorted(q for q in ref if q > low)
        assert load_round_trip(st).ranges == st.ranges


def load_round_trip(st: AckState) -> AckState:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.ack")
        save_acks(path, st.to_json(), fsync=False)
        back, note = load_acks(path)
    assert not note and back.low == st.low
    return back


def test_concurrent_appends_get_distinct_seqs_in_file_order(spool: OwnerSpool) -> None:
    def worker(t: int) -> None:
        for i in range(1500):
            spool.append(b"%d-%d" % (t, i) * 3)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    recs = list(spool.read(spool.writer_id, 0))
    assert [r.seq for r in recs] == list(range(1, 6001))
    assert sorted(r.value or b"" for r in recs) == sorted(
        b"%d-%d" % (t, i) * 3 for t in range(4) for i in range(1500)
    )
    assert spool.pending() == 6000


def test_read_follows_rotation_of_a_live_writer(spool: OwnerSpool) -> None:
    w = spool.writer_id
    for _ in range(10):
        spool.append(b"y" * 200)
    it = spool.read(w, 0)
    first = [next(it).seq for _ in range(5)]
    for _ in range(100):  # several rotations while the reader is in the first segment
        spool.append(b"y" * 200)
    assert len(_segments(spool.directory)) > 3
    rest = [r.seq for r in it]
    assert first + rest == list(range(1, 111))
    spool.append(b"z")
    assert _seqs(spool, w, 110) == [111]  # a new reader sees it; the old one had stopped


def test_a_reader_racing_appends_and_rotations_never_skips_a_record(tmp_path: Path) -> None:
    s = OwnerSpool(tmp_path / "race", SpoolSettings(segment_bytes=600))
    w = s.writer_id
    n = 8_000
    done = threading.Event()

    def writer() -> None:
        for _ in range(n):
            s.append(b"r" * 40)
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    cursor = 0
    deadline = time.monotonic() + 60
    try:
        while cursor < n:
            assert time.monotonic() < deadline, f"stuck at {cursor} of {n}"
            finished = done.is_set()
            for r in s.read(w, cursor):
                assert r.seq == cursor + 1, f"read {r.seq} after {cursor}"
                cursor = r.seq
                s.ack(w, r.seq)
            assert cursor == n or not finished, f"stopped at {cursor} of {n}"
    finally:
        th.join()
        s.close()


def test_a_rotation_right_after_the_reader_saw_the_end_does_not_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made certain: appends land in the segment and rotate just after the
    reader read its size. Readers must judge "current end" and "segment complete" from one
    view taken under the store's lock, where no append can come in between."""
    s = OwnerSpool(tmp_path / "o", SpoolSettings(segment_bytes=3 * 60))
    late: list[int] = []

    class Segment(store_mod.Segment):
        # A dataclass(slots=True) base: keep the size in a slot of our own.
        __slots__ = ("_size",)

        @property  # type: ignore[override]
        def size(self) -> int:
            seen = self._size
            if armed and not late and not s._lock.locked():
                late.extend(s.append(b"%d" % i).seq for i in (3, 4))  # 3 fits, 4 rotates
            return seen

        @size.setter
        def size(self, value: int) -> None:
            self._size = value

    monkeypatch.setattr(store_mod, "Segment", Segment)
    try:
        armed = False
        w = s.writer_id
        s.append(b"1")
        s.append(b"2")
        it = s.read(w, 0)
        assert [next(it).seq, next(it).seq] == [1, 2]
        armed = True
        rest = [r.seq for r in it]
        armed = False
        if not late:  # sizes only read under the lock: append now, nothing can be skipped
            s.append(b"3")
            s.append(b"4")
        assert len(_segments(s.directory)) == 2
        assert rest + [r.seq for r in s.read(w, rest[-1] if rest else 2)] == [3, 4]
    finally:
        s.close()


def test_read_streams_a_large_backlog_in_bounded_memory(tmp_path: Path) -> None:
    s = OwnerSpool(tmp_path / "big", SpoolSettings(segment_bytes=4 << 20))
    try:
        v = b"m" * 4000
        for _ in range(4000):  # 16 MB on disk, 4 segments
            s.append(v)
        tracemalloc.start()
        try:
            n = sum(len(r.value or b"") for r in s.read(s.writer_id, 0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert n == 16_000_000
        assert peak < 2 << 20, f"read() held {peak} B at once"
    finally:
        s.close()


def test_acks_persist_across_close_and_reopen(tmp_path: Path) -> None:
    d = tmp_path / "o"
    s = OwnerSpool(d, SpoolSettings(segment_bytes=2048))
    w = s.writer_id
    for _ in range(300):
        s.append(b"v" * 50)
    acked = set(range(1, 120)) | set(range(150, 300, 3))
    for seq in acked:
        s.ack(w, seq)
    s.close()
    s.close()  # idempotent
    assert (d / f"{w}.ack").exists() and (d / f"{w}.lock").exists()
    with pytest.raises(SpoolError, match="closed"):
        s.append(b"late")

    t = OwnerSpool(d, SpoolSettings(segment_bytes=2048))
    try:
        assert t.adopt() == [w]
        assert t.adopt() == []  # ours now
        expected = [seq for seq in range(1, 301) if seq not in acked]
        assert _seqs(t, w) == expected
        assert t.pending() == len(expected)
        for seq in expected:
            t.ack(w, seq)
        assert t.pending() == 0 and t.pending_bytes() == 0
        t.sync()  # the adopted writer's files go, its lock file last
        assert not [n for n in os.listdir(d) if n.startswith(w)]
    finally:
        t.close()
    # The new writer never appended: nothing left behind at all.
    assert os.listdir(d) == []


def test_adopt_returns_dead_writers_oldest_first(tmp_path: Path) -> None:
    born = []
    for i in range(6):  # one after the other, as a chain of crashed processes would
        s = OwnerSpool(tmp_path, SpoolSettings())
        s.adopt()  # takes the previous one and, like a dead broker, sends nothing
        t0 = s.append(b"%d" % i).ts_ms
        born.append(s.writer_id)
        s.close()
        wait_until(lambda t0=t0: time.time_ns() // 1_000_000 > t0, what="the next millisecond")
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        got = s.adopt()
        assert got == born  # not their (random) id order
        assert [s.pending_of(w) for w in got] == [1] * 6 and s.pending_of("0" * 16) == 0
        s.ack(got[0], 1)
        assert s.pending_of(got[0]) == 0 and s.pending() == 5
    finally:
        s.close()


def test_random_operations_agree_with_a_model(tmp_path: Path) -> None:
    """Appends, acks in any order, reads from any seq, syncs and close-then-adopt cycles:
    what read() returns is always exactly the unacked records, in seq order."""
    rng = random.Random(1401)
    for round_ in range(6):
        d = tmp_path / str(round_)
        settings = SpoolSettings(segment_bytes=rng.choice([150, 1000, 8000]))
        s = OwnerSpool(d, settings)
        model: dict[tuple[str, int], bytes] = {}  # unacked (writer, seq) -> value
        try:
            for _ in range(300):
                op = rng.random()
                if op < 0.5:
                    r = s.append(rng.randbytes(rng.randint(0, 120)))
                    model[(r.writer, r.seq)] = r.value or b""
                elif op < 0.85 and model:
                    w, q = rng.choice(list(model))
                    s.ack(w, q)
                    del model[(w, q)]
                elif op < 0.95:
                    for w in {w for w, _ in model}:
                        after = rng.choice([0, rng.randint(0, 200)])
                        got = [(r.seq, r.value) for r in s.read(w, after)]
                        want = sorted((q, v) for (x, q), v in model.items() if x == w and q > after)
                        assert got == want
                    assert s.pending() == len(model)
                elif op < 0.97:
                    s.sync()
                else:
                    s.close()  # a restart: the next process adopts every earlier writer
                    s = OwnerSpool(d, settings)
                    s.adopt()
                    assert s.pending() == len(model)
        finally:
            s.close()
        t = OwnerSpool(d, settings)
        try:
            t.adopt()
            assert t.pending() == len(model)
        finally:
            t.close()


def test_acks_are_persisted_in_the_background(spool: OwnerSpool) -> None:
    w = spool.writer_id
    for _ in range(10):
        spool.append(b"v")
    for seq in (1, 2, 3, 7):
        spool.ack(w, seq)
    path = spool.directory / f"{w}.ack"

    def saved() -> bool:
        return path.exists() and orjson.loads(path.read_bytes()) == {"low": 3, "ranges": [[7, 7]]}

    wait_until(saved, timeout=5, what="the background thread to save the acks")


def test_spools_of_a_process_share_one_background_thread(tmp_path: Path) -> None:
    def syncers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "ek-spool-sync"]

    spools = [OwnerSpool(tmp_path / str(i), SpoolSettings(fsync=0.02)) for i in range(8)]
    try:
        for s in spools:
            s.ack(s.writer_id, s.append(b"v").seq)
            s.append(b"w")
        assert len(syncers()) == 1

        def all_saved() -> bool:
            return all(
                (s.directory / f"{s.writer_id}.ack").exists()
                and orjson.loads((s.directory / f"{s.writer_id}.ack").read_bytes())["low"] == 1
                for s in spools
            )

        wait_until(all_saved, timeout=5, what="every spool's acks saved by the one thread")
    finally:
        for s in spools:
            s.close()
    assert not [s for s in spools if s in background._work]
    if not list(background._work):  # other tests of this session may hold spools open
        wait_until(lambda: not syncers(), timeout=5, what="the thread to end with the last spool")


def test_next_segment_is_made_ahead_and_a_crash_leaves_it_unreported(tmp_path: Path) -> None:
    s = OwnerSpool(tmp_path, SpoolSettings(segment_bytes=4096))
    w = s.writer_id
    while s.pending_bytes() < 3000:  # past half: the background thread makes segment 2
        s.append(b"x" * 100)
    spare = tmp_path / f"{w}-00000002.seg"
    wait_until(spare.exists, timeout=5, what="the next segment made ahead")
    ino = spare.stat().st_ino
    while len(_segments(tmp_path)) < 2:
        s.append(b"x" * 100)
    assert spare.stat().st_ino == ino and spare.stat().st_size  # rotated into it
    while spare.stat().st_size < 3000:
        s.append(b"x" * 100)
    wait_until((tmp_path / f"{w}-00000003.seg").exists, timeout=5, what="segment 3 ahead")
    s._pid = -1  # a crash, as far as the files go: every descriptor closed, nothing written
    s.after_fork_in_child()
    t = OwnerSpool(tmp_path, SpoolSettings())
    try:
        assert t.adopt() == [w]
        assert not t.recovery.files  # the unused spare is no damage
        assert not (tmp_path / f"{w}-00000003.seg").exists()
    finally:
        t.close()


def test_size_limit_refuses_then_accepts_once_acked(tmp_path: Path) -> None:
    d = tmp_path / "full"
    s = OwnerSpool(d, SpoolSettings(max_bytes=10_000, segment_bytes=4096))
    try:
        recs = []
        with pytest.raises(SpoolFullError) as ei:
            while True:
                recs.append(s.append(b"x" * 500))
        msg = str(ei.value)
        assert str(d) in msg and "max_bytes 10000" in msg
        assert isinstance(ei.value, SpoolError) and isinstance(ei.value, OSError)
        assert s.pending_bytes() <= 10_000 and s.pending() == len(recs) > 0
        assert _seqs(s, s.writer_id) == [r.seq for r in recs]  # nothing lost, no seq burnt
        for r in recs:
            s.ack(r.writer, r.seq)
        # Acked records of the current segment still hold their bytes until it rotates.
        more = [s.append(b"x" * 500) for _ in range(len(recs) // 2)]
        assert more[0].seq == recs[-1].seq + 1
    finally:
        s.close()


def test_files_are_private_and_lock_is_held(tmp_path: Path) -> None:
    import fcntl

    spool = OwnerSpool(tmp_path / "spool" / "broker_id" / "cdr", SpoolSettings())
    spool.append(b"v")
    d = spool.directory
    for p in (d, d.parent, d.parent.parent):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in d.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    fd = os.open(d / f"{spool.writer_id}.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        spool.close()


@pytest.mark.parametrize("fsync", ["always", 0.01])
def test_fsync_policies_round_trip(tmp_path: Path, fsync: str | float) -> None:
    s = OwnerSpool(tmp_path / "f", SpoolSettings(fsync=fsync, segment_bytes=1024))  # type: ignore[arg-type]
    try:
        for _ in range(30):
            s.append(b"p" * 100)
        s.sync()
        assert _seqs(s, s.writer_id) == list(range(1, 31))
    finally:
        s.close()


@pytest.mark.parametrize(
    "kw",
    [
        {"max_bytes": 0},
        {"segment_bytes": -1},
        {"fsync": "sometimes"},
        {"fsync": 0},
        {"fsync": True},
        {"max_age": -1},
        {"max_age": True},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SpoolSettings(**kw)  # type: ignore[arg-type]


def test_unwritable_directory_is_a_spool_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(SpoolError) as ei:
        OwnerSpool(blocker / "owner", SpoolSettings())
    assert str(blocker) in str(ei.value) and ei.value.errno is not None


def test_record_too_big_for_a_frame_is_a_value_error(spool: OwnerSpool) -> None:
    with pytest.raises(ValueError, match="route"):
        spool.append(b"v", route="r" * 70_000)
    assert spool.append(b"ok").seq == 1  # no seq burnt


def test_spool_record_is_the_documented_dataclass() -> None:
    r = SpoolRecord("a" * 16, 1, 2, None, b"v", None, None)
    assert r.writer == "a" * 16 and r.seq == 1 and r.ts_ms == 2
