"""SIP messages the tests send (RFC 3261's example INVITE, Alice to Bob)."""

from __future__ import annotations

CALL_ID = "a84b4c76e66710@pc33.atlanta.com"


def invite(call_id: str = CALL_ID, body: str = "", content_type: str | None = None) -> str:
    """The RFC 3261 §24.2 INVITE with ``call_id`` and ``body`` (Content-Length follows it)."""
    ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
    return (
        "INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.com>\r\n"
        "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:alice@pc33.atlanta.com>\r\n"
        f"{ctype}"
        f"Content-Length: {len(body.encode())}\r\n"
        "\r\n"
        f"{body}"
    )


INVITE = invite()
