"""JSON-RPC 2.0 errors as OpenSIPS's MI writes them: codes, messages, ``data`` details.

:class:`MIError` is what a command (or the framework) raises; :func:`error_response` is the
reply object it becomes. The codes, messages and details are OpenSIPS's (``mi/mi.h``,
``mi/mi.c``), so clients written for OpenSIPS read our errors unchanged.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["MIError", "Response", "bad_type", "error_response"]

# JSON-RPC codes and messages, as in OpenSIPS mi/mi.h.
PARSE_ERROR = (-32700, "Parse error")
INVALID_REQUEST = (-32600, "Invalid Request")
METHOD_NOT_FOUND = (-32601, "Method not found")
INVALID_PARAMS = (-32602, "Invalid params")
SERVER_ERROR = (-32000, "Server error")
DET_AMBIGUOUS = "Ambiguous call, use named parameters instead"
DET_NO_PARAMS = "Too few or too many parameters"
DET_MATCH_PARAMS = "Named parameters do not match"
DET_NULL = "Command handler returned null"
TOO_MANY_SUBSCRIPTIONS = (429, "Too many subscriptions")

Response: TypeAlias = dict[str, Any]


class MIError(Exception):
    """A JSON-RPC error reply: ``{"code": code, "message": message[, "data": data]}``.

    ``data`` must never hold a secret: it is sent to the client as is.
    """

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(f"{code} {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def of(cls, pair: tuple[int, str], data: str | None = None) -> MIError:
        return cls(pair[0], pair[1], data)


def error_response(code: int, message: str, data: str | None = None, id: Any = None) -> Response:
    """A JSON-RPC error response object (member order as OpenSIPS prints it)."""
    err: dict[str, Any] = {"code": code, "message": message}
    if data:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id}


def _result_response(result: Any, id: Any) -> Response:
    return {"jsonrpc": "2.0", "result": result, "id": id}


def bad_type(name: str, array_item: bool = False) -> MIError:
    """OpenSIPS's ``init_mi_param_error`` for a parameter of the wrong type."""
    what = "array item in parameter" if array_item else "parameter"
    return MIError.of(INVALID_PARAMS, f"Bad type for {what} '{name}'")
