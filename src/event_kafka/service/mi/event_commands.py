"""The Event Interface's MI commands: ``event_subscribe``, ``events_list``,
``subscribers_list``, ``raise_event`` (OpenSIPS's ``evi:`` commands)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ...cjson import JObject, cjson_valueint, compact_json, loads_json
from ...errors import SocketError
from ...event_interface import UnknownEventError
from ...event_name import event_name_problem
from .errors import INVALID_PARAMS, TOO_MANY_SUBSCRIPTIONS, MIError
from .params import Params
from .protocol import MIService, SubscriptionCount, socket_policy

__all__ = ["DEFAULT_EXPIRE", "EventCommands", "raise_event_params", "safe_detail"]

DEFAULT_EXPIRE = 3600  # OpenSIPS DEFAULT_EXPIRE for MI subscriptions


@dataclass
class EventCommands:
    """The handlers; ``subscriptions`` (optional) bounds ``event_subscribe`` (429 at the limit)."""

    service: MIService
    subscriptions: SubscriptionCount | None = None
    # Check-then-subscribe is atomic: handlers run on several worker threads.
    _sub_lock: threading.Lock = field(default_factory=threading.Lock)

    def event_subscribe(self, p: Params) -> Any:
        event = _event_name(p)
        socket = _non_empty(p, "socket")
        expire = DEFAULT_EXPIRE
        if p.has("expire"):
            expire = p.integer("expire")
            if expire < 0:
                raise MIError.of(INVALID_PARAMS, "Negative expire value")
        if self.service.is_static(event, socket):
            if expire == 0:
                raise MIError(
                    400,
                    "Bad parameter value",
                    "static subscription (configuration file): remove it there and reload",
                )
            return "OK"  # already subscribed for good: a refresh changes nothing
        try:
            policy = socket_policy(self.service)
            with self._sub_lock:
                if expire != 0:
                    self._check_room(event, socket)
                # expire=0 unsubscribes (decision §9.5; OpenSIPS adds a 0-second subscriber).
                self.service.ek.evi.subscribe(event, socket, expire=expire, policy=policy)
        except UnknownEventError:
            raise MIError(400, "Bad parameter value", f"event {event!r} is not published") from None
        except SocketError as exc:
            # SocketError messages mask secret property values.
            raise MIError(400, "Bad parameter value", safe_detail(exc)) from None
        except (ValueError, RuntimeError) as exc:
            raise MIError(400, "Bad parameter value", safe_detail(exc)) from None
        return "OK"

    def _check_room(self, event: str, socket: str) -> None:
        """MIError 429 when ``mi.max_subscriptions`` is reached and this is a new subscriber
        (refreshing an existing one is always allowed)."""
        if self.subscriptions is None:
            return
        in_use, limit = self.subscriptions()
        if (
            in_use < limit
            or self.service.ek.evi.find_subscriber(
                event, socket, policy=socket_policy(self.service)
            )
            is not None
        ):
            return
        raise MIError(
            *TOO_MANY_SUBSCRIPTIONS,
            f"{in_use} MI subscriptions already: the limit is mi.max_subscriptions = {limit}",
        )

    def events_list(self, p: Params) -> Any:
        return {"Events": [e.to_mi() for e in self.service.ek.evi.list_events()]}

    def subscribers_list(self, p: Params) -> Any:
        evi = self.service.ek.evi
        if not p.has("event"):
            return {"Events": [e.to_mi() for e in evi.list_subscribers()]}
        name = _event_name(p)
        try:
            (event,) = evi.list_subscribers(name)
        except UnknownEventError:
            raise MIError(404, "Event not published") from None
        if not p.has("socket"):
            return {"Event": event.to_mi() if event.subscribers else {}}
        try:
            policy = socket_policy(self.service)
            sub = evi.find_subscriber(name, p.string("socket"), policy=policy)
        except (SocketError, LookupError, ValueError):
            sub = None  # OpenSIPS: a socket that does not parse matches nobody
        if sub is None:
            raise MIError(404, "Subscriber does not exist")
        return {"Event": {"name": event.name, "id": event.id, "Subscriber": sub.to_mi()}}

    def raise_event(self, p: Params) -> Any:
        evi = self.service.ek.evi
        name = _event_name(p)
        try:
            # Counts expired-but-not-yet-removed subscribers too, like evi_probe_event.
            subscribed = evi.subscriber_count(name)
        except UnknownEventError:
            raise MIError(404, "Event not registered") from None
        if not subscribed:
            raise MIError(480, "Temporarily Unavailable")
        params: Any = None
        if p.has("params"):
            params = raise_event_params(p.raw("params"))
        try:
            evi.raise_event(name, params)
        except UnknownEventError:
            raise MIError(404, "Event not registered") from None
        except (TypeError, ValueError) as exc:
            raise MIError(400, "Bad Params", safe_detail(exc)) from None
        return "OK"


def _event_name(p: Params) -> str:
    value = _non_empty(p, "event")
    problem = event_name_problem(value)
    if problem is not None:  # the one rule (event_name.py): never an event, say why
        raise MIError(400, "Bad parameter value", problem)
    return value


def _non_empty(p: Params, name: str) -> str:
    value = p.string(name)
    if not value:
        raise MIError.of(INVALID_PARAMS, f"Empty value for parameter '{name}'")
    return value


def safe_detail(exc: Exception) -> str:
    # Library errors about events and sockets mask secrets themselves; still cap the length,
    # keeping the end: a socket error quotes the (long) input first and says why last.
    text = str(exc)
    return text if len(text) <= 300 else text[:97] + "..." + text[-200:]


def raise_event_params(value: Any) -> Any:
    """The event params of MI ``raise_event``, as OpenSIPS's ``w_mi_raise_event`` builds them.

    * an array → positional **string** params (numbers printed as ints);
    * a string holding a JSON object → named params: numbers become ints (truncated),
      strings stay strings, anything else (bool, null, object, array) becomes its compact
      JSON text;
    * an empty array → no params; anything else → 400 "No Params" / "Bad Params".
    """
    if isinstance(value, list):
        if not value:
            return None
        out: list[str] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise MIError(400, "Bad Params")
            out.append(item if isinstance(item, str) else str(cjson_valueint(item)))
        return out
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MIError(400, "No Params")
    text = value if isinstance(value, str) else str(cjson_valueint(value))
    try:
        obj = loads_json(text)
    except ValueError:
        raise MIError(400, "Bad Params") from None
    if not isinstance(obj, JObject):
        raise MIError(400, "Bad Params")
    pairs: list[tuple[str, int | str | None]] = []
    for k, v in obj.pairs:
        if isinstance(v, int | float) and not isinstance(v, bool):
            pairs.append((k, cjson_valueint(v)))
        elif isinstance(v, str):
            pairs.append((k, v))
        else:
            pairs.append((k, compact_json(v)))
    return pairs or None
