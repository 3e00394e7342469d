"""``event-kafka demo`` (``make demo``): the service on an embedded default.

Starts a local Apache Kafka, runs ``event-kafka serve`` with ``examples/event-kafka.toml``
(shipped in the package as ``demo.toml``, so the demo also runs from an installed wheel)
pointed at it, drives it the way an operator and a SIP server would — the real ``opensips-cli``
over the MI (or the same JSON-RPC by hand when it is not installed), and an OpenSIPS-style
``event_datagram`` notification over UDP — and prints every record as it lands in Kafka. Then
SIGTERM: the service flushes and exits 0. Everything it started is stopped before it returns.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .devkafka import LocalKafka, consume_all, create_topic, free_port

EXAMPLE = importlib.resources.files("event_kafka") / "demo.toml"
TOPICS = ("sip-events", "sip-dead-letter", "cdrs", "security")
INVITE_CALLID = "a84b4c76e66710@pc33.atlanta.example.com"


def run_demo(echo: Callable[[str], None]) -> int:
    """Run the demo; returns the exit status."""
    if not EXAMPLE.is_file():
        echo(f"the demo's configuration {EXAMPLE} is missing: reinstall event-kafka")
        return 2
    echo("starting a local Apache Kafka (the first run fetches the jars from Maven Central)...")
    with LocalKafka() as kafka, tempfile.TemporaryDirectory(prefix="ek-demo-") as tmp:
        echo(f"Kafka is up at {kafka.bootstrap}")
        for t in TOPICS:
            create_topic(kafka.bootstrap, t, 1)
        ports = free_ports()
        cfg = Path(tmp) / "event-kafka.toml"
        cfg.write_text(example_config(kafka.bootstrap, ports))
        mi_url = f"http://127.0.0.1:{ports['mi']}/mi"
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below
        exe = [sys.executable, "-m", "event_kafka.cli", "serve", "-c", str(cfg)]
        echo("$ event-kafka serve -c examples/event-kafka.toml   (pointed at the local Kafka)")
        svc = subprocess.Popen(exe, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not _wait_mi(mi_url, svc):
                log.flush()
                echo((Path(tmp) / "serve.log").read_text())
                return 1
            _drive(echo, mi_url, ports["udp"], Path(tmp))
            echo("\nrecords in Kafka:")
            for t, n in (("security", 2), ("cdrs", 1), ("sip-events", 1)):
                for r in consume_all(kafka.bootstrap, t, expect=n, timeout=20):
                    key = r.key.decode() if r.key else None
                    value = r.value.decode() if r.value else None
                    hdrs = {k: (v or b"").decode() for k, v in r.headers}
                    echo(f"  {t}[{r.partition}]@{r.offset} key={key} headers={hdrs}\n    {value}")
        finally:
            svc.send_signal(signal.SIGTERM)
            try:
                rc = svc.wait(60)
            except subprocess.TimeoutExpired:  # never leave the service behind
                svc.kill()
                rc = svc.wait(10)
            log.close()
        echo(f"\nSIGTERM: the service flushed and exited with status {rc}")
        return rc


def free_ports() -> dict[str, int]:
    """A free loopback port for each listener of the example configuration."""
    return {"mi": free_port(), "udp": free_port(), "tcp": free_port(), "metrics": free_port()}


def example_config(bootstrap: str, ports: dict[str, int]) -> str:
    """``examples/event-kafka.toml`` pointed at ``bootstrap``, its listeners on ``ports``."""
    return (
        EXAMPLE.read_text()
        .replace("127.0.0.1:9092", bootstrap)
        .replace("127.0.0.1:8888", f"127.0.0.1:{ports['mi']}")
        .replace("127.0.0.1:8090", f"127.0.0.1:{ports['udp']}")
        .replace("127.0.0.1:8091", f"127.0.0.1:{ports['tcp']}")
        .replace("127.0.0.1:9108", f"127.0.0.1:{ports['metrics']}")
    )


def _wait_mi(url: str, svc: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and svc.poll() is None:
        try:
            _mi(url, "version", {})
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _mi(url: str, method: str, params: object) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.loads(resp.read())
    return reply["result"] if "result" in reply else reply.get("error")


def _drive(echo: Callable[[str], None], mi_url: str, udp_port: int, home: Path) -> None:
    cli = shutil.which("opensips-cli", path=str(Path(sys.executable).parent)) or shutil.which(
        "opensips-cli"
    )
    # Each command as opensips-cli's words, and the JSON-RPC params opensips-cli sends for them
    # (the request made by hand when the wheel is installed without opensips-cli).
    commands: list[tuple[list[str], dict[str, object]]] = [
        (
            ["raise_event", "E_PIKE_BLOCKED", "192.168.2.11"],
            {"event": "E_PIKE_BLOCKED", "params": ["192.168.2.11"]},
        ),
        (
            ["kafka_publish", "broker_id=k1", 'message={"cdr":"demo"}', "key=demo-1", "wait=1"],
            {"broker_id": "k1", "message": '{"cdr":"demo"}', "key": "demo-1", "wait": "1"},
        ),
        (["get_statistics", "broker_k1:"], {"statistics": ["broker_k1:"]}),
    ]
    for args, params in commands:
        echo(f"\n$ opensips-cli -x mi {' '.join(args)}")
        if cli:
            out = subprocess.run(
                [cli, "-o", "communication_type=http", "-o", f"url={mi_url}", "-x", "mi", *args],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "HOME": str(home)},
            )
            echo((out.stdout or out.stderr).strip())
        else:  # installed without the dev extras: the same JSON-RPC request by hand
            echo(json.dumps(_mi(mi_url, args[0], params), indent=4))
    # What OpenSIPS's event_datagram sends for `event_subscribe E_ACC_CDR udp:...`; its
    # subscriber (key=param:callid) keys the record by the CDR's callid, the E_PIKE_BLOCKED
    # ones (key=param:ip) by the blocked address.
    cdr = b'{"jsonrpc":"2.0","method":"E_ACC_CDR","params":{"callid":"' + INVITE_CALLID.encode()
    cdr += b'","duration":118}}'
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(cdr, ("127.0.0.1", udp_port))
    echo(f"\n$ (OpenSIPS event_datagram) udp -> 127.0.0.1:{udp_port}: {cdr.decode()}")
    _mi(mi_url, "raise_event", {"event": "E_PIKE_BLOCKED", "params": '{"ip":"10.0.0.66"}'})
