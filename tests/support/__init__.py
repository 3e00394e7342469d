"""Helpers shared by the tests: import them from here (``from tests.support import ...``).

- waiting: :func:`wait_until`, :func:`await_until`, :func:`wait_event` (each with a deadline);
- serve: :class:`ServeProcess`, ``event-kafka serve`` ready on ``/health/live``, stopped by PID;
- mi_client: :class:`MIHttpClient`, JSON-RPC over HTTP and ``/metrics`` samples;
- brokers: the types of the broker fixtures of ``tests/conftest.py``;
- sip: the RFC 3261 INVITE;
- prereq: :func:`missing`, a skip that fails under ``CI=true``.
"""

from .brokers import Broker, Consume, MakeTopic
from .mi_client import MIHttpClient
from .prereq import in_ci, missing
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
    "ServeProcess",
    "await_until",
    "bound",
    "http_status",
    "in_ci",
    "invite",
    "missing",
    "wait_event",
    "wait_until",
]
