"""event-kafka inside OpenSIPS: the handler of OpenSIPS's ``python`` module.

Loaded by examples/opensips/opensips.cfg (``modparam("python", "script_name", ...)``).
OpenSIPS embeds Debian's libpython3.11, imports this file once in the main process
(``mod_init``, before any fork), then forks its workers in C and calls
``child_init(rank)`` in each of them. Methods of the object ``mod_init`` returns are what
the script calls with ``python_exec(method, arg)``; each gets the SIP message (``msg``)
and the string ``arg`` (OpenSIPS expands the variables in it first).

Script functions (all return 1 on success, -1 otherwise; never 0, which would end the
script):

``python_exec("kafka_publish", "<broker_id> <message>")``
    event-kafka's ``kafka_publish(broker_id, message, $ci, "kafka_report")``: the broker_id
    strings are those of ``modparam("event_kafka", "broker_id", ...)`` (``EK_BROKER_IDS``),
    the key is the Call-ID, the report route is :func:`kafka_report` (Python).
``python_exec("raise_event", "<event> [<params as a JSON object>]")``
    raises ``event`` in event-kafka's Event Interface with the SIP message's Call-ID, so
    ``kafka:...?key=callid`` subscribers key the record by it. Without JSON the params are
    ``{"method", "ruri", "callid", "src"}`` of the message.
``python_exec("os_report")``
    for OpenSIPS's own report route (``route[...]`` given to the C ``kafka_publish``): writes
    its ``$avp(kafka_*)`` as a report line, like :func:`kafka_report` does for event-kafka.

OpenSIPS forbids ``python_exec`` in ``event_route`` (its command exports only request,
failure, onreply and branch routes): events raised by the script go to event-kafka from the
route that raises them, with ``raise_event`` above.

Environment of the opensips process (``EK_BROKER_IDS`` is the only one needed):

  EK_BROKER_IDS     broker_id strings ``[ID]brokers/topic?props``, separated by whitespace
  EK_SUBSCRIBE      static subscriptions ``EVENT=kafka:brokers/topic?...``, whitespace-separated
  EK_STARTUP_ID     a broker_id: mod_init publishes one ``startup`` record there, before the
                    fork (so the main process owns a live producer the workers must not use)
  EK_REPORT_DIR     one file per process and side, ``ek-reports.<pid>`` / ``os-reports.<pid>``,
                    one JSON line per delivery report (flushed line by line)
  EK_CLOSE_TIMEOUT  seconds a worker flushes at exit (default 3: OpenSIPS SIGKILLs workers
                    still running 5 s after its SIGTERM)
  EK_SPOOL_DIR      the durable spool (``EventKafka(spool_dir=...)``, when the installed
                    event-kafka has it): every record is on disk before it is accepted; what a
                    worker could not send before exit stays there and the next start sends it
  EK_VENV           a virtualenv of /usr/bin/python3 (or one whose site-packages are ABI
                    compatible) added with site.addsitedir() (its .pth files count)

The fork rule: OpenSIPS forks in C and never calls ``PyOS_AfterFork_Child()``, so Python's
at-fork hooks do not run in workers. ``child_init`` calls :func:`event_kafka.after_fork` first:
each worker then drops what it inherited and builds its own producers on first use.

Stopping: on SIGTERM OpenSIPS's main process asks each worker (over its IPC pipe, between two
SIP messages) to ``exit(0)``. That runs C ``atexit`` handlers but not Python's (the module never
calls ``Py_Finalize``), so ``child_init`` registers a C ``atexit`` handler (ctypes) that closes
the worker's EventKafka: it flushes up to ``EK_CLOSE_TIMEOUT`` and reports the rest as failed
(with ``EK_SPOOL_DIR``: keeps the rest on disk).
"""

from __future__ import annotations

import ctypes
import glob
import inspect
import json
import os
import site
import sys
from typing import Any

from OpenSIPS import LM_ERR  # type: ignore[import-not-found]  # provided by python.so


def _add_venv() -> None:
    venv = os.environ.get("EK_VENV")
    if not venv:
        return
    pyver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = glob.glob(os.path.join(venv, "lib", pyver, "site-packages"))
    if not found:
        LM_ERR(f"event-kafka: EK_VENV={venv} has no lib/{pyver}/site-packages\n")
    for sp in found:
        site.addsitedir(sp)


_add_venv()

from event_kafka import CallId, EventKafka, Report, after_fork, forksafe  # noqa: E402

_HOME_PID = os.getpid()
CLOSE_TIMEOUT = float(os.environ.get("EK_CLOSE_TIMEOUT", "3"))
REPORT_DIR = os.environ.get("EK_REPORT_DIR") or None
SPOOL_DIR = os.environ.get("EK_SPOOL_DIR") or None
SIP_EVENT_PARAMS = ("method", "ruri", "callid", "src")


def _make_ek() -> EventKafka:
    broker_ids = os.environ.get("EK_BROKER_IDS", "").split()
    kwargs: dict[str, Any] = {"flush_timeout": CLOSE_TIMEOUT}
    if SPOOL_DIR:
        if "spool_dir" not in inspect.signature(EventKafka).parameters:
            raise RuntimeError("EK_SPOOL_DIR is set but this event-kafka has no spool")
        # One directory for every process: each writes its own files and a new process
        # adopts those of processes that are gone.
        kwargs["spool_dir"] = SPOOL_DIR
    ek = EventKafka(broker_ids, **kwargs)
    for sub in os.environ.get("EK_SUBSCRIBE", "").split():
        event, _, socket = sub.partition("=")
        ek.publish_event(event)
        ek.subscribe(event, socket, expire=None)
    ek.add_report_route("kafka_report", kafka_report)
    return ek


class _ReportLog:
    """``<side>-reports.<pid>`` in EK_REPORT_DIR, opened lazily in the process writing it."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.pid = 0
        self.file: Any = None
        self.lock = forksafe.lock()  # released in a child by after_fork(), whoever held it

    def write(self, **fields: Any) -> None:
        if REPORT_DIR is None:
            return
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                path = os.path.join(REPORT_DIR, f"{self.side}-reports.{self.pid}")
                self.file = open(path, "a", buffering=1)  # noqa: SIM115 - lives with the process
            self.file.write(json.dumps({"pid": self.pid, **fields}) + "\n")


_ek_log = _ReportLog("ek")
_os_log = _ReportLog("os")


def _text(v: str | bytes | None) -> str | None:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def kafka_report(report: Report) -> None:
    """event-kafka's report route: runs once per accepted record, on a thread of the worker
    that published it (never the SIP worker's own thread)."""
    if report.kafka_status != 0:
        LM_ERR(f"event-kafka: delivery failed for broker_id {report.kafka_id}\n")
    _ek_log.write(
        status=report.kafka_status,
        id=report.kafka_id,
        key=_text(report.kafka_key),
        msg=_text(report.kafka_msg),
    )


def _startup_record(ek: EventKafka) -> None:
    broker_id = os.environ.get("EK_STARTUP_ID")
    if not broker_id:
        return
    msg = json.dumps({"event": "startup", "pid": os.getpid()})
    if ek.kafka_publish(broker_id, msg, "startup", "kafka_report") != 1:
        LM_ERR(f"event-kafka: startup record refused by {broker_id}\n")
    # Delivered before OpenSIPS forks: no librdkafka thread of this process is mid-request then.
    ek.flush(10)


def _callid(msg: Any) -> CallId | None:
    ci = msg.get_pseudoVar("$ci")
    return CallId(ci) if ci and ci != "<null>" else None


class Handler:
    """The object whose methods ``python_exec`` calls (see the module docstring)."""

    def __init__(self) -> None:
        self.ek = _make_ek()
        self.rank: int | None = None
        self._exit_hook: Any = None
        _startup_record(self.ek)

    def child_init(self, rank: int) -> int:
        self.rank = rank
        if os.getpid() == _HOME_PID:
            return 0
        # OpenSIPS forked us in C: Python's at-fork hooks did not run. The library's do now:
        # the producers (and threads) inherited from the main process are dropped.
        after_fork()
        # glibc's on_exit (its atexit is not an exported symbol); the reference is kept, as
        # the C side holds only a pointer.
        self._exit_hook = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(self._at_exit)
        if ctypes.CDLL("libc.so.6").on_exit(self._exit_hook, None) != 0:
            LM_ERR("event-kafka: could not register the exit flush\n")
        return 0

    def _at_exit(self, status: int, arg: object) -> None:
        # Runs from C exit(): OpenSIPS's IPC terminate, between two SIP messages.
        try:
            left = self.ek.close(CLOSE_TIMEOUT)
            if left:
                LM_ERR(f"event-kafka: {left} record(s) not delivered at exit (pid {os.getpid()})\n")
        except Exception as exc:  # never raise into C exit()
            LM_ERR(f"event-kafka: close at exit failed: {exc!r}\n")

    # -- script functions --------------------------------------------------------------------

    def kafka_publish(self, msg: Any, arg: str = "") -> int:
        broker_id, _, message = arg.partition(" ")
        try:
            ci = _callid(msg)
            return self.ek.kafka_publish(broker_id, message, ci, "kafka_report")
        except Exception as exc:  # a Kafka problem must never cost the SIP reply
            LM_ERR(f"event-kafka: kafka_publish({broker_id}) failed: {exc!r}\n")
            return -1

    def raise_event(self, msg: Any, arg: str = "") -> int:
        event, _, params_json = arg.partition(" ")
        try:
            ci = _callid(msg)
            if params_json.strip():
                params: Any = json.loads(params_json)
            else:
                ip, port = msg.src_address
                values = (msg.Method, msg.RURI, ci or "", f"{ip}:{port}")
                params = dict(zip(SIP_EVENT_PARAMS, values, strict=True))
            return self.ek.raise_event_script(event, params, ci)
        except Exception as exc:
            LM_ERR(f"event-kafka: raise_event({event}) failed: {exc!r}\n")
            return -1

    def os_report(self, msg: Any, arg: str = "") -> int:
        get = msg.get_pseudoVar
        status = get("$avp(kafka_status)")
        _os_log.write(
            status=int(status) if status.lstrip("-").isdigit() else status,
            id=get("$avp(kafka_id)"),
            key=get("$avp(kafka_key)"),
            msg=get("$avp(kafka_msg)"),
        )
        return 1


def mod_init() -> Handler:
    return Handler()
