"""The OpenSIPS test bed: the real OpenSIPS 3.6.8 (built once by scripts/build-opensips.sh) and
``event-kafka serve``, side by side on loopback, both driven over their MI (JSON-RPC over HTTP).

Every process started here runs in its own session, dies with the test process (PDEATHSIG) and is
stopped by its PID; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from event_kafka.devkafka import Record, consume_all, free_port
from tests.support import MIHttpClient, ServeProcess, missing, wait_until
from tests.support.sipp import embedded_python, free_udp_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-opensips.sh"
NO_TARBALL = 3  # build-opensips.sh's exit status when the source tarball is not there


def build_opensips(optimised: bool = False) -> Path | None:
    """The install prefix of the cached build (built now if needed); None if no tarball.

    ``optimised``: the build of bench-opensips (``build-opensips.sh --optimised``).
    """
    args = [str(BUILD_SCRIPT)] + (["--optimised"] if optimised else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode == NO_TARBALL:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"OpenSIPS build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def opensips_with_python(optimised: bool = False) -> Path:
    """The build prefix for tests that load event-kafka into OpenSIPS's python module and
    drive it with SIPp; skips (fails under ``CI=true``) when one of them is missing."""
    if shutil.which("sipp") is None:
        missing("sip-tester (sipp) not installed (scripts/install-system-deps.sh --e2e)")
    built = build_opensips(optimised)
    if built is None:
        missing("OpenSIPS 3.6.8 tarball not found (../shared/vendor/opensips)")
    emb = embedded_python(built / "lib64/opensips/modules/python.so")
    if emb is not None and emb != sys.version_info[:2]:
        missing(f"python.so embeds Python {emb}, the tests run on {sys.version_info[:2]}")
    return built


def _die_with_parent() -> None:
    # SIGTERM (not KILL) so OpenSIPS's main process still takes its children down with it.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Process(MIHttpClient):
    """A server process with an MI over HTTP; subclasses give the command line."""

    name = "process"

    def __init__(self, workdir: Path, mi_port: int) -> None:
        self.workdir = workdir
        self.mi_port = mi_port
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] | None = None  # None: this process's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.mi_port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Process:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        # Ready when its MI answers (OpenSIPS: after every process forked and mi_http is up).
        try:
            wait_until(self._answers, timeout, f"{self.name} MI on port {self.mi_port}")
        except AssertionError as exc:
            if self.proc.poll() is not None:
                raise
            # Still running but not answering: what it logged is the only clue.
            raise AssertionError(f"{exc}; its log ends:\n{self.tail()}") from None
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.mi_port), timeout=1):
                pass
            return "result" in self.call("version")
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM by PID, wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not stop in {timeout}s:\n{self.tail()}"
            ) from None

    def kill(self) -> None:
        """Last resort: SIGKILL the process group this object started (its own session), so
        OpenSIPS's workers go too, not only its main process."""
        if self.proc is None or self.proc.poll() is not None:
            return  # exited: OpenSIPS's main process outlives its workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # pgid == pid: start_new_session=True
        self.proc.wait(10)


# -- OpenSIPS ------------------------------------------------------------------------------------

MODULES = (
    "proto_udp",
    "httpd",
    "mi_http",
    "sl",
    "tm",
    "signaling",
    "json",
    "cfgutils",
    "maxfwd",
    "sipmsgops",
    "event_kafka",
    "event_datagram",
    "event_stream",
)


def opensips_cfg(
    prefix: Path,
    *,
    sip_port: int,
    mi_port: int,
    broker_ids: Sequence[str] = (),
    events: Iterable[str] = (),
    routes: str = "",
    request_route: str = 'sl_send_reply(200, "OK");',
) -> str:
    """An opensips.cfg: loopback only, MI over HTTP, the event transports, ``events`` published.

    An event is published in OpenSIPS only when a script names it literally, so the
    ``publish_events`` route (never run) names each one.
    """
    lines = [
        "log_level=3",
        "stderror_enabled=yes",
        "syslog_enabled=no",
        "udp_workers=2",
        f"socket=udp:127.0.0.1:{sip_port}",
        f'mpath="{prefix}/lib64/opensips/modules/"',
    ]
    lines += [f'loadmodule "{m}.so"' for m in MODULES]
    lines += [
        'modparam("httpd", "ip", "127.0.0.1")',
        f'modparam("httpd", "port", {mi_port})',
        # The default 1 KiB request buffer is too small for the long-string cases.
        'modparam("httpd", "receive_buf_size", 65536)',
    ]
    lines += [f'modparam("event_kafka", "broker_id", "{b}")' for b in broker_ids]
    raises = "\n".join(f'  raise_event("{e}");' for e in events) or '  xlog("none");'
    return "\n".join(
        [
            *lines,
            "",
            f"route {{\n  {request_route}\n  exit;\n}}",
            f"route[publish_events] {{\n{raises}\n}}",
            routes,
            "",
        ]
    )


class OpenSIPS(Process):
    """The real OpenSIPS, foreground main process (``-F``), its own working dir and pid file."""

    name = "opensips"

    def __init__(self, prefix: Path, workdir: Path, cfg: str, mi_port: int, sip_port: int) -> None:
        super().__init__(workdir, mi_port)
        self.prefix = prefix
        self.sip_port = sip_port
        self.cfg_path = workdir / "opensips.cfg"
        self.cfg_path.write_text(cfg)

    def command(self) -> list[str]:
        return [
            str(self.prefix / "sbin" / "opensips"),
            "-F",
            "-f",
            str(self.cfg_path),
            "-w",
            str(self.workdir),
            "-P",
            str(self.workdir / "opensips.pid"),
            "-m",
            "64",
            "-M",
            "16",
        ]


def make_opensips(
    prefix: Path,
    workdir: Path,
    *,
    broker_ids: Sequence[str] = (),
    events: Iterable[str] = (),
    routes: str = "",
    request_route: str = 'sl_send_reply(200, "OK");',
) -> OpenSIPS:
    workdir.mkdir(parents=True, exist_ok=True)
    mi_port, sip_port = free_port(), free_udp_port()
    cfg = opensips_cfg(
        prefix,
        sip_port=sip_port,
        mi_port=mi_port,
        broker_ids=broker_ids,
        events=events,
        routes=routes,
        request_route=request_route,
    )
    return OpenSIPS(prefix, workdir, cfg, mi_port, sip_port)


# -- event-kafka serve ----------------------------------------------------------------------------


class Serve(ServeProcess):
    """``event-kafka serve`` with a generated configuration: tests.support's runner, ready on
    ``/health/live`` and its ingest ports bound."""

    def __init__(
        self, workdir: Path, config: str, mi_port: int, listeners: Sequence[int] = ()
    ) -> None:
        super().__init__(workdir, config, mi_port, listeners=listeners)


def toml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(orjson.dumps(i).decode() for i in items) + "]"


def make_serve(
    workdir: Path,
    *,
    broker_ids: Sequence[str] = (),
    events: Iterable[str] = (),
    subscriptions: Iterable[tuple[str, str]] = (),
    extra: str = "",
    udp_port: int | None = None,
    tcp_port: int | None = None,
    event_header: bool = False,
) -> Serve:
    """``event_header=False``: records exactly as OpenSIPS writes them (no headers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    mi_port = free_port()
    subs = "".join(
        f"[[subscriptions]]\nevent = {orjson.dumps(e).decode()}\n"
        f"socket = {orjson.dumps(s).decode()}\n"
        for e, s in subscriptions
    )
    ingest = ""
    if udp_port is not None:
        ingest += f'[ingest.udp]\nlisten = "127.0.0.1:{udp_port}"\n'
    if tcp_port is not None:
        ingest += f'[ingest.tcp]\nlisten = "127.0.0.1:{tcp_port}"\n'
    config = (
        f"broker_ids = {toml_list(broker_ids)}\n{extra}\n"
        f"[events]\npublish = {toml_list(events)}\n"
        f"event_header = {str(event_header).lower()}\n{subs}"
        f'[mi]\nlisten = "127.0.0.1:{mi_port}"\n{ingest}'
        '[logging]\nlevel = "INFO"\n'
    )
    listeners = [p for p in (udp_port, tcp_port) if p is not None]
    return Serve(workdir, config, mi_port, listeners)


# -- Kafka ----------------------------------------------------------------------------------------

METHOD = re.compile(rb'"method":"([A-Za-z0-9_]+)"')


def method_of(value: bytes | None) -> str:
    """The event name of a JSON-RPC record, read without parsing (values may not be JSON)."""
    m = METHOD.search(value or b"")
    return m.group(1).decode() if m else ""


def by_method(records: Iterable[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(method_of(r.value), []).append(r)
    return out


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Record]:
    return consume_all(bootstrap, topic, timeout=timeout, expect=expect)


# -- the case tables -----------------------------------------------------------------------------

ABSENT = object()  # raise_event without "params"


@dataclass(frozen=True)
class PayloadCase:
    """MI ``raise_event`` params raised on both sides for ``event``.

    ``ub``: the ``"params"`` texts OpenSIPS's undefined behaviour may print instead of the
    documented one (docs/opensips-parity.md says why); event-kafka must print the documented one.
    """

    id: str
    params: Any
    ub: tuple[str, ...] = ()
    event: str = ""

    def request(self) -> dict[str, Any]:
        return (
            {"event": self.event}
            if self.params is ABSENT
            else {
                "event": self.event,
                "params": self.params,
            }
        )


def _obj(**kw: Any) -> str:
    return orjson.dumps(kw).decode()


_PAYLOAD = [
    PayloadCase("no-params", ABSENT),
    PayloadCase("empty-array", []),
    # Unnamed params: evi_dup_shm_params leaves name.s uninitialised, so a reused shm chunk
    # can turn the array into an object with "" keys.
    PayloadCase("array-strings", ["a", "b c", ""], ub=('{"":"a","":"b c","":""}',)),
    PayloadCase(
        "array-numbers",
        ["x", 5, -7, 0, 2147483647],
        ub=('{"":"x","":"5","":"-7","":"0","":"2147483647"}',),
    ),
    PayloadCase("dict-string", _obj(s="x", t="")),
    PayloadCase("quotes-backslashes", _obj(s='q"b\\s/t "x" \\\\')),
    PayloadCase("control-chars", _obj(s="\t\n\r\b\f\x01\x1f\x7f end")),
    PayloadCase("utf8", _obj(u="é😀€ ñ 中文")),
    PayloadCase(
        "ints-at-limits",
        '{"max":2147483647,"min":-2147483648,"over":2147483648,'
        '"under":-2147483649,"zero":0,"neg":-1}',
    ),
    # 64-bit limits: top level saturates to C int; nested, 2^63 and up print %e (cJSON's floor
    # casts to long), -2^63 prints all its digits.
    PayloadCase(
        "ints-64-bit",
        '{"a":9223372036854775807,"b":-9223372036854775808,"c":18446744073709551615,'
        '"o":{"a":9223372036854775807,"b":-9223372036854775808,"c":18446744073709551615}}',
    ),
    PayloadCase("floats", '{"f":1.5,"g":-2.7,"h":1e30,"i":-1e19,"j":0.1,"k":-0.0,"l":1e-7}'),
    PayloadCase("nested-object", '{"o":{"a":1,"b":"x","c":{"d":[1,{"e":"f"}]}}}'),
    PayloadCase("nested-array", '{"a":[1,2,"x",[3,[4]],{"k":"v"}]}'),
    PayloadCase("big-numbers", '{"o":{"big":1e30,"neg":-1e19,"p":9.2e18,"q":-9.3e18,"r":1.8e19}}'),
    PayloadCase(
        "nested-floats",
        '{"o":{"f":1.5,"g":0.1,"h":123456789012,"i":-0.5,"j":1e-300,"k":3.14159265358979}}',
    ),
    PayloadCase("nested-escapes", '{"o":{"s":"a\\"b\\\\c\\n\\u00e9\\u0001/"}}'),
    PayloadCase("bool", '{"b":true}'),
    PayloadCase("null", '{"n":null}'),
    PayloadCase("nested-bool-null", '{"o":{"t":true,"f":false,"n":null}}'),
    # Two printed (non-string, non-number) values: the first one's text is freed before it is
    # copied (cJSON_PurgeString in mi_raise_event_json_params), so the second print may reuse it.
    PayloadCase("two-bools", '{"a":true,"b":null}', ub=('{"a":"null","b":"null"}',)),
    PayloadCase("duplicate-keys", '{"a":1,"a":"2"}'),
    PayloadCase("empty-key", '{"":"x","y":""}'),
    PayloadCase("empty-nested", '{"o":{},"a":[]}', ub=('{"o":"[]","a":"[]"}',)),
    PayloadCase("long-string", _obj(x="y" * 3000 + "é")),
    PayloadCase("many-params", orjson.dumps({f"k{i}": i for i in range(40)}).decode()),
]
PAYLOAD_CASES = [PayloadCase(c.id, c.params, c.ub, f"E_P{i:02d}") for i, c in enumerate(_PAYLOAD)]


@dataclass(frozen=True)
class IngestCase:
    """Raised on OpenSIPS only (MI body given as raw bytes: it may hold invalid UTF-8)."""

    id: str
    params_json: bytes  # the raw JSON text of the "params" member of the MI request
    udp_event: str = ""
    tcp_event: str = ""

    def body(self, event: str) -> bytes:
        return (
            b'{"jsonrpc":"2.0","id":1,"method":"raise_event","params":{"event":"'
            + event.encode()
            + b'","params":'
            + self.params_json
            + b"}}"
        )


_INGEST = [
    IngestCase("array", b'["a","b"]'),
    IngestCase("dict", orjson.dumps(_obj(s='q"\\/\t\x01é😀', n=2147483647, m=-2147483648))),
    IngestCase("nested", orjson.dumps('{"o":{"big":1e30,"neg":-1e19,"f":0.1,"t":true}}')),
    # Bytes that are not UTF-8 inside the params string: OpenSIPS copies them raw.
    IngestCase("invalid-utf8", b'"{\\"s\\":\\"a\xff\xfeb\xc3(\\"}"'),
    IngestCase("long", orjson.dumps(_obj(x="z" * 5000))),
]
INGEST_CASES = [
    IngestCase(c.id, c.params_json, f"E_IU{i:02d}", f"E_IT{i:02d}") for i, c in enumerate(_INGEST)
]


# -- the pair and the scripted OpenSIPS of the fixtures -------------------------------------

# Events the MI parity tests subscribe and raise (published in both).
MI_EVENTS = [f"E_MI{i}" for i in range(8)]


@dataclass
class Pair:
    """OpenSIPS and event-kafka serve side by side; ``topics``: name -> Kafka topic."""

    os: OpenSIPS
    ek: Serve
    bootstrap: str
    topics: dict[str, str]
    udp_port: int
    tcp_port: int

    def both(self, method: str, params: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The same request to both; the replies without the HTTP status (compared apart)."""
        a, b = self.os.call(method, params), self.ek.call(method, params)
        assert a.pop("http_status") == 200, a
        assert b.pop("http_status") == 200, b
        return a, b


# X-Case picks what the request route does; X-Broker / X-Key give kafka_publish's arguments.
SCRIPT_ROUTE = """
  if ($hdr(X-Case) == "event") {
    raise_event("E_CALLID");
  } else if ($hdr(X-Case) == "key") {
    if (!kafka_publish($hdr(X-Broker), $rb, $hdr(X-Key), "kafka_report")) {
      sl_send_reply(500, "Not Queued");
      exit;
    }
  } else if ($hdr(X-Case) == "empty-key") {
    if (!kafka_publish($hdr(X-Broker), $rb, "", "kafka_report")) {
      sl_send_reply(500, "Not Queued");
      exit;
    }
  } else if ($hdr(X-Case) == "no-key") {
    kafka_publish($hdr(X-Broker), $rb);
  }
  sl_send_reply(200, "OK");"""

# The four report AVPs, raised as a named-params event (a kafka: subscriber writes it).
REPORT_ROUTE = """
route[kafka_report] {
  $avp(rn) = "kafka_id"; $avp(rv) = $avp(kafka_id);
  $avp(rn) = "kafka_status"; $avp(rv) = $avp(kafka_status);
  $avp(rn) = "kafka_key"; $avp(rv) = $avp(kafka_key);
  $avp(rn) = "kafka_msg"; $avp(rv) = $avp(kafka_msg);
  raise_event("E_KREPORT", $avp(rn), $avp(rv));
}
"""

DOWN_BROKER = "127.0.0.1:1/nowhere?t.message.timeout.ms=1500"


@dataclass
class Scripted:
    os: OpenSIPS
    bootstrap: str
    topics: dict[str, str]


def scripted_opensips(
    prefix: Path, workdir: Path, broker_ids: list[str], events: list[str] | None = None
) -> OpenSIPS:
    return make_opensips(
        prefix,
        workdir,
        broker_ids=broker_ids,
        events=events or ["E_CALLID", "E_KREPORT"],
        request_route=SCRIPT_ROUTE,
        routes=REPORT_ROUTE,
    )
