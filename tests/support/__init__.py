"""Helpers shared by the tests, imported as ``tests.support`` (the common ones) or
``tests.support.<module>``; never re-implemented in a test module.

- waiting: :func:`wait_until`, :func:`await_until`, :func:`wait_event` (each with a deadline);
- serve: :class:`ServeProcess`, ``event-kafka serve`` ready on ``/health/live``, stopped by PID;
- mi_client: :class:`MIHttpClient`, JSON-RPC over HTTP and ``/metrics`` samples;
- brokers: the types of the broker fixtures of ``tests/conftest.py``, :func:`dead_broker`;
- sip: the RFC 3261 INVITE and the other SIP requests tests send;
- sipp: SIP servers under test and SIPp (``tests.support.sipp``): UDP ports, drops, SIPp runs;
- reports: :class:`Reports`, a report route that can be waited on;
- children: forked children waited on by their pidfd (``tests.support.children``);
- timing: ratio-of-work timing for linear-time checks (``tests.support.timing``);
- prereq: :func:`missing`, a skip that fails under ``CI=true``.
"""

from .brokers import Broker, Consume, MakeTopic, dead_broker
from .mi_client import MIHttpClient
from .prereq import in_ci, missing
from .reports import Reports
from .serve import EVENT_KAFKA, ServeProcess, bound, http_status
from .sip import CALL_ID, INVITE, invite
from .waiting import await_until, wait_event, wait_until

__all__ = [
    "CALL_ID",
    "EVENT_KAFKA",
    "INVITE",
    "Broker",
    "Consume",
    "MIHttpClient",
    "MakeTopic",
    "Reports",
    "ServeProcess",
    "await_until",
    "bound",
    "dead_broker",
    "http_status",
    "in_ci",
    "invite",
    "missing",
    "wait_event",
    "wait_until",
]
