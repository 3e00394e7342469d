"""The Call-ID of a SIP message: the Kafka record key of ``key=callid`` event sockets.

With ``key=callid`` the record key is the Call-ID of the SIP message the event was raised for;
no SIP message, no key (spec §5.4, §9 item 4). The Event Interface takes that message as
``sip_msg`` in one of three forms, all handled by :func:`key_for`:

* ``None``: no SIP context, no key;
* raw SIP text (``str``) or wire bytes (``bytes``): the Call-ID header is extracted with
  :func:`callid_of`;
* a :class:`CallId`: a Call-ID the caller already has (for example from a dialog), used as is.

Only the start line and the header lines are looked at; the body is never scanned.
"""

from __future__ import annotations

import re

from .errors import EventKafkaError

__all__ = ["CallId", "SipMessageError", "callid_of", "key_for"]


class SipMessageError(EventKafkaError, ValueError):
    """The SIP message (or the Call-ID in it) is malformed."""


class CallId(str):
    """A Call-ID the caller already has, as opposed to a raw SIP message.

    Example::

        >>> key_for(CallId("a84b4c76e66710@pc33.atlanta.com"))
        b'a84b4c76e66710@pc33.atlanta.com'

    Surrounding SP/HTAB is stripped. An empty Call-ID means "no key". Control characters,
    other non-printable characters and lone surrogates raise :class:`SipMessageError`, so
    the value always encodes to UTF-8.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> CallId:
        if not isinstance(value, str):
            raise TypeError(f"Call-ID must be str, not {type(value).__name__}")
        value = value.strip(" \t")
        _check_callid(value)
        return super().__new__(cls, value)


# Start line (RFC 3261 §7.1, §7.2): `Method SP Request-URI SP SIP-Version` or
# `SIP-Version SP Status-Code SP Reason-Phrase`. The version is case-insensitive; CRLFs before
# the start line are ignored as RFC 3261 §7.5 asks of stream transports. Explicit [Ss] classes
# instead of IGNORECASE: faster in sre, and ASCII-only (in str patterns IGNORECASE would let
# U+0130/U+0131 match "i").
_START = r"""
    (?:\r?\n)*
    (?: [!%'*+\--.0-9A-Z_`a-z~]+ \x20 [^\x00-\x20]+ \x20 [Ss][Ii][Pp]/2\.0
      | [Ss][Ii][Pp]/2\.0 \x20 [0-9]{3} \x20 [^\r\n]*
    )
    \r?(?:\n|\Z)
"""
# From the LF ending a line: either a Call-ID header (full or compact form `i`, names are
# case-insensitive, SP/HTAB allowed before the colon) with its continuation lines, or the empty
# line ending the header section (or the end of the data), whichever comes first: so a
# `Call-ID:` line in the body is never reached. The leading literal LF lets sre jump from line
# to line instead of trying every position.
_HEADER = r"""
    \n (?:
        (?: [Cc][Aa][Ll][Ll]-[Ii][Dd] | [Ii] ) [\x20\t]* : ( [^\n]* (?: \n [\x20\t] [^\n]* )* )
      | \r? (?:\n|\Z)
    )
"""
_START_S = re.compile(_START, re.VERBOSE)
_START_B = re.compile(_START.encode(), re.VERBOSE)
_HEADER_S = re.compile(_HEADER, re.VERBOSE)
_HEADER_B = re.compile(_HEADER.encode(), re.VERBOSE)


def _unfold(value: str) -> str:
    """RFC 3261 §7.3.1: each line fold, with the whitespace around it, becomes a single SP.

    ``value`` is a header value whose every LF starts a continuation line (SP/HTAB follows).
    String operations, not a regex: ``[ \t]*\r?\n[ \t]+`` retried a long run of spaces from
    each of its positions (64 KiB of spaces took 34 s).
    """
    lines = value.split("\n")
    for i in range(len(lines) - 1):
        line = lines[i]
        if line.endswith("\r"):
            line = line[:-1]
        lines[i] = line.rstrip(" \t")
    for i in range(1, len(lines)):
        lines[i] = lines[i].lstrip(" \t")
    return " ".join(lines)


def callid_of(sip_msg: str | bytes) -> str | None:
    """Return the Call-ID of a raw SIP message, or ``None`` if it has none.

    Example::

        >>> callid_of("BYE sip:bob@biloxi.com SIP/2.0\\r\\ni: a84b4c76e66710\\r\\n\\r\\n")
        'a84b4c76e66710'

    The first line must be a SIP request line or status line. Header names are
    case-insensitive and the compact form ``i`` is understood; folded lines are joined with a
    single space; CRLF and bare LF line endings are both accepted; surrounding whitespace is
    stripped; the first Call-ID header wins. A message without a Call-ID header, or with an
    empty one, gives ``None``. A :class:`CallId` is returned unchanged (as ``str``).

    Raises:
        SipMessageError: the first line is not a SIP start line (this includes empty input),
            or the Call-ID is not valid UTF-8 or contains control/non-printable characters.
        TypeError: ``sip_msg`` is neither ``str`` nor ``bytes``.
    """
    if type(sip_msg) is str or (isinstance(sip_msg, str) and not isinstance(sip_msg, CallId)):
        start = _START_S.match(sip_msg)
        if start is None:
            raise SipMessageError(f"not a SIP request or status line: {_first_line(sip_msg)}")
        m = _HEADER_S.search(sip_msg, start.end() - 1)
        if m is None:
            return None
        value: str | None = m.group(1)
    elif isinstance(sip_msg, bytes | bytearray):
        start_b = _START_B.match(sip_msg)
        if start_b is None:
            raise SipMessageError(f"not a SIP request or status line: {_first_line(sip_msg)}")
        mb = _HEADER_B.search(sip_msg, start_b.end() - 1)
        if mb is None:
            return None
        raw: bytes | None = mb.group(1)
        try:
            value = None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SipMessageError("the Call-ID is not valid UTF-8") from None
    elif isinstance(sip_msg, CallId):
        return str.__str__(sip_msg) or None
    else:
        raise TypeError(f"sip_msg must be str or bytes, not {type(sip_msg).__name__}")
    if value is None:  # the header section ended first
        return None

    if "\n" in value:
        value = _unfold(value)
    if value[-1:] == "\r":  # the CR of the CRLF ending the header line
        value = value[:-1]
    value = value.strip(" \t")
    if not value:
        return None
    if not value.isprintable():
        _check_callid(value)  # raises unless the culprit is an HTAB
    return value


def key_for(sip_msg: str | bytes | CallId | None) -> bytes | None:
    """Return the Kafka record key for ``key=callid``: the Call-ID as UTF-8, or ``None``.

    Example::

        >>> key_for(None) is None
        True
        >>> key_for(b"SIP/2.0 200 OK\\r\\nCall-ID: 8a1d@10.0.0.1\\r\\n\\r\\n")
        b'8a1d@10.0.0.1'
        >>> key_for(CallId("8a1d@10.0.0.1"))
        b'8a1d@10.0.0.1'

    ``None`` means no SIP context: no key. A :class:`CallId` is used as is; any other
    ``str``/``bytes`` is a raw SIP message parsed with :func:`callid_of` (same errors).
    """
    if sip_msg is None:
        return None
    if type(sip_msg) is CallId:
        return sip_msg.encode() or None
    callid = callid_of(sip_msg)
    return None if callid is None else callid.encode()


def _check_callid(value: str) -> None:
    # RFC 3261's callid has no whitespace at all, but SP/HTAB (e.g. from folding) are kept
    # rather than refused; control characters, other non-printables and surrogates (text that
    # can't be UTF-8) are refused so the key is always clean text.
    if not value.isprintable() and not value.replace("\t", " ").isprintable():
        raise SipMessageError(f"the Call-ID contains non-printable characters: {value!r:.80}")


def _first_line(msg: str | bytes | bytearray) -> str:
    if not msg:
        return "empty message"
    lines = msg[:100].splitlines()  # bounded: the input may be large garbage
    return repr(lines[0] if lines else msg[:100])
