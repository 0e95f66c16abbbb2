"""ChimeProvider over msgstatus's pool: exact bound under cancellation, stalled and trickling
servers, keep-alive, TLS verification with a test CA, and the thread path for proxies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions as bce
import botocore.session
import pytest
import trustme
from _servers import BODY, RawServer, cancel_in_rounds, until

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MessageStatus,
    ProviderUnavailableError,
    RetryPolicy,
)

pytestmark = pytest.mark.anyio

BEARER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/u"
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
ONCE = RetryPolicy(max_attempts=1)


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDPOOLTEST",
        aws_secret_access_key="pool-secret",
        region_name="us-east-1",
    )


def _provider(server: RawServer, **kwargs: Any) -> ChimeProvider:
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 30.0)
    return ChimeProvider(
        session=_session(),
        region_name="us-east-1",
        endpoint_url=server.url,
        bearer=BEARER,
        retry=ONCE,
        **kwargs,
    )


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    mode = getattr(request, "param", "answer")
    raw = RawServer(mode)
    yield raw
    raw.close()


def test_a_botocore_client_goes_over_the_pool(server: RawServer) -> None:
    assert _provider(server)._exchange is not None


async def test_keep_alive_and_the_bound_on_connections(server: RawServer) -> None:
    async with _provider(server, max_concurrency=4) as provider:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(provider.get_status, ChimeHandle(CHANNEL, f"m{i}"))
        result = await provider.get_status(ChimeHandle(CHANNEL, "last"))
    assert result.status is MessageStatus.SENT
    assert len(server.requests) == 51
    assert server.max_active <= 4
    assert server.connections <= 4
    # Every request was signed by botocore (SigV4) and carries the bearer.
    assert all(b"AWS4-HMAC-SHA256 Credential=AKIDPOOLTEST/" in head for head in server.requests)
    assert all(b"x-amz-chime-bearer: " + BEARER.encode() in head for head in server.requests)


@pytest.mark.parametrize("server", ["hold"], indirect=True)
async def test_a_thousand_cancelled_lookups_leak_no_slot(server: RawServer) -> None:
    """Lookups cancelled while waiting for a slot, connecting or reading: each cancelled request
    has its connection closed, and every slot comes back (the server's requests reach exactly
    ``max_concurrency`` again)."""
    async with _provider(server, max_concurrency=4) as provider:
        await cancel_in_rounds(
            server, lambda name: provider.get_status(ChimeHandle(CHANNEL, name)), bound=4
        )
        assert server.max_active == 4
        assert server.closed_by_client == server.connections == len(server.requests) == 40
        # All four slots are free: four new lookups reach the server at once.
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(provider.get_status, ChimeHandle(CHANNEL, f"after{i}"))
            await until(lambda: server.active == 4, "4 requests after the cancellations")
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("server", ["hold", "accept-only"], indirect=True)
async def test_a_stalled_server_ends_at_the_read_timeout(server: RawServer) -> None:
    async with _provider(server, read_timeout=0.3) as provider:
        with pytest.raises(ProviderUnavailableError, match="ReadTimeoutError") as caught:
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert isinstance(caught.value.__cause__, bce.ReadTimeoutError)
    if server.requests:  # "hold": the server read the request and saw the client close
        await until(lambda: server.closed_by_client == 1, "the stalled connection closed")


@pytest.mark.parametrize("server", ["trickle"], indirect=True)
async def test_a_trickling_server_ends_at_the_attempt_deadline(server: RawServer) -> None:
    # Each byte comes within read_timeout; only the deadline (0.3 + 0.3 + 1 s) ends the lookup,
    # long before the ~20 s the body takes.
    async with _provider(server, connect_timeout=0.3, read_timeout=0.3) as provider:
        with pytest.raises(ProviderUnavailableError, match=r"did not answer within 1\.6 s"):
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
        await until(lambda: server.closed_by_client == 1, "the trickling connection closed")
    assert server.trickles_finished == 0


@pytest.mark.parametrize("server", ["canned"], indirect=True)
async def test_reply_headers_reach_botocore_as_urllib3_gives_them(server: RawServer) -> None:
    """What a ``before-parse`` handler gets, reply after reply on one kept-alive connection: a
    case-insensitive HeadersDict in which a repeated field is one value joined with ", " (as
    urllib3's HTTPHeaderDict gives it to botocore's own send)."""
    server.canned = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Note: one\r\n"
        b"x-amzn-RequestId: rid-1\r\nX-AMZ-NOTE: two\r\nContent-Length: %d\r\n\r\n%s"
        % (len(BODY), BODY)
    )
    seen: list[Any] = []
    async with _provider(server) as provider:
        provider.client.meta.events.register(
            "before-parse.chime-sdk-messaging.GetChannelMessageStatus",
            lambda response_dict, **_: seen.append(response_dict["headers"]),
        )
        result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
        await provider.get_status(ChimeHandle(CHANNEL, "m2"))  # a second reply on the same conn
    assert result.status is MessageStatus.SENT
    assert len(seen) == 2
    headers = seen[0]
    assert headers["x-amz-note"] == headers["X-Amz-Note"] == "one, two"
    assert headers["X-Amzn-RequestId"] == "rid-1"
    assert sorted(headers) == ["content-length", "content-type", "x-amz-note", "x-amzn-requestid"]
    assert dict(seen[1]) == dict(headers)


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_tls_verified_against_the_clients_ca_bundle(
    tls_server: RawServer, ca_file: str
) -> None:
    client = _session().client("chime-sdk-messaging", endpoint_url=tls_server.url, verify=ca_file)
    async with ChimeProvider(client=client, bearer=BEARER, retry=ONCE) as provider:
        assert provider._exchange is not None
        for i in range(3):
            result = await provider.get_status(ChimeHandle(CHANNEL, f"m{i}"))
            assert result.status is MessageStatus.SENT
    assert tls_server.connections == 1
    client.close()


async def test_tls_with_aws_ca_bundle(
    tls_server: RawServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_file)
    async with _provider(tls_server) as provider:
        result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT


async def test_an_untrusted_certificate_is_refused(tls_server: RawServer) -> None:
    """Verification is on by default: botocore's CA bundle does not hold the test CA."""
    async with _provider(tls_server) as provider:
        with pytest.raises(ProviderUnavailableError, match="SSLError") as caught:
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert isinstance(caught.value.__cause__, bce.SSLError)
    assert tls_server.requests == []


# -- the thread path --------------------------------------------------------------------------


async def test_a_proxy_falls_back_to_the_thread_path(server: RawServer) -> None:
    """botocore's own send (in a worker thread) goes through the proxy; here the raw server is
    the proxy, and it answers for the endpoint (127.0.0.1:9, where nothing listens)."""
    config = botocore.config.Config(proxies={"http": server.url}, retries={"total_max_attempts": 1})
    client = _session().client(
        "chime-sdk-messaging", endpoint_url="http://127.0.0.1:9", config=config
    )
    provider = ChimeProvider(client=client, bearer=BEARER, retry=ONCE)
    assert provider._exchange is None
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT
    # The absolute URL in the request line: the request was sent to the proxy.
    assert server.requests[0].startswith(b"GET http://127.0.0.1:9/channels/")
    client.close()


# -- credentials ------------------------------------------------------------------------------


async def test_credentials_are_refreshed_in_a_worker_thread(server: RawServer) -> None:
    loop_thread = threading.get_ident()
    refreshed_in: list[int] = []

    def refresh() -> dict[str, str]:
        refreshed_in.append(threading.get_ident())
        return {
            "access_key": "AKIDREFRESHED",
            "secret_key": "refreshed-secret",
            "token": "token",
            "expiry_time": "2999-01-01T00:00:00Z",
        }

    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": "AKIDOLD",
            "secret_key": "old-secret",
            "token": "token",
            "expiry_time": "2000-01-01T00:00:00Z",
        },
        refresh_using=refresh,
        method="test",
    )
    core = botocore.session.get_session()
    core._credentials = credentials
    session = boto3.session.Session(botocore_session=core, region_name="us-east-1")
    provider = ChimeProvider(session=session, endpoint_url=server.url, bearer=BEARER, retry=ONCE)
    async with provider:
        result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT
    assert refreshed_in
    assert loop_thread not in refreshed_in
    assert b"Credential=AKIDREFRESHED/" in server.requests[0]


def _user_agent(head: bytes) -> str:
    line = next(x for x in head.split(b"\r\n") if x.lower().startswith(b"user-agent:"))
    return line.split(b":", 1)[1].strip().decode()


def _normalized(agent: str) -> list[str]:
    """A User-Agent's components, the feature ids (``m/a,b``, a set joined) sorted."""
    return [
        "m/" + ",".join(sorted(part[2:].split(","))) if part.startswith("m/") else part
        for part in agent.split()
    ]


async def test_the_memoized_user_agent_is_botocores_own(server: RawServer) -> None:
    """The pool path builds botocore's User-Agent once per distinct set of feature ids: what goes
    on the wire is the string botocore's own builder makes for the call's feature ids, and a
    feature id registered for one call shows in that call's string (no stale cache)."""
    from botocore.context import get_context, start_as_current_context
    from botocore.useragent import register_feature_id

    async with _provider(server) as provider:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
        await provider.get_status(ChimeHandle(CHANNEL, "m2"))
        creator = provider.client._user_agent_creator
        memo = creator.to_string
        original = type(creator).to_string.__get__(creator)  # botocore's, unmemoized
        assert memo is not original
        assert "to_string" in vars(creator)
        first, second = (_user_agent(head) for head in server.requests)
        wire_features = next(p[2:] for p in first.split() if p.startswith("m/")).split(",")
        with start_as_current_context():
            context = get_context()
            assert context is not None
            context.features.update(wire_features)
            expected = original()
            assert memo() == expected
            register_feature_id("RETRY_MODE_ADAPTIVE")
            with_feature = original()
            memo_with_feature = memo()
    assert first == second
    assert "msgstatus/" in first
    assert _normalized(first) == _normalized(expected)
    assert _normalized(with_feature) != _normalized(expected)
    assert memo_with_feature == with_feature
