"""Key -> line: tomllib gives no positions, so scan the text for them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .sources import Loc

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_KEYVAL = re.compile(rf"^\s*({_DOTTED})\s*=\s*(.*)$")
_PART = re.compile(rf"\s*({_KEY})\s*(?:\.|$)")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for m in _PART.finditer(dotted):
        token = m.group(1)
        if token[0] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return tuple(parts)


class KeyLines:
    """Where each key, table and array element of a TOML text is (1-based line numbers).

    A best-effort scanner, not a TOML parser: it runs only on text tomllib accepted, and only
    to point at a line; anything it cannot place falls back to the enclosing table.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[Loc, int] = {}
        self._scan(text.splitlines())

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc`` or of its closest enclosing key that was found."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def _scan(self, lines: list[str]) -> None:
        table: Loc = ()
        array_index: dict[tuple[str, ...], int] = {}
        i = 0
        while i < len(lines):
            line = lines[i]
            lineno = i + 1
            i += 1
            if m := _ARRAY_TABLE.match(line):
                names = _split_key(m.group(1))
                array_index[names] = array_index.get(names, -1) + 1
                table = (*self._resolve(names, array_index), array_index[names])
                self.lines.setdefault(table, lineno)
                continue
            if m := _TABLE.match(line):
                table = self._resolve(_split_key(m.group(1)), array_index)
                self.lines.setdefault(table, lineno)
                continue
            m = _KEYVAL.match(line)
            if not m:
                continue
            loc = table + _split_key(m.group(1))
            self.lines.setdefault(loc, lineno)
            value = m.group(2)
            if value.startswith(('"""', "'''")):
                i = self._skip_multiline(lines, i, value)
            elif value.startswith("["):
                i = self._scan_array(lines, i - 1, m.start(2), loc)

    @staticmethod
    def _resolve(names: tuple[str, ...], array_index: dict[tuple[str, ...], int]) -> Loc:
        # [a.b] right after [[a]] means "b in the last element of a".
        out: list[str | int] = []
        for n in range(1, len(names) + 1):
            out.append(names[n - 1])
            if n < len(names) and names[:n] in array_index:
                out.append(array_index[names[:n]])
        return tuple(out)

    @staticmethod
    def _skip_multiline(lines: list[str], i: int, value: str) -> int:
        delim = value[:3]
        if value.count(delim) >= 2:
            return i
        while i < len(lines):
            i += 1
            if delim in lines[i - 1]:
                break
        return i

    def _scan_array(self, lines: list[str], row: int, col: int, loc: Loc) -> int:
        """Record the line of each top-level element of the array starting at lines[row][col];
        return the index of the line after it."""
        depth = 0
        index = 0
        expecting = True
        quote: str | None = None
        while row < len(lines):
            text = lines[row]
            while col < len(text):
                ch = text[col]
                if quote is not None:
                    if ch == "\\" and quote == '"':
                        col += 1
                    elif ch == quote:
                        quote = None
                elif ch == "#":
                    break
                elif ch in "\"'":
                    if depth == 1 and expecting:
                        self.lines.setdefault((*loc, index), row + 1)
                        expecting = False
                    quote = ch
                elif ch in "[{":
                    if depth == 1 and expecting:
                        self.lines.setdefault((*loc, index), row + 1)
                        expecting = False
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        return row + 1
                elif ch == "," and depth == 1:
                    index += 1
                    expecting = True
                elif not ch.isspace() and depth == 1 and expecting:
                    self.lines.setdefault((*loc, index), row + 1)
                    expecting = False
                col += 1
            row += 1
            col = 0
        return row
