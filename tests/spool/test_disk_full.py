"""A spool that cannot write: a full file system (a 2 MiB tmpfs the test mounts) and a file
size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so writes fail with EFBIG). ``kafka_publish``
returns -1, counted; nothing already spooled is lost; once space is freed it works again.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from event_kafka import EventKafka, Report
from tests.spool.conftest import (
    assert_nothing_lost,
    dead_address,
    recover,
    spec,
    spool_stat,
    start_publisher,
    tally,
)
from tests.support import Broker, Consume, MakeTopic

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (root only; skipped, saying why, otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_file_system_full_rejects_counted_keeps_spooled_recovers_when_freed(
    kafka_broker: Broker, make_topic: MakeTopic, consume: Consume, tiny_fs: Path
) -> None:
    topic = make_topic(3)
    spool = tiny_fs / "spool"
    # Leave ~600 KiB: the rest is a filler file removed later ("space freed").
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (1400 << 10))
    pad = "x" * 900  # ~1 KiB records: the file system fills within a few hundred
    ek = EventKafka([spec(dead_address(), topic)], spool_dir=spool)  # broker down: all stay
    reports: list[Report] = []
    ek.add_report_route("rec", reports.append)
    promised: set[int] = set()
    rejected: list[int] = []
    seq = 0
    try:
        while len(rejected) < 50 and seq < 20_000:
            if ek.kafka_publish("k", f"d:{seq:07d}:{pad}", f"call-{seq % 50}", "rec") == 1:
                promised.add(seq)
            else:
                rejected.append(seq)
            seq += 1
        assert len(rejected) >= 50, f"{seq} records of 1 KiB fit in a 2 MiB file system?"
        assert promised, "nothing fitted before the file system was full"
        counted = spool_stat(ek, "rejected_spool_error") + spool_stat(ek, "rejected_spool_full")
        full_at = len(promised)
        filler.unlink()
        # Space freed: the same process spools again.
        after = []
        for _ in range(100):
            rc = ek.kafka_publish("k", f"d:{seq:07d}:{pad}", f"call-{seq % 50}", "rec")
            if rc == 1:
                promised.add(seq)
            else:
                after.append(seq)
            seq += 1
        left = ek.close(0)
    finally:
        ek.close(0)
    print(
        f"\n[tmpfs 2 MiB full] spooled {full_at}, then -1 x{len(rejected)} (counted "
        f"{counted}); after freeing: {100 - len(after)}/100 spooled; left at close {left}"
    )
    assert counted == len(rejected), ek.stats().get("spool")
    assert not after, f"still -1 after the space was freed: {len(after)} of 100"
    # Broker down, close(0): everything stays in the spool, with no report at all.
    assert not reports, f"{len(reports)} reports at close, e.g. {reports[0].as_dict()}"
    assert left == len(promised), (left, len(promised))

    rec = recover(spool, spec(kafka_broker.bootstrap, topic))
    records = consume(topic, expect=len(promised), timeout=60)
    t = tally(records, {"d": promised}, {"d": seq})
    print(f"  recovery: {t.line()}")
    assert_nothing_lost(t)
    assert t.unpromised == 0, "a record whose call returned -1 reached Kafka"
    assert t.duplicates == 0
    rec.check_flush()


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))


def test_file_size_limit_efbig_rejects_counted_nothing_spooled_lost(
    kafka_broker: Broker, make_topic: MakeTopic, consume: Consume, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE 256 KiB in the publishing process: its segment file cannot grow past it.
    Whatever -1 it returned is counted, whatever 1 it returned a new process delivers."""
    topic = make_topic(3)
    spool = tmp_path / "spool"
    count = 10_000  # ~60 bytes of value each: well past 256 KiB of segment
    child = start_publisher(
        spool, spec(dead_address(), topic), "z", count, tmp_path, preexec=_limit_file_size
    )
    child.wait("publishing done", lambda: child.marker("done"), 120)
    rejected = int(Path(f"{child.side}.done").read_text())
    child.kill9()
    promised = child.promised()
    print(
        f"\n[RLIMIT_FSIZE 256 KiB, {os.strerror(errno.EFBIG)}] spooled "
        f"{len(promised['z'])}, -1 x{rejected}"
    )
    assert len(promised["z"]) + rejected == count
    assert rejected > 0 and promised["z"], "expected both: spooled, then refused"

    rec = recover(spool, spec(kafka_broker.bootstrap, topic))
    records = consume(topic, expect=len(promised["z"]), timeout=60)
    rec.check_reports(records)
    t = tally(records, promised, {"z": count})
    print(f"  recovery: {t.line()}")
    assert_nothing_lost(t)
    assert t.unpromised == 0, "a record whose call returned -1 reached Kafka"
    assert t.duplicates == 0
    rec.check_flush()
