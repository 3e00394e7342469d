"""Damaged spool files (issue 14): torn tails, corrupt records, junk in the directory.

Opening and adopting never raise for damage: the valid part is recovered, what was cut or
skipped is counted in ``recovery`` and logged once per file.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import time
import zlib
from pathlib import Path

import pytest

from event_kafka.spool import OwnerSpool, SpoolSettings
from event_kafka.spool.record import HEAD, MAGIC
from event_kafka.spool.segment import Scan
from tests.support.timing import best_of, deadline


def _value(seq: int) -> bytes:
    return b"record-%d-" % seq + bytes([seq % 251]) * (seq % 40)


def _dead_writer(d: Path, n: int, segment_bytes: int = 1 << 20) -> str:
    """A writer with records 1..n that is gone (closed: its lock is free, nothing acked)."""
    s = OwnerSpool(d, SpoolSettings(segment_bytes=segment_bytes))
    for seq in range(1, n + 1):
        s.append(_value(seq), b"k%d" % seq, [("h", b"%d" % seq)], "r")
    wid = s.writer_id
    s.close()
    return wid


def _segs(d: Path, wid: str) -> list[Path]:
    return sorted(d.glob(f"{wid}-*.seg"))


def _frame_offsets(path: Path) -> list[int]:
    with open(path, "rb") as f:
        return [off for off, _, _ in Scan(f, 0, path.stat().st_size).frames()]


def _adopt_all(d: Path) -> tuple[OwnerSpool, dict[int, bytes | None]]:
    s = OwnerSpool(d, SpoolSettings())
    got: dict[int, bytes | None] = {}
    for wid in s.adopt():
        seqs = []
        for r in s.read(wid, 0):
            seqs.append(r.seq)
            got[r.seq] = r.value
            assert r.key == b"k%d" % r.seq and r.headers == [("h", b"%d" % r.seq)]
        assert seqs == sorted(set(seqs)), "in seq order, each once"
    return s, got


@pytest.mark.parametrize(
    "damage",
    [
        "cut mid-body",
        "cut mid-header",
        "zeros appended",
        "half a header appended",
        "zeros after a cut",
    ],
)
def test_torn_tail_is_cut_counted_and_logged(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    wid = _dead_writer(tmp_path, 20)
    (seg,) = _segs(tmp_path, wid)
    offs = _frame_offsets(seg)
    size = seg.stat().st_size
    good_end = size
    with open(seg, "r+b") as f:
        if damage == "cut mid-body":
            f.truncate(offs[-1] + HEAD.size + 5)
            good_end = offs[-1]
        elif damage == "cut mid-header":
            f.truncate(offs[-1] + 7)
            good_end = offs[-1]
        elif damage == "zeros appended":
            f.seek(size)
            f.write(b"\0" * 4096)
        elif damage == "zeros after a cut":  # torn while copying into a mapped segment
            f.truncate(offs[-1] + HEAD.size + 5)
            f.seek(0, 2)
            f.write(b"\0" * 4096)
            good_end = offs[-1]
        else:
            f.seek(size)
            f.write(MAGIC + b"\x10\x00")
    caplog.set_level(logging.WARNING, logger="event_kafka.spool")
    s, got = _adopt_all(tmp_path)
    try:
        want = 20 if good_end == size else 19
        assert sorted(got) == list(range(1, want + 1))
        assert all(got[q] == _value(q) for q in got)
        assert seg.stat().st_size == good_end  # cut back on disk
        if damage == "zeros appended":
            # What a mapped segment allocated ahead of a crash: cut, but no damage.
            assert not s.recovery.files and s.recovery.torn == 0
            assert not any(str(seg) in r.getMessage() for r in caplog.records)
        else:
            (fr,) = s.recovery.files
            assert fr.path == str(seg) and fr.cut_bytes > 0 and fr.records == want
            assert s.recovery.torn == 1 and fr.skipped_bytes == 0
            assert sum(str(seg) in r.getMessage() for r in caplog.records) == 1
        # Everything read is acked: the whole writer goes.
        for q in got:
            s.ack(wid, q)
        s.sync()
        assert not list(tmp_path.glob(f"{wid}*"))
    finally:
        s.close()


@pytest.mark.parametrize("where", ["body", "length field", "magic"])
def test_corrupt_record_in_the_middle_is_skipped_and_scan_resyncs(
    tmp_path: Path, where: str
) -> None:
    wid = _dead_writer(tmp_path, 30)
    (seg,) = _segs(tmp_path, wid)
    off = _frame_offsets(seg)[9]  # record 10
    pos = {"body": off + HEAD.size + 20, "length field": off + 5, "magic": off + 1}[where]
    with open(seg, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x40]))
    s, got = _adopt_all(tmp_path)
    try:
        assert sorted(got) == [q for q in range(1, 31) if q != 10]
        assert all(got[q] == _value(q) for q in got)
        (fr,) = s.recovery.files
        assert fr.skipped_regions == 1 and fr.skipped_bytes > 0 and fr.cut_bytes == 0
        assert s.pending() == 29
        for q in sorted(got)[:-1]:
            s.ack(wid, q)
        acks = s._writers[wid].acks  # the lost seq does not hold the watermark back
        assert acks.low == 29 and not acks.ranges
        s.ack(wid, 30)  # nor the segment
        s.sync()
        assert not _segs(tmp_path, wid)
    finally:
        s.close()


def test_garbage_in_the_directory_is_reported_and_ignored(tmp_path: Path) -> None:
    wid = _dead_writer(tmp_path, 5)
    ghost = "0123456789abcdef"
    junk = {
        "notes.txt": b"hello",
        "ABCDEF0123456789.seg": b"x",  # upper case: not a name the spool makes
        f"{ghost}-00000001.seg": b"",  # empty segment
        f"{ghost}-00000002.seg": os.urandom(3000),  # random bytes only
        f"{ghost}.ack": b"{not json",
        f"{wid}.ack": b'{"low": "x"}',  # unparsable acks: records replayed, not lost
        f"{wid}.ack.tmp": b"half",
        f".{ghost}.lock.tmp": b"",
    }
    for name, data in junk.items():
        (tmp_path / name).write_bytes(data)
    old = time.time() - 600
    os.utime(tmp_path / f".{ghost}.lock.tmp", (old, old))
    # A writer between creating its lock file and locking it: not stale, not touched.
    (tmp_path / ".fedcba9876543210.lock.tmp").write_bytes(b"")
    (tmp_path / "subdir").mkdir()
    s = OwnerSpool(tmp_path, SpoolSettings())
    try:
        assert s.adopt() == [wid]  # the ghost had nothing valid: deleted, not adopted
        assert [r.value for r in s.read(wid, 0)] == [_value(q) for q in range(1, 6)]
        notes = {Path(f.path).name: f.note for f in s.recovery.files}
        assert "unknown file" in notes["notes.txt"]
        assert "unknown file" in notes["ABCDEF0123456789.seg"]
        assert "unknown file" in notes["subdir"]
        assert "empty segment" in notes[f"{ghost}-00000001.seg"]
        assert "unparsable ack" in notes[f"{wid}.ack"]
        assert "unparsable ack" in notes[f"{ghost}.ack"]
        left = sorted(os.listdir(tmp_path))
        assert not [n for n in left if n.startswith((ghost, f".{ghost}"))]
        assert f"{wid}.ack.tmp" not in left
        assert ".fedcba9876543210.lock.tmp" in left
        assert {"notes.txt", "subdir", "ABCDEF0123456789.seg"} <= set(left)  # not ours: kept
        s.adopt()  # reported once per file, not at every call
        assert len([f for f in s.recovery.files if f.path.endswith("notes.txt")]) == 1
    finally:
        s.close()


def test_random_damage_never_raises_and_never_returns_a_wrong_record(tmp_path: Path) -> None:
    rng = random.Random(1414)
    for round_ in range(25):
        d = tmp_path / str(round_)
        wid = _dead_writer(d, 120, segment_bytes=2048)
        segs = _segs(d, wid)
        for _ in range(rng.randint(1, 6)):
            seg = rng.choice(segs)
            size = seg.stat().st_size
            with open(seg, "r+b") as f:
                kind = rng.random()
                if kind < 0.5 and size:
                    f.seek(rng.randrange(size))
                    f.write(os.urandom(rng.randint(1, 30)))
                elif kind < 0.8:
                    f.truncate(rng.randrange(size + 1))
                else:
                    f.seek(0, 2)
                    f.write(os.urandom(rng.randint(1, 200)))
        s, got = _adopt_all(d)
        try:
            assert all(got[q] == _value(q) for q in got), round_
            assert s.pending() == len(got)
            for q in got:
                s.ack(wid, q)
            s.sync()
            assert not list(d.glob(f"{wid}*")), round_
        finally:
            s.close()


def test_fifos_and_symlinks_under_spool_names_neither_hang_nor_get_written(tmp_path: Path) -> None:
    d = tmp_path / "owner"
    wid = _dead_writer(d, 3)
    outside = tmp_path / "precious"
    outside.write_bytes(b"not a spool file " * 10)
    os.mkfifo(d / "1111111111111111-00000001.seg")
    os.mkfifo(d / "2222222222222222.lock")
    os.mkfifo(d / "3333333333333333.ack")
    (d / "3333333333333333-00000001.seg").write_bytes(b"junk")
    os.symlink(outside, d / "4444444444444444-00000001.seg")
    os.symlink(outside, d / "5555555555555555.ack")
    s = OwnerSpool(d, SpoolSettings())
    try:
        with deadline(10):
            assert s.adopt() == [wid]
        assert len(list(s.read(wid, 0))) == 3
        assert outside.read_bytes() == b"not a spool file " * 10
        notes = " ".join(f.note for f in s.recovery.files)
        assert "not a regular file" in notes or "symbolic links" in notes
    finally:
        s.close()


# -- linear time -------------------------------------------------------------------------------

# 64x more input, as in tests/test_linear_time.py, but 4 KiB vs 256 KiB: zlib's CRC is so fast
# that a quadratic scan of 64 KiB still hides under the fixed slack.
SMALL, LARGE = 4 * 1024, 256 * 1024
FACTOR = 8
SLACK_S = 0.05
CAP_S = 5.0


def _header(length: int, body_crc: int) -> bytes:
    h12 = struct.pack("<4sII", MAGIC, length, body_crc)
    return h12 + struct.pack("<I", zlib.crc32(h12))


def _headers_to_eof(size: int) -> bytes:
    """An intact header every 16 bytes, each claiming a body up to the end of the file with
    a wrong CRC: a scan that retried each one byte further would CRC O(n^2) bytes."""
    out = bytearray()
    while len(out) + HEAD.size <= size:
        out += _header(size - len(out) - HEAD.size, 0)
    return bytes(out)


def _headers_past_eof(size: int) -> bytes:
    out = bytearray()
    while len(out) + HEAD.size <= size:
        out += _header(size, 0)
    return bytes(out)


CORRUPT = {
    "magic runs": lambda n: MAGIC * (n // 4),
    "intact headers, bodies to EOF": _headers_to_eof,
    "intact headers, bodies past EOF": _headers_past_eof,
    "random": lambda n: random.Random(n).randbytes(n),
}


def _scan_time(path: Path, runs: int = 3) -> float:
    def scan() -> None:
        with open(path, "rb") as f:
            for _ in Scan(f, 0, path.stat().st_size).frames():
                pass

    return best_of(scan, runs, CAP_S)


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_scan_of_a_corrupt_file_is_linear(tmp_path: Path, kind: str) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(CORRUPT[kind](SMALL))
    large.write_bytes(CORRUPT[kind](LARGE))
    t_small, t_large = _scan_time(small), _scan_time(large)
    bound = FACTOR * (LARGE / SMALL) * t_small + SLACK_S
    assert t_large <= bound, f"{kind}: {t_large:.4f}s for 256 KiB vs {t_small:.6f}s for 4 KiB"
