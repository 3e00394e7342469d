"""Helpers for the 3-node KRaft cluster of tests/faults: fresh replicated topics, partition
leaders and in-sync replicas as the metadata says, healing the cluster after a fault."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from confluent_kafka.admin import AdminClient

from event_kafka.devkafka import DevKafkaError, LocalKafka, create_topic
from tests.support import wait_until


def new_topic(kafka: LocalKafka, partitions: int = 3) -> str:
    """A fresh topic replicated on all three nodes."""
    name = f"f-{uuid.uuid4().hex[:10]}"
    create_topic(kafka.bootstrap, name, partitions, replication=3, timeout=60)

    def led() -> bool:  # the metadata of a new topic reaches every node a moment later
        with contextlib.suppress(Exception):
            state = partition_state(kafka, name)
            return len(state) == partitions and all(ldr > 0 for ldr, _ in state.values())
        return False

    wait_until(led, 30, f"a leader for every partition of {name}", step=0.1)
    return name


def partition_state(kafka: LocalKafka, topic: str) -> dict[int, tuple[int, list[int]]]:
    """``partition -> (leader, in-sync replicas)`` as the metadata says now (-1: no leader)."""
    running = ",".join(kafka.node(i).address for i in kafka.node_ids if kafka.node(i).pid)
    conf: dict[str, Any] = {"bootstrap.servers": running or kafka.bootstrap, "logger": _quiet}
    admin = AdminClient(conf)
    md = admin.list_topics(topic, timeout=5).topics[topic]
    return {p: (m.leader, sorted(m.isrs)) for p, m in md.partitions.items()}


def heal(kafka: LocalKafka, topic: str | None = None, timeout: float = 90.0) -> None:
    """Resume and restart every node; with ``topic``, wait until it is fully in sync again."""
    for node_id in kafka.node_ids:
        kafka.resume_node(node_id)
    for node_id in kafka.node_ids:
        if not kafka.node(node_id).pid:
            kafka.start_node(node_id, wait=False)
    kafka.wait_ready(timeout)
    if topic is None:
        return
    state: dict[int, tuple[int, list[int]]] = {}

    def in_sync() -> bool:
        nonlocal state
        with contextlib.suppress(Exception):  # a node still starting: ask again
            state = partition_state(kafka, topic)
        return bool(state) and all(len(isr) == 3 and ldr > 0 for ldr, isr in state.values())

    try:
        wait_until(in_sync, timeout, f"{topic} back in sync", step=0.5)
    except AssertionError:
        raise DevKafkaError(f"{topic} not back in sync after {timeout}s: {state}") from None


_quiet = logging.getLogger("tests.faults.admin")
_quiet.setLevel(logging.CRITICAL)
