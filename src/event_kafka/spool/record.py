"""One spooled record and its frame on disk.

Frame (little-endian)::

    magic   4s  b"\\xf5EK1"
    length  u32 length of the body
    crc     u32 zlib.crc32 of the body
    hcrc    u32 zlib.crc32 of the 12 bytes above
    body:   seq u64, ts_ms i64, flags u8, key_len u32, value_len u32, route_len u16,
            n_headers u16, key, value, route (UTF-8), then per header:
            name_len u16, value_len u32, name (UTF-8), value

The header has its own CRC so that a scan trusts a length only when the header is intact: a
candidate frame costs O(1) to reject, and a frame whose body is damaged is skipped whole, which
keeps a scan of a corrupt file linear. ``flags`` says which of key, value, headers and route
are present (None and empty differ).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["HEAD", "MAGIC", "SpoolRecord", "decode_body", "encode_frame"]

MAGIC = b"\xf5EK1"
HEAD = struct.Struct("<4sIII")
_HEAD12 = struct.Struct("<4sII")
_HCRC = struct.Struct("<I")
_BODY = struct.Struct("<QqBIIHH")
_HDR = struct.Struct("<HI")

_KEY, _VALUE, _HEADERS, _ROUTE = 1, 2, 4, 8
MAX_BODY = (1 << 32) - 1
_crc32 = zlib.crc32


@dataclass(slots=True)
class SpoolRecord:
    """A record as it was appended: the writer that spooled it and its place in that writer."""

    writer: str  # 16 hex chars, one writer per process per owner directory
    seq: int  # 1, 2, 3... per writer, in append order
    ts_ms: int  # wall time of the append (also the Kafka timestamp)
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    route: str | None  # report route name


def encode_frame(
    seq: int,
    ts_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    route: str | None,
) -> bytes:
    """The frame of one record, ready for one ``os.write``.

    Raises ValueError when a field does not fit its length field (route or header name over
    64 KiB, more than 65535 headers, a body over 4 GiB)."""
    flags = 0
    if key is None:
        key = b""
    else:
        flags = _KEY
    if value is None:
        value = b""
    else:
        flags |= _VALUE
    rb = b""
    if route is not None:
        flags |= _ROUTE
        rb = route.encode()
    hb = b""
    nh = 0
    if headers is not None:
        flags |= _HEADERS
        nh = len(headers)
        parts = []
        for name, hv in headers:
            nb = name.encode()
            parts.append(_HDR.pack(len(nb), len(hv)))
            parts.append(nb)
            parts.append(hv)
        hb = b"".join(parts)
    try:
        fixed = _BODY.pack(seq, ts_ms, flags, len(key), len(value), len(rb), nh)
    except struct.error:
        raise ValueError(
            f"record does not fit a spool frame: key {len(key)} B, value {len(value)} B, "
            f"route {len(rb)} B (max 65535), {nh} headers (max 65535)"
        ) from None
    body = b"".join((fixed, key, value, rb, hb))
    if len(body) > MAX_BODY:
        raise ValueError(f"record of {len(body)} B does not fit a spool frame (max 4 GiB)")
    head = _HEAD12.pack(MAGIC, len(body), _crc32(body))
    return b"".join((head, _HCRC.pack(_crc32(head)), body))


def body_seq(body: bytes) -> int:
    """The seq of a frame body (checked by CRC already)."""
    return int.from_bytes(body[:8], "little")


def body_ts(body: bytes) -> int:
    """The ts_ms of a frame body (checked by CRC already)."""
    return int.from_bytes(body[8:16], "little", signed=True)


def decode_body(writer: str, body: bytes) -> SpoolRecord | None:
    """The record of a body whose CRC matched; None if its inner lengths do not add up (a CRC
    collision on garbage: never raise on what is read from disk)."""
    if len(body) < _BODY.size:
        return None
    seq, ts_ms, flags, klen, vlen, rlen, nh = _BODY.unpack_from(body)
    pos = _BODY.size
    end = pos + klen + vlen + rlen
    if end > len(body):
        return None
    key = body[pos : pos + klen] if flags & _KEY else None
    pos += klen
    value = body[pos : pos + vlen] if flags & _VALUE else None
    pos += vlen
    try:
        route = body[pos : pos + rlen].decode() if flags & _ROUTE else None
        pos += rlen
        headers: list[tuple[str, bytes]] | None = None
        if flags & _HEADERS:
            headers = []
            for _ in range(nh):
                nlen, hlen = _HDR.unpack_from(body, pos)
                pos += _HDR.size
                if pos + nlen + hlen > len(body):
                    return None
                headers.append(
                    (body[pos : pos + nlen].decode(), body[pos + nlen : pos + nlen + hlen])
                )
                pos += nlen + hlen
    except (UnicodeDecodeError, struct.error):
        return None
    if pos != len(body):
        return None
    return SpoolRecord(writer, seq, ts_ms, key, value, headers, route)
