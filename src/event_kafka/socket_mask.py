"""Socket text as it may be shown in an error or a log line: secret values masked (in raw,
possibly malformed input, in linear time) and control characters escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .properties import MASK, Scope, is_sensitive, property_info
from .properties.secrets import _SENSITIVE_WORDS

_SCOPES: dict[str, Scope] = {"g.": "global", "t.": "topic"}


def _printable(text: str) -> str:
    """``text`` as is when printable, else with its control characters escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def mask_secrets(text: str) -> str:
    """Any user text (a socket, a broker_id, a value pasted in the wrong place) as it may be
    shown in an error or a log line: secret-looking ``name=value`` values hidden, and after a
    ``?`` every value that is not a known harmless property. Linear time.

    >>> mask_secrets("[k1]h:9092/t?g.sasl.password=hunter2&t.acks=1")
    '[k1]h:9092/t?g.sasl.password=*****&t.acks=1'
    """
    return _mask_glued(_masked(text, 0))


# Where a name ends when it is quoted in a message or written in a socket.
_TOKEN_END = frozenset("=&?'\" ,;()[]\t\r\n")


def _mask_glued(text: str) -> str:
    """Hide what is glued to a secret-looking word where no ``=`` separates them: a missing
    ``=`` (``g.sasl.passwordhunter2``) or a wrong separator (``g.sasl.password:hunter2``)
    turns the secret into part of a "property name" that errors quote.

    A token that is a catalogued property (``sasl.oauthbearer.assertion.private.key.pem``) is
    kept. Linear: each hit scans its token once and later hits inside it are skipped.
    """
    lowered = text.lower()
    hits = sorted((i, i + len(word)) for word in _SENSITIVE_WORDS for i in _find_all(lowered, word))
    out: list[str] = []
    done = 0  # text[:done] is copied to out (or masked)
    skip = 0  # hits before this are inside a token already judged
    for start, word_end in hits:
        if start < skip:
            continue
        end = word_end
        while end < len(text) and text[end] not in _TOKEN_END:
            end += 1
        skip = end
        if end == word_end:
            continue  # the word ends the name: what follows is a separator
        first = start
        while first > done and text[first - 1] not in _TOKEN_END:
            first -= 1
        token = text[first:end]
        bare = token[2:] if token[:2] in _SCOPES else token
        if any(property_info(scope, bare) is not None for scope in ("global", "topic")):
            continue
        out.append(text[done:word_end])
        out.append(MASK)
        done = end
    out.append(text[done:])
    return "".join(out)


def _find_all(text: str, word: str) -> Iterator[int]:
    i = text.find(word)
    while i >= 0:
        yield i
        i = text.find(word, i + len(word))


def _starts_pair(chunk: str) -> bool:
    """Whether an ``&``-separated chunk starts a new property (``g.x=``, ``t.x=``, ``key=``)."""
    return chunk.startswith("key=") or (chunk[:2] in _SCOPES and "=" in chunk)


def _masked(text: str, body: int) -> str:
    """``text`` with property values hidden unless known to be harmless.

    Works on raw, possibly malformed input, in one pass (it runs on every rejected input, so
    it must stay linear whatever the input). A value is shown only for ``key`` and for
    catalogued, non-sensitive ``g.``/``t.`` properties: an unknown name may be a misspelt
    password. A masked value swallows following ``&`` chunks that do not start a new pair, in
    case the secret itself contained ``&``.
    """
    question = text.find("?", body)
    if question < 0:
        return _mask_secret_pairs(text)
    out: list[str] = []
    swallowing = False
    for chunk in text[question + 1 :].split("&"):
        if swallowing and not _starts_pair(chunk):
            if not chunk:
                out.append("")  # keep a stray '&' visible: the error may be about it
            continue
        name, eq, value = chunk.partition("=")
        if not eq and chunk and not _name_is_shown(chunk):
            # No '=': a secret glued to a cut name (g.sasl.passhunter2) shows as the name.
            swallowing = False
            out.append(MASK)
            continue
        swallowing = bool(eq) and not _value_is_shown(name, value)
        out.append(f"{name}={MASK}" if swallowing else chunk)
    return _mask_secret_pairs(text[: question + 1] + "&".join(out))


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_VALUE_END = re.compile(r"[&?]")  # one character class: a search never backtracks


def _mask_secret_pairs(text: str) -> str:
    """Hide the value of every secret-looking ``name=value`` anywhere in ``text``: before any
    ``?``, or inside another value. The value runs to the next ``&`` or ``?``.

    Linear: each ``=`` is visited once, the name before it is scanned back only to the
    previous ``=`` or masked value, and a masked value is skipped, never rescanned.
    """
    out: list[str] = []
    done = 0  # text[:done] is settled (copied to out)
    eq = text.find("=")
    while eq >= 0:
        start = eq
        while start > done and text[start - 1] in _NAME_CHARS:
            start -= 1
        name = text[start:eq].lower()
        if not any(word in name for word in _SENSITIVE_WORDS):
            eq = text.find("=", eq + 1)
            continue
        end_match = _VALUE_END.search(text, eq + 1)
        end = end_match.start() if end_match else len(text)
        out.append(text[done : eq + 1])
        out.append(MASK)
        done = end
        eq = text.find("=", end)
    out.append(text[done:])
    return "".join(out)


def _name_is_shown(name: str) -> bool:
    """A bare name after the ``?`` is shown only when it is ``key`` or catalogued."""
    if name == "key":
        return True
    return name[:2] in _SCOPES and not is_sensitive(name) and _is_known(name[2:])


def _value_is_shown(name: str, value: str) -> bool:
    if "=" in value:  # not a value (none holds '='): maybe a secret pair glued to it
        return False
    if name == "key":  # shown only as the grammar knows it; anything else may hide a secret
        if value == "callid":
            return True
        param = value.removeprefix("param:")
        return param != value and bool(param) and all(c in _NAME_CHARS for c in param)
    return _name_is_shown(name)


def _is_known(name: str) -> bool:
    """Whether librdkafka knows ``name`` in any scope (also as ``topic.<name>``)."""
    bare = name.removeprefix("topic.")
    try:
        return any(property_info(s, n) is not None for s in _SCOPES.values() for n in (name, bare))
    except Exception:  # never let error reporting fail; hiding is the safe side
        return False
