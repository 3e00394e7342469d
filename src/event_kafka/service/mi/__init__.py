"""The management interface: OpenSIPS-compatible JSON-RPC 2.0, with no transport in it.

* :mod:`.jsonrpc` — the framework: parse a request, match a recipe, dispatch, reply
  (:class:`MIDispatcher`); :mod:`.errors` and :mod:`.params` are its vocabulary;
* :mod:`.commands` — the command table of ``event-kafka serve`` (:func:`service_commands`),
  built from :mod:`.core_commands`, :mod:`.event_commands` and :mod:`.kafka_commands`, which
  work on an :class:`MIService` (:mod:`.protocol`).

The JSON itself is OpenSIPS's cJSON (:mod:`event_kafka.cjson`). Example::

    dispatcher = MIDispatcher(service_commands(service, lambda: dispatcher))
    reply = await dispatcher.handle(b'{"jsonrpc":"2.0","id":1,"method":"version"}')
"""

from .commands import service_commands
from .core_commands import package_version, server_string
from .errors import MIError, error_response
from .event_commands import raise_event_params
from .jsonrpc import MIDispatcher, Offload
from .params import Command, Handler, Params, Recipe
from .protocol import MI_POLICY, MIService

__all__ = [
    "MI_POLICY",
    "Command",
    "Handler",
    "MIDispatcher",
    "MIError",
    "MIService",
    "Offload",
    "Params",
    "Recipe",
    "error_response",
    "package_version",
    "raise_event_params",
    "server_string",
    "service_commands",
]
