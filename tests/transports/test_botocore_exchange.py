"""The botocore exchange's own paths: which clients it takes, the origin, Host and target it
derives, TLS settings taken from the client, the capture handler's scope, and the connection it
holds when something other than a real send answers (a Stubber, a validation error, a handler
that moves the request), against loopback servers."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import boto3
import botocore.config
import botocore.exceptions as bce
import pytest
import trustme
from _servers import RawServer
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MessageStatus,
    ProviderUnavailableError,
    RetryPolicy,
)
from msgstatus._transports._botocore import (
    BotocoreExchange,
    _bytes,
    _origin_and_host,
    ssl_context_for,
    unsupported_reason,
)
from msgstatus._transports._pool import Origin

BEARER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/u"
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
ONCE = RetryPolicy(max_attempts=1)
PARAMS = {"ChannelArn": CHANNEL, "MessageId": "m1", "ChimeBearer": BEARER}


def _session(**kwargs: Any) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDEXCHANGE",
        aws_secret_access_key="exchange-secret",
        region_name="us-east-1",
        **kwargs,
    )


def _client(endpoint_url: str, **kwargs: Any) -> Any:
    return _session().client("chime-sdk-messaging", endpoint_url=endpoint_url, **kwargs)


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer("answer")
    yield raw
    raw.close()


# -- what the exchange derives from a URL and a request ---------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "host", "target"),
    [
        (
            "https://messaging-chime.us-east-1.amazonaws.com/channels/c?scope=message-status",
            Origin("https", "messaging-chime.us-east-1.amazonaws.com", 443),
            "messaging-chime.us-east-1.amazonaws.com",
            "/channels/c?scope=message-status",
        ),
        # A default port given explicitly is not in the Host header (as botocore signs it).
        ("http://127.0.0.1:80/a", Origin("http", "127.0.0.1", 80), "127.0.0.1", "/a"),
        ("HTTPS://Example.COM:8443", Origin("https", "example.com", 8443), "example.com:8443", "/"),
        ("http://[::1]:8080/p?q=1", Origin("http", "::1", 8080), "[::1]:8080", "/p?q=1"),
    ],
)
def test_origin_host_and_target(url: str, origin: Origin, host: str, target: str) -> None:
    assert _origin_and_host(url) == (origin, host, target)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"raw", b"raw"),
        (bytearray(b"array"), b"array"),
        (memoryview(b"view"), b"view"),
        ("caf\xe9", b"caf\xe9"),
    ],
)
def test_request_parts_become_bytes(value: object, expected: bytes) -> None:
    assert _bytes(value) == expected
    assert type(_bytes(value)) is bytes


def test_a_request_part_of_another_type_is_refused_by_type_name() -> None:
    with pytest.raises(TypeError, match="a request part of type int cannot be sent"):
        _bytes(42)


# -- which clients go over the pool -----------------------------------------------------------


def test_an_object_without_botocore_internals_is_not_a_botocore_client() -> None:
    assert unsupported_reason(object()) == "not a botocore client"


@pytest.mark.anyio
async def test_an_endpoint_of_another_scheme_keeps_botocores_send() -> None:
    client = _client("ftp://127.0.0.1:9")
    assert unsupported_reason(client) == "an endpoint that is neither http:// nor https://"
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        assert provider._exchange is None
        # botocore's own send cannot speak ftp: a typed error, not a crash.
        with pytest.raises(ProviderUnavailableError, match="could not reach Chime"):
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    client.close()


def test_a_client_certificate_keeps_botocores_send(server: RawServer, tmp_path: Path) -> None:
    config = botocore.config.Config(client_cert=str(tmp_path / "client.pem"))
    client = _client(server.url, config=config)
    assert unsupported_reason(client) == "a client certificate"
    assert ChimeProvider(client=client, bearer=BEARER, retry=ONCE)._exchange is None
    client.close()


# -- TLS settings from the client -------------------------------------------------------------


def test_verify_false_turns_verification_off() -> None:
    context = ssl_context_for(False)
    assert context.verify_mode is ssl.CERT_NONE
    assert not context.check_hostname


@pytest.mark.anyio
async def test_verify_false_accepts_an_untrusted_certificate(tls_server: RawServer) -> None:
    client = _client(tls_server.url, verify=False)
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        assert provider._exchange is not None
        result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT
    assert len(tls_server.requests) == 1
    client.close()


@pytest.fixture
def ca_directory(ca: trustme.CA, tmp_path: Path) -> str:
    """An OpenSSL CA path holding the test CA (files named by subject hash)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to name the file by subject hash")
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / f"{subject_hash}.0").write_bytes(pem.read_bytes())
    return str(directory)


@pytest.mark.anyio
async def test_verify_with_a_ca_directory(tls_server: RawServer, ca_directory: str) -> None:
    client = _client(tls_server.url, verify=ca_directory)
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT
    client.close()


@pytest.mark.anyio
async def test_a_ca_directory_without_the_ca_refuses_the_certificate(
    tls_server: RawServer, tmp_path: Path
) -> None:
    client = _client(tls_server.url, verify=str(tmp_path))
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        with pytest.raises(ProviderUnavailableError, match="SSLError"):
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert tls_server.requests == []
    client.close()


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_tls_handshake_that_never_ends_is_botocores_connect_timeout() -> None:
    # A plain server that accepts and never speaks, asked over https: the handshake stalls.
    silent = RawServer("accept-only")
    try:
        client = _client(
            f"https://127.0.0.1:{silent.port}",
            config=botocore.config.Config(connect_timeout=0.2, read_timeout=0.2),
        )
        async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
            with pytest.raises(ProviderUnavailableError, match="ConnectTimeoutError") as caught:
                await provider.get_status(ChimeHandle(CHANNEL, "m1"))
        assert isinstance(caught.value.__cause__, bce.ConnectTimeoutError)
        assert "exchange-secret" not in str(caught.value.__cause__)
        client.close()
    finally:
        silent.close()


@pytest.mark.anyio
async def test_a_refused_session_token_is_not_in_the_error_chain(server: RawServer) -> None:
    session = _session(aws_session_token="token-SECRET\n")
    client = session.client("chime-sdk-messaging", endpoint_url=server.url)
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        with pytest.raises(ProviderUnavailableError) as caught:
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    client.close()
    chain: list[str] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(f"{error!r} {getattr(error, 'kwargs', '')}")
        error = error.__cause__ or error.__context__
    assert not any("SECRET" in text for text in chain)


# -- the capture handler and the connection it holds ------------------------------------------


@pytest.mark.anyio
async def test_the_capture_handler_is_inert_for_the_clients_other_calls(server: RawServer) -> None:
    """A call of the same client outside the exchange (here botocore's own send, in a thread)
    is not captured: it reaches the server and gets its real answer."""
    client = _client(server.url)
    exchange = BotocoreExchange(client, "get_channel_message_status")
    try:
        answer = await anyio.to_thread.run_sync(lambda: client.get_channel_message_status(**PARAMS))
        assert answer["Status"] == {"Value": "SENT"}
        assert len(server.requests) == 1
    finally:
        exchange.close()
        client.close()


@pytest.mark.anyio
async def test_a_validation_error_gives_the_held_connection_back(server: RawServer) -> None:
    client = _client(server.url)
    exchange = BotocoreExchange(client, "get_channel_message_status")
    pool = exchange.new_pool(2)
    try:
        await exchange.call(pool, PARAMS, 10.0)
        # The origin is known now: the next call takes its connection before signing.
        with pytest.raises(bce.ParamValidationError, match="MessageId"):
            await exchange.call(pool, {"ChannelArn": CHANNEL, "ChimeBearer": BEARER}, 10.0)
        assert (pool.open_connections, pool.idle_connections(), pool.in_flight) == (1, 1, 0)
        answer = await exchange.call(pool, PARAMS, 10.0)
        assert answer["Status"] == {"Value": "SENT"}
        assert server.connections == 1
        assert len(server.requests) == 2
    finally:
        await pool.aclose()
        exchange.close()
        client.close()


@contextlib.contextmanager
def _stubbed(client: Any) -> Iterator[None]:
    with Stubber(client) as stub:
        stub.add_response(
            "get_channel_message_status", {"Status": {"Value": "READ"}}, expected_params=PARAMS
        )
        yield
        stub.assert_no_pending_responses()


@contextlib.contextmanager
def _answered_before_send(client: Any) -> Iterator[None]:
    """A ``before-send`` handler returning a response, as moto's does."""
    from botocore.awsrequest import AWSResponse

    class Body:
        def stream(self, **_: object) -> Iterator[bytes]:
            yield b'{"Status": {"Value": "READ"}}'

    def answer(request: Any, **_: object) -> Any:
        return AWSResponse(request.url, 200, {}, Body())

    event = "before-send.chime-sdk-messaging.GetChannelMessageStatus"
    client.meta.events.register(event, answer)
    yield
    client.meta.events.unregister(event, answer)


@pytest.mark.anyio
@pytest.mark.parametrize("answering", [_stubbed, _answered_before_send], ids=["stubber", "handler"])
async def test_an_answer_from_inside_botocore_is_the_answer(
    server: RawServer, answering: Callable[[Any], contextlib.AbstractContextManager[None]]
) -> None:
    """botocore's Stubber or a ``before-send`` handler answers the call as it would without
    msgstatus: nothing goes over the pool, and the connection held for it goes back."""
    client = _client(server.url)
    exchange = BotocoreExchange(client, "get_channel_message_status")
    pool = exchange.new_pool(2)
    try:
        await exchange.call(pool, PARAMS, 10.0)
        with answering(client):
            answer = await exchange.call(pool, PARAMS, 10.0)
        assert answer["Status"] == {"Value": "READ"}
        assert len(server.requests) == 1
        assert (pool.open_connections, pool.idle_connections()) == (1, 1)
    finally:
        await pool.aclose()
        exchange.close()
        client.close()


@pytest.mark.anyio
async def test_a_lookup_is_no_error_to_the_clients_handlers(server: RawServer) -> None:
    """The call ends at botocore's send with a BaseException: no ``after-call-error`` handler
    sees it as a failure, and the next call of the same client from a thread (no capture)
    goes through botocore's own send."""
    client = _client(server.url)
    failures: list[object] = []
    client.meta.events.register(
        "after-call-error.chime-sdk-messaging.GetChannelMessageStatus",
        lambda exception, **_: failures.append(exception),
    )
    exchange = BotocoreExchange(client, "get_channel_message_status")
    pool = exchange.new_pool(2)
    try:
        for _ in range(3):
            assert (await exchange.call(pool, PARAMS, 10.0))["Status"] == {"Value": "SENT"}
        answer = await anyio.to_thread.run_sync(lambda: client.get_channel_message_status(**PARAMS))
        assert answer["Status"] == {"Value": "SENT"}
        assert failures == []
        assert len(server.requests) == 4
    finally:
        await pool.aclose()
        exchange.close()
        client.close()


def test_the_clients_own_send_comes_back_with_the_last_exchange(server: RawServer) -> None:
    client = _client(server.url)
    own = client._endpoint._send
    first = BotocoreExchange(client, "get_channel_message_status")
    second = BotocoreExchange(client, "get_channel_message_status")
    assert client._endpoint._send is not own  # one wrapper, shared
    first.close()
    first.close()
    assert client._endpoint._send is not own
    second.close()
    assert client._endpoint._send == own
    client.close()


@pytest.mark.anyio
async def test_a_request_moved_to_another_origin_does_not_use_the_held_connection(
    server: RawServer,
) -> None:
    """A ``before-sign`` handler that sends the request elsewhere: the connection taken for the
    last origin goes back to the pool, and the request goes where botocore signed it for."""
    elsewhere = RawServer("answer")
    client = _client(server.url)
    exchange = BotocoreExchange(client, "get_channel_message_status")
    pool = exchange.new_pool(2)

    def move(request: Any, **_: object) -> None:
        request.url = request.url.replace(server.url, elsewhere.url)

    try:
        await exchange.call(pool, PARAMS, 10.0)
        client.meta.events.register("before-sign.chime-sdk-messaging.GetChannelMessageStatus", move)
        answer = await exchange.call(pool, PARAMS, 10.0)
        assert answer["Status"] == {"Value": "SENT"}
        assert (len(server.requests), len(elsewhere.requests)) == (1, 1)
        host = f"127.0.0.1:{elsewhere.port}".encode()
        assert b"\r\nhost: " + host in elsewhere.requests[0].lower()
        assert pool.idle_connections(_origin_and_host(server.url)[0]) == 1
        assert pool.open_connections == 2
    finally:
        await pool.aclose()
        exchange.close()
        client.close()
        elsewhere.close()


@settings(max_examples=1000, deadline=None)
@given(
    endpoint=st.sampled_from(
        [
            "https://messaging-chime.us-east-1.amazonaws.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8443",
            "https://host.example:443",
            "HTTPS://Host.Example",
        ]
    ),
    path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
)
def test_the_cached_origin_split_is_urlsplits(endpoint: str, path: str) -> None:
    # The exchange looks each endpoint's origin up once and takes the rest of the URL as the
    # request target: for any URL it must give what urlsplit gives.
    exchange = BotocoreExchange.__new__(BotocoreExchange)
    exchange._prefixes = {}
    for url in (f"{endpoint}/{path}", f"{endpoint}/{path}", f"{endpoint}/{path}?", endpoint):
        assert exchange._split(url) == _origin_and_host(url)
