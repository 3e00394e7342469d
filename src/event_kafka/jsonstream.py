"""Splitting a byte stream of concatenated JSON objects (event_stream's wire format).

Used by the ingest TCP listener (notifications from OpenSIPS) and by the ``tcp:`` transport
(replies from a reliable-mode receiver). Linear time: each byte is scanned once, however the
stream is cut into segments.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DEPTH", "StreamError", "StreamSplitter"]

MAX_DEPTH = 64  # OpenSIPS payloads nest 2 deep; this only stops pathological input early


class StreamError(ValueError):
    """The stream cannot be split any further (it must be closed).

    ``objects`` holds the objects the failing :meth:`StreamSplitter.feed` call completed
    before the problem, still to be handled."""

    def __init__(self, reason: str, objects: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.objects = objects or []


_IN_STRING = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'["{}\[\]]')
_NOT_WS = re.compile(rb"[^ \t\r\n]")


class StreamSplitter:
    """Splits concatenated JSON objects (event_stream's wire format) out of a byte stream.

    It only tracks strings (with escapes) and ``{}``/``[]`` nesting, so it finds where each
    top-level object ends without decoding it; decoding is :func:`parse_notification`'s job.
    Memory is bounded: a pending object larger than ``max_size`` bytes raises
    :class:`StreamError`, as does anything between objects other than whitespace and ``{``.

    >>> s = StreamSplitter()
    >>> s.feed(b'{"a":"}"}{"b"'), s.feed(b':[1]} ')
    ([b'{"a":"}"}'], [b'{"b":[1]}'])
    """

    __slots__ = ("_buf", "_depth", "_in_string", "_pos", "_start", "max_depth", "max_size")

    def __init__(self, max_size: int = 1024 * 1024, max_depth: int = MAX_DEPTH) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = 0  # start of the pending object
        self._depth = 0
        self._in_string = False

    @property
    def pending(self) -> int:
        """Bytes buffered for an incomplete object."""
        return len(self._buf) - self._start if self._depth else 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the objects it completed, in order.

        Raises:
            StreamError: the stream is out of sync or an object is too large; the splitter
                must not be used again. Its ``objects`` are those completed before that.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = self._pos
        end = len(buf)
        while True:
            if self._depth == 0:
                m = _NOT_WS.search(buf, pos)
                if m is None:
                    buf.clear()
                    self._pos = self._start = 0
                    return out
                if buf[m.start()] != 0x7B:  # "{"
                    got = bytes(buf[m.start() : m.start() + 1])
                    raise StreamError(f"expected '{{' to start a notification, got {got!r}", out)
                self._start = m.start()
                pos = m.start() + 1
                self._depth = 1
            while self._depth and pos < end:
                if self._in_string:
                    m = _IN_STRING.search(buf, pos)
                    if m is None:
                        pos = end
                        break
                    if buf[m.start()] == 0x5C:  # backslash: skip the escaped byte too
                        pos = m.start() + 2
                    else:
                        self._in_string = False
                        pos = m.end()
                    continue
                m = _STRUCTURE.search(buf, pos)
                if m is None:
                    pos = end
                    break
                ch = buf[m.start()]
                pos = m.end()
                if ch == 0x22:
                    self._in_string = True
                elif ch in (0x7B, 0x5B):
                    self._depth += 1
                    if self._depth > self.max_depth:
                        raise StreamError(f"notification nested deeper than {self.max_depth}", out)
                else:
                    self._depth -= 1
            if self._depth:
                if end - self._start > self.max_size:
                    raise StreamError(f"notification larger than {self.max_size} bytes", out)
                # Keep only the pending object.
                del buf[: self._start]
                self._pos = pos - self._start
                self._start = 0
                return out
            out.append(bytes(buf[self._start : pos]))
