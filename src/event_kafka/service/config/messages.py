"""Error messages: ``file:line: key.path: what is wrong`` (or where the value came from)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .fields import _shown
from .keylines import KeyLines
from .sources import Loc

_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    msg = str(err.get("msg", "invalid value"))
    for prefix in _PYDANTIC_PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = (
                part
                if re.fullmatch(r"[A-Za-z0-9_-]+", part)
                else json.dumps(_shown(part), ensure_ascii=False)
            )
            out += f".{text}" if out else text
    return out or "(top level)"


def _format(
    path: str,
    lines: KeyLines,
    problems: Iterable[tuple[Loc, str]],
    origin: Mapping[Loc, str] | None = None,
) -> str:
    out = []
    for loc, msg in problems:
        line = lines.line_of(loc)
        where = f"{path}:{line}" if line is not None else path
        source = next((v for k, v in (origin or {}).items() if tuple(loc[: len(k)]) == k), None)
        if source is not None:  # the value came from the environment / command line
            where = f"{path} (value from {source})"
        msg = msg.replace("\r", "\\r").replace("\n", "\\n")  # values echoed raw: one line
        out.append(f"{where}: {_dotted(loc)}: {msg}")
    return "\n".join(out)
