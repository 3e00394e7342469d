"""The oracles every target applies: rejections that name something, no secret in any output."""

from __future__ import annotations

import re
from collections.abc import Iterable

from event_kafka.properties import is_sensitive


class FuzzFailure(AssertionError):
    """An oracle violation: the input found a bug."""


def _check(cond: object, what: str) -> None:
    if not cond:
        raise FuzzFailure(what)


# --------------------------------------------------------------------------------------------
# Shared helpers


def message_ok(msg: str, what: str, limit: int = 20_000) -> None:
    """A rejection message: a non-empty string that says something, of bounded length."""
    _check(isinstance(msg, str) and msg.strip(), f"{what}: empty error message")
    _check(len(msg) < limit, f"{what}: error message of {len(msg)} characters")


def sensitive_values(text: str) -> list[str]:
    """Values of ``name=value`` chunks with a sensitive name, distinctive enough to grep for
    (>= 6 characters, alphanumeric, written once in ``text``)."""
    query = text.partition("?")[2]
    out = []
    for chunk in query.split("&"):
        name, eq, value = chunk.partition("=")
        if (
            eq
            and is_sensitive(name)
            and len(value) >= 6
            and value.isascii()
            and value.isalnum()
            and text.count(value) == 1
        ):
            out.append(value)
    return out


_LOOSE_SECRET = re.compile(
    r"(?i)[A-Za-z0-9._-]*(?:password|secret|passphrase|private\.key)[A-Za-z0-9._-]*="
    r"([A-Za-z0-9]{6,})"
)


def loose_secrets(text: str, strict: Iterable[str]) -> list[str]:
    """Secret-looking ``...password=value`` anywhere in ``text`` (not only in a well-formed
    pair after the '?'), written once, that ``strict`` does not already hold."""
    known = set(strict)
    return [
        v
        for v in dict.fromkeys(_LOOSE_SECRET.findall(text))
        if v not in known and text.count(v) == 1
    ]


def check_secrets(what: str, out: str, strict: Iterable[str], loose: Iterable[str]) -> None:
    for secret in strict:
        _check(secret not in out, f"{what}: secret in error")
    for secret in loose:
        _check(secret not in out, f"{what}: secret outside a well-formed pair in error")
