"""The JSON-RPC 2.0 framework of the MI: parse a request, dispatch it to a command, reply.

:class:`MIDispatcher` turns one request body (``bytes``) into one response ``dict`` (or
``None`` for a notification), exactly as OpenSIPS's ``mi/mi.c`` does for mi_http: the same
validation order, the same recipe matching, the same error codes, messages and ``data``
details. It is pure (no sockets), so the HTTP server is a thin shell around it and it can be
fuzzed directly::

    dispatcher = MIDispatcher(service_commands(service, lambda: dispatcher))
    reply = await dispatcher.handle(b'{"jsonrpc":"2.0","id":1,"method":"version"}')
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from ...cjson import JObject, loads_json
from .errors import (
    DET_NULL,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    MIError,
    Response,
    error_response,
)
from .params import Command, Params, match_recipe

__all__ = ["MIDispatcher", "Offload"]

Offload: TypeAlias = Callable[[Callable[[], Any]], Awaitable[Any]]
"""``await offload(fn)`` runs ``fn()`` off the event loop (raises MIError on its budget)."""

log = logging.getLogger("event_kafka.service.mi")

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _result_response(result: Any, id: Any) -> Response:
    return {"jsonrpc": "2.0", "result": result, "id": id}


_INLINE_PARSE = 4096  # smaller bodies parse in microseconds: not worth a thread hop


def _parse(body: bytes | str) -> Any:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
    return loads_json(text)


def _valid_id(rid: Any) -> bool:
    """A JSON-RPC id: null, a string or a number (not a bool, and an int any JSON encoder of
    ours can echo back)."""
    if rid is None or isinstance(rid, str | float):
        return True
    return isinstance(rid, int) and not isinstance(rid, bool) and _INT64_MIN <= rid <= _UINT64_MAX


class MIDispatcher:
    """Runs JSON-RPC requests against a command table; no I/O of its own.

    Example::

        d = MIDispatcher([Command("ping", (Recipe(()),), lambda p: "pong")])
        await d.handle(b'{"jsonrpc":"2.0","id":7,"method":"ping"}')
        # {'jsonrpc': '2.0', 'result': 'pong', 'id': 7}

    Batches (a JSON array) are answered with -32600 Invalid Request, as OpenSIPS does.
    """

    def __init__(self, commands: Iterable[Command], offload: Offload | None = None) -> None:
        self.offload = offload
        """Runs parsing of big bodies and every synchronous handler off the event loop
        (:class:`~event_kafka.service.workers.WorkerPool`); ``None``: inline."""
        self.commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        for cmd in commands:
            self.add(cmd)
        self.requests = 0
        self.errors = 0

    def add(self, cmd: Command) -> None:
        """Register ``cmd`` under its name and aliases (a taken name is a programming error)."""
        for name in (cmd.name, *cmd.aliases):
            if name in self._by_name:
                raise ValueError(f"MI command {name!r} already registered")
            self._by_name[name] = cmd
        self.commands.append(cmd)

    def lookup(self, name: str) -> Command | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """Every callable name, each command followed by its aliases (``which``)."""
        return [n for c in self.commands for n in (c.name, *c.aliases)]

    async def handle(self, body: bytes | str) -> Response | None:
        """Answer one request body; ``None`` means no reply (a JSON-RPC notification)."""
        self.requests += 1
        try:
            if self.offload is not None and len(body) > _INLINE_PARSE:
                request = await self.offload(lambda: _parse(body))
            else:
                request = _parse(body)
        except ValueError:  # also UnicodeDecodeError
            self.errors += 1
            return error_response(*PARSE_ERROR)
        except MIError as exc:  # the offload's time budget or queue limit
            self.errors += 1
            return error_response(exc.code, exc.message, exc.data)
        reply = await self.handle_request(request)
        if reply is not None and "error" in reply:
            self.errors += 1
        return reply

    async def handle_request(self, req: Any) -> Response | None:
        """Answer one decoded request (what :meth:`handle` does after parsing)."""
        if not isinstance(req, dict):
            return error_response(*INVALID_REQUEST)
        has_id = "id" in req
        rid = req.get("id")
        invalid = False
        if has_id and not _valid_id(rid):
            invalid, rid = True, None
        if req.get("jsonrpc") != "2.0":
            invalid = True
        method = req.get("method")
        if not isinstance(method, str):
            invalid = True
        params = req.get("params")
        if "params" in req and not isinstance(params, list | dict):
            invalid = True
        if invalid:
            # Even a notification hears about an invalid request (OpenSIPS does the same).
            return error_response(*INVALID_REQUEST, id=rid)
        assert isinstance(method, str)
        if not params:
            params = None
        elif isinstance(params, dict) and not isinstance(params, JObject):
            params = JObject(list(params.items()))
        try:
            result = await self._run(method, params)
        except MIError as exc:
            response = error_response(exc.code, exc.message, exc.data, rid)
        else:
            response = _result_response(result, rid)
        return response if has_id else None

    async def _run(self, method: str, params: JObject | list[Any] | None) -> Any:
        cmd = self._by_name.get(method)
        if cmd is None:
            raise MIError.of(METHOD_NOT_FOUND)
        recipe = match_recipe(cmd.recipes, params)
        handler, args = cmd.handler, Params(params, recipe)
        try:
            if self.offload is not None and not inspect.iscoroutinefunction(handler):
                result = await self.offload(lambda: handler(args))
            else:
                result = handler(args)
            if isinstance(result, Awaitable):
                result = await result
        except MIError:
            raise
        except Exception:
            # Never leak internals (or a secret inside an exception message) to the client.
            log.exception("MI command %s failed", cmd.name)
            raise MIError.of(SERVER_ERROR, "Internal error") from None
        if result is None:
            raise MIError.of(SERVER_ERROR, DET_NULL)
        return result


# --------------------------------------------------------------------------------------------
# The service's commands
