"""Damaged spool files: a corrupted stretch, a flipped byte inside one record, a torn tail
(the segment cut mid-record) and a dead writer whose segment is pure garbage. The replaying
process recovers every valid record, delivers no damaged one, logs what it cut, and never
crashes or refuses to start.

The records' identities are found in the segment bytes (values are stored as written), so the
test knows which records each damage may take, without knowing the frame format.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from tests.spool.conftest import dead_address, recover, spec, start_publisher, tally
from tests.support import Broker, Consume, MakeTopic

pytestmark = pytest.mark.integration

WINDOW = 512  # bytes around a damage whose records may be lost (frames here are ~100 bytes)


def locate(seg: bytes, tag: str, count: int) -> dict[int, int]:
    """seq -> offset of its value in the segment bytes."""
    out = {}
    for seq in range(count):
        at = seg.find(f"{tag}:{seq:07d}".encode())
        if at >= 0:
            out[seq] = at
    return out


def test_corrupt_and_truncated_segments_valid_part_recovered_cut_counted(
    kafka_broker: Broker,
    make_topic: MakeTopic,
    consume: Consume,
    tmp_path: Path,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = make_topic(3)
    spool = tmp_path / "spool"
    count = 3_000
    child = start_publisher(spool, spec(dead_address(), topic), "c", count, tmp_path)
    child.wait("publishing done", lambda: child.marker("done"), 120)
    child.kill9()
    promised = child.promised()["c"]
    assert len(promised) == count

    segs = sorted(spool.rglob("*.seg"))
    assert segs, f"no *.seg files under {spool} (layout of SPOOL.md)"
    where: dict[int, tuple[Path, int]] = {}
    for p in segs:
        for seq, off in locate(p.read_bytes(), "c", count).items():
            where[seq] = (p, off)
    assert len(where) == count, f"{count - len(where)} records not found as plain bytes"

    # All damage goes into the segment holding the most records.
    seg = max(segs, key=lambda p: sum(1 for f, _ in where.values() if f == p))
    mine = sorted((off, seq) for seq, (f, off) in where.items() if f == seg)
    n = len(mine)
    data = bytearray(seg.read_bytes())
    # 1. a stretch of 40 random bytes a third of the way in
    c_off = mine[n // 3][0] - 10
    data[c_off : c_off + 40] = rng.randbytes(40)
    # 2. one flipped bit inside one record's value (its digits) halfway
    f_off, f_seq = mine[n // 2]
    data[f_off + 5] ^= 0x01
    # 3. a torn tail: cut three quarters of the way in, inside a record's value
    t_off = mine[3 * n // 4][0] + 3
    del data[t_off:]
    seg.write_bytes(bytes(data))
    # 4. a dead writer whose only segment is garbage, and an empty segment of another
    junk = seg.parent / "deadbeefdeadbeef"
    Path(f"{junk}.lock").touch()
    Path(f"{junk}-00000001.seg").write_bytes(rng.randbytes(4096))
    Path(seg.parent / "0123456789abcdef.lock").touch()
    Path(seg.parent / "0123456789abcdef-00000001.seg").touch()

    may_lose = {
        seq
        for seq, (f, off) in where.items()
        if f == seg
        and (
            c_off - WINDOW <= off <= c_off + 40 + WINDOW
            or f_off - WINDOW <= off <= f_off + WINDOW
            or off >= t_off - WINDOW
        )
    }
    gone = {seq for seq, (f, off) in where.items() if f == seg and off >= t_off - 3}

    with caplog.at_level(logging.WARNING):
        rec = recover(spool, spec(kafka_broker.bootstrap, topic))
    records = consume(topic, expect=count - len(may_lose), timeout=60)
    rec.check_reports(records)
    t = tally(records, {"c": promised}, {"c": count})
    lost = set(t.lost.get("c", []))
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("event_kafka")]
    print(
        f"\n[damaged segment] {n} records in it; lost {len(lost)} (torn tail took "
        f"{len(gone)}, the corruptions {len(lost - gone)}), delivered {t.in_kafka}; "
        f"warnings: {warnings[:4]}"
    )
    assert not t.unknown, f"a damaged record reached Kafka: {t.unknown[:3]}"
    assert lost <= may_lose, f"lost away from any damage: {sorted(lost - may_lose)[:10]}"
    assert gone <= lost, "records past the cut cannot exist"
    assert f_seq in lost, "the record with a flipped bit was delivered (no checksum?)"
    assert len(lost - gone) <= 2 * WINDOW // 50, "a corruption took too many records"
    assert t.duplicates == 0
    rec.check_flush()
    assert any(seg.name in w or "corrupt" in w.lower() or "torn" in w.lower() for w in warnings), (
        "nothing logged about the damage"
    )
