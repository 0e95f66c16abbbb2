"""Transport promises of SECURITY.md, for both providers: TLS verification stays on, plain
``http://`` goes only to loopback (an emulator), and a refused endpoint is refused before any
request. (Secrets: tests/test_secrets.py; input validation: tests/test_properties.py.)
"""

from __future__ import annotations

import ssl

import pytest

from msgstatus import ChimeProvider, SendblueProvider
from msgstatus._providers.base import is_loopback_host

LOOPBACK = ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
NOT_LOOPBACK = [
    "api.sendblue.co",
    "10.0.0.1",
    "0.0.0.0",  # noqa: S104 - an address that must be refused, not bound
    "::",
    "::ffff:10.0.0.1",
    "localhost.example.com",
    "127.0.0.1.nip.io",
    "",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def _url(scheme: str, host: str) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:8443"


@pytest.mark.parametrize("host", [h for h in NOT_LOOPBACK if h])
def test_plain_http_to_another_host_is_refused_by_both_providers(host: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        SendblueProvider("key", "secret-for-transport", base_url=_url("http", host))
    with pytest.raises(ValueError, match="https://"):
        ChimeProvider(region_name="us-east-1", endpoint_url=_url("http", host))


def test_plain_http_to_another_host_is_refused_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # boto3 reads AWS_ENDPOINT_URL* itself: the check looks at the endpoint the client ended with.
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING", "http://chime.example.com")
    with pytest.raises(ValueError, match="https://"):
        ChimeProvider(region_name="us-east-1")
    monkeypatch.setenv("SENDBLUE_API_KEY", "key")
    monkeypatch.setenv("SENDBLUE_API_SECRET", "secret-for-transport")
    monkeypatch.setenv("SENDBLUE_BASE_URL", "http://sendblue.example.com")
    with pytest.raises(ValueError, match="https://"):
        SendblueProvider.from_env()


@pytest.mark.parametrize("host", LOOPBACK[:1] + LOOPBACK[2:5])
@pytest.mark.anyio
async def test_plain_http_to_loopback_and_https_anywhere_are_accepted(host: str) -> None:
    # Accepted means: built, and pointed at exactly that endpoint (not silently another one).
    for url in (_url("http", host), "https://chime.example.com"):
        async with ChimeProvider(region_name="us-east-1", endpoint_url=url) as chime:
            assert chime.client.meta.endpoint_url.rstrip("/") == url
    for url in (_url("http", host), "https://sendblue.example.com"):
        async with SendblueProvider("key", "secret-for-transport", base_url=url) as sendblue:
            assert sendblue.base_url.rstrip("/") == url


async def _sendblue_tls_context() -> ssl.SSLContext:
    provider = SendblueProvider("key", "secret-for-transport")
    try:
        pool = provider._client._transport._pool  # type: ignore[attr-defined]
        context: ssl.SSLContext = pool._ssl_context
        return context
    finally:
        await provider.aclose()


@pytest.mark.anyio
async def test_tls_verification_is_on_for_sendblue() -> None:
    context = await _sendblue_tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_tls_verification_is_on_for_chime() -> None:
    provider = ChimeProvider(region_name="us-east-1")
    try:
        # botocore's verify: True or a CA bundle path, never False.
        verify = provider.client._endpoint.http_session._verify  # type: ignore[attr-defined]
        assert verify is True or isinstance(verify, str)
        assert provider.client.meta.endpoint_url.startswith("https://")
    finally:
        provider.client.close()


@pytest.fixture
def anyio_backend() -> str:
    # Reading a setting needs no second event loop.
    return "asyncio"
