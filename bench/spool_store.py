"""``python -m bench.spool_store``: candidate stores for the durable spool (issue #14), no Kafka.

For each store and fsync policy: append ``--count`` records (the 151-byte E_PIKE_BLOCKED
notification, a Call-ID key), each one durable against the death of the process when the call
returns (one transaction / one write per record, as ``kafka_publish`` needs), every call timed;
then ack them all (as delivery reports would, persisted in batches). Prints appends/s, append
p50/p99/max, acks/s, the combined append+ack rate and the bytes on disk.

Stores: ``segment`` (the project's own append-only segment log, event_kafka.spool),
``sqlite-wal`` (WAL; synchronous OFF / NORMAL / FULL for never / interval / always) and ``lmdb``
(if the ``lmdb`` package is installed: sync off, off + env.sync() every 100 ms, on).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.scenarios import PIKE

POLICIES = ("never", "interval", "always")
INTERVAL = 0.1  # seconds between background fsyncs for "interval"
ACK_BATCH = 1000  # acks persisted per batch (the segment log does its own batching)

Append = Callable[[bytes, bytes], object]
Ack = Callable[[object], None]


class Store:
    """append(value, key) -> handle; ack(handle); close()."""

    append: Append
    ack: Ack

    def close(self) -> None:
        raise NotImplementedError


class SegmentStore(Store):
    def __init__(self, d: Path, policy: str) -> None:
        from event_kafka.spool import OwnerSpool, SpoolSettings

        fsync: Any = INTERVAL if policy == "interval" else policy
        self.sp = OwnerSpool(d, SpoolSettings(fsync=fsync))
        sp = self.sp

        def append(value: bytes, key: bytes) -> object:
            return sp.append(value, key, None, None)

        def ack(rec: Any) -> None:
            sp.ack(rec.writer, rec.seq)

        self.append, self.ack = append, ack

    def close(self) -> None:
        self.sp.close()


SQLITE_SYNC = {"never": "OFF", "interval": "NORMAL", "always": "FULL"}


class SqliteStore(Store):
    def __init__(self, d: Path, policy: str) -> None:
        d.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(d / "spool.db", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={SQLITE_SYNC[policy]}")
        db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, ts INTEGER, k BLOB, v BLOB)")
        self.db = db
        ins = "INSERT INTO spool (ts, k, v) VALUES (?, ?, ?)"
        execute = db.execute
        pending: list[tuple[int]] = []
        self.pending = pending

        def append(value: bytes, key: bytes) -> object:
            return execute(ins, (time.time_ns() // 1_000_000, key, value)).lastrowid

        def ack(rowid: Any) -> None:
            pending.append((rowid,))
            if len(pending) >= ACK_BATCH:
                self.flush_acks()

        self.append, self.ack = append, ack

    def flush_acks(self) -> None:
        # One transaction per batch (autocommit mode would make each DELETE its own).
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM spool WHERE id = ?", self.pending)
        self.db.execute("COMMIT")
        self.pending.clear()

    def close(self) -> None:
        self.flush_acks()
        self.db.close()


class LmdbStore(Store):
    def __init__(self, d: Path, policy: str) -> None:
        import lmdb

        d.mkdir(parents=True, exist_ok=True)
        self.env = env = lmdb.open(
            str(d), map_size=4 << 30, sync=policy == "always", metasync=policy == "always"
        )
        self.stop = threading.Event()
        self.syncer: threading.Thread | None = None
        if policy == "interval":

            def sync() -> None:
                while not self.stop.wait(INTERVAL):
                    env.sync(True)

            self.syncer = threading.Thread(target=sync, daemon=True)
            self.syncer.start()
        seq = [0]
        pending: list[bytes] = []
        self.pending = pending

        def append(value: bytes, key: bytes) -> object:
            seq[0] += 1
            k = seq[0].to_bytes(8, "big")
            with env.begin(write=True) as txn:
                txn.put(k, key + b"\0" + value)
            return k

        def ack(k: Any) -> None:
            pending.append(k)
            if len(pending) >= ACK_BATCH:
                self.flush_acks()

        self.append, self.ack = append, ack

    def flush_acks(self) -> None:
        with self.env.begin(write=True) as txn:
            for k in self.pending:
                txn.delete(k)
        self.pending.clear()

    def close(self) -> None:
        self.flush_acks()
        self.stop.set()
        if self.syncer is not None:
            self.syncer.join()
        self.env.close()


STORES: dict[str, type[Store]] = {
    "segment": SegmentStore,
    "sqlite-wal": SqliteStore,
    "lmdb": LmdbStore,
}


def available(name: str) -> str | None:
    """Why ``name`` cannot run here (None: it can)."""
    try:
        if name == "lmdb":
            import lmdb  # noqa: F401
        elif name == "segment":
            import event_kafka.spool  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def run_one(name: str, policy: str, count: int, cap: float, base: Path) -> dict[str, Any]:
    d = base / f"{name}-{policy}"
    store = STORES[name](d, policy)
    lat = array("q", bytes(8 * count))
    keys = [f"call-{i % 500:04d}".encode() for i in range(500)]
    append, perf = store.append, time.perf_counter_ns
    handles: list[object] = []
    keep = handles.append
    t0 = time.perf_counter()
    deadline = t0 + cap
    n = 0
    while n < count:
        c0 = perf()
        keep(append(PIKE, keys[n % 500]))
        lat[n] = perf() - c0
        n += 1
        if n & 255 == 0 and time.perf_counter() > deadline:
            break
    t_append = time.perf_counter() - t0
    size = disk_bytes(d)
    ack = store.ack
    t1 = time.perf_counter()
    for h in handles:
        ack(h)
    store.close()
    t_ack = time.perf_counter() - t1
    s = sorted(lat[:n])
    shutil.rmtree(d, ignore_errors=True)
    return {
        "store": name,
        "fsync": policy,
        "records": n,
        "appends_per_s": n / t_append,
        "append_p50_us": s[n // 2] / 1000,
        "append_p99_us": s[min(n - 1, int(n * 0.99))] / 1000,
        "append_max_us": s[-1] / 1000,
        "acks_per_s": n / t_ack if t_ack else float("inf"),
        "append_ack_per_s": n / (t_append + t_ack),
        "disk_bytes_per_record": size / n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spool_store", description=__doc__)
    ap.add_argument("--count", type=int, default=200_000, help="records per run")
    ap.add_argument("--cap", type=float, default=10.0, help="seconds of appends per run at most")
    ap.add_argument("--repeats", type=int, default=3, help="runs per cell (median kept)")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="ek-spool-bench-", dir=args.dir))
    rows: list[dict[str, Any]] = []
    try:
        for name in args.stores.split(","):
            why = available(name)
            if why:
                print(f"{name:<11} skipped: {why}", flush=True)
                continue
            for policy in args.policies.split(","):
                runs = [
                    run_one(name, policy, args.count, args.cap, base) for _ in range(args.repeats)
                ]
                row = {
                    k: statistics.median(r[k] for r in runs)
                    for k in runs[0]
                    if k not in ("store", "fsync")
                }
                row.update(store=name, fsync=policy)
                rows.append(row)
                print(line(row), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def line(r: dict[str, Any]) -> str:
    return (
        f"{r['store']:<11} fsync={r['fsync']:<8} {r['appends_per_s']:>11,.0f} appends/s  "
        f"p50 {r['append_p50_us']:7.2f}us p99 {r['append_p99_us']:8.2f}us "
        f"max {r['append_max_us']:9.0f}us  {r['acks_per_s']:>11,.0f} acks/s  "
        f"append+ack {r['append_ack_per_s']:>10,.0f}/s  {r['disk_bytes_per_record']:.0f} B/rec"
    )


if __name__ == "__main__":
    sys.exit(main())
