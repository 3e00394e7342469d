"""Kamailio KEMI routing script (app_python3) publishing through event-kafka.

Loaded by examples/kamailio/kamailio.cfg (``cfgengine "python"``). Kamailio
embeds Debian's libpython3.11, imports this file once in the main process
(``mod_init``), then forks its workers: the ``EventKafka`` below is created at
import time and creates one producer per worker lazily, after the fork.

What it does, for load tests with SIPp (it answers every request itself):

* every request -> ``raise_event("E_SIP_REQUEST", {method, src, ruri, ...})``
  to a ``kafka:`` subscriber keyed by the Call-ID; retransmissions are
  absorbed by tm first, so one event per request;
* OPTIONS -> 200, INVITE -> 200 (with Contact), ACK -> absorbed,
  BYE -> 200 and one CDR JSON per call with ``kafka_publish("cdr", ...)``,
  keyed by the Call-ID, delivery reported to the ``kafka_report`` route;
* an OPTIONS whose R-URI user is ``ek-drain`` publishes nothing: it gives the
  worker that receives it a chance to serve pending delivery reports and
  answers with the worker's counters in an ``X-EK-Reports`` header.

Environment of the kamailio process (all optional):

  EK_BROKERS       bootstrap servers, default 127.0.0.1:9092
  EK_EVENT_TOPIC   topic for E_SIP_REQUEST, default sipreq
  EK_CDR_TOPIC     topic for CDRs, default cdrs
  EK_REPORT_DIR    if set: one file per worker process, ``reports.<pid>``,
                   one line per delivery report: ``ok|fail <id> <key>``
  EK_PUBLISH       "0" disables all publishing (baseline SIP rate)
  EK_SPOOL_DIR     if set: a durable spool there (docs/spool.md); what the
                   workers accepted survives their SIGTERM/_exit and is sent
                   by the next process that opens the same directory
  EK_VENV          a virtualenv whose site-packages are added with
                   site.addsitedir() (its .pth files, e.g. an editable
                   install of event-kafka, are honoured). PYTHONPATH works
                   too, but .pth files in PYTHONPATH entries are ignored.

Kamailio 5.6 app_python3 facts this script is written around:

* Python ``atexit`` never runs in workers (they ``_exit(0)`` on SIGTERM and
  the module never calls Py_Finalize), hence the report lines are written
  and flushed one by one instead of being dumped at shutdown.
* A worker holds the GIL all the time, also while it waits for packets, so
  Python threads of a worker (e.g. a delivery-report poller) only run while
  that worker executes Python code. librdkafka's own threads are native and
  keep sending; only the Python callbacks wait for the next request.
* An uncaught exception is logged by Kamailio (ERROR + traceback) and the
  request is dropped without a reply: every publishing call is wrapped so
  that a failure to publish never costs the SIP reply.
"""

from __future__ import annotations

import os
import sys
import time

import KSR  # provided by app_python3


def _add_venv() -> None:
    venv = os.environ.get("EK_VENV")
    if not venv:
        return
    import glob
    import site

    pyver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = glob.glob(os.path.join(venv, "lib", pyver, "site-packages"))
    if not found:
        KSR.err(f"EK_VENV={venv} has no lib/{pyver}/site-packages: ABI mismatch?\n")
    for sp in found:
        site.addsitedir(sp)


_add_venv()

try:
    import orjson

    def _dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson is a dependency of event-kafka
    import json

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


from event_kafka import EventKafka  # noqa: E402

try:
    from event_kafka import CallId
except ImportError:  # older layouts keep it in event_kafka.sip only
    from event_kafka.sip import CallId

BROKERS = os.environ.get("EK_BROKERS", "127.0.0.1:9092")
EVENT_TOPIC = os.environ.get("EK_EVENT_TOPIC", "sipreq")
CDR_TOPIC = os.environ.get("EK_CDR_TOPIC", "cdrs")
REPORT_DIR = os.environ.get("EK_REPORT_DIR") or None
PUBLISH = os.environ.get("EK_PUBLISH", "1") != "0"
SPOOL_DIR = os.environ.get("EK_SPOOL_DIR") or None
DRAIN_USER = "ek-drain"

# Created in the main process at import time, before kamailio forks; the
# library creates the producers lazily in each worker.
ek = EventKafka(
    broker_ids=[f"[cdr]{BROKERS}/{CDR_TOPIC}?t.acks=all"],
    **({"spool_dir": SPOOL_DIR} if SPOOL_DIR else {}),
)
ek.publish_event("E_SIP_REQUEST")
ek.subscribe("E_SIP_REQUEST", f"kafka:{BROKERS}/{EVENT_TOPIC}?key=callid", expire=None)

# Per process counters (each worker has its own copy after fork).
_counts = {
    "ok": 0,
    "fail": 0,
    "rejected": 0,
    "events": 0,
    "event_errors": 0,
    "cdrs": 0,
    "duplicate_byes": 0,
}
_report_file = None
_report_pid = None


def _report_out():
    """The per-PID report file, opened lazily (after fork), line buffered."""
    global _report_file, _report_pid
    pid = os.getpid()
    if _report_file is None or _report_pid != pid:
        _report_file = open(  # noqa: SIM115 - kept open for the process' life
            os.path.join(REPORT_DIR, f"reports.{pid}"), "a", buffering=1
        )
        _report_pid = pid
    return _report_file


@ek.report_route("kafka_report")
def kafka_report(report) -> None:
    ok = report.kafka_status == 0
    _counts["ok" if ok else "fail"] += 1
    if REPORT_DIR:
        key = report.kafka_key
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        _report_out().write(f"{'ok' if ok else 'fail'} {report.kafka_id} {key}\n")


def _pv(name: str) -> str:
    v = KSR.pv.get(name)
    return "" if v is None else str(v)


def _raise_request_event(method: str, callid: str) -> None:
    if not PUBLISH:
        return
    try:
        ek.raise_event(
            "E_SIP_REQUEST",
            {
                "method": method,
                "src": f"{_pv('$si')}:{_pv('$sp')}",
                "ruri": _pv("$ru"),
                "callid": callid,
                "cseq": _pv("$cs"),
                "pid": os.getpid(),
            },
            sip_msg=CallId(callid),
        )
        _counts["events"] += 1
    except Exception as exc:  # never lose the SIP reply because of Kafka
        _counts["event_errors"] += 1
        KSR.err(f"event-kafka raise_event failed: {exc!r}\n")


def _publish_cdr(callid: str) -> None:
    if not PUBLISH:
        return
    if KSR.htable.sht_get("cdrs", callid) is not None:
        # A late retransmission of the BYE (tm forgot the transaction): no second CDR.
        _counts["duplicate_byes"] += 1
        return
    KSR.htable.sht_seti("cdrs", callid, 1)
    now = time.time()
    start = KSR.htable.sht_get("calls", callid)
    try:
        start_ts = float(start) if start is not None else None
    except (TypeError, ValueError):
        start_ts = None
    KSR.htable.sht_rm("calls", callid)
    cdr = {
        "callid": callid,
        "from_user": _pv("$fU"),
        "to_user": _pv("$tU"),
        "from_tag": _pv("$ft"),
        "to_tag": _pv("$tt"),
        "src": f"{_pv('$si')}:{_pv('$sp')}",
        "setup_time": start_ts,
        "end_time": now,
        "duration": (now - start_ts) if start_ts is not None else None,
        "sip_code": 200,
        "sip_reason": "OK",
    }
    try:
        rc = ek.kafka_publish("cdr", _dumps(cdr), key=callid, report_route="kafka_report")
    except Exception as exc:
        rc = -1
        KSR.err(f"event-kafka kafka_publish failed: {exc!r}\n")
    if rc == 1:
        _counts["cdrs"] += 1
    else:
        _counts["rejected"] += 1


def _pending() -> int:
    """Messages of this process still waiting for their delivery report."""
    try:
        return ek.in_flight()
    except Exception:
        return 0


def _drain(max_wait: float = 0.5) -> None:
    """Let this worker's event-kafka threads serve pending delivery reports.

    Kamailio 5.6 never releases the GIL of a worker between requests, so the
    library's poll / report-route threads only progress while the worker runs
    Python; ``ek.flush`` sleeps in small steps, handing the GIL to them.
    """
    try:
        ek.flush(max_wait)
    except Exception as exc:
        KSR.err(f"event-kafka flush failed: {exc!r}\n")
    time.sleep(0.001)  # one more hand-over for a report being written


def mod_init():
    KSR.info(
        f"event-kafka KEMI: brokers={BROKERS} events->{EVENT_TOPIC} cdrs->{CDR_TOPIC} "
        f"publish={PUBLISH}\n"
    )
    return kamailio()


class kamailio:  # app_python3 convention (any class works: mod_init returns it)
    def __init__(self) -> None:
        self.rank = None

    def child_init(self, rank: int) -> int:
        # rank > 0: SIP workers; 0: main; < 0: timers and other helpers.
        self.rank = rank
        return 0

    def ksr_request_route(self, msg) -> int:
        method = _pv("$rm")
        callid = _pv("$ci")

        if method == "ACK":
            # The ACK of our 200 OK is a request of its own: report it. Then
            # t_check_trans() matches it to the INVITE transaction, which stops
            # tm retransmitting the 200 OK (without it SIPp logs a "Dead call"
            # per call), and absorbs it (it returns 0 for ACKs of local replies).
            _raise_request_event(method, callid)
            KSR.tm.t_check_trans()
            return 1

        # Retransmissions: absorbed by tm, so no duplicate event.
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1
        if KSR.tm.t_newtran() < 0:
            KSR.sl.sl_reply_error()
            return 1

        if method == "OPTIONS" and _pv("$rU") == DRAIN_USER:
            _drain()
            c = _counts
            KSR.hdr.append_to_reply(
                f"X-EK-Reports: pid={os.getpid()} ok={c['ok']} fail={c['fail']} "
                f"rejected={c['rejected']} events={c['events']} "
                f"event_errors={c['event_errors']} cdrs={c['cdrs']} "
                f"duplicate_byes={c['duplicate_byes']} pending={_pending()}\r\n"
            )
            KSR.tm.t_reply(200, "OK")
            return 1

        _raise_request_event(method, callid)

        if method == "INVITE":
            KSR.htable.sht_sets("calls", callid, f"{time.time():.6f}")
            KSR.hdr.append_to_reply(f"Contact: <sip:{_pv('$Ri')}:{_pv('$Rp')}>\r\n")
            KSR.tm.t_reply(200, "OK")
        elif method == "BYE":
            KSR.tm.t_reply(200, "OK")
            _publish_cdr(callid)  # one CDR per call, at BYE's 200 OK
        elif method in ("OPTIONS", "INFO", "UPDATE", "MESSAGE", "NOTIFY"):
            KSR.tm.t_reply(200, "OK")
        else:
            KSR.tm.t_reply(501, "Not Implemented")
        return 1

    # No ksr_reply_route / ksr_onsend_route: nothing is relayed, and a method
    # that is not defined costs no Python call.
