"""PoolTransport (msgstatus's pool as an httpx transport), the Sendblue provider's default:
exact bound under cancellation, keep-alive, the read timeout, TLS verification with a test CA,
redirects never followed and the 1 MiB decoded body cap, over real loopback sockets."""

from __future__ import annotations

import gzip
import ssl
from collections.abc import Iterator

import anyio
import httpx
import pytest
import trustme
from _servers import RawServer, until

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
        for round_ in range(10):
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(client.get, f"{server.url}/api/status?handle=r{round_}m{i}")
                await until(lambda: server.active == 4, "4 requests at the server")
                tg.cancel_scope.cancel()
            await until(lambda: server.active == 0, "every cancelled request's connection closed")
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


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[RawServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    raw = RawServer("canned", tls=context, canned=_canned(STATUS))
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
