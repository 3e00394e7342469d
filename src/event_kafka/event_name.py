"""The one rule for event names, used by every entry point (library, config, MI, ingest).

An event name is a non-empty ``str`` of at most :data:`MAX_EVENT_NAME` **bytes** of UTF-8
(OpenSIPS keeps names in C strings and counts bytes), made only of printable characters
other than the space: letters, digits and punctuation of any script. Allow-list, not
deny-list: whitespace, control and format characters (newline, NUL, DEL, C1 controls,
zero-width and bidi marks), line separators, lone surrogates and unassigned code points are
all refused, so a name is safe in a log line, a JSON-RPC ``method`` and a Kafka header.

>>> check_event_name("E_ACC_CDR")
'E_ACC_CDR'
>>> event_name_problem("E_X\\nY")
"event name 'E_X\\\\nY' contains a space, control or non-printable character at position 3"
"""

from __future__ import annotations

from .errors import EventKafkaError
from .socket_mask import mask_secrets

__all__ = ["MAX_EVENT_NAME", "EventNameError", "check_event_name", "event_name_problem"]

MAX_EVENT_NAME = 64
"""Longest event name, in bytes of UTF-8 (OpenSIPS's limit)."""


class EventNameError(EventKafkaError, ValueError):
    """An event name that cannot be published (empty, longer than 64 bytes, not printable)."""


def event_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as an event name, or ``None`` when it is valid.

    The message quotes at most 20 characters of the name, escaped (``repr``), with what looks
    like a secret masked first (a socket pasted where an event name belongs).
    """
    if not isinstance(name, str):
        return f"event name must be str, not {type(name).__name__}"
    if not name:
        return "event name must not be empty"
    if " " in name or not name.isprintable():
        bad = next(i for i, ch in enumerate(name) if ch == " " or not ch.isprintable())
        return (
            f"event name {_quoted(name)} contains a space, control or non-printable character "
            f"at position {bad}"
        )
    size = len(name.encode("utf-8"))  # cannot fail: surrogates are not printable
    if size > MAX_EVENT_NAME:
        return f"event name {_quoted(name)}... is {size} bytes long: at most {MAX_EVENT_NAME}"
    return None


def _quoted(name: str) -> str:
    return repr(mask_secrets(name)[:20])


def check_event_name(name: object) -> str:
    """Return ``name`` if it is a valid event name.

    Raises:
        EventNameError: saying what is wrong (see :func:`event_name_problem`).
    """
    problem = event_name_problem(name)
    if problem is not None:
        raise EventNameError(problem)
    assert isinstance(name, str)
    return name
