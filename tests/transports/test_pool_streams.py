"""The pool's byte streams at their limits, on both backends (on asyncio the pool reads through
its own transport protocol, ``_transports/_aio.py``; on trio through anyio's streams): bodies far
past the read buffer in both directions, and bytes a server sends unasked."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from test_pool_errors import GET, Seen, bounded, read_request, serving

from msgstatus._transports import _aio
from msgstatus._transports._pool import Pool

pytestmark = pytest.mark.anyio

BIG = 3 * 1024 * 1024  # far past the asyncio stream's 256 KiB before it stops reading


def _body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


async def big_reply(stream: anyio.abc.SocketStream, seen: Seen) -> None:
    while (request := await read_request(stream)) is not None:
        seen.requests.append(request)
        body = _body(BIG)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


async def test_a_body_far_past_the_read_buffer_arrives_whole_and_keeps_the_connection() -> None:
    async with serving(big_reply) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            for _ in range(2):
                status, _headers = await conn.start(*GET, read_timeout=5.0)
                # Not reading for a while: on asyncio the transport buffers up to its limit and
                # stops reading; reading the body must start it again.
                await anyio.sleep(0.2)
                chunks = []
                while (chunk := await conn.next_chunk(5.0)) is not None:
                    chunks.append(chunk)
                assert (status, b"".join(chunks)) == (200, _body(BIG))
            assert conn.reusable()
            await pool.release(conn)
        await pool.aclose()
    assert seen.connections == 1
    assert len(seen.requests) == 2


async def slow_reader(stream: anyio.abc.SocketStream, seen: Seen) -> None:
    """Reads a request's body in small pieces with pauses, so the client's writes back up."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await anyio.sleep(0.2)  # the client's write has filled the socket buffers by now
    while len(body) < length:
        body += await stream.receive(65536)
    seen.requests.append(head + b"\r\n\r\n" + body)
    await stream.send(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(length)), length)
    )


async def test_a_request_body_past_the_socket_buffers_is_sent_whole() -> None:
    body = _body(8 * 1024 * 1024)
    async with serving(slow_reader) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            headers = [(b"host", b"127.0.0.1"), (b"content-length", b"%d" % len(body))]
            response = await conn.request(
                b"POST", b"/", headers, body, read_timeout=10.0, max_body=100
            )
            await pool.release(conn)
        await pool.aclose()
    assert response.body == b"%d" % len(body)
    assert seen.requests[0].endswith(body)


async def reply_then_chatter(stream: anyio.abc.SocketStream, seen: Seen) -> None:
    request = await read_request(stream)
    if request is None:  # the second connection, closed by the test unused
        return
    seen.requests.append(request)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await anyio.sleep(0.05)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")  # nobody asked
    await seen.closed.wait()


async def test_bytes_the_server_sent_unasked_make_an_idle_connection_dropped() -> None:
    async with serving(reply_then_chatter) as (origin, seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            await conn.request(*GET, read_timeout=5.0, max_body=100)
            assert conn.reusable()
            assert pool.put_back(conn)
            # The loop runs meanwhile: on asyncio the transport reads the stray bytes off the
            # socket, so only the stream, not a poll of the socket, can tell.
            await bounded(conn.dropped, "the stray response makes the connection unusable")
            again = await pool.connection(origin)
            assert again is not conn
            await pool.discard(again)
        seen.closed.set()
        await pool.aclose()
    assert seen.connections == 2


async def test_on_asyncio_the_pool_reads_through_its_own_protocol(anyio_backend_name: str) -> None:
    async with serving(big_reply) as (origin, _seen):
        pool = Pool(1, connect_timeout=5.0)
        async with pool.slot:
            conn = await pool.connection(origin)
            native = isinstance(conn.stream, _aio.AsyncioStream)
            await pool.discard(conn)
        await pool.aclose()
    assert native == (anyio_backend_name == "asyncio")
