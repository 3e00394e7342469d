"""The foundation: a real broker started by the project, records round-trip intact."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from event_kafka.devkafka import LocalKafka, Record, TansuBroker, free_port


def test_record_round_trips_value_key_headers(
    kafka_broker: LocalKafka | TansuBroker, topic: str, consume: Callable[..., list[Record]]
) -> None:
    delivered: list[object] = []
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    headers = [("event", b"E_PIKE_BLOCKED"), ("bin", b"\x00\xff"), ("event", b"dup")]
    p.produce(
        topic,
        b'{"jsonrpc":"2.0"}',
        key=b"call-1",
        headers=headers,
        on_delivery=lambda err, msg: delivered.append(err),
    )
    assert p.flush(30) == 0
    assert delivered == [None]
    [rec] = consume(topic, expect=1)
    assert (rec.key, rec.value) == (b"call-1", b'{"jsonrpc":"2.0"}')
    assert (rec.offset, rec.partition) == (0, 0)
    assert rec.headers == headers


def test_make_topic_has_requested_partitions(
    kafka_broker: LocalKafka | TansuBroker, make_topic: Callable[..., str]
) -> None:
    from confluent_kafka.admin import AdminClient

    name = make_topic(3)
    md = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(name, timeout=10)
    assert sorted(md.topics[name].partitions) == [0, 1, 2]


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_python_m_devkafka_is_the_dev_kafka_cli(tmp_path: Path) -> None:
    env = {**os.environ, "EVENT_KAFKA_CACHE": str(tmp_path)}
    args = [sys.executable, "-m", "event_kafka.devkafka"]
    usage = subprocess.run([*args, "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "start" in usage.stdout and "stop" in usage.stdout
    status = subprocess.run([*args, "status"], capture_output=True, text=True, env=env, timeout=60)
    assert (status.returncode, status.stdout.strip()) == (1, "not running")  # empty cache


# The leader thread ends with the exit syscall (not exit_group): it becomes a zombie while the
# other thread keeps running, as a killed JVM's or librdkafka's threads do for a moment.
_LEADER_EXITS_FIRST = """
import ctypes, platform, sys, threading
exit_nr, exit_group_nr = {"x86_64": (60, 231), "aarch64": (93, 94)}[platform.machine()]
libc = ctypes.CDLL(None)
threading.Thread(target=lambda: (sys.stdin.read(), libc.syscall(exit_group_nr, 0))).start()
print("ready", flush=True)
libc.syscall(exit_nr, 0)
"""


def test_pid_alive_counts_threads_behind_a_zombie_leader() -> None:
    import platform

    import pytest

    from event_kafka.devkafka.process import pid_alive
    from tests.support import wait_until

    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("exit syscall numbers known for x86_64 and aarch64 only")
    proc = subprocess.Popen(
        [sys.executable, "-c", _LEADER_EXITS_FIRST], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        stat = Path(f"/proc/{proc.pid}/stat")
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 10, "leader gone")
        assert pid_alive(proc.pid)  # its other thread still runs (and holds its files)
        assert proc.stdin is not None
        proc.stdin.close()  # the thread ends the process (exit_group)
        wait_until(lambda: not pid_alive(proc.pid), 10, "the process gone")
    finally:
        proc.kill()
        proc.wait(10)
