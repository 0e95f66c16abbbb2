"""The client side of HTTP/1.1 framing (RFC 9112), for one request at a time on a connection.

msgstatus sends small GET requests and reads small responses, hundreds a second: h11 spent
~100 µs per exchange on its general state machine (both roles, every event type, pipelining),
about a tenth of a status lookup's CPU. This codec does only what a client of one request at a
time needs: it writes a request in one piece, and reads the response head, then its body framed
by ``Transfer-Encoding: chunked``, ``Content-Length`` or the end of the connection, skipping
``1xx`` interim responses. It refuses what h11 refuses where that matters for safety (control
characters in what is sent, conflicting or malformed framing, oversized heads, a connection that
ends inside a message); ``tests/transports/test_http11.py`` checks it against h11 itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "MAX_HEAD",
    "NEED_DATA",
    "Head",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ResponseReader",
    "request_bytes",
]

#: The longest response head (status line and headers, or a chunk's size line and trailers) read;
#: h11's default limit.
MAX_HEAD = 16 * 1024

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# A field value sent: no CR, LF or NUL (the characters that would end or split a header line).
_UNSAFE_VALUE = re.compile(rb"[\r\n\x00]")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: [^\r\n]*)?")
_HEADER_LINE = re.compile(rb"([^:\s]+):[ \t]*(.*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
# A control character (but HTAB) in a field value received.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: What :meth:`ResponseReader.head` and :meth:`~ResponseReader.body` give when they need bytes.
NEED_DATA = _NeedData()


class LocalProtocolError(Exception):
    """The request cannot be sent as HTTP/1.1 (the message never quotes the offending value)."""


class RemoteProtocolError(Exception):
    """The server broke HTTP/1.1; the message says how (never quoting a header value)."""


def request_bytes(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The whole request: request line, headers, blank line, body. A body goes with the
    ``Content-Length`` given, or one is added; ``Transfer-Encoding`` is refused (every body is
    whole here). Raises LocalProtocolError for a method, target, name or value HTTP does not
    allow, or a ``Content-Length`` that is not the body's."""
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise LocalProtocolError("the request line has characters HTTP does not allow")
    lines = [method + b" " + target + b" HTTP/1.1"]
    length: bytes | None = None
    hosts = 0
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _UNSAFE_VALUE.search(value) is not None:
            raise LocalProtocolError("a header name or value has characters HTTP does not allow")
        lowered = name.lower()
        if lowered == b"content-length":
            if length is not None and value.strip() != length:
                raise LocalProtocolError("the request has conflicting Content-Length headers")
            length = value.strip()
        elif lowered == b"transfer-encoding":
            raise LocalProtocolError("a request body is sent whole, not with Transfer-Encoding")
        elif lowered == b"host":
            hosts += 1
        lines.append(name + b": " + value)
    if hosts != 1:
        raise LocalProtocolError("an HTTP/1.1 request has exactly one Host header")
    if length is None:
        if body:
            lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    elif length != str(len(body)).encode("ascii"):
        raise LocalProtocolError("the request's Content-Length is not the length of its body")
    lines.append(b"")
    lines.append(body)
    return b"\r\n".join(lines)


class Head:
    """A final response's status line and headers (names lower-cased, as h11 gives them)."""

    __slots__ = ("headers", "http_version", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], http_version: bytes
    ) -> None:
        self.status = status
        self.headers = headers
        self.http_version = http_version


# What the reader is doing.
_HEAD, _LENGTH, _CHUNK_HEAD, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseReader:
    """Reads the response to each request sent, one after another: :meth:`expect` it, :meth:`feed`
    the bytes received (``b""`` at the end of the connection), call :meth:`head` until it gives
    the head, then :meth:`body` until it gives None (the end of the body). Both give
    :data:`NEED_DATA` when they need more bytes. Raises RemoteProtocolError when the server
    broke HTTP/1.1, the connection's end inside a response included."""

    __slots__ = ("_buffer", "_closed", "_head_request", "_left", "_state", "keep_alive")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self._state = _DONE
        self._left = 0
        self._head_request = False
        #: Whether the connection may carry another request once this response is read.
        self.keep_alive = True

    def reusable(self) -> bool:
        """The connection may carry the next request: the response is read, the server keeps the
        connection alive, and nothing arrived that no request asked for."""
        return self._state == _DONE and self.keep_alive and not self._buffer and not self._closed

    def expect(self, method: bytes) -> None:
        """A request was sent: read its response next."""
        if not self.reusable():
            raise LocalProtocolError("this connection cannot carry another request")
        self._head_request = method == b"HEAD"
        self._state = _HEAD

    def feed(self, data: bytes) -> None:
        if not data:
            self._closed = True
        else:
            self._buffer += data

    def _take_head(self) -> list[bytes] | None:
        """The lines of a head, up to its blank line, taken from the buffer; None if the blank
        line has not arrived. Lines may end with LF alone (RFC 9112 §2.2; h11 reads them)."""
        buffer = self._buffer
        crlf, lf = buffer.find(b"\n\r\n"), buffer.find(b"\n\n")
        if crlf < 0 and lf < 0:
            if len(buffer) > MAX_HEAD:
                raise RemoteProtocolError(f"the response head is over {MAX_HEAD} bytes")
            return None
        end, size = (crlf, 3) if lf < 0 or (0 <= crlf < lf) else (lf, 2)
        if end > MAX_HEAD:
            raise RemoteProtocolError(f"the response head is over {MAX_HEAD} bytes")
        text = bytes(buffer[:end])
        del buffer[: end + size]
        return [line[:-1] if line.endswith(b"\r") else line for line in text.split(b"\n")]

    def head(self) -> Head | _NeedData:
        """The head of the final response, or NEED_DATA."""
        assert self._state == _HEAD
        while True:
            lines = self._take_head()
            if lines is None:
                if self._closed:
                    raise RemoteProtocolError(
                        "the connection ended inside a response head"
                        if self._buffer
                        else "the connection ended before a response"
                    )
                return NEED_DATA
            head = _parse_head(lines)
            if 100 <= head.status < 200:
                if head.status == 101:
                    raise RemoteProtocolError("the server switched protocols, unasked")
                continue  # an interim response: the final one follows
            self._frame(head)
            return head

    def _frame(self, head: Head) -> None:
        """Set the body's framing and whether the connection lives on (RFC 9112 §6.3, §9.3)."""
        connection = b",".join(value for name, value in head.headers if name == b"connection")
        if head.http_version != b"1.1" or b"close" in {
            token.strip().lower() for token in connection.split(b",")
        }:
            self.keep_alive = False
        codings = [value for name, value in head.headers if name == b"transfer-encoding"]
        lengths = [value for name, value in head.headers if name == b"content-length"]
        if self._head_request or head.status in (204, 304):
            self._state = _DONE
            return
        if codings:
            if len(codings) > 1 or codings[0].strip().lower() != b"chunked":
                raise RemoteProtocolError("the response has a transfer coding other than chunked")
            if lengths:
                # Both framings: chunked wins, and the connection is not trusted again.
                self.keep_alive = False
            self._state = _CHUNK_HEAD
            return
        if lengths:
            values = {part.strip() for value in lengths for part in value.split(b",")}
            value = values.pop()
            if values or not value.isdigit() or len(value) > 18:
                raise RemoteProtocolError("the response's Content-Length is not one number")
            self._left = int(value)
            self._state = _LENGTH if self._left else _DONE
            return
        # Neither: the body runs to the end of the connection, which cannot carry another.
        self.keep_alive = False
        self._state = _UNTIL_CLOSE

    def body(self) -> bytes | _NeedData | None:
        """The next piece of the body; None at its end; NEED_DATA for more bytes."""
        buffer = self._buffer
        while True:
            state = self._state
            if state == _DONE:
                return None
            if state in (_LENGTH, _CHUNK_DATA):
                if buffer:
                    piece = bytes(buffer[: self._left])
                    del buffer[: len(piece)]
                    self._left -= len(piece)
                    if not self._left:
                        self._state = _DONE if state == _LENGTH else _CHUNK_END
                    return piece
                return self._more("the connection ended inside the response body")
            if state == _UNTIL_CLOSE:
                if buffer:
                    piece = bytes(buffer)
                    buffer.clear()
                    return piece
                if self._closed:
                    self._state = _DONE
                    continue
                return NEED_DATA
            # A size line (_CHUNK_HEAD), the CRLF after a chunk's data (_CHUNK_END), or a line
            # of the trailers (_TRAILERS, read and dropped up to a blank line).
            line = self._take_line()
            if line is None:
                return self._more("the connection ended inside a chunked body")
            if state == _CHUNK_END:
                if line:
                    raise RemoteProtocolError("a chunk does not end with CRLF")
                self._state = _CHUNK_HEAD
            elif state == _CHUNK_HEAD:
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    raise RemoteProtocolError("a chunk's size line is malformed")
                self._left = int(match.group(1), 16)
                self._state = _CHUNK_DATA if self._left else _TRAILERS
            elif not line:
                self._state = _DONE
            elif _HEADER_LINE.fullmatch(line) is None:
                raise RemoteProtocolError("a trailer line is malformed")

    def _take_line(self) -> bytes | None:
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end < 0 or end > MAX_HEAD:
            if len(buffer) > MAX_HEAD:
                raise RemoteProtocolError(f"a line of the chunked body is over {MAX_HEAD} bytes")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _more(self, ended: str) -> _NeedData:
        if self._closed:
            raise RemoteProtocolError(ended)
        return NEED_DATA


def _parse_head(lines: list[bytes]) -> Head:
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise RemoteProtocolError("the response does not start with an HTTP/1.x status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # obs-fold: a continuation of the previous value, read as one space (RFC 9112 §5.2).
            if not headers:
                raise RemoteProtocolError("the response head starts with a folded line")
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        field = _HEADER_LINE.fullmatch(line)
        if field is None:
            raise RemoteProtocolError("the response head has a malformed header line")
        name, value = field.group(1), field.group(2)
        if _TOKEN.fullmatch(name) is None or _CONTROL.search(value) is not None:
            raise RemoteProtocolError("the response head has a malformed header line")
        headers.append((name.lower(), value))
    return Head(int(match.group(2)), headers, match.group(1))
