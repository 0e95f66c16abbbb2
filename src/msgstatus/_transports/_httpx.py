"""msgstatus's HTTP/1.1 pool (:mod:`._pool`) as an ``httpx.AsyncBaseTransport``.

httpcore, httpx's default transport, scans every pooled connection on every request (its
``_assign_requests_to_connections`` checks each one's socket); at a few hundred requests a
second that is most of a status lookup's CPU. This transport keeps httpx as the client (its
request building, headers, decoding, ``Response``) and sends over one keep-alive pool per event
loop: an idle connection is taken in O(1), at most ``max_connections`` requests are in flight and
as many connections open, and a connection whose exchange did not end cleanly (an error, a
timeout, a cancellation, a body not read to its end) is closed, never reused.

HTTP/1.1 only, no proxies, no client certificates (use httpx's own transport for those).
Redirects are httpx's business (the client follows them or not; this transport sends one request).
Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``,
``PoolTimeout``, ``RemoteProtocolError``, ``ReadError``; their messages never hold a header.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator

import httpx
from anyio.lowlevel import RunVar

from msgstatus._transports._pool import (
    ConnectFailed,
    Connection,
    ConnectionLost,
    ConnectTimedOut,
    Origin,
    Pool,
    PoolError,
    ReadTimedOut,
    WriteTimedOut,
)

__all__ = ["PoolTransport"]

_DEFAULT_PORTS = {b"http": 80, b"https": 443}


def _seconds(value: object) -> float:
    return math.inf if value is None else float(value)  # type: ignore[arg-type]


def _httpx_error(exc: PoolError, request: httpx.Request) -> httpx.TransportError:
    message = str(exc)
    if isinstance(exc, ConnectTimedOut):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, ConnectFailed):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, ReadTimedOut):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, WriteTimedOut):
        return httpx.WriteTimeout(message, request=request)
    if isinstance(exc, ConnectionLost) and "HTTP/1.1" in message:
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, ConnectionLost):
        return httpx.ReadError(message, request=request)
    return httpx.LocalProtocolError(message, request=request)


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection as httpx asks for it. The slot and the
    connection are given back when the body ends (connection kept alive) or when the response
    is closed before that (connection closed)."""

    def __init__(
        self, pool: Pool, conn: Connection, read_timeout: float, request: httpx.Request
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        try:
            while (chunk := await conn.next_chunk(self._read_timeout)) is not None:
                yield chunk
        except PoolError as exc:
            await self.aclose()
            raise _httpx_error(exc, self._request) from None
        # A cancellation (or the generator closed early) leaves the connection to aclose(),
        # which httpx calls whenever a response ends, on every path.
        self._conn = None
        try:
            await self._pool.release(conn)
        finally:
            self._pool.release_slot()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.discard(conn)
            finally:
                self._pool.release_slot()


class PoolTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over msgstatus's keep-alive pool: pass it as
    ``httpx.AsyncClient(transport=PoolTransport())``.

    ``max_connections`` bounds both the requests in flight and the open connections, per event
    loop (a request waits for a slot up to the request's ``pool`` timeout). ``verify`` is what
    httpx takes (True: certifi's CA bundle; a path; an ``ssl.SSLContext``; False: no
    verification). Timeouts come from each request (``httpx.Timeout``): ``connect`` for TCP and
    TLS, ``write`` for sending, ``read`` for each read.
    """

    def __init__(
        self, *, max_connections: int = 100, verify: ssl.SSLContext | str | bool = True
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ValueError("max_connections must be an int")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._ssl_context = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        )
        self._pools: RunVar[Pool] = RunVar(f"msgstatus.httpx.pool.{id(self)}")
        self._closed = False

    def _pool(self) -> Pool:
        try:
            return self._pools.get()
        except LookupError:
            pool = Pool(
                self.max_connections, connect_timeout=math.inf, ssl_context=self._ssl_context
            )
            self._pools.set(pool)
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"the URL scheme must be http or https, not {url.scheme!r}", request=request
            )
        timeouts = request.extensions.get("timeout", {})
        read_timeout = _seconds(timeouts.get("read"))
        origin = Origin(url.scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        body = await request.aread()
        pool = self._pool()
        try:
            await pool.acquire(timeouts.get("pool"))
        except TimeoutError:
            raise httpx.PoolTimeout(
                "no free connection slot within the pool timeout", request=request
            ) from None
        conn: Connection | None = None
        try:
            conn = await pool.connection(origin, connect_timeout=_seconds(timeouts.get("connect")))
            status, headers = await conn.start(
                request.method.encode("ascii"),
                url.raw_path,
                request.headers.raw,
                body,
                read_timeout=read_timeout,
                write_timeout=_seconds(timeouts.get("write")),
            )
        except BaseException as exc:
            try:
                if conn is not None:
                    await pool.discard(conn)
            finally:
                pool.release_slot()
            if isinstance(exc, PoolError):
                raise _httpx_error(exc, request) from None
            raise
        return httpx.Response(
            status,
            headers=list(headers),
            stream=_Body(pool, conn, read_timeout, request),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def aclose(self) -> None:
        """Close this event loop's idle connections; later requests raise ConnectError."""
        self._closed = True
        try:
            pool = self._pools.get()
        except (LookupError, RuntimeError):
            return
        await pool.aclose()
