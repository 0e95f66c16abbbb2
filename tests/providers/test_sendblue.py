"""SendblueProvider against a mocked HTTP layer (respx): mapping, errors, retries, security."""

from __future__ import annotations

import gzip
import json
import logging
import ssl
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstatus import (
    AuthenticationError,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryPolicy,
    SendblueProvider,
    StatusResult,
)
from msgstatus._providers.sendblue import (
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES,
    SENDBLUE_FINAL_STATUSES,
    SENDBLUE_STATUS_MAP,
    _lookup_url_maker,
)
from msgstatus._retry import parse_retry_after
from msgstatus._transports._httpx import PoolTransport

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("reuse_tls_context")]

BASE = "https://api.sendblue.co"
KEY = "key-id-4f1c"
SECRET = "s3cret-9a7b-do-not-leak"
HANDLE = "8b6c2f9e-1d7a-4a55-9a57-2c3f1d1e0b11"
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)


def payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "account_email": "ops@example.com",
        "content": "Hello",
        "date_created": "2024-05-01T10:00:00.000Z",
        "date_updated": "2024-05-01T10:00:05.250Z",
        "error_code": None,
        "error_key": None,
        "error_message": None,
        "from_number": "+15550100000",
        "is_outbound": True,
        "message_handle": HANDLE,
        "number": "+15550199999",
        "status": "DELIVERED",
    }
    base.update(fields)
    return base


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    # using="httpx": respx stands in for whichever transport the client has (the provider's own
    # PoolTransport or httpx's), so these tests check the provider, not a transport.
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        yield router


@pytest.fixture
async def provider() -> AsyncIterator[SendblueProvider]:
    async with SendblueProvider(KEY, SECRET, retry=FAST) as provider:
        yield provider


def answer(api: respx.MockRouter, *responses: httpx.Response | Exception) -> respx.Route:
    """Route ``GET /api/status``: one response (or exception) for every call, or one per call."""
    route = api.get("/api/status")
    if len(responses) > 1:
        route.mock(side_effect=list(responses))
    elif isinstance(responses[0], httpx.Response):
        route.mock(return_value=responses[0])
    else:
        route.mock(side_effect=responses[0])
    return route


# -- mapping ----------------------------------------------------------------------------------


# The expected table, written out independently of SENDBLUE_STATUS_MAP and SENDBLUE_FINAL_STATUSES
# (from DESIGN.md and providers.md): a wrong row in the code cannot also be the expectation.
MAPPING_ROWS = [
    ("QUEUED", MessageStatus.PENDING, False),
    ("REGISTERED", MessageStatus.PENDING, False),
    ("PENDING", MessageStatus.PENDING, False),
    ("ACCEPTED", MessageStatus.PENDING, False),
    ("SENT", MessageStatus.SENT, False),
    ("SUCCESS", MessageStatus.SENT, False),
    ("DELIVERED", MessageStatus.DELIVERED, True),
    ("RECEIVED", MessageStatus.DELIVERED, True),
    ("READ", MessageStatus.READ, True),
    ("ERROR", MessageStatus.FAILED, True),
    ("DECLINED", MessageStatus.DENIED, True),
]


@pytest.mark.parametrize(("raw", "expected", "final"), MAPPING_ROWS)
async def test_every_mapping_row(
    api: respx.MockRouter,
    provider: SendblueProvider,
    raw: str,
    expected: MessageStatus,
    final: bool,
) -> None:
    answer(api, httpx.Response(200, json=payload(status=raw)))
    result = await provider.get_status(HANDLE)
    assert result.status is expected
    assert result.provider_status == raw
    assert result.is_final is final


def test_the_table_has_exactly_the_expected_rows() -> None:
    # No row more or less than the literal table (a row added without a test fails here).
    assert {raw: status for raw, status, _ in MAPPING_ROWS} == SENDBLUE_STATUS_MAP


def test_finality_follows_the_design() -> None:
    assert {
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.FAILED,
        MessageStatus.DENIED,
    } == SENDBLUE_FINAL_STATUSES


@pytest.mark.parametrize(
    ("status", "final"),
    [
        ("TELEPORTED", False),  # UNKNOWN is never final
        (None, False),
    ],
)
async def test_unknown_and_missing_statuses_are_not_final(
    api: respx.MockRouter, provider: SendblueProvider, status: str | None, final: bool
) -> None:
    answer(api, httpx.Response(200, json=payload(status=status)))
    result = await provider.get_status(HANDLE)
    assert (result.status, result.is_final) == (MessageStatus.UNKNOWN, final)


async def test_matching_trims_and_upper_cases_but_keeps_the_raw_value(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(api, httpx.Response(200, json=payload(status=" delivered ")))
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.DELIVERED
    assert result.provider_status == " delivered "


@pytest.mark.parametrize("status", ["SENT", "DELIVERED", "ERROR", "QUEUED", None, "TELEPORTED"])
async def test_a_non_null_error_key_means_denied(
    api: respx.MockRouter, provider: SendblueProvider, status: str | None
) -> None:
    body = payload(status=status, error_key="OPTED_OUT", error_message="Recipient opted out")
    answer(api, httpx.Response(200, json=body))
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.DENIED
    assert result.is_final
    assert result.provider_status == status
    assert result.detail == "Recipient opted out"


@pytest.mark.parametrize("error_key", ["", "   "])
async def test_a_blank_error_key_names_no_rule(
    api: respx.MockRouter, provider: SendblueProvider, error_key: str
) -> None:
    answer(api, httpx.Response(200, json=payload(status="SENT", error_key=error_key)))
    assert (await provider.get_status(HANDLE)).status is MessageStatus.SENT


async def test_unknown_status_is_unknown_and_logged_once_per_provider(
    api: respx.MockRouter, provider: SendblueProvider, caplog: pytest.LogCaptureFixture
) -> None:
    answer(api, httpx.Response(200, json=payload(status="TELEPORTED")))
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        first = await provider.get_status(HANDLE)
        await provider.get_status(HANDLE)
        async with SendblueProvider(KEY, SECRET) as other:
            await other.get_status(HANDLE)
    assert first.status is MessageStatus.UNKNOWN
    assert first.provider_status == "TELEPORTED"
    assert not first.is_final
    assert first.raw["status"] == "TELEPORTED"
    warnings = [r for r in caplog.records if "TELEPORTED" in r.getMessage()]
    assert len(warnings) == 2  # once for each provider instance


@pytest.mark.parametrize(
    "body", [{"message_handle": HANDLE}, {"message_handle": HANDLE, "status": None}]
)
async def test_no_status_at_all_is_unknown(
    api: respx.MockRouter, provider: SendblueProvider, body: dict[str, Any]
) -> None:
    answer(api, httpx.Response(200, json=body))
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.UNKNOWN
    assert result.provider_status is None
    assert not result.is_final
    assert result.raw == body


async def test_fields_are_carried_into_the_result(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    body = payload(
        status="ERROR",
        error_code=10001,
        error_message="Message failed to send",
        future_field={"nested": [1, 2]},
    )
    answer(api, httpx.Response(200, json=body))
    result = await provider.get_status(f"sendblue:{HANDLE}")
    assert result.provider == "sendblue"
    assert result.handle == f"sendblue:{HANDLE}"
    assert result.status is MessageStatus.FAILED
    assert result.is_final
    assert result.detail == "Message failed to send"
    assert result.error_code == "10001"
    assert result.updated_at == datetime(2024, 5, 1, 10, 0, 5, 250000, tzinfo=timezone.utc)
    assert result.checked_at.tzinfo is not None
    assert result.raw == body
    assert json.loads(result.model_dump_json())["error_code"] == "10001"


@pytest.mark.parametrize(
    ("fields", "detail", "error_code", "updated_at"),
    [
        ({"date_updated": "yesterday"}, None, None, None),
        ({"date_updated": 12.5e99}, None, None, None),
        ({"error_code": "4002"}, None, "4002", "keep"),
        ({"error_code": 4002.0}, None, "4002", "keep"),
        ({"error_code": [1]}, None, None, "keep"),
        ({"error_code": True}, None, None, "keep"),
        ({"error_message": 5}, None, None, "keep"),
        ({"error_message": "Bad number"}, "Bad number", None, "keep"),
        ({"date_updated": "2024-05-01T10:00:05"}, None, None, "naive"),
        ({"date_updated": "2024-05-01T12:00:05+02:00"}, None, None, "naive"),
    ],
)
async def test_malformed_optional_fields_degrade_to_none(
    api: respx.MockRouter,
    provider: SendblueProvider,
    fields: dict[str, Any],
    detail: str | None,
    error_code: str | None,
    updated_at: str | None,
) -> None:
    answer(api, httpx.Response(200, json=payload(**fields)))
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.DELIVERED
    assert result.detail == detail
    assert result.error_code == error_code
    if updated_at is None:
        assert result.updated_at is None
    elif updated_at == "naive":
        # No offset means UTC (Sendblue writes UTC); an offset is converted to UTC.
        assert result.updated_at == datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)
    else:
        assert result.updated_at is not None


# -- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize("handle", [HANDLE, f"sendblue:{HANDLE}"])
async def test_request_carries_handle_and_both_auth_headers(
    api: respx.MockRouter, provider: SendblueProvider, handle: str
) -> None:
    route = answer(api, httpx.Response(200, json=payload()))
    result = await provider.get_status(handle)
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == "/api/status"
    assert request.url.params["handle"] == HANDLE
    assert request.headers["sb-api-key-id"] == KEY
    assert request.headers["sb-api-secret-key"] == SECRET
    assert request.headers["user-agent"].startswith("msgstatus/")
    assert result.handle == f"sendblue:{HANDLE}"


async def test_handle_is_url_encoded(api: respx.MockRouter, provider: SendblueProvider) -> None:
    route = answer(api, httpx.Response(200, json=payload(message_handle="msg_a&b=c/é+%")))
    await provider.get_status("msg_a&b=c/é+%")
    request = route.calls.last.request
    assert request.url.params["handle"] == "msg_a&b=c/é+%"
    assert b"&b=" not in request.url.query


async def test_typed_handles(api: respx.MockRouter, provider: SendblueProvider) -> None:
    class Typed:
        def __init__(self, provider: str, native: str) -> None:
            self.provider = provider
            self.native = native

        def __str__(self) -> str:
            return f"{self.provider}:{self.native}"

    route = answer(api, httpx.Response(200, json=payload()))
    result = await provider.get_status(Typed("sendblue", HANDLE))
    assert result.handle == f"sendblue:{HANDLE}"
    with pytest.raises(InvalidHandleError, match="chime"):
        await provider.get_status(Typed("chime", "x"))
    assert route.call_count == 1


BAD_HANDLES = [
    "",
    " ",
    "   padded ",
    "a\r\nb",
    "a\nb",
    "a\x00b",
    "a\tb",
    "a b",
    "x" * 5000,
    "x" * 257,
    "sendblue:",
    "sendblue: x",
    "ab\u200bcd",
    "ab\u202ecd",
    "ab\u2028cd",
    42,
    None,
    b"abc",
]


@pytest.mark.parametrize("handle", BAD_HANDLES)
async def test_bad_handles_fail_before_any_request(
    api: respx.MockRouter, provider: SendblueProvider, handle: Any
) -> None:
    route = answer(api, httpx.Response(200, json=payload()))
    with pytest.raises(InvalidHandleError) as caught:
        await provider.get_status(handle)
    assert caught.value.provider == "sendblue"
    assert route.call_count == 0


async def test_longest_handle_is_accepted(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(api, httpx.Response(200, json=payload(message_handle="x" * 256)))
    result = await provider.get_status("x" * 256)
    assert result.handle == "sendblue:" + "x" * 256


# -- errors -----------------------------------------------------------------------------------

ERROR_CASES = [
    (400, InvalidHandleError, 1),
    (401, AuthenticationError, 1),
    (403, PermissionDeniedError, 1),
    (404, MessageNotFoundError, 1),
    (422, InvalidHandleError, 1),
    (408, ProviderUnavailableError, 3),
    (409, ProviderUnavailableError, 3),
    (429, RateLimitedError, 3),
    (500, ProviderUnavailableError, 3),
    (501, ProviderUnavailableError, 3),
    (502, ProviderUnavailableError, 3),
    (503, ProviderUnavailableError, 3),
    (504, ProviderUnavailableError, 3),
]


@pytest.mark.parametrize(("code", "error", "attempts"), ERROR_CASES)
async def test_error_statuses(
    api: respx.MockRouter,
    provider: SendblueProvider,
    code: int,
    error: type[MsgStatusError],
    attempts: int,
) -> None:
    body = {"status": "ERROR", "error_message": "nope"}
    route = answer(api, httpx.Response(code, json=body))
    with pytest.raises(error) as caught:
        await provider.get_status(HANDLE)
    assert type(caught.value) is error
    assert caught.value.provider == "sendblue"
    assert caught.value.handle == f"sendblue:{HANDLE}"
    assert str(code) in caught.value.message
    assert route.call_count == attempts


@pytest.mark.parametrize("code", [301, 302, 304, 402, 405, 410, 418, 451])
async def test_unexpected_statuses_are_plain_errors_and_not_retried(
    api: respx.MockRouter, provider: SendblueProvider, code: int
) -> None:
    elsewhere = respx.get("https://elsewhere.example/steal").mock(
        return_value=httpx.Response(200, json=payload())
    )
    route = answer(
        api, httpx.Response(code, headers={"location": "https://elsewhere.example/steal"})
    )
    with pytest.raises(MsgStatusError) as caught:
        await provider.get_status(HANDLE)
    assert type(caught.value) is MsgStatusError
    assert f"HTTP {code}" in caught.value.message
    assert route.call_count == 1
    assert elsewhere.call_count == 0  # redirects are not followed: they would carry the secret


async def test_transient_failure_then_success(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    route = answer(
        api,
        httpx.Response(503, text="<html>busy</html>"),
        httpx.Response(429, headers={"retry-after": "0"}),
        httpx.Response(200, json=payload()),
    )
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.DELIVERED
    assert route.call_count == 3


async def test_max_attempts_one_turns_retries_off(api: respx.MockRouter) -> None:
    route = answer(api, httpx.Response(503))
    async with SendblueProvider(KEY, SECRET, retry=RetryPolicy(max_attempts=1)) as provider:
        with pytest.raises(ProviderUnavailableError):
            await provider.get_status(HANDLE)
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("exception", "error", "attempts"),
    [
        (httpx.ConnectError("refused"), ProviderUnavailableError, 3),
        (httpx.ConnectTimeout("slow"), ProviderUnavailableError, 3),
        (httpx.ReadTimeout("slow"), ProviderUnavailableError, 3),
        (httpx.PoolTimeout("full"), ProviderUnavailableError, 3),
        (httpx.ReadError("reset"), ProviderUnavailableError, 3),
        (httpx.WriteError("reset"), ProviderUnavailableError, 3),
        (httpx.RemoteProtocolError("bad"), ProviderUnavailableError, 3),
        (httpx.ProxyError("proxy"), ProviderUnavailableError, 3),
        (httpx.DecodingError("bad gzip"), ProviderResponseError, 1),
    ],
)
async def test_httpx_exceptions_are_translated(
    api: respx.MockRouter,
    provider: SendblueProvider,
    exception: Exception,
    error: type[MsgStatusError],
    attempts: int,
) -> None:
    route = answer(api, exception)
    with pytest.raises(error) as caught:
        await provider.get_status(HANDLE)
    assert type(caught.value) is error
    assert caught.value.__cause__ is not None
    assert caught.value.handle == f"sendblue:{HANDLE}"
    assert route.call_count == attempts


async def test_an_attempt_never_outlasts_a_numeric_timeout(api: respx.MockRouter) -> None:
    # A server that trickles bytes defeats httpx's per-read timeout; the attempt's own deadline
    # does not care. (A mocked transport has no httpx timeouts at all: only the deadline acts.)
    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200, json=payload())

    api.get("/api/status").mock(side_effect=slow)
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=0.0)
    async with SendblueProvider(KEY, SECRET, timeout=0.1, retry=retry) as provider:
        with anyio.fail_after(3), pytest.raises(ProviderUnavailableError, match="timeout"):
            await provider.get_status(HANDLE)


# -- Retry-After ------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 7 "}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "99999999"}, 86400.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-5", "retry-after": "9"}, 9.0),
        (
            {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 30, timezone.utc), True)},
            30,
        ),
        ({"retry-after": format_datetime(datetime.fromtimestamp(NOW - 30, timezone.utc), True)}, 0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00"}, 0.0),
        ({"retry-after": "Wed, 99 Foo 2015 07:28:00 GMT"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    parsed = parse_retry_after(httpx.Headers(headers), now=NOW)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("3", 3.0, 3.0), ("0.25", 0.25, 0.25), ("date 20 s from now", 10, 20)],
)
async def test_rate_limit_error_carries_retry_after(
    api: respx.MockRouter, provider: SendblueProvider, header: str, low: float, high: float
) -> None:
    if header.startswith("date"):
        header = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    answer(api, httpx.Response(429, headers={"Retry-After": header}))
    with pytest.raises(RateLimitedError) as caught:
        await provider.get_status(HANDLE)
    assert caught.value.retry_after is not None
    assert low <= caught.value.retry_after <= high
    assert caught.value.retryable


async def test_rate_limit_without_retry_after(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(api, httpx.Response(429, json={"status": "ERROR"}))
    with pytest.raises(RateLimitedError) as caught:
        await provider.get_status(HANDLE)
    assert caught.value.retry_after is None


# -- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"<html><body>Welcome</body></html>",
        b"",
        b"[1, 2]",
        b'"DELIVERED"',
        b"null",
        b'{"status": 3}',
        b'{"status": ["SENT"]}',
        b'{"status": {"value": "SENT"}}',
        b'{"status": "SENT", "x": NaN}',
        b"\xff\xfe\xfd",
        b'{"status": "SENT"',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
async def test_a_2xx_body_that_is_not_a_status_payload(
    api: respx.MockRouter, provider: SendblueProvider, content: bytes
) -> None:
    route = answer(api, httpx.Response(200, content=content))
    with pytest.raises(ProviderResponseError) as caught:
        await provider.get_status(HANDLE)
    assert caught.value.handle == f"sendblue:{HANDLE}"
    assert route.call_count == 1


async def test_a_body_over_the_cap_is_not_read(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(
        api, httpx.Response(200, content=b'{"status": "SENT", "pad": "' + b"x" * MAX_RESPONSE_BYTES)
    )
    with pytest.raises(ProviderResponseError, match="larger than"):
        await provider.get_status(HANDLE)


async def test_a_streamed_body_without_length_stops_at_the_cap(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"status": "SENT", "pad": "'
        for _ in range(10_000):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    answer(api, httpx.Response(200, content=endless()))
    with pytest.raises(ProviderResponseError, match="larger than"):
        await provider.get_status(HANDLE)
    assert sent <= 2 * MAX_RESPONSE_BYTES


async def test_a_compressed_body_is_capped_after_decoding(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    bomb = gzip.compress(b'{"status": "SENT", "pad": "' + b"x" * (8 * MAX_RESPONSE_BYTES) + b'"}')
    assert len(bomb) < MAX_RESPONSE_BYTES // 10
    answer(api, httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"}))
    with pytest.raises(ProviderResponseError, match="larger than"):
        await provider.get_status(HANDLE)


async def test_a_compressed_body_within_the_cap_is_read(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    body = gzip.compress(json.dumps(payload(status="READ")).encode())
    answer(api, httpx.Response(200, content=body, headers={"content-encoding": "gzip"}))
    assert (await provider.get_status(HANDLE)).status is MessageStatus.READ


# -- secrets ----------------------------------------------------------------------------------


def full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error)


def test_repr_shows_neither_key_nor_secret() -> None:
    provider = SendblueProvider(KEY, SECRET)
    text = repr(provider) + str(provider)
    assert KEY not in text
    assert SECRET not in text
    assert "https://api.sendblue.co" in text


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"status": "ERROR", "error_message": f"bad secret {SECRET}"}),
        httpx.Response(500, text=f"<html>{SECRET}</html>"),
        httpx.Response(200, text=f"not json {SECRET}"),
        httpx.Response(200, json={"status": 5, "echo": SECRET}),
        httpx.Response(418, text=SECRET),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
async def test_errors_never_contain_the_secret(
    api: respx.MockRouter,
    provider: SendblueProvider,
    response: httpx.Response | Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer(api, response)
    with caplog.at_level(logging.DEBUG), pytest.raises(MsgStatusError) as caught:
        await provider.get_status(HANDLE)
    assert SECRET not in full_text(caught.value)
    assert SECRET not in caplog.text


async def test_raw_never_contains_the_secret(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    body = payload(
        status="DELIVERED",
        echo=SECRET,
        nested={"headers": [f"sb-api-secret-key: {SECRET}"], SECRET: 1},
        error_message=f"you sent {SECRET}",
    )
    answer(api, httpx.Response(200, json=body))
    result = await provider.get_status(HANDLE)
    dumped = result.model_dump_json()
    assert SECRET not in dumped
    assert "[redacted]" in dumped
    assert result.raw["echo"] == "[redacted]"
    assert result.detail == "you sent [redacted]"
    assert result.status is MessageStatus.DELIVERED


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


@pytest.mark.parametrize(
    "body",
    [
        # The secret spelled with JSON escapes: no byte of the body is the secret's own.
        lambda: (
            f'{{"status": "DELIVERED", "message_handle": "{HANDLE}", "echo": "{_escaped(SECRET)}",'
            f' "{_escaped(SECRET)}": 1}}'
        ).encode(),
        # The whole body in UTF-16 or UTF-32 (json.loads reads those too).
        lambda: json.dumps(payload(echo=SECRET, **{SECRET: 1})).encode("utf-16"),
        lambda: json.dumps(payload(echo=SECRET, **{SECRET: 1})).encode("utf-32-le"),
        # The plain case, with a UTF-8 byte order mark.
        lambda: b"\xef\xbb\xbf" + json.dumps(payload(echo=SECRET, **{SECRET: 1})).encode(),
    ],
    ids=["json-escapes", "utf-16", "utf-32-le", "utf-8-bom"],
)
async def test_an_echoed_secret_is_redacted_however_the_body_spells_it(
    api: respx.MockRouter, provider: SendblueProvider, body: Callable[[], bytes]
) -> None:
    # The provider skips the scrub only when the body's bytes cannot hold the secret: a
    # spelling without the secret's own bytes must still be scrubbed.
    answer(api, httpx.Response(200, content=body(), headers={"content-type": "application/json"}))
    result = await provider.get_status(HANDLE)
    assert result.status is MessageStatus.DELIVERED
    assert SECRET not in result.model_dump_json()
    assert result.raw["echo"] == "[redacted]"
    assert "[redacted]" in result.raw


def test_a_short_secret_is_redacted_only_as_a_whole_value() -> None:
    # A test double's one-letter secret must not mangle every "s" in the payload.
    provider = SendblueProvider(KEY, "s")
    result = provider.result_from_payload(
        {"status": "SENT", "echo": "s", "message_handle": "h"}, handle="h"
    )
    assert result.status is MessageStatus.SENT
    assert result.raw == {"status": "SENT", "echo": "[redacted]", "message_handle": "h"}


async def test_credentials_errors_do_not_show_them() -> None:
    for key, secret in (("", SECRET), (KEY, ""), (KEY, SECRET + "\n"), (KEY, "sécret")):
        with pytest.raises(AuthenticationError) as caught:
            SendblueProvider(key, secret)
        text = full_text(caught.value)
        assert SECRET not in text
        assert "sécret" not in text


def test_tls_verification_is_on() -> None:
    provider = SendblueProvider(KEY, SECRET)
    # The provider's own transport (msgstatus's pool) keeps its SSL context: reach for it.
    transport = provider._client._transport
    assert isinstance(transport, PoolTransport)
    context: ssl.SSLContext = transport._ssl_context
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.sendblue.co",
        "https://api.sendblue.co/",
        "https://proxy.example/sendblue/",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:1234/",
        "http://LOCALHOST",
        "http://[::1]:8080",
        "http://[::ffff:127.0.0.1]:8080",
    ],
)
def test_accepted_base_urls(base_url: str) -> None:
    provider = SendblueProvider(KEY, SECRET, base_url=base_url)
    assert not provider.base_url.endswith("/")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.sendblue.co",
        "http://10.0.0.1",
        "http://192.168.1.5:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example",
        "http://[::2]",
        "ftp://api.sendblue.co",
        "api.sendblue.co",
        "https://",
        "https://user:pw@api.sendblue.co",
        "https://api.sendblue.co/?x=1",
        "https://api.sendblue.co/#frag",
    ],
)
def test_refused_base_urls(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        SendblueProvider(KEY, SECRET, base_url=base_url)


async def test_base_url_path_prefix_and_trailing_slash() -> None:
    with respx.mock(assert_all_called=False, using="httpx") as router:
        route = router.get("https://proxy.example/sendblue/api/status").mock(
            return_value=httpx.Response(200, json=payload())
        )
        async with SendblueProvider(
            KEY, SECRET, base_url="https://proxy.example/sendblue/"
        ) as provider:
            await provider.get_status(HANDLE)
    assert route.call_count == 1


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDBLUE_API_KEY", KEY)
    monkeypatch.setenv("SENDBLUE_API_SECRET", SECRET)
    monkeypatch.delenv("SENDBLUE_BASE_URL", raising=False)
    assert SendblueProvider.from_env().base_url == "https://api.sendblue.co"
    monkeypatch.setenv("SENDBLUE_BASE_URL", "http://127.0.0.1:9999/")
    assert SendblueProvider.from_env().base_url == "http://127.0.0.1:9999"
    monkeypatch.setenv("SENDBLUE_BASE_URL", "http://example.com")
    with pytest.raises(ValueError, match="https"):
        SendblueProvider.from_env()


@pytest.mark.parametrize("variable", ["SENDBLUE_API_KEY", "SENDBLUE_API_SECRET"])
@pytest.mark.parametrize("value", [None, ""])
def test_from_env_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str | None
) -> None:
    monkeypatch.setenv("SENDBLUE_API_KEY", KEY)
    monkeypatch.setenv("SENDBLUE_API_SECRET", SECRET)
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    with pytest.raises(AuthenticationError, match=variable) as caught:
        SendblueProvider.from_env()
    assert SECRET not in full_text(caught.value)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_bad_timeouts(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        SendblueProvider(KEY, SECRET, timeout=timeout)


def test_default_timeout_and_name() -> None:
    provider = SendblueProvider(KEY, SECRET)
    assert provider.name == "sendblue"
    assert provider._timeout == DEFAULT_TIMEOUT
    assert provider._client.timeout == DEFAULT_TIMEOUT
    assert SendblueProvider(KEY, SECRET, timeout=2.5)._timeout == httpx.Timeout(2.5)


async def test_aclose_closes_only_a_client_it_created(api: respx.MockRouter) -> None:
    answer(api, httpx.Response(200, json=payload()))
    own = SendblueProvider(KEY, SECRET)
    await own.aclose()
    assert own._client.is_closed
    with pytest.raises(RuntimeError, match="SendblueProvider is closed"):
        await own.get_status(HANDLE)

    async with httpx.AsyncClient() as mine:
        async with SendblueProvider(KEY, SECRET, http_client=mine) as borrowed:
            assert (await borrowed.get_status(HANDLE)).status is MessageStatus.DELIVERED
        assert not mine.is_closed
        # Closed is closed, whoever owns the HTTP client (it used to keep answering).
        requests = len(api.calls)
        with pytest.raises(RuntimeError, match="SendblueProvider is closed"):
            await borrowed.get_status(HANDLE)
        assert len(api.calls) == requests


async def test_a_borrowed_client_gets_the_auth_headers_and_no_redirects(
    api: respx.MockRouter,
) -> None:
    route = answer(api, httpx.Response(200, json=payload()))
    async with (
        httpx.AsyncClient(follow_redirects=True) as mine,
        SendblueProvider(KEY, SECRET, http_client=mine) as provider,
    ):
        await provider.get_status(HANDLE)
    assert route.calls.last.request.headers["sb-api-secret-key"] == SECRET


# -- payloads you already hold ----------------------------------------------------------------

WEBHOOK = {
    "accountEmail": "ops@example.com",
    "content": "Hello world!",
    "is_outbound": True,
    "status": "DELIVERED",
    "error_code": None,
    "error_message": None,
    "message_handle": HANDLE,
    "date_sent": "2020-09-10T06:15:05.962Z",
    "date_updated": "2020-09-10T06:15:14.115Z",
    "from_number": "+15122164639",
    "number": "+19998887777",
    "to_number": "+19998887777",
    "was_downgraded": False,
    "plan": "blue",
}


def test_result_from_a_status_callback_body() -> None:
    result = SendblueProvider(KEY, SECRET).result_from_payload(WEBHOOK)
    assert result.handle == f"sendblue:{HANDLE}"
    assert result.status is MessageStatus.DELIVERED
    assert result.is_final
    assert result.updated_at == datetime(2020, 9, 10, 6, 15, 14, 115000, tzinfo=timezone.utc)
    assert result.raw == WEBHOOK


def test_result_from_payload_rules() -> None:
    provider = SendblueProvider(KEY, SECRET)
    sent = provider.result_from_payload(
        {"status": "QUEUED", "message_handle": "abc"}, handle="sendblue:abc"
    )
    assert (sent.handle, sent.status, sent.is_final) == (
        "sendblue:abc",
        MessageStatus.PENDING,
        False,
    )
    declined = provider.result_from_payload(
        {"status": "DECLINED", "error_key": "PRE_REPLY_LIMIT_REACHED", "message_handle": "m1"}
    )
    # A quota window: the message was not sent (FAILED, so RESEND), not a permanent refusal.
    assert (declined.handle, declined.status) == ("sendblue:m1", MessageStatus.FAILED)
    opted_out = provider.result_from_payload(
        {"status": "DECLINED", "error_key": "OPTED_OUT", "message_handle": "m1"}
    )
    assert opted_out.status is MessageStatus.DENIED
    for bad in ({"status": "SENT"}, {"message_handle": "a\nb"}, {"message_handle": 7}):
        with pytest.raises(ProviderResponseError, match="message_handle"):
            provider.result_from_payload(bad)
    with pytest.raises(ProviderResponseError, match="status"):
        provider.result_from_payload({"status": 1, "message_handle": "m1"})
    with pytest.raises(ProviderResponseError):
        provider.result_from_payload(["not", "a", "dict"])  # type: ignore[arg-type]
    # A mapping with datetimes (an SDK model's model_dump()) is accepted; raw stays JSON-safe.
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    dated = provider.result_from_payload(
        {"status": "SENT", "when": moment, "message_handle": "x"}, handle="x"
    )
    assert dated.raw["when"] == "2026-01-02T03:04:05+00:00"
    with pytest.raises(InvalidHandleError):
        provider.result_from_payload({"status": "SENT"}, handle="a b")
    scrubbed = provider.result_from_payload(
        {"status": "SENT", "echo": SECRET, "message_handle": "x"}, handle="x"
    )
    assert SECRET not in scrubbed.model_dump_json()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["status", "error_key", "error_code", "error_message", "date_updated", "message_handle"]
)


# One provider for every example: building its TLS context takes tens of milliseconds.
NORMALIZER = SendblueProvider(KEY, SECRET)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS | st.text(max_size=8), JSON | st.text(), max_size=8))
def test_any_json_object_gives_a_result_or_a_response_error(body: dict[str, Any]) -> None:
    try:
        result = NORMALIZER.result_from_payload(body, handle="h")
    except ProviderResponseError:
        names_it = body.get("message_handle") == "h"
        assert not names_it or not isinstance(body.get("status"), str | None)
    else:
        assert isinstance(result, StatusResult)
        assert body["message_handle"] == "h"
        assert result.handle == "sendblue:h"
        key = body.get("error_key")
        key_text = key.strip().upper() if isinstance(key, str) else None if key is None else key
        if key_text:
            assert result.status is KNOWN_ERROR_KEYS.get(str(key_text), MessageStatus.UNKNOWN)


# The documented error keys and the status each gives, written out independently of the code.
KNOWN_ERROR_KEYS = {
    "LINE_HOURLY_LIMIT_REACHED": MessageStatus.FAILED,
    "LINE_DAILY_LIMIT_REACHED": MessageStatus.FAILED,
    "PRE_REPLY_LIMIT_REACHED": MessageStatus.FAILED,
    "OPTED_OUT": MessageStatus.DENIED,
}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(FIELDS | st.text(max_size=8), JSON | st.text(), max_size=8))
def test_any_json_object_naming_the_message_gives_a_result_unless_its_status_is_not_text(
    body: dict[str, Any],
) -> None:
    body = {**body, "message_handle": "h"}
    try:
        NORMALIZER.result_from_payload(body, handle="h")
    except ProviderResponseError:
        assert not isinstance(body.get("status"), str | None)


# -- the body decoder's edges, borrowed clients, quota windows ---------------------------------


async def test_a_body_an_event_hook_read_is_still_capped_and_used(api: respx.MockRouter) -> None:
    async def read(response: httpx.Response) -> None:
        await response.aread()

    route = answer(
        api,
        httpx.Response(200, json=payload(status="READ")),
        httpx.Response(200, content=b'{"status": "SENT", "pad": "' + b"x" * MAX_RESPONSE_BYTES),
    )
    client = httpx.AsyncClient(event_hooks={"response": [read]})
    async with client, SendblueProvider(KEY, SECRET, http_client=client, retry=FAST) as provider:
        assert (await provider.get_status(HANDLE)).status is MessageStatus.READ
        with pytest.raises(ProviderResponseError, match="larger than"):
            await provider.get_status(HANDLE)
    assert route.call_count == 2


async def test_a_borrowed_client_closed_by_its_owner_is_a_typed_error(
    api: respx.MockRouter,
) -> None:
    route = answer(api, httpx.Response(200, json=payload()))
    client = httpx.AsyncClient()
    provider = SendblueProvider(KEY, SECRET, http_client=client, retry=FAST)
    await client.aclose()
    with pytest.raises(MsgStatusError, match="the provider's HTTP client is closed") as caught:
        await provider.get_status(HANDLE)
    assert type(caught.value) is MsgStatusError
    assert caught.value.handle == f"sendblue:{HANDLE}"
    assert route.call_count == 0
    await provider.aclose()


async def test_a_quota_refusal_is_retryable_after_its_window(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(
        api,
        httpx.Response(
            200,
            json=payload(
                status="ERROR",
                error_key="LINE_HOURLY_LIMIT_REACHED",
                error_code=429,
                date_updated="2024-05-01T10:00:05.250Z",
            ),
        ),
    )
    result = await provider.get_status(HANDLE)
    assert result.not_before == datetime(2024, 5, 1, 11, 0, 5, 250000, tzinfo=timezone.utc)
    assert result.detail is not None
    assert "hourly new-contact cap" in result.detail


async def test_a_quota_refusal_without_a_date_counts_its_window_from_now(
    api: respx.MockRouter, provider: SendblueProvider
) -> None:
    answer(
        api,
        httpx.Response(
            200,
            json=payload(status="ERROR", error_key="LINE_DAILY_LIMIT_REACHED", date_updated=None),
        ),
    )
    before = datetime.now(timezone.utc)
    result = await provider.get_status(HANDLE)
    after = datetime.now(timezone.utc)
    assert result.not_before is not None
    assert before + timedelta(days=1) <= result.not_before <= after + timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(
    target=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    base=st.sampled_from(
        [BASE, "http://127.0.0.1:8080", "https://proxy.example/sendblue", "https://[::1]:8443"]
    ),
)
def test_the_lookup_url_is_the_one_httpx_builds_from_params(target: str, base: str) -> None:
    # The provider's own client builds its lookup URL without httpx's parser: it must be the
    # URL httpx builds from params={"handle": ...} (as build_request does), for any handle text.
    status_url = httpx.URL(f"{base}/api/status")
    make = _lookup_url_maker(status_url)
    assert make.__name__ == "short"  # the short way is the one in use with this httpx
    expected = httpx.Request("GET", status_url, params={"handle": target})
    url = make(target)
    assert str(url) == str(expected.url)
    assert url.raw_path == expected.url.raw_path
    assert url == expected.url
    assert url.params["handle"] == target
