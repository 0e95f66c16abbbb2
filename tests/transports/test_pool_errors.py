"""The pool's own paths, against loopback servers in the test's event loop: the bound and its
accounting, keep-alive and what ends it, and each error the pool raises (typed, with a message
that says what happened and never a request header)."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from msgstatus._transports._pool import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimedOut,
    Origin,
    Pool,
    PoolError,
)

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
GET = (b"GET", b"/status", [(b"host", b"127.0.0.1")], b"")

Handler = Callable[[anyio.abc.SocketStream, "Seen"], Awaitable[None]]


class Seen:
    """What a loopback server saw: connections, requests (head and body), and connections the
    client closed (end of stream)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.client_closed = 0
        self.closed = anyio.Event()


async def read_request(stream: anyio.abc.SocketStream) -> bytes | None:
    """One request (head, and a body of its Content-Length), or None at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


async def keep_alive(stream: anyio.abc.SocketStream, seen: Seen) -> None:
    """Answers 200 to every request until the client closes."""
    while (request := await read_request(stream)) is not None:
        seen.requests.append(request)
        await stream.send(OK)
    seen.client_closed += 1


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[Origin, Seen]]:
    seen = Seen()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        seen.connections += 1
        async with stream:
            await handler(stream, seen)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield Origin("http", "127.0.0.1", port), seen
        tg.cancel_scope.cancel()


async def bounded(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a hang guard, not a timing assertion)."""
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - the condition is a socket's or a counter's
            await anyio.sleep(0.005)
    assert condition(), what


def test_a_pool_needs_at_least_one_connection() -> None:
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        Pool(0, connect_timeout=1.0)


async def test_keep_alive_reuses_the_connection_and_counts_it() -> None:
    async with serving(keep_alive) as (origin, seen):
        pool = Pool(2, connect_timeout=5.0)
        other = Origin("http", "127.0.0.1", 9)
        assert (pool.open_connections, pool.in_flight, pool.idle_connections()) == (0, 0, 0)
        async with pool.slot:
            assert pool.in_flight == 1
            conn = await pool.connection(origin)
            assert pool.open_connections == 1
            response = await conn.request(*GET, read_timeout=5.0, max_body=100)
            assert (response.status, response.body) == (200, b"ok")
            assert conn.reused
            assert pool.put_back(conn)
        assert pool.in_flight == 0
        assert pool.idle_connections(origin) == 1
        assert pool.idle_connections(other) == 0
        assert pool.idle_connections() == 1
        async with pool.slot:
            again = await pool.connection(origin)
            assert again is conn
            assert pool.idle_connections() == 0
            await again.request(*GET, read_timeout=5.0, max_body=100)
            await pool.release(again)
        assert (pool.open_connections, pool.idle_connections(origin)) == (1, 1)
        await pool.aclose()
        assert (pool.open_connections, pool.idle_connections()) == (0, 0)
        await bounded(lambda: seen.client_closed == 1, "the idle connection closed by aclose")
    assert seen.connections == 1
    assert len(seen.requests) == 2


async def test_a_request_body_is_sent_after_the_head() -> None:
    async with serving(keep_alive) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            headers = [(b"host", b"127.0.0.1"), (b"content-length", b"7")]
            response = await conn.request(
                b"POST", b"/send", headers, b'{"a":1}', read_timeout=5.0, max_body=100
            )
            await pool.release(conn)
        await pool.aclose()
    assert response.status == 200
    assert seen.requests[0].startswith(b"POST /send HTTP/1.1\r\n")
    assert seen.requests[0].endswith(b'\r\n\r\n{"a":1}')


async def test_a_request_h11_cannot_frame_is_refused_before_sending() -> None:
    async with serving(keep_alive) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            headers = [(b"host", b"127.0.0.1"), (b"x-broken", b"line\r\nbreak")]
            with pytest.raises(PoolError, match=r"cannot be sent as HTTP/1\.1") as caught:
                await conn.request(b"GET", b"/", headers, b"", read_timeout=5.0, max_body=100)
            await pool.discard(conn)
        await pool.aclose()
        await bounded(lambda: seen.client_closed == 1, "the connection closed")
    assert type(caught.value) is PoolError
    assert caught.value.__cause__ is None
    assert seen.requests == []


async def test_a_refused_header_value_is_not_quoted_in_the_error() -> None:
    async with serving(keep_alive) as (origin, _seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            headers = [(b"host", b"127.0.0.1"), (b"x-amz-security-token", b"tok-SECRET\n")]
            with pytest.raises(PoolError) as caught:
                await conn.request(b"GET", b"/", headers, b"", read_timeout=5.0, max_body=100)
            await pool.discard(conn)
        await pool.aclose()
    assert "SECRET" not in str(caught.value)


async def test_sending_on_a_closed_connection_is_a_connection_lost_before_response() -> None:
    async with serving(keep_alive) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            await conn.stream.aclose()
            # A closed stream is never offered as an idle connection again.
            assert conn.dropped()
            with pytest.raises(ConnectionLost, match="broke while sending") as caught:
                await conn.request(*GET, read_timeout=5.0, max_body=100)
            with pytest.raises(anyio.ClosedResourceError):
                await conn.stream.receive()
            await pool.discard(conn)
        assert pool.open_connections == 0
        await pool.aclose()
    assert caught.value.before_response
    assert seen.requests == []


async def _reset_after_request(stream: anyio.abc.SocketStream, seen: Seen) -> None:
    request = await read_request(stream)
    assert request is not None
    seen.requests.append(request)
    # SO_LINGER 0: close() sends RST, not FIN; the client's read fails (ECONNRESET).
    raw = stream.extra(SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def test_a_reset_while_reading_is_a_connection_lost_before_response() -> None:
    async with serving(_reset_after_request) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            with pytest.raises(ConnectionLost, match="broke while reading") as caught:
                await conn.request(*GET, read_timeout=5.0, max_body=100)
            await pool.discard(conn)
        await pool.aclose()
    assert caught.value.before_response
    assert caught.value.__cause__ is None
    assert len(seen.requests) == 1


@pytest.mark.parametrize(
    ("reply", "before_response"),
    [
        pytest.param(b"", True, id="closed-before-any-byte"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False, id="short-body"),
    ],
)
async def test_a_server_that_closes_early_breaks_http(reply: bytes, before_response: bool) -> None:
    async def close_early(stream: anyio.abc.SocketStream, seen: Seen) -> None:
        request = await read_request(stream)
        assert request is not None
        seen.requests.append(request)
        if reply:
            await stream.send(reply)

    async with serving(close_early) as (origin, _seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            with pytest.raises(ConnectionLost, match=r"the server broke HTTP/1\.1") as caught:
                await conn.request(*GET, read_timeout=5.0, max_body=100)
            await pool.discard(conn)
        await pool.aclose()
    assert caught.value.before_response is before_response


async def test_connection_close_is_not_kept_alive() -> None:
    async def close_after(stream: anyio.abc.SocketStream, seen: Seen) -> None:
        request = await read_request(stream)
        assert request is not None
        seen.requests.append(request)
        await stream.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        # Wait for the client to close its side.
        if await read_request(stream) is None:
            seen.client_closed += 1

    async with serving(close_after) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            response = await conn.request(*GET, read_timeout=5.0, max_body=100)
            assert response.body == b"ok"
            assert not conn.reused
            assert not conn.reusable()
            await pool.release(conn)
        assert (pool.open_connections, pool.idle_connections()) == (0, 0)
        await bounded(lambda: seen.client_closed == 1, "the client closed the connection")
        await pool.aclose()


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def one_answer(stream: anyio.abc.SocketStream, seen: Seen) -> None:
        request = await read_request(stream)
        assert request is not None
        seen.requests.append(request)
        await stream.send(OK)  # kept alive by HTTP/1.1, then closed by the server

    async with serving(one_answer) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            first = await pool.connection(origin)
            await first.request(*GET, read_timeout=5.0, max_body=100)
            assert pool.put_back(first)
        await bounded(first.dropped, "the server's close seen on the idle connection")
        async with pool.slot:
            second = await pool.connection(origin)
            assert second is not first
            assert pool.open_connections == 1
            await second.request(*GET, read_timeout=5.0, max_body=100)
            await pool.discard(second)
        await pool.aclose()
    assert seen.connections == 2
    assert len(seen.requests) == 2


async def test_a_full_pool_closes_an_idle_connection_to_another_origin() -> None:
    async with (
        serving(keep_alive) as (first, _),
        serving(keep_alive) as (second, seen_second),
        serving(keep_alive) as (third, _),
    ):
        pool = Pool(2, connect_timeout=5.0)
        for origin in (first, second):
            async with pool.slot:
                conn = await pool.connection(origin)
                await conn.request(*GET, read_timeout=5.0, max_body=100)
                assert pool.put_back(conn)
        async with pool.slot:
            # The first origin's idle connection is in use again: only the second's can go.
            in_use = await pool.connection(first)
            async with pool.slot:
                other = await pool.connection(third)
                assert other.origin == third
                assert pool.open_connections == 2
                assert (pool.idle_connections(first), pool.idle_connections(second)) == (0, 0)
                await pool.discard(other)
            await pool.discard(in_use)
        await bounded(lambda: seen_second.client_closed == 1, "the idle connection made room")
        await pool.aclose()


async def test_a_closed_pool_opens_and_keeps_nothing() -> None:
    async with serving(keep_alive) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            await pool.aclose()
            await conn.request(*GET, read_timeout=5.0, max_body=100)
            # Closed meanwhile: the connection in use is not kept but closed by its holder.
            assert not pool.put_back(conn)
            await pool.discard(conn)
            with pytest.raises(ConnectFailed, match="the pool is closed"):
                await pool.connect(origin)
        assert pool.open_connections == 0
    assert seen.connections == 1


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout() -> None:
    async def silent(stream: anyio.abc.SocketStream, seen: Seen) -> None:
        # Accepts, never answers the TLS ClientHello; ends when the client closes.
        if await read_request(stream) is None:
            seen.client_closed += 1

    async with serving(silent) as (plain, seen):
        origin = Origin("https", plain.host, plain.port)
        pool = Pool(1, connect_timeout=0.2, ssl_context=ssl.create_default_context())
        async with pool.slot:
            with pytest.raises(ConnectTimedOut, match=r"127\.0\.0\.1:\d+ within 0\.2 s"):
                await pool.connect(origin)
        assert pool.open_connections == 0
        await bounded(lambda: seen.client_closed == 1, "the half-open connection closed")
        await pool.aclose()


async def test_keep_alive_works_for_descriptors_past_1024() -> None:
    # select() cannot watch a descriptor >= 1024: an idle connection then looked dropped, and a
    # busy process never reused one.
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        async with serving(keep_alive) as (origin, seen):
            pool = Pool(1, connect_timeout=5.0)
            for _ in range(2):
                async with pool.slot:
                    conn = await pool.connection(origin)
                    sock = conn.stream.extra(SocketAttribute.raw_socket)
                    assert sock.fileno() >= 1024
                    await conn.request(*GET, read_timeout=5.0, max_body=100)
                    await pool.release(conn)
            await pool.aclose()
        assert seen.connections == 1
        assert len(seen.requests) == 2
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
