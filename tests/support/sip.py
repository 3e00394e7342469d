"""SIP messages the tests send: RFC 3261's example INVITE (Alice to Bob), a MESSAGE, an
OPTIONS ping; and the UDP exchanges that send them to a SIP server under test."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterable

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


def sip_message(port: int, call_id: str, body: str, headers: str = "") -> bytes:
    """A SIP MESSAGE request to ``127.0.0.1:port`` (the body as UTF-8)."""
    raw = body.encode()
    tag = uuid.uuid4().hex[:8]
    return (
        f"MESSAGE sip:parity@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK{tag}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:tester@127.0.0.1>;tag={tag}\r\n"
        f"To: <sip:parity@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        f"{headers}"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw


def send_sip(port: int, requests: Iterable[bytes], timeout: float = 10.0) -> list[bytes]:
    """Send raw SIP requests over UDP one by one; return each reply's first line."""
    firsts: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        for req in requests:
            s.sendto(req, ("127.0.0.1", port))
            firsts.append(s.recv(65535).split(b"\r\n", 1)[0])
    return firsts


def sip_options(port: int, user: str, timeout: float = 5.0) -> str:
    """Send one OPTIONS to 127.0.0.1:port and return the response text (raises on timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        callid = f"{uuid.uuid4().hex}@127.0.0.1"
        msg = (
            f"OPTIONS sip:{user}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}\r\n"
            f"From: <sip:pytest@127.0.0.1:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{user}@127.0.0.1:{port}>\r\n"
            f"Call-ID: {callid}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.settimeout(1.0)
        deadline = time.monotonic() + timeout
        while True:
            s.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                while True:
                    data, _ = s.recvfrom(65535)
                    text = data.decode("utf-8", "replace")
                    if f"Call-ID: {callid}" in text and not text.startswith("SIP/2.0 1"):
                        return text
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                # retransmit, as a UAC would
