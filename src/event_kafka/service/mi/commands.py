"""The command table of ``event-kafka serve``:

================================  ================================  =========================
command (aliases)                 params (recipes)                  result
================================  ================================  =========================
``event_subscribe``               event socket [expire]             ``"OK"``
(``evi:subscribe``, ``subscribe``)
``events_list`` (``evi:list``)    —                                 ``{"Events": [...]}``
``subscribers_list``              [event [socket]]                  ``{"Events": [...]}`` /
(``evi:subscribers``)                                               ``{"Event": {...}}``
``raise_event`` (``evi:raise``)   event [params]                    ``"OK"``
``kafka_publish``                 broker_id message [key            ``"OK"`` or the delivery
                                  [report_route [wait]]]            report (``wait``)
``get_statistics``                statistics (array)                ``{"group:name": n}``
(``statistics:get``)
``version``, ``uptime``           —                                 ``{"Server": ...}`` ...
``which``                         [command]                         command names / recipes
================================  ================================  =========================
"""

from __future__ import annotations

from collections.abc import Callable

from .core_commands import CoreCommands
from .event_commands import EventCommands
from .jsonrpc import MIDispatcher
from .kafka_commands import KafkaCommands
from .params import Command, Recipe
from .protocol import MIService, SubscriptionCount

__all__ = ["service_commands"]


def service_commands(
    service: MIService,
    dispatcher: Callable[[], MIDispatcher | None],
    subscriptions: SubscriptionCount | None = None,
) -> list[Command]:
    """The command table of ``event-kafka serve``.

    ``dispatcher`` returns the dispatcher the table is installed in (``which`` lists it);
    ``subscriptions`` (optional) bounds ``event_subscribe`` (error 429 at the limit).
    """
    core = CoreCommands(service, dispatcher)
    evi = EventCommands(service, subscriptions)
    kafka = KafkaCommands(service, dispatcher)
    none = Recipe(())
    publish_recipes = [
        Recipe(("broker_id", "message")),
        Recipe(("broker_id", "message", "key")),
        Recipe(("broker_id", "message", "key", "report_route")),
        Recipe(("broker_id", "message", "key", "report_route", "wait")),
    ]
    # Any other combination of the optional params, by name only.
    for extra in (("wait",), ("report_route",), ("report_route", "wait"), ("key", "wait")):
        publish_recipes.append(Recipe(("broker_id", "message", *extra), named_only=True))
    return [
        Command(
            "event_subscribe",
            (Recipe(("event", "socket")), Recipe(("event", "socket", "expire"))),
            evi.event_subscribe,
            "subscribes a socket to an event (expire: seconds, default 3600, 0 unsubscribes)",
            ("evi:subscribe", "subscribe"),
        ),
        Command(
            "events_list", (none,), evi.events_list, "lists the published events", ("evi:list",)
        ),
        Command(
            "subscribers_list",
            (none, Recipe(("event",)), Recipe(("event", "socket"))),
            evi.subscribers_list,
            "lists the subscribers (of an event / one subscriber)",
            ("evi:subscribers",),
        ),
        Command(
            "raise_event",
            (Recipe(("event",)), Recipe(("event", "params"))),
            evi.raise_event,
            "raises an event (params: array, or a string holding a JSON object)",
            ("evi:raise",),
        ),
        Command(
            "kafka_publish",
            tuple(publish_recipes),
            kafka.kafka_publish,
            "publishes a message to a broker_id (wait=1: reply with the delivery report)",
        ),
        Command(
            "get_statistics",
            (Recipe(("statistics",)),),
            core.get_statistics,
            'prints statistics: ["all"], ["group:"] or names',
            ("statistics:get",),
        ),
        Command("version", (none,), core.version, "prints the version"),
        Command("uptime", (none,), core.uptime, "prints when the service started and for how long"),
        Command(
            "which",
            (none, Recipe(("command",))),
            core.which,
            "lists the MI commands, or the parameter lists of one",
        ),
    ]
