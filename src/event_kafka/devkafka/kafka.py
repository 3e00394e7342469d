"""Apache Kafka on loopback: one combined broker+controller node or a small KRaft cluster,
started from the cached jars, its nodes stopped, killed, paused and restarted by PID."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .broker import DevKafkaError
from .clients import _quiet_logger
from .jars import KAFKA_VERSION, fetch_jars
from .process import _live, _live_lock, _spawn, _tail, _terminate, free_port
from .tls import SaslSslConfig, TlsFiles, make_test_certs

DEFAULT_HEAP_MB = 384
START_TIMEOUT_S = 90.0


def _cluster_id() -> str:
    """A KRaft cluster id. Like Kafka's Uuid.randomUuid, never one starting with '-', which
    the storage tool's argument parser would take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# -- Apache Kafka ---------------------------------------------------------------------------------

_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class KafkaNode:
    """One combined broker+controller process of a :class:`LocalKafka`."""

    node_id: int
    port: int
    controller_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    sasl_ssl_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_address(self) -> str | None:
        """``127.0.0.1:port`` of the SASL_SSL listener, if the cluster has one."""
        return f"127.0.0.1:{self.sasl_ssl_port}" if self.sasl_ssl_port else None

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


@dataclass
class LocalKafka:
    """A single node (default) or a small KRaft cluster of Apache Kafka on loopback."""

    nodes: int = 1
    heap_mb: int = DEFAULT_HEAP_MB
    version: str = KAFKA_VERSION
    workdir: Path | None = None
    detach: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)
    sasl_ssl: SaslSslConfig | None = None
    _nodes: list[KafkaNode] = field(default_factory=list, init=False)
    _owns_workdir: bool = field(default=False, init=False)
    _classpath: str = field(default="", init=False)
    _tls: TlsFiles | None = field(default=None, init=False)

    kind = "kafka"

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self._nodes)

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """Bootstrap servers of the SASL_SSL listener (needs ``sasl_ssl=SaslSslConfig(...)``)."""
        if self.sasl_ssl is None:
            raise DevKafkaError("this LocalKafka has no SASL_SSL listener (sasl_ssl=None)")
        return ",".join(n.sasl_ssl_address or "" for n in self._nodes)

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) clients of the SASL_SSL listener trust."""
        if self._tls is None:
            raise DevKafkaError("this LocalKafka has no SASL_SSL listener, or is not started")
        return self._tls.ca

    def node(self, node_id: int) -> KafkaNode:
        for n in self._nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} (nodes: {[n.node_id for n in self._nodes]})")

    @property
    def node_ids(self) -> list[int]:
        return [n.node_id for n in self._nodes]

    def start(self, timeout: float = START_TIMEOUT_S) -> LocalKafka:
        """Fetch jars if needed, format storage, start every node, wait until all answer."""
        if self._nodes:
            return self
        libs = fetch_jars(self.version)
        self._classpath = str(libs / "*")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="event-kafka-dev-"))
            self._owns_workdir = True
        if self.sasl_ssl is not None:
            self._tls = self.sasl_ssl.tls or make_test_certs(self.workdir / "tls")
        for i in range(1, self.nodes + 1):
            wd = self.workdir / f"node{i}"
            wd.mkdir(parents=True, exist_ok=True)
            sasl_port = free_port() if self.sasl_ssl is not None else None
            self._nodes.append(KafkaNode(i, free_port(), free_port(), wd, None, sasl_port))
        cluster_id = _cluster_id()
        for n in self._nodes:
            self._write_config(n)
            self._format(n, cluster_id)
        for n in self._nodes:
            self._launch(n)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_config(self, n: KafkaNode) -> None:
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self._nodes)
        rf = min(3, self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(n.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{n.port},CONTROLLER://127.0.0.1:{n.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{n.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(n.workdir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": "2" if self.nodes >= 3 else "1",
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": "2" if self.nodes >= 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
            # Fast failure detection for the fault tests of a cluster.
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
        }
        if self.sasl_ssl is not None and self._tls is not None:
            name = self.sasl_ssl.listener
            extra = f"{name}://127.0.0.1:{n.sasl_ssl_port}"
            props["listeners"] += f",{extra}"
            props["advertised.listeners"] += f",{extra}"
            props["listener.security.protocol.map"] += f",{name}:SASL_SSL"
            props.update(self.sasl_ssl.server_properties(self._tls))
        props.update(self.extra_config)
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (n.workdir / "server.properties").write_text(text)
        (n.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=n.log))

    def _java(self, n: KafkaNode, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap_mb}m",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={n.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={n.workdir}",
            "-cp",
            self._classpath,
            main,
            *args,
        ]

    def _format(self, n: KafkaNode, cluster_id: str) -> None:
        cmd = self._java(
            n,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(n.workdir / "server.properties"),
            *(self.sasl_ssl.format_args() if self.sasl_ssl is not None else ()),
        )
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise DevKafkaError(f"formatting node {n.node_id} failed:\n{res.stdout}{res.stderr}")

    def _launch(self, n: KafkaNode) -> None:
        cmd = self._java(n, "kafka.Kafka", str(n.workdir / "server.properties"))
        n.proc = _spawn(cmd, n.stdout_log, detach=self.detach)

    def wait_ready(self, timeout: float = START_TIMEOUT_S, nodes: int | None = None) -> None:
        """Block until the cluster's metadata lists ``nodes`` brokers (default: all running)."""
        from confluent_kafka.admin import AdminClient

        want = nodes if nodes is not None else sum(1 for n in self._nodes if n.pid)
        running = [n for n in self._nodes if n.pid]
        boot = ",".join(n.address for n in running) or self.bootstrap
        conf: dict[str, Any] = {"bootstrap.servers": boot, "logger": _quiet_logger()}
        admin = AdminClient(conf)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for n in self._nodes:
                if n.proc is not None and n.proc.poll() is not None and n in running:
                    raise DevKafkaError(
                        f"Kafka node {n.node_id} exited with {n.proc.returncode}:\n"
                        f"{_tail(n.log)}\n{_tail(n.stdout_log)}"
                    )
            try:
                md = admin.list_topics(timeout=2)
                if len(md.brokers) >= want and md.controller_id is not None:
                    return
                last = f"{len(md.brokers)} of {want} brokers"
            except Exception as exc:
                last = str(exc)
            time.sleep(0.2)
        tails = "\n".join(f"--- node {n.node_id}\n{_tail(n.log)}" for n in self._nodes)
        raise DevKafkaError(f"Kafka not ready after {timeout:.0f}s ({last}):\n{tails}")

    def stop_node(self, node_id: int, grace: float = 30.0) -> None:
        """Orderly stop (SIGTERM) of one node."""
        n = self.node(node_id)
        if n.proc is not None:
            _terminate(n.proc, grace)

    def kill_node(self, node_id: int) -> None:
        """kill -9 one node."""
        n = self.node(node_id)
        if n.proc is not None and n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait(10)
            with _live_lock:
                _live.discard(n.proc)

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP one node: its sockets stay open but nothing answers (a network-level cut)."""
        pid = self.node(node_id).pid
        if pid:
            os.kill(pid, signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        pid = self.node(node_id).pid
        if pid:
            os.kill(pid, signal.SIGCONT)

    def start_node(self, node_id: int, wait: bool = True) -> None:
        """Restart a stopped or killed node with its data."""
        n = self.node(node_id)
        if n.pid:
            return
        self._launch(n)
        if wait:
            self.wait_ready()

    def stop(self) -> None:
        """Stop every node we started (SIGTERM, then SIGKILL), and remove our temp data."""
        for n in self._nodes:
            if n.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    if n.proc.poll() is None:
                        os.kill(n.proc.pid, signal.SIGCONT)  # a paused JVM cannot exit
                _terminate(n.proc, grace=15.0)
        self._nodes.clear()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            if self.sasl_ssl is not None and self.sasl_ssl.tls is None:
                self._tls = None

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- Tansu ----------------------------------------------------------------------------------------
