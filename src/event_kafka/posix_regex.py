"""A POSIX extended regular expression searched in one short name, in bounded time.

OpenSIPS matches ``modparam``'s module argument as a case-insensitive POSIX ERE
(``regcomp(REG_EXTENDED|REG_ICASE)``) searched in each module's name; ``event-kafka migrate``
must decide the same for a script it did not write. Python's ``re`` backtracks: a pattern such
as ``((((a*)*)*)*)*X`` or twenty ``(.*)`` groups takes minutes even against an 11-character
name, and deep nesting raises ``RecursionError``. Here the pattern is parsed once (linear) and
evaluated as sets of positions in the name, each (node, start) computed once: the time is
``len(pattern) x len(name)^2``, whatever the pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ere_search"]

MAX_DEPTH = 64
"""Groups nested deeper are refused (no one writes them; the parser recurses per level)."""
MAX_REPEAT = 255
"""RE_DUP_MAX as POSIX requires at least: a larger ``{m,n}`` bound is refused."""

_CLASSES: dict[str, Callable[[str], bool]] = {
    "alnum": str.isalnum,
    "alpha": str.isalpha,
    "digit": lambda c: c in "0123456789",
    "lower": str.islower,
    "upper": str.isupper,
    "space": lambda c: c in " \t\n\r\f\v",
    "blank": lambda c: c in " \t",
    "punct": lambda c: c.isascii() and c.isprintable() and not c.isalnum() and c != " ",
    "xdigit": lambda c: c in "0123456789abcdefABCDEF",
    "cntrl": lambda c: ord(c) < 32 or ord(c) == 127,
    "print": str.isprintable,
    "graph": lambda c: c.isprintable() and c != " ",
}
_WORD: Callable[[str], bool] = lambda c: c.isalnum() or c == "_"  # noqa: E731
_SPACE = _CLASSES["space"]


@dataclass(eq=False)
class _Node:
    kind: str  # "set" (one character), "bol", "eol", "seq", "alt", "rep"
    test: Callable[[str], bool] | None = None
    children: list[_Node] = field(default_factory=list)
    low: int = 0
    high: int | None = None  # None: unbounded


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"{what} at position {self.i}")

    def alt(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self.error(f"groups nested deeper than {MAX_DEPTH}")
        branches = [self.seq(depth)]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.seq(depth))
        return branches[0] if len(branches) == 1 else _Node("alt", children=branches)

    def seq(self, depth: int) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            atom = self.atom(depth)
            while self.i < len(self.p) and self.p[self.i] in "*+?{":
                atom = self.quantify(atom)
            items.append(atom)
        return _Node("seq", children=items)

    def quantify(self, atom: _Node) -> _Node:
        c = self.p[self.i]
        self.i += 1
        if c != "{":
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            return _Node("rep", children=[atom], low=low, high=high)
        end = self.p.find("}", self.i)
        if end < 0:
            raise self.error("unterminated {")
        body, self.i = self.p[self.i : end], end + 1
        lo_text, comma, hi_text = body.partition(",")
        if not lo_text.isdigit() or not (hi_text == "" or hi_text.isdigit()):
            raise self.error(f"invalid repetition {{{body}}}")
        low = int(lo_text)
        high = None if comma and not hi_text else int(hi_text) if comma else low
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise self.error(f"invalid repetition {{{body}}}")
        return _Node("rep", children=[atom], low=low, high=high)

    def atom(self, depth: int) -> _Node:
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            inner = self.alt(depth + 1)
            if self.i >= len(self.p):
                raise self.error("unbalanced (")
            self.i += 1
            return inner
        if c in "*+?{":
            raise self.error(f"nothing to repeat before {c!r}")
        if c == ".":
            return _Node("set", test=lambda ch: ch != "\n")
        if c == "^":
            return _Node("bol")
        if c == "$":
            return _Node("eol")
        if c == "[":
            return _Node("set", test=self.bracket())
        if c == "\\":
            return _Node("set", test=self.escape())
        return _Node("set", test=c.__eq__)

    def escape(self) -> Callable[[str], bool]:
        if self.i >= len(self.p):
            raise self.error("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        gnu: dict[str, Callable[[str], bool]] = {
            "w": _WORD,
            "W": lambda ch: not _WORD(ch),
            "s": _SPACE,
            "S": lambda ch: not _SPACE(ch),
        }
        if c in gnu:
            return gnu[c]
        if c.isalnum():  # back-references, \b, \< ...: not evaluated here
            raise self.error(f"unsupported escape \\{c}")
        return c.__eq__

    def bracket(self) -> Callable[[str], bool]:
        negate = self.i < len(self.p) and self.p[self.i] == "^"
        self.i += negate
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        tests: list[Callable[[str], bool]] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.error("unterminated [")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if self.p.startswith("[:", self.i):
                end = self.p.find(":]", self.i + 2)
                name = self.p[self.i + 2 : end] if end >= 0 else ""
                if name not in _CLASSES:
                    raise self.error("invalid character class")
                tests.append(_CLASSES[name])
                self.i = end + 2
                continue
            if self.p.startswith(("[=", "[."), self.i):
                raise self.error("collating elements are not supported")
            self.i += 1
            if self.p.startswith("-", self.i) and not self.p.startswith("-]", self.i):
                if self.i + 1 >= len(self.p):
                    raise self.error("unterminated [")
                hi = self.p[self.i + 1]
                if hi < c:
                    raise self.error("invalid range")
                ranges.append((c, hi))
                self.i += 2
            else:
                chars.add(c)

        def test(ch: str) -> bool:
            hit = (
                ch in chars or any(lo <= ch <= hi for lo, hi in ranges) or any(t(ch) for t in tests)
            )
            return hit != negate

        return test


def ere_search(pattern: str, name: str) -> bool:
    """Whether the POSIX ERE ``pattern`` matches somewhere in ``name``, ignoring case.

    Raises:
        ValueError: an invalid pattern, or a feature not evaluated here (back-references,
            collating elements, GNU anchors such as ``\\b``), naming its position.
    """
    parser = _Parser(pattern)
    tree = parser.alt(0)
    if parser.i < len(pattern):
        raise parser.error("unbalanced )")
    text = name.lower()
    n = len(text)
    # Position sets are bit masks: bit i = "at position i of the name" (n + 1 positions).
    matches: dict[int, int] = {}  # per character node: the positions whose character fits
    memo: dict[tuple[int, int], int] = {}  # (nested repetition, start) -> ends
    nested: dict[int, bool] = {}

    def fits(node: _Node) -> int:
        got = matches.get(id(node))
        if got is None:
            test = node.test
            assert test is not None
            got = sum(
                1 << i
                for i, ch in enumerate(text)
                if test(ch) or test(ch.upper()) or test(ch.lower())
            )
            matches[id(node)] = got
        return got

    def has_rep(node: _Node) -> bool:
        got = nested.get(id(node))
        if got is None:
            got = node.kind == "rep" or any(has_rep(c) for c in node.children)
            nested[id(node)] = got
        return got

    def spread(node: _Node, starts: int) -> int:
        """Every end of ``node`` from any of ``starts``."""
        if node.kind == "set":
            return (starts & fits(node)) << 1
        if node.kind == "bol":
            return starts & 1
        if node.kind == "eol":
            return starts & (1 << n)
        if node.kind == "seq":
            for child in node.children:
                if not starts:
                    break
                starts = spread(child, starts)
            return starts
        if node.kind == "alt":
            out = 0
            for child in node.children:
                out |= spread(child, starts)
            return out
        if not has_rep(node.children[0]):
            return repeat(node, starts)  # a flat body is cheap: all starts at once
        out = 0
        for i in range(n + 1):  # a nested one: each start once, whatever the nesting
            if starts >> i & 1:
                key = (id(node), i)
                if key not in memo:
                    memo[key] = repeat(node, 1 << i)
                out |= memo[key]
        return out

    def repeat(node: _Node, starts: int) -> int:
        body = node.children[0]
        for _ in range(node.low):
            starts = spread(body, starts)
            if not starts:
                return 0
        # Further passes add only new positions: one reached in fewer passes can go at least
        # as far, so a position is expanded once (at most n + 1 passes).
        reached = frontier = starts
        passes = node.low
        while frontier and (node.high is None or passes < node.high):
            frontier = spread(body, frontier) & ~reached
            reached |= frontier
            passes += 1
        return reached

    return spread(tree, (1 << (n + 1)) - 1) != 0
