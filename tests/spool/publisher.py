"""A publishing process for the spool's crash tests (run as a script, killed with SIGKILL).

It publishes ``--count`` records ``<tag>:<seq:07d>`` (keys ``call-<seq % keys>``, report route
``rec``) to broker_id ``k`` through a spool as fast as it can, and appends each seq whose
``kafka_publish`` returned 1 to ``--side`` as a fixed-width line, one ``os.write`` per
record before the next publish: the side file is the ledger of what was promised, and its
size is the progress counter the test waits on. Then it writes ``<side>.done``, flushes,
writes ``<side>.flushed`` and waits to be killed.

``--fork N``: the parent builds the EventKafka and never publishes; N forked workers
publish (tags ``<tag>w<k>``, side files ``<side>.<k>``), their PIDs in ``<side>.pids``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from event_kafka import EventKafka

LINE = 10  # bytes per side-file line: "%09d\n"


def fsync_policy(text: str) -> str | float:
    return text if text in ("never", "always") else float(text)


def publish(ek: EventKafka, tag: str, count: int, keys: int, side: str) -> None:
    fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pub, write = ek.kafka_publish, os.write
    rejected = 0
    for seq in range(count):
        if pub("k", f"{tag}:{seq:07d}", f"call-{seq % keys}", "rec") == 1:
            write(fd, b"%09d\n" % seq)
        else:
            rejected += 1
    os.close(fd)
    with open(side + ".done.tmp", "w") as f:
        f.write(str(rejected))
    os.replace(side + ".done.tmp", side + ".done")  # the marker holds the count of -1
    ek.flush(120)
    open(side + ".flushed", "w").close()
    threading.Event().wait()  # until SIGKILL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spool", required=True)
    ap.add_argument("--spec", required=True, help="[k]brokers/topic?props")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--side", required=True)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--fsync", default="never")
    ap.add_argument("--fork", type=int, default=0)
    a = ap.parse_args()
    ek = EventKafka([a.spec], spool_dir=a.spool, spool_fsync=fsync_policy(a.fsync))
    # The route of every record: the recovery process registers the same name, and replayed
    # reports go there.
    ek.add_report_route("rec", lambda report: None)
    if not a.fork:
        publish(ek, a.tag, a.count, a.keys, a.side)
        return
    pids = []
    for k in range(a.fork):
        pid = os.fork()
        if pid == 0:  # a worker, as Kamailio/OpenSIPS/gunicorn fork them
            try:
                publish(ek, f"{a.tag}w{k}", a.count, a.keys, f"{a.side}.{k}")
            finally:
                os._exit(1)
        pids.append(pid)
    with open(a.side + ".pids.tmp", "w") as f:
        f.write(" ".join(map(str, pids)))
    os.replace(a.side + ".pids.tmp", a.side + ".pids")
    for pid in pids:
        os.waitpid(pid, 0)
    sys.exit(1)


if __name__ == "__main__":
    main()
