"""``python -m bench.opensips_python``: CPU per message inside OpenSIPS, event-kafka through the
python module vs OpenSIPS's C event_kafka, same SIPp traffic, same broker.

OpenSIPS is the optimised build (``scripts/build-opensips.sh --optimised``: Debian's packaging
flags, -O2, no DBG_MALLOC). One OpenSIPS per run, 2 UDP workers, a request route that builds the
same message text and then, by mode:

* ``baseline``: nothing more (answers 200);
* ``c``: ``kafka_publish("pub", $var(kmsg), $ci)`` (OpenSIPS's module; librdkafka runs in its
  own "Kafka worker" process, fed over a pipe);
* ``python``: ``python_exec("kafka_publish", "pub $var(kmsg)")`` (examples/opensips/ek_handler.py;
  librdkafka and the library's threads run inside each SIP worker).

No report routes. SIPp sends ``--count`` OPTIONS at ``--rate``/s; the run waits until the topic
holds every record (``verified`` in the JSON: one record per request received, every call's
Call-ID among the keys; exit status 1 if a run is not), then reads utime+stime of every
OpenSIPS process from /proc/<pid>/stat (all threads of a process) and divides by the requests
OpenSIPS received (``rcv_requests``: SIPp's retransmissions included, each published too). The
table gives µs of CPU per message for the SIP workers, the Kafka worker, and all OpenSIPS
processes, medians of ``--repeats`` runs, and each mode's all-process cost above the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from event_kafka.devkafka import LocalKafka, consume_all, create_topic, free_port

REPO = Path(__file__).resolve().parents[1]
HANDLER = REPO / "examples" / "opensips" / "ek_handler.py"
OPTIONS_XML = REPO / "examples" / "kamailio" / "options.xml"
MODES = ("baseline", "c", "python")
TICK = os.sysconf("SC_CLK_TCK")

PUBLISH = {
    "baseline": "",
    "c": 'kafka_publish("pub", $var(kmsg), $ci);',
    "python": 'python_exec("kafka_publish", "pub $var(kmsg)");',
}


def cfg(prefix: Path, mode: str, sip_port: int, mi_port: int, broker_id: str) -> str:
    modules = ["proto_udp", "sl", "httpd", "mi_http", "event_kafka", "python"]
    return "\n".join(
        [
            "log_level=2",
            "stderror_enabled=yes",
            "syslog_enabled=no",
            "udp_workers=2",
            f"socket=udp:127.0.0.1:{sip_port}",
            f'mpath="{prefix}/lib64/opensips/modules/"',
            *[f'loadmodule "{m}.so"' for m in modules],
            'modparam("httpd", "ip", "127.0.0.1")',
            f'modparam("httpd", "port", {mi_port})',
            f'modparam("event_kafka", "broker_id", "{broker_id}")',
            f'modparam("python", "script_name", "{HANDLER}")',
            "route {",
            '  $var(kmsg) = "{\\"method\\":\\"" + $rm + "\\",\\"callid\\":\\"" + $ci + "\\"}";',
            f"  {PUBLISH[mode]}",
            '  sl_send_reply(200, "OK");',
            "  exit;",
            "}",
            "",
        ]
    )


def python_path() -> str:
    """event_kafka's source dir, then this interpreter's site-packages (its dependencies)."""
    paths = [str(REPO / "src")]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return os.pathsep.join(paths)


def mi(port: int, method: str, params: Any = None) -> Any:
    req_body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req_body["params"] = params
    body = json.dumps(req_body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/mi", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(
    prefix: Path, mode: str, bootstrap: str, count: int, rate: int, work: Path
) -> dict[str, Any]:
    topic = f"bench-os-{mode}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    broker_id = f"[pub]{bootstrap}/{topic}"
    sip_port, mi_port = free_udp(), free_port()
    (work / "opensips.cfg").write_text(cfg(prefix, mode, sip_port, mi_port, broker_id))
    env = {**os.environ, "PYTHONPATH": python_path(), "EK_BROKER_IDS": broker_id}
    env.pop("PYTHONHOME", None)
    cmd = [f"{prefix}/sbin/opensips", "-F", "-f", str(work / "opensips.cfg"), "-w", str(work)]
    cmd += ["-m", "256", "-M", "32"]
    with (work / "opensips.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True
        )
    try:
        procs = wait_ps(proc, mi_port)
        sip = [int(p["PID"]) for p in procs if str(p["Type"]).startswith("SIP receiver")]
        kafka = [int(p["PID"]) for p in procs if p["Type"] == "Kafka worker"]
        every = [proc.pid] + [int(p["PID"]) for p in procs if int(p["PID"]) != proc.pid]
        before = {pid: cpu_ticks(pid) for pid in every}
        t0 = time.monotonic()
        sipp = subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                str(OPTIONS_XML),
                "-s",
                "bench",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_udp()),
                "-m",
                str(count),
                "-r",
                str(rate),
                "-nostdin",
                "-timeout",
                "120s",
                "-timeout_error",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
        )
        wall = time.monotonic() - t0
        if sipp.returncode != 0:
            raise RuntimeError(f"sipp exit {sipp.returncode}: {sipp.stdout[-1500:]}")
        # SIPp's retransmissions are requests too: OpenSIPS's own count is the divisor.
        stat = mi(mi_port, "get_statistics", {"statistics": ["rcv_requests"]})
        received = int(next(iter(stat.values())))
        delivered, calls, verified = received, count, None
        if mode != "baseline":
            records = consume_all(bootstrap, topic, expect=received, timeout=60)
            delivered = len(records)
            calls = len({r.key for r in records if r.key})  # both modes key by Call-ID
            # Every request OpenSIPS received is one record, and every SIPp call is in the topic.
            verified = delivered == received and calls == count
        after = {pid: cpu_ticks(pid) for pid in every}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def us(pids: list[int]) -> float:
        return sum(after[p] - before[p] for p in pids) / TICK / received * 1e6

    return {
        "mode": mode,
        "messages": received,
        "delivered": delivered,
        "calls": calls,
        "verified": verified,
        "wall_s": round(wall, 2),
        "sip_workers_us": us(sip),
        "kafka_worker_us": us(kafka),
        "all_us": us(every),
    }


def wait_ps(proc: subprocess.Popen[bytes], mi_port: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"opensips exited {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            procs: list[dict[str, Any]] = mi(mi_port, "ps")["Processes"]
            return procs
        if time.monotonic() > deadline:
            raise RuntimeError("opensips MI did not answer in 60 s")
        time.sleep(0.2)


def build(optimised: bool = True) -> tuple[Path, str]:
    args = [str(REPO / "scripts" / "build-opensips.sh")] + (["--optimised"] if optimised else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    prefix = Path(out.stdout.strip().splitlines()[-1])
    info = prefix / ".build-flags"
    flags = info.read_text().strip() if info.exists() else ""
    return prefix, flags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.opensips_python", description=__doc__)
    ap.add_argument("--count", type=int, default=20_000, help="SIP requests per run")
    ap.add_argument("--rate", type=int, default=2_000, help="requests per second")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--json", type=Path, default=None, help="results file")
    args = ap.parse_args(argv)
    prefix, flags = build()
    version = subprocess.run([f"{prefix}/sbin/opensips", "-V"], capture_output=True, text=True)
    broker = None if args.bootstrap else LocalKafka().start()
    bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ek-bench-os-") as tmp:
            for rep in range(args.repeats):
                for mode in args.modes.split(","):
                    work = Path(tmp) / f"{mode}-{rep}"
                    work.mkdir()
                    res = one_run(prefix, mode, bootstrap, args.count, args.rate, work)
                    print(json.dumps(res), file=sys.stderr)
                    runs.append(res)
    finally:
        if broker is not None:
            broker.stop()
    print(f"OpenSIPS {prefix.name}: {flags}")
    print(version.stdout.splitlines()[1] if version.stdout else "")
    print(f"{args.count} OPTIONS at {args.rate}/s, 2 UDP workers, median of {args.repeats}")
    print("CPU µs per message (utime+stime from /proc/<pid>/stat, all threads)")
    print("| mode | delivered | SIP workers | Kafka worker | all processes | above baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    med: dict[str, dict[str, float]] = {}
    for mode in args.modes.split(","):
        rs = [r for r in runs if r["mode"] == mode]
        med[mode] = {
            k: statistics.median(r[k] for r in rs)
            for k in ("delivered", "sip_workers_us", "kafka_worker_us", "all_us")
        }
    base = med.get("baseline", {}).get("all_us", float("nan"))
    for mode, m in med.items():  # delivered: records in Kafka (= requests received)
        print(
            f"| {mode} | {m['delivered']:.0f} | {m['sip_workers_us']:.1f} | "
            f"{m['kafka_worker_us']:.1f} | {m['all_us']:.1f} | {m['all_us'] - base:+.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"flags": flags, "runs": runs, "medians": med}, indent=1))
    lost = [r for r in runs if r["verified"] is False]
    for r in lost:
        print(
            f"NOT VERIFIED: {r['mode']}: {r['delivered']} records for {r['messages']} requests, "
            f"{r['calls']} of {args.count} calls",
            file=sys.stderr,
        )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
