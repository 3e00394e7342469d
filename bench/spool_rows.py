"""Benchmark rows of ``kafka_publish`` through the durable spool, one per fsync policy
(``python -m bench.spool_rows ROW BOOTSTRAP TOPIC N CAP IDEM PAYLOAD``, like bench.scenarios).

Measured exactly like the ``kafka_publish`` row (same loop, every 8th call timed, wall time
to the last acknowledgement, delivered count from the lane's counters and verified by the
runner by consuming), with ``spool_dir`` on the local disk. The runner prints each row's
ratio to ``raw`` confluent-kafka from the same run.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from typing import Any

from bench.scenarios import PIKE, Timer, _loop, _measure, _rate, cdr_payload

# row -> spool_fsync
POLICY: dict[str, str | float] = {
    "kafka_publish+spool": "never",
    "kafka_publish+spool(0.1s)": 0.1,
    "kafka_publish+spool(always)": "always",
}


def spooled_publish(
    bootstrap: str, topic: str, n: int, cap: float, idem: bool, payload: bytes, fsync: Any
) -> dict[str, Any]:
    from event_kafka import EventKafka

    spool = tempfile.mkdtemp(prefix="ek-bench-spool-", dir="/var/tmp")  # a disk, not tmpfs
    props = "g.linger.ms=5&t.acks=all" + ("&g.enable.idempotence=true" if idem else "")
    try:
        ek = EventKafka(
            [f"[b]{bootstrap}/{topic}?{props}"],
            queue_full_wait=10.0,
            spool_dir=spool,
            spool_fsync=fsync,
        )
        ek.kafka_publish("b", b"warmup")
        ek.flush(30)
        time.sleep(0.5)  # as the kafka_publish row: the producer settles before timing
        pub = ek.kafka_publish
        timer = Timer(n)
        base = ek.stats()["broker_ids"]["b"]["delivered"]

        def call(i: int) -> None:
            pub("b", payload)

        res = _measure(lambda: _loop(n, cap, call, timer), lambda: ek.close(300), None, timer)
        res["delivered"] = ek.stats()["broker_ids"]["b"]["delivered"] - base
        res["spool_fsync"] = fsync
        return _rate(res)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def main(argv: list[str]) -> None:
    row, bootstrap, topic, n, cap, idem, which = argv
    payload = PIKE if which == "pike" else cdr_payload()
    res = spooled_publish(bootstrap, topic, int(n), float(cap), idem == "1", payload, POLICY[row])
    res["payload_bytes"] = len(payload)
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
