"""Helpers of the spool's proof tests: publishing children killed with SIGKILL, the recovery
process, and the tally of what Kafka holds against what was promised (``kafka_publish`` = 1).

Every record's identity is in its value, ``<tag>:<seq>`` (one tag per writer process), so the
tally needs nothing but the topic and the side files the children wrote.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import Record, free_port
from event_kafka.devkafka.process import pid_alive
from tests.support import wait_until

PUBLISHER = Path(__file__).with_name("publisher.py")
LINE = 10  # publisher.py's side-file line
SAFE = "t.acks=all&g.enable.idempotence=true"
SEED = int(os.environ.get("SPOOL_SEED", "20261130"))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded RNG per test (``SPOOL_SEED`` changes the base seed; printed for replays)."""
    seed = f"{SEED}:{request.node.name}"
    print(f"\n[seed {seed!r}]")
    return random.Random(seed)


def dead_address() -> str:
    """``127.0.0.1:port`` where nothing listens: a broker that is down."""
    return f"127.0.0.1:{free_port()}"


def spec(bootstrap: str, topic: str, props: str = SAFE) -> str:
    return f"[k]{bootstrap}/{topic}?{props}"


# -- the publishing child ---------------------------------------------------------------------


@dataclass
class Child:
    """One publisher.py process (or the parent of ``--fork`` workers)."""

    proc: subprocess.Popen[bytes]
    side: Path
    log: Path
    fork: int = 0

    @property
    def sides(self) -> list[Path]:
        if not self.fork:
            return [self.side]
        return [Path(f"{self.side}.{k}") for k in range(self.fork)]

    def progress(self) -> int:
        """Records promised so far (side-file lines, all workers)."""
        n = 0
        for s in self.sides:
            with contextlib.suppress(FileNotFoundError):
                n += s.stat().st_size // LINE
        return n

    def marker(self, name: str) -> bool:
        return all(Path(f"{s}.{name}").exists() for s in self.sides)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"publisher exited {self.proc.returncode}:\n"
                + self.log.read_text(errors="replace")[-3000:]
            )

    def wait(self, what: str, cond: object, timeout: float = 60.0) -> None:
        def ok() -> bool:
            self.check_alive()
            return bool(cond() if callable(cond) else cond)

        wait_until(ok, timeout, what, step=0.002)

    def pids(self) -> list[int]:
        if not self.fork:
            return [self.proc.pid]
        path = Path(f"{self.side}.pids")
        if not path.exists():
            self.wait("the workers' PIDs", path.exists, 30)
        return [int(p) for p in path.read_text().split()]

    def kill9(self) -> None:
        """SIGKILL the workers first (a dead parent would leave them running), then the
        process we started; by PID."""
        workers = self.pids() if self.fork else []
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        # Workers are reaped by init once their parent is gone: wait until they are.
        wait_until(lambda: not any(pid_alive(p) for p in workers), 30, "workers gone")

    def promised(self) -> dict[str, set[int]]:
        """tag -> seqs whose kafka_publish returned 1."""
        tag = self.proc.args[self.proc.args.index("--tag") + 1]  # type: ignore[union-attr]
        if not self.fork:
            return {str(tag): read_side(self.side)}
        return {f"{tag}w{k}": read_side(s) for k, s in enumerate(self.sides)}


def read_side(path: Path) -> set[int]:
    if not path.exists():
        return set()
    data = path.read_bytes()
    return {int(data[i : i + LINE - 1]) for i in range(0, len(data) - LINE + 1, LINE)}


def start_publisher(
    spool: Path,
    spec: str,
    tag: str,
    count: int,
    workdir: Path,
    *,
    fsync: str = "never",
    fork: int = 0,
    keys: int = 50,
    preexec: object = None,
) -> Child:
    side = workdir / f"side-{tag}"
    log = workdir / f"log-{tag}"
    cmd = [
        sys.executable,
        str(PUBLISHER),
        "--spool",
        str(spool),
        "--spec",
        spec,
        "--tag",
        tag,
        "--count",
        str(count),
        "--side",
        str(side),
        "--fsync",
        fsync,
        "--keys",
        str(keys),
        "--fork",
        str(fork),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,  # type: ignore[arg-type]
        )
    return Child(proc, side, log, fork)


# -- the recovery process ---------------------------------------------------------------------


@dataclass
class Recovery:
    """What a fresh EventKafka on the spool did: its reports, what flush/close left."""

    reports: list[Report] = field(default_factory=list)
    left_after_flush: int = -1  # what flush() returned
    spooled_after_flush: int = -1  # records the spool still held when flush() returned
    left_at_close: int = -1
    took: float = 0.0

    def check_flush(self) -> None:
        """flush() waited for the replay (the issue's contract) and close() left nothing."""
        assert self.left_after_flush == 0, f"flush() returned {self.left_after_flush}"
        assert self.spooled_after_flush == 0, (
            f"flush() returned {self.left_after_flush} while the spool held "
            f"{self.spooled_after_flush} records"
        )
        assert self.left_at_close == 0, f"close() left {self.left_at_close} in the spool"

    def check_reports(self, records: list[Record]) -> None:
        """Exactly one report per record it delivered; every one a success, replayed, and
        where Kafka has the record."""
        where: dict[bytes | None, set[tuple[int, int]]] = defaultdict(set)
        for r in records:
            where[r.value].add((r.partition, r.offset))
        per = Counter(r.message for r in self.reports)
        twice = [v for v, c in per.items() if c > 1]
        assert not twice, f"{len(twice)} records reported twice, e.g. {twice[:3]}"
        bad = [r for r in self.reports if r.kafka_status != 0 or not r.replayed]
        assert not bad, f"{len(bad)} reports not (success, replayed): {_rep(bad[0])}"
        moved = [r for r in self.reports if (r.partition, r.offset) not in where[r.message]]
        assert not moved, f"{len(moved)} reports name a place Kafka does not: {_rep(moved[0])}"


def _rep(r: Report) -> str:
    return (
        f"{r.message!r} status={r.kafka_status} reason={r.reason} "
        f"replayed={getattr(r, 'replayed', None)} at {r.partition}/{r.offset}"
    )


def recover(spool: Path, spec: str, timeout: float = 120.0, **kw: object) -> Recovery:
    """A new process's view: a fresh EventKafka on ``spool`` (publishing nothing), flush(),
    close(). Report route ``rec`` (the one the children used) collects the reports."""
    out = Recovery()
    lock = threading.Lock()

    def route(r: Report) -> None:
        with lock:
            out.reports.append(r)

    t0 = time.monotonic()
    ek = EventKafka([spec], spool_dir=spool, **kw)  # type: ignore[arg-type]
    try:
        ek.add_report_route("rec", route)
        out.left_after_flush = ek.flush(timeout)
        out.spooled_after_flush = spooled(ek)
        if out.left_after_flush == 0 and out.spooled_after_flush:
            # flush() returned early (a bug check_flush() reports): keep draining, so that
            # the test still measures delivery.
            wait_until(lambda: ek.flush(1) == 0 and not spooled(ek), timeout, "the spool drained")
        out.took = time.monotonic() - t0
    finally:
        out.left_at_close = ek.close(10)
    return out


def spooled(ek: EventKafka) -> int:
    """Records every spooled lane of ``ek`` still holds on disk."""
    return sum(int(s.get("records", 0)) for s in ek.stats().get("spool", []))


# -- the tally ---------------------------------------------------------------------------------


@dataclass
class Tally:
    promised: int
    in_kafka: int  # distinct records
    lost: dict[str, list[int]]  # promised, not in Kafka
    duplicates: int  # extra copies
    unknown: list[bytes]  # in Kafka, never attempted
    unpromised: int  # in Kafka, attempted but its 1 never reached the side file (killed between)
    order_broken: list[tuple[str, str]]  # (tag, key) whose seqs do not rise along the log
    cross_writer_inversions: int  # keys where a later writer's record precedes an earlier one's
    split_keys: list[bytes]  # keys on more than one partition

    def line(self) -> str:
        return (
            f"promised {self.promised}, in Kafka {self.in_kafka}, lost "
            f"{sum(map(len, self.lost.values()))}, duplicates {self.duplicates}, unpromised "
            f"{self.unpromised}, per-key order broken in a writer {len(self.order_broken)}, "
            f"across writers {self.cross_writer_inversions}"
        )


def tally(records: list[Record], promised: dict[str, set[int]], attempted: dict[str, int]) -> Tally:
    """Kafka's content against the ledgers. ``attempted``: tag -> how many seqs it may have
    tried (0..n-1); tags must sort in publish order (round number first)."""
    counts: Counter[tuple[str, int]] = Counter()
    unknown: list[bytes] = []
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_key: dict[bytes, list[str]] = defaultdict(list)
    parts: dict[bytes, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        tag, _, rest = (r.value or b"").decode(errors="replace").partition(":")
        seq_s = rest.split(":", 1)[0]  # values may carry padding after a second ':'
        if tag not in attempted or not seq_s.isdigit() or int(seq_s) >= attempted[tag]:
            unknown.append(r.value or b"")
            continue
        seq = int(seq_s)
        counts[(tag, seq)] += 1
        assert r.key is not None
        if counts[(tag, seq)] == 1:
            order[(tag, r.key.decode())].append(seq)
            by_key[r.key].append(tag)
        parts[r.key].add(r.partition)
    lost = {t: sorted(s for s in seqs if (t, s) not in counts) for t, seqs in promised.items()}
    lost = {t: s for t, s in lost.items() if s}
    unpromised = sum(1 for t, s in counts if s not in promised.get(t, set()))
    inversions = sum(1 for tags in by_key.values() if tags != sorted(tags))
    return Tally(
        promised=sum(map(len, promised.values())),
        in_kafka=len(counts),
        lost=lost,
        duplicates=sum(c - 1 for c in counts.values()),
        unknown=unknown,
        unpromised=unpromised,
        order_broken=[k for k, seqs in order.items() if seqs != sorted(seqs)],
        cross_writer_inversions=inversions,
        split_keys=[k for k, p in parts.items() if len(p) > 1],
    )


def assert_nothing_lost(t: Tally) -> None:
    unknown = [v[:40] for v in t.unknown[:3]]
    assert not t.unknown, f"{len(t.unknown)} records nobody published, e.g. {unknown}"
    lost = {tag: (len(s), s[:5]) for tag, s in t.lost.items()}
    assert not t.lost, f"promised (kafka_publish returned 1) but not in Kafka: {lost}"
    assert not t.split_keys, f"keys on more than one partition: {t.split_keys[:5]}"
    assert not t.order_broken, f"per-key order broken within a writer: {t.order_broken[:5]}"


def spool_stat(ek: EventKafka, name: str, broker_id: str = "k") -> int:
    """A counter of ``ek.stats()["spool"]`` summed over the spooled lanes of ``broker_id``."""
    return sum(
        int(s.get(name, 0)) for s in ek.stats().get("spool", []) if s.get("broker_id") == broker_id
    )
