"""A byte stream on asyncio's own transport and protocol, for the pool's connections on asyncio.

anyio's asyncio ``SocketStream`` pauses its transport after every ``receive()`` and resumes it
before the next one (two ``epoll_ctl`` calls per read), waits on an ``asyncio.Event`` and adds a
checkpoint to every ``send()``: three loop iterations per exchange instead of two.
This stream keeps the transport reading (data waits in a buffer; reading pauses only past
``_HIGH_WATER`` bytes), wakes one future per read and writes straight to the transport. It is an
anyio ``ByteStream`` raising anyio's exceptions (``EndOfStream``, ``BrokenResourceError``,
``ClosedResourceError``), so :mod:`._pool` treats it as any anyio stream. Cancellation is
asyncio's: anyio's cancel scopes cancel the task waiting on the future.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

__all__ = ["AsyncioStream", "connect"]

#: Bytes buffered before the transport stops reading (the pool reads a response as it comes).
_HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    __slots__ = ("buffer", "closed", "drained", "error", "transport", "waiter")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.closed = False  # the peer ended the stream, or the connection is lost
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport: the pool never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Expired(Exception):
    """A read's timer ran out (set on its waiter; never leaves this module)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class AsyncioStream(anyio.abc.ByteStream):
    """One connection's bytes, on asyncio's transport (plain TCP or its native TLS)."""

    __slots__ = ("_closed_here", "_loop", "_protocol", "_sock", "_transport")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, protocol: _Protocol
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = protocol
        self._sock = transport.get_extra_info("socket")
        self._closed_here = False

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock
        return {} if sock is None else {SocketAttribute.raw_socket: lambda: sock}

    def unusable(self) -> bool:
        """Closed here, closed or lost by the peer, or holding bytes nobody asked for: what the
        transport already read, which polling the socket can no longer see."""
        protocol = self._protocol
        return (
            self._closed_here
            or protocol.closed
            or bool(protocol.buffer)
            or self._transport.is_closing()
        )

    async def send(self, data: bytes) -> None:
        """Write ``data`` now (no checkpoint before it); wait only while the kernel's buffer
        and the transport's are full."""
        if self._closed_here:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._transport.write(data)
        while (drained := protocol.drained) is not None and not drained.cancelled():
            # A cancelled wait cancels the future itself; the pool closes such a connection.
            await drained
            if protocol.closed:
                raise anyio.BrokenResourceError

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """What has arrived (at most ``max_bytes``), waiting for it if nothing has."""
        data = await self.receive_within(max_bytes, None)
        assert data is not None
        return data

    async def receive_within(self, max_bytes: int, limit: float | None) -> bytes | None:
        """:meth:`receive`, or None when nothing arrived within ``limit`` seconds (a timer
        on the loop, not a cancel scope: a scope costs more than the rest of a read)."""
        if self._closed_here:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.closed:
                if protocol.error is not None:
                    raise anyio.BrokenResourceError from None
                raise anyio.EndOfStream
            waiter = protocol.waiter = self._loop.create_future()
            timer = None if limit is None else self._loop.call_later(limit, _expire, waiter)
            try:
                await waiter
            except _Expired:
                return None
            finally:
                protocol.waiter = None
                if timer is not None:
                    timer.cancel()
        buffer = protocol.buffer
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if len(buffer) <= _HIGH_WATER // 2 and not protocol.closed:
            self._transport.resume_reading()
        return data

    async def send_eof(self) -> None:
        self._transport.write_eof()

    async def aclose(self) -> None:
        """Close at once, unsent data dropped (the pool closes only what it will not reuse)."""
        self._closed_here = True
        self._transport.abort()


async def connect(
    host: str, port: int, ssl_context: ssl.SSLContext | None, server_hostname: str
) -> AsyncioStream:
    """A connection to ``host:port``, TLS with ``ssl_context`` (verifying ``server_hostname``)
    when given. Raises what ``loop.create_connection`` raises (OSError, ssl.SSLError)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        _Protocol,
        host,
        port,
        ssl=ssl_context,
        server_hostname=server_hostname if ssl_context is not None else None,
    )
    assert isinstance(transport, asyncio.Transport)
    return AsyncioStream(loop, transport, protocol)
