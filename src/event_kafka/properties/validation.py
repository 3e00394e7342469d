"""Checking one librdkafka property of a producer: names event-kafka owns or refuses, the
catalogue's verdict with a spelling hint, the source's policy, and librdkafka's own check."""

from __future__ import annotations

import difflib

from .librdkafka import _PREFIX, Scope, _Backend, _backend
from .secrets import is_sensitive, redact
from .trust import TRUSTED, PropertyPolicy

_BROKER_NAMES = frozenset({"bootstrap.servers", "metadata.broker.list"})
# Set by event-kafka's producer core; a user value would break delivery reporting or logging.
# fmt: off
_OWNED = frozenset({
    "dr_cb", "dr_msg_cb", "delivery.report.only.error", "on_delivery", "error_cb", "stats_cb",
    "throttle_cb", "log_cb", "logger", "oauth_cb", "default.topic.config", "enabled_events",
})
# fmt: on
_UNSUPPORTED = {
    "transactional.id": "event-kafka does not use transactions (they need begin/commit calls "
    "from code)",
}


def _unknown(scope: Scope, name: str, backend: _Backend) -> str:
    other: Scope = "topic" if scope == "global" else "global"
    if backend.info(other, name) is not None:
        what = "a topic-level" if other == "topic" else "a global"
        return f"{name} is {what} property: write {_PREFIX[other]}{name}"
    # librdkafka accepts "topic.<name>" as a global spelling of a topic property; we want t.
    if name.startswith("topic.") and backend.info("topic", name[6:]) is not None:
        return f"{name[6:]} is a topic-level property: write t.{name[6:]}"
    hint = ""
    candidates = [f"{_PREFIX[s]}{n}" for s, n in backend.names()]
    close = difflib.get_close_matches(_PREFIX[scope] + name, candidates, n=1, cutoff=0.8)
    if close:
        hint = f"; did you mean {close[0]}?"
    return f"unknown librdkafka property {name!r}{hint}"


def check_property(
    scope: Scope, name: str, value: str, *, policy: PropertyPolicy = TRUSTED
) -> str | None:
    """Check one librdkafka property for a producer; return ``None`` or the reason it is bad.

    ``name`` has no ``g.``/``t.`` prefix; ``scope`` says which one was written. The reason is
    safe to show: secret values are masked. ``policy`` says which properties the socket's
    source may set (:data:`TRUSTED`: any; see :func:`untrusted_policy`).

    Example::

        >>> check_property("global", "linger.ms", "-5")  # doctest: +ELLIPSIS
        'invalid value: ...value -5 is outside allowed range 0..900000'
    """
    prefix = _PREFIX[scope]
    if not name:
        return "empty property name"
    if name in _BROKER_NAMES:
        return f"write the brokers in the socket (brokers/topic), not as {prefix}{name}"
    if name in _OWNED:
        return f"{name} is set by event-kafka itself"
    if name in _UNSUPPORTED:
        return f"{name} is not supported: {_UNSUPPORTED[name]}"
    try:
        name.encode()
        value.encode()
    except UnicodeEncodeError:
        return f"{prefix}{name}: name or value is not valid Unicode"
    backend = _backend()
    info = backend.info(scope, name)
    if info is None:
        return _unknown(scope, name, backend)
    if info.code_only:
        return f"{name} can only be set from code (librdkafka: see dedicated API)"
    if info.role == "C":
        return f"{name} is a consumer property, has no effect on a producer"
    refused = policy.refusal(scope, name, value)
    if refused is not None:
        return refused
    if name == "plugin.library.paths":
        return None  # rd_kafka_conf_set would dlopen the plugins right now, in this process
    error = backend.set(scope, name, value)
    if error is None:
        return None
    if is_sensitive(name):
        error = redact(error, [value])
    return f"invalid value: {error}"
