"""PoolTransport (msgstatus's pool as an httpx transport), the Sendblue provider's default:
exact bound under cancellation, keep-alive, the read timeout, TLS verification with a test CA,
redirects never followed and the 1 MiB decoded body cap, over real loopback sockets."""

from __future__ import annotations

import gzip
import re
import ssl
from collections.abc import Iterator

import anyio
import httpx
import pytest
import trustme
from _servers import RawServer, cancel_in_rounds, tls_server_context, until

from msgstatus import (
    MsgStatusError,
    ProviderResponseError,
    ProviderUnavailableError,
    RetryPolicy,
    SendblueProvider,
)
from msgstatus._providers.sendblue import MAX_RESPONSE_BYTES
from msgstatus._transports._httpx import PoolTransport

pytestmark = pytest.mark.anyio

ONCE = RetryPolicy(max_attempts=1)
HANDLE = "8b6c2f9e-1d7a-4a55-9a57-2c3f1d1e0b11"
STATUS = b'{"status": "DELIVERED", "message_handle": "' + HANDLE.encode() + b'"}'


def _canned(body: bytes, *, status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    mode = getattr(request, "param", "answer")
    raw = RawServer(mode, canned=_canned(STATUS))
    yield raw
    raw.close()


def _sendblue(server: RawServer, **kwargs: object) -> SendblueProvider:
    return SendblueProvider("key", "secret", base_url=server.url, retry=ONCE, **kwargs)  # type: ignore[arg-type]


def test_the_provider_sends_over_the_pool_by_default(server: RawServer) -> None:
    assert isinstance(_sendblue(server)._client._transport, PoolTransport)


@pytest.mark.parametrize("server", ["canned"], indirect=True)
async def test_keep_alive_and_the_bound_on_connections(server: RawServer) -> None:
    async with httpx.AsyncClient(transport=PoolTransport(max_connections=4)) as client:
        replies: list[httpx.Response] = []

        async def get(i: int) -> None:
            replies.append(await client.get(f"{server.url}/api/status?handle=h{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(get, i)
        assert all(reply.status_code == 200 and reply.content == STATUS for reply in replies)
    assert len(replies) == len(server.requests) == 50
    assert server.max_active <= 4
    assert server.connections <= 4


@pytest.mark.parametrize("server", ["hold"], indirect=True)
async def test_a_thousand_cancelled_requests_leak_no_slot(server: RawServer) -> None:
    transport = PoolTransport(max_connections=4)
    async with httpx.AsyncClient(transport=transport) as client:
        await cancel_in_rounds(
            server, lambda name: client.get(f"{server.url}/api/status?handle={name}"), bound=4
        )
        assert server.max_active == 4
        assert server.closed_by_client == server.connections == len(server.requests) == 40
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(client.get, f"{server.url}/api/status?handle=after{i}")
            await until(lambda: server.active == 4, "4 requests after the cancellations")
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("server", ["hold", "accept-only"], indirect=True)
async def test_a_stalled_server_ends_at_the_read_timeout(server: RawServer) -> None:
    async with _sendblue(server, timeout=httpx.Timeout(0.3, connect=2.0)) as provider:
        with anyio.fail_after(20):  # a hang guard, not a timing assertion
            with pytest.raises(ProviderUnavailableError, match="ReadTimeout"):
                await provider.get_status(HANDLE)


@pytest.mark.parametrize("server", ["canned"], indirect=True)
async def test_a_redirect_is_not_followed(server: RawServer) -> None:
    server.canned = _canned(
        b"", status=b"302 Found", headers=b"Location: http://127.0.0.1:9/elsewhere\r\n"
    )
    async with _sendblue(server) as provider:
        with pytest.raises(MsgStatusError) as caught:
            await provider.get_status(HANDLE)
    assert caught.value.http_status == 302
    assert len(server.requests) == 1


@pytest.mark.parametrize("server", ["canned"], indirect=True)
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_the_decoded_body_cap(server: RawServer, encoding: str) -> None:
    big = b'{"status": "SENT", "pad": "' + b"x" * (2 * MAX_RESPONSE_BYTES) + b'"}'
    if encoding == "gzip":
        body = gzip.compress(big)
        assert len(body) < MAX_RESPONSE_BYTES // 10  # small on the wire, 2 MiB decoded
        server.canned = _canned(body, headers=b"Content-Encoding: gzip\r\n")
    else:
        server.canned = _canned(big)
    async with _sendblue(server) as provider:
        with pytest.raises(ProviderResponseError, match="larger than"):
            await provider.get_status(HANDLE)
        # The connection whose body was not read to its end is closed, not reused.
        server.canned = _canned(STATUS)
        result = await provider.get_status(HANDLE)
    assert result.provider_status == "DELIVERED"
    assert server.connections == 2


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[RawServer]:
    raw = RawServer("canned", tls=tls_server_context(ca), canned=_canned(STATUS))
    yield raw
    raw.close()


async def test_tls_is_verified_by_default(tls_server: RawServer) -> None:
    """The provider's own transport verifies certificates (certifi's bundle, as httpx's): a
    server with a certificate of a test CA is refused."""
    async with _sendblue(tls_server) as provider:
        with pytest.raises(ProviderUnavailableError, match="ConnectError"):
            await provider.get_status(HANDLE)
    assert tls_server.requests == []


async def test_tls_with_a_trusted_test_ca(tls_server: RawServer, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = httpx.AsyncClient(transport=PoolTransport(verify=context))
    async with client, _sendblue(tls_server, http_client=client) as provider:
        for _ in range(3):
            result = await provider.get_status(HANDLE)
            assert result.provider_status == "DELIVERED"
    assert tls_server.connections == 1  # kept alive over TLS
    assert len(tls_server.requests) == 3


# -- each pool error as the httpx error it stands for, and the transport's own refusals --------


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout() -> None:
    with RawServer("accept-only") as server:
        async with httpx.AsyncClient(transport=PoolTransport()) as client:
            with anyio.fail_after(20), pytest.raises(httpx.ConnectTimeout) as caught:
                await client.get(
                    f"https://127.0.0.1:{server.port}/api/status",
                    timeout=httpx.Timeout(5.0, connect=0.2),
                )
    assert re.fullmatch(r"could not connect to 127\.0\.0\.1:\d+ within 0\.2 s", str(caught.value))
    assert server.requests == []


async def test_a_server_that_reads_nothing_is_a_write_timeout() -> None:
    # Larger than what the loopback's socket buffers take in (a few MiB each way).
    body = b"x" * (32 * 1024 * 1024)
    with RawServer("accept-only") as server:
        transport = PoolTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.fail_after(20), pytest.raises(httpx.WriteTimeout) as caught:
                await client.post(
                    f"{server.url}/api/status", content=body, timeout=httpx.Timeout(5.0, write=0.2)
                )
            assert str(caught.value) == "could not send the request within 0.2 s"
            # The slot came back: the next request gets its connection (and times out the same).
            with anyio.fail_after(20), pytest.raises(httpx.WriteTimeout):
                await client.post(
                    f"{server.url}/api/status",
                    content=body,
                    timeout=httpx.Timeout(5.0, write=0.2, pool=1.0),
                )
        assert server.connections == 2


async def test_a_connection_reset_before_the_response_is_a_read_error() -> None:
    with RawServer("reset") as server:
        async with httpx.AsyncClient(transport=PoolTransport()) as client:
            with anyio.fail_after(20), pytest.raises(httpx.ReadError) as caught:
                await client.get(f"{server.url}/api/status?handle=h")
    assert not isinstance(caught.value, httpx.RemoteProtocolError)
    assert str(caught.value) == "the connection broke while reading (BrokenResourceError)"
    assert len(server.requests) == 1


async def test_a_header_http_cannot_carry_is_a_local_protocol_error_without_its_value() -> None:
    with RawServer("canned", canned=_canned(STATUS)) as server:
        async with httpx.AsyncClient(transport=PoolTransport(max_connections=1)) as client:
            with pytest.raises(httpx.LocalProtocolError) as caught:
                await client.get(f"{server.url}/api/status", headers={"x-token": "tok\nSECRET"})
            assert "SECRET" not in str(caught.value)
            assert "the value is not shown" in str(caught.value)
            assert caught.value.__cause__ is None
            assert caught.value.__suppress_context__
            # Nothing was sent, and the slot is free again.
            reply = await client.get(f"{server.url}/api/status")
    assert reply.content == STATUS
    assert len(server.requests) == 1


async def test_no_free_slot_within_the_pool_timeout_is_a_pool_timeout() -> None:
    with RawServer("hold") as server:
        client = httpx.AsyncClient(transport=PoolTransport(max_connections=1))
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(client.get, f"{server.url}/api/status?handle=held")
            await until(lambda: server.active == 1, "the first request holds the only slot")
            with pytest.raises(httpx.PoolTimeout, match="no free connection slot"):
                await client.get(
                    f"{server.url}/api/status?handle=second",
                    timeout=httpx.Timeout(5.0, pool=0.05),
                )
            tg.cancel_scope.cancel()
    # The second request never reached the server.
    assert len(server.requests) == 1


async def test_a_closed_transport_refuses_requests() -> None:
    with RawServer("canned", canned=_canned(STATUS)) as server:
        transport = PoolTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(f"{server.url}/api/status")).content == STATUS
            await transport.aclose()
            with pytest.raises(httpx.ConnectError, match="the transport is closed"):
                await client.get(f"{server.url}/api/status")
        await until(lambda: server.active == 0, "the idle connection closed")
    assert len(server.requests) == 1
    assert server.connections == 1


async def test_a_scheme_other_than_http_is_refused() -> None:
    transport = PoolTransport()
    request = httpx.Request("GET", "ftp://127.0.0.1:9/file")
    with pytest.raises(httpx.UnsupportedProtocol, match="must be http or https, not 'ftp'"):
        await transport.handle_async_request(request)
    await transport.aclose()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "max_connections must be an int"),
        (2.0, "max_connections must be an int"),
        ("4", "max_connections must be an int"),
        (0, "max_connections must be at least 1"),
        (-1, "max_connections must be at least 1"),
    ],
)
def test_max_connections_is_checked(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolTransport(max_connections=value)  # type: ignore[arg-type]


async def test_a_body_read_to_its_end_cannot_be_read_again() -> None:
    """Once its body ended, a response's connection is back in the pool (or closed): iterating
    the body again raises StreamClosed rather than reading from a connection that is no longer
    this response's."""
    with RawServer("canned", canned=_canned(STATUS)) as server:
        transport = PoolTransport(max_connections=1)
        request = httpx.Request("GET", f"{server.url}/api/status")
        response = await transport.handle_async_request(request)
        assert b"".join([chunk async for chunk in response.stream]) == STATUS
        with pytest.raises(httpx.StreamClosed):
            async for _ in response.stream:
                pass
        # The connection went back to the pool and serves the next request.
        again = await transport.handle_async_request(request)
        assert b"".join([chunk async for chunk in again.stream]) == STATUS
        await transport.aclose()
    assert server.connections == 1
    assert len(server.requests) == 2
