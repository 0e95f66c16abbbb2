"""Transport promises of SECURITY.md, for both providers: TLS verification stays on, plain
``http://`` goes only to loopback (an emulator), and a refused endpoint is refused before any
request. (Secrets: tests/test_secrets.py; input validation: tests/test_properties.py.)
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from msgstatus import ChimeProvider, ProviderUnavailableError, RetryPolicy, SendblueProvider
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


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # a request only arrives if TLS verification let it through
        self.server.requests += 1  # type: ignore[attr-defined]
        body = b'{"status": "DELIVERED", "message_handle": "m-1"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def untrusted_https() -> Iterator[tuple[str, http.server.HTTPServer]]:
    """An HTTPS server on 127.0.0.1 whose certificate comes from a CA nobody trusts."""
    cert = trustme.CA().issue_cert("127.0.0.1", "localhost")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    server.requests = 0  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_tls_verification_refuses_an_untrusted_certificate(
    untrusted_https: tuple[str, http.server.HTTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECURITYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "security-test-secret")
    url, server = untrusted_https
    once = RetryPolicy(max_attempts=1)
    async with SendblueProvider("key", "secret-for-transport", base_url=url, retry=once) as sb:
        with pytest.raises(ProviderUnavailableError):
            await sb.get_status("sendblue:m-1")
    sender = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/s"
    channel = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
    async with ChimeProvider(
        region_name="us-east-1", endpoint_url=url, bearer=sender, retry=once
    ) as chime:
        with pytest.raises(ProviderUnavailableError):
            await chime.get_status(f"chime:{channel};message=m-1")
    assert server.requests == 0  # type: ignore[attr-defined]


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
