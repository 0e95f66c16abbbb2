"""Settings the providers refuse at construction, each with a message naming the setting, and a
provider whose caller-owned HTTP client was closed."""

from __future__ import annotations

import httpx
import pytest

from msgstatus import ChimeProvider, MsgStatusError, SendblueProvider


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        (42, "base_url must be a URL string, not int"),
        ("", "base_url must be a URL string, not str"),
        ("https://api.sendblue.co/ x", "must not contain backslashes, white space or control"),
        ("https://api.sendblue.co\\@evil", "must not contain backslashes, white space or control"),
        ("https://api.sendblue.co:https", "base_url has an invalid host or port: "),
    ],
)
def test_a_base_url_that_is_not_a_safe_url_is_refused(base_url: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("\\", "\\\\")):
        SendblueProvider("key", "secret", base_url=base_url)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["5", True, b"1"])
def test_a_timeout_that_is_not_a_number_is_refused_by_name(value: object) -> None:
    with pytest.raises(ValueError, match=r"^connect_timeout must be a positive number of seconds$"):
        ChimeProvider(region_name="us-east-1", connect_timeout=value)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_closed_caller_owned_http_client_is_a_msgstatus_error() -> None:
    http = httpx.AsyncClient()
    provider = SendblueProvider("key", "secret", http_client=http)
    await http.aclose()
    with pytest.raises(MsgStatusError, match="the provider's HTTP client is closed") as caught:
        await provider.get_status("sendblue:msg1")
    assert caught.value.provider == "sendblue"
    assert caught.value.handle == "sendblue:msg1"
    await provider.aclose()
