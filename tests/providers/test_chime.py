"""ChimeHandle and ChimeProvider without a network: handles, botocore's Stubber, fake clients."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import boto3
import botocore.config
import botocore.exceptions as bce
import botocore.parsers
import pytest
import urllib3.exceptions
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstatus import (
    AuthenticationError,
    ChimeHandle,
    ChimeProvider,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResendAction,
    ResendDecision,
    RetryPolicy,
    TypedHandle,
)
from msgstatus._providers.base import MAX_HANDLE_LENGTH, split_handle, validate_handle_text
from msgstatus._providers.chime import (
    CHIME_ERROR_CODES,
    CHIME_FINAL_STATUSES,
    CHIME_STATUS_MAP,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
)

CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/app1/channel/ch1"
SENDER = "arn:aws:chime:us-east-1:111122223333:app-instance/app1/user/alice"
OTHER = "arn:aws:chime:us-east-1:111122223333:app-instance/app1/user/bob"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)
ONCE = RetryPolicy(max_attempts=1)

pytestmark = pytest.mark.anyio


# -- handles ----------------------------------------------------------------------------------


def test_handle_fields_and_canonical_string() -> None:
    handle = ChimeHandle(CHANNEL, "msg-1", "sub_1", SENDER)
    assert handle.provider == "chime"
    assert isinstance(handle, TypedHandle)
    assert str(handle) == f"chime:{CHANNEL};message=msg-1;sub_channel=sub_1;bearer={SENDER}"
    assert str(ChimeHandle(CHANNEL, "msg-1")) == f"chime:{CHANNEL};message=msg-1"
    assert ChimeHandle.parse(str(handle)) == handle
    assert hash(ChimeHandle.parse(str(handle))) == hash(handle)
    with pytest.raises(dataclasses.FrozenInstanceError):
        handle.message_id = "other"  # type: ignore[misc]


def test_with_bearer() -> None:
    handle = ChimeHandle(CHANNEL, "m1", "s1")
    assert handle.with_bearer(SENDER) == ChimeHandle(CHANNEL, "m1", "s1", SENDER)
    assert handle.with_bearer(SENDER).with_bearer(None) == handle
    with pytest.raises(InvalidHandleError):
        handle.with_bearer("not an arn")


@pytest.mark.parametrize(
    "text",
    [
        f"chime:{CHANNEL};message=m1;sub_channel=s1;bearer={SENDER}",
        f"{CHANNEL};message=m1;sub_channel=s1;bearer={SENDER}",
    ],
)
def test_parse_accepts_the_prefix_or_not(text: str) -> None:
    assert ChimeHandle.parse(text) == ChimeHandle(CHANNEL, "m1", "s1", SENDER)


def test_only_the_channel_is_escaped_and_the_bearer_takes_the_rest() -> None:
    channel = "arn:aws:chime:us-east-1:1:app-instance/a;b\\c=%3B?e#f&g/channel/é日本"
    bearer = "arn:aws:chime:us-east-1:1:app-instance/x;message=evil;sub_channel=s\\;bearer=y"
    handle = ChimeHandle(channel, "m", "s", bearer)
    text = str(handle)
    assert text == (
        "chime:arn:aws:chime:us-east-1:1:app-instance/a\\;b\\\\c=%3B?e#f&g/channel/é日本"
        f";message=m;sub_channel=s;bearer={bearer}"
    )
    assert ChimeHandle.parse(text) == handle
    # A channel that looks like it ends with fields is still one channel.
    tricky = ChimeHandle("arn:a::::x;message=q;bearer=arn:a::::z", "m")
    assert str(tricky) == "chime:arn:a::::x\\;message=q\\;bearer=arn:a::::z;message=m"
    assert ChimeHandle.parse(str(tricky)) == tricky
    # Whatever follows bearer= is the bearer, even what looks like a field.
    late = ChimeHandle.parse(f"chime:{CHANNEL};message=m;bearer={SENDER};sub_channel=s")
    assert (late.sub_channel_id, late.bearer) == (None, f"{SENDER};sub_channel=s")


VALID_CHANNELS = [
    "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/b",
    "arn:a::::x",  # the shortest shape the pattern allows
    "arn:aws-cn:chime:cn-north-1:1:app-instance/a:b:c",
    "arn:aws:chime:us-east-1:1:x.y/..z/a..",  # dots inside a segment are not traversal
]


@pytest.mark.parametrize("channel", VALID_CHANNELS)
def test_valid_channel_arns(channel: str) -> None:
    assert ChimeHandle(channel, "m").channel_arn == channel


INVALID_FIELDS: list[Any] = [
    # (channel_arn, message_id, sub_channel_id, bearer)
    pytest.param(("not-an-arn", "m", None, None), id="channel-not-an-arn"),
    pytest.param(("arn:aws:chime", "m", None, None), id="channel-too-few-parts"),
    pytest.param(("arn:AWS:chime:us-east-1:1:x", "m", None, None), id="channel-upper-partition"),
    pytest.param(("arn:aws:chime:us-east-1:1:/x", "m", None, None), id="channel-resource-slash"),
    pytest.param(("arn:aws:chime:us-east-1:1:a/../b", "m", None, None), id="channel-dotdot"),
    pytest.param(("arn:aws:chime:us-east-1:1:a/..", "m", None, None), id="channel-dotdot-end"),
    pytest.param(("arn:aws:chime:us-east-1:1:a/./b", "m", None, None), id="channel-dot"),
    pytest.param(("arn:aws:chime:us-east-1:1:a//b", "m", None, None), id="channel-empty-segment"),
    pytest.param(("arn:aws:chime:us-east-1:1:a/b/", "m", None, None), id="channel-trailing-slash"),
    pytest.param(("arn:aws:chime:us-east-1:1:a/%2e%2E/b", "m", None, None), id="channel-escaped"),
    pytest.param(("arn:aws:chime:us-east-1:1:a\\..\\b", "m", None, None), id="channel-backslash"),
    pytest.param(("arn:aws:chime:us-east-1:1:a\r\nb", "m", None, None), id="channel-crlf"),
    pytest.param(("arn:aws:chime:us-east-1:1:a b", "m", None, None), id="channel-space"),
    pytest.param(("arn:aws:chime:us-east-1:1:a\u200bb", "m", None, None), id="channel-zero-width"),
    pytest.param(("arn:aws:chime:us-east-1:1:" + "x" * 1025, "m", None, None), id="channel-long"),
    pytest.param((CHANNEL, "m\r\n", None, None), id="message-crlf"),
    pytest.param((CHANNEL, "x" * 129, None, None), id="message-129"),
    pytest.param((CHANNEL, "", None, None), id="message-empty"),
    pytest.param((CHANNEL, "../m", None, None), id="message-traversal"),
    pytest.param((CHANNEL, "m;x", None, None), id="message-semicolon"),
    pytest.param((CHANNEL, "m", "s/1", None), id="sub-channel-slash"),
    pytest.param((CHANNEL, "m", "", None), id="sub-channel-empty"),
    pytest.param((CHANNEL, "m", "x" * 129, None), id="sub-channel-129"),
    pytest.param((CHANNEL, "m", None, SENDER + "\r\nX-Evil: 1"), id="bearer-crlf"),
    pytest.param((CHANNEL, "m", None, "alice"), id="bearer-not-an-arn"),
    pytest.param((CHANNEL, "m", None, SENDER + "é"), id="bearer-non-ascii"),
    pytest.param((CHANNEL, "m", None, SENDER + "/../bob"), id="bearer-traversal"),
    pytest.param((1, "m", None, None), id="channel-not-a-string"),
    pytest.param((CHANNEL, 1, None, None), id="message-not-a-string"),
]


@pytest.mark.parametrize("fields", INVALID_FIELDS)
def test_invalid_fields_raise_invalid_handle_error(fields: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidHandleError) as caught:
        ChimeHandle(*fields)
    assert caught.value.provider == "chime"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("chime:", id="prefix-only"),
        pytest.param(f"chime:{CHANNEL}", id="no-message"),
        pytest.param(f"chime:{CHANNEL};message=", id="empty-message"),
        pytest.param(f"chime:{CHANNEL};message=m;message=n", id="duplicate"),
        pytest.param(f"chime:{CHANNEL};message=m;colour=red", id="unknown-field"),
        pytest.param(f"chime:{CHANNEL};message=m;bearer", id="field-without-value"),
        pytest.param(f"chime:{CHANNEL};message=m;", id="trailing-semicolon"),
        pytest.param(f"chime:{CHANNEL}\\x;message=m", id="bad-escape"),
        pytest.param(f"chime:{CHANNEL}\\", id="trailing-backslash"),
        pytest.param(f"chime:{CHANNEL}\\;message=m", id="escaped-separator"),
        pytest.param(f"chime:{CHANNEL};bearer={SENDER};message=m", id="out-of-order"),
        pytest.param(f"chime:{CHANNEL};sub_channel=s;message=m", id="sub-channel-first"),
        pytest.param(f"chime:{CHANNEL};message=m;bearer=", id="empty-bearer"),
        pytest.param(f"chime:{CHANNEL};message=m;sub_channel=", id="empty-sub-channel"),
        pytest.param(f"chime:{CHANNEL};message=m\r\n", id="crlf"),
        pytest.param(f" chime:{CHANNEL};message=m", id="leading-space"),
        pytest.param(f"sendblue:{CHANNEL};message=m", id="other-prefix"),
        pytest.param("chime:" + "x" * (MAX_HANDLE_LENGTH + 1), id="too-long"),
    ],
)
def test_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(InvalidHandleError):
        ChimeHandle.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidHandleError):
        ChimeHandle.parse(42)  # type: ignore[arg-type]


# Characters the ARN pattern's '.' allows and the handle accepts: anything printable but space.
_ARN_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")
)
_RESERVED = st.sampled_from(
    [*";%=?#&:\\'\"<>{}[]|é日😀", "\\;", "\\\\", ";message=x", ";bearer=arn:a::::b", "%2e"]
)
_SEGMENT = (
    st.lists(st.one_of(_ARN_CHARS, _RESERVED), min_size=1, max_size=12)
    .map("".join)
    .filter(lambda s: "/" not in s)
)


def _no_traversal(arn: str) -> bool:
    # The handle's rule, restated: no empty, '.' or '..' segment between '/' and '\\', also
    # after percent-decoding.
    return all(
        segment and urllib.parse.unquote(segment) not in (".", "..")
        for segment in re.split(r"[/\\]", arn)
    )


_HEADER_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", max_size=63)


def _arns(*, ascii_only: bool = False) -> st.SearchStrategy[str]:
    segment = _SEGMENT.filter(str.isascii) if ascii_only else _SEGMENT
    resource = st.lists(segment, min_size=1, max_size=5).map("/".join)
    return st.builds(
        lambda a, b, c, d, r: f"arn:{a}:{b}:{c}:{d}:{r}",
        _HEADER_PART.filter(bool),
        _HEADER_PART,
        _HEADER_PART,
        _HEADER_PART,
        resource,
    ).filter(lambda arn: len(arn.split(":", 5)[5]) <= 1024 and _no_traversal(arn))


_IDS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=128,
)

HANDLES = st.builds(
    ChimeHandle,
    channel_arn=_arns(),
    message_id=_IDS,
    sub_channel_id=st.none() | _IDS,
    bearer=st.none() | _arns(ascii_only=True),
)


@settings(max_examples=300, deadline=None)
@given(HANDLES)
def test_every_valid_handle_round_trips(handle: ChimeHandle) -> None:
    text = str(handle)
    assert ChimeHandle.parse(text) == handle
    assert str(ChimeHandle.parse(text)) == text
    # The canonical string is good input to the client's routing as well.
    assert validate_handle_text(text) == text
    assert split_handle(text)[0] == "chime"
    assert ChimeHandle.parse(text.removeprefix("chime:")) == handle


def test_the_longest_handle_fits_the_client_limit() -> None:
    header = ":".join(["arn", "a" * 63, "b" * 63, "c" * 63, "d" * 63])
    channel = f"{header}:x" + ";" * 1023
    bearer = f"{header}:y" + ";" * 1023
    assert len(channel) == len(bearer) == 1284
    handle = ChimeHandle(channel, "m" * 128, "s" * 128, bearer)
    text = str(handle)
    assert len(text) == 3883
    assert len(text) <= MAX_HANDLE_LENGTH
    assert validate_handle_text(text) == text
    assert ChimeHandle.parse(text) == handle


# -- the provider with botocore's Stubber ----------------------------------------------------


@pytest.fixture(scope="module")
def boto_client() -> Iterator[Any]:
    session = boto3.session.Session(
        aws_access_key_id="AKIDUNITTEST", aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    client = session.client(
        "chime-sdk-messaging",
        endpoint_url="http://127.0.0.1:9",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


@pytest.fixture
def stubber(boto_client: Any) -> Iterator[Stubber]:
    with Stubber(boto_client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _params(message_id: str = "m1", bearer: str = SENDER, **extra: str) -> dict[str, str]:
    return {"ChannelArn": CHANNEL, "MessageId": message_id, "ChimeBearer": bearer, **extra}


STATUS_ROWS = [
    ("PENDING", MessageStatus.PENDING, False),
    ("SENT", MessageStatus.SENT, True),
    ("FAILED", MessageStatus.FAILED, True),
    ("DENIED", MessageStatus.DENIED, True),
]


def test_status_rows_cover_the_table() -> None:
    assert {raw: status for raw, status, _ in STATUS_ROWS} == CHIME_STATUS_MAP
    assert {status for _, status, final in STATUS_ROWS if final} == CHIME_FINAL_STATUSES


@pytest.mark.parametrize(("raw", "status", "final"), STATUS_ROWS)
async def test_every_mapping_row(
    stubber: Stubber, boto_client: Any, raw: str, status: MessageStatus, final: bool
) -> None:
    stubber.add_response(
        "get_channel_message_status",
        {"Status": {"Value": raw, "Detail": f"detail of {raw}"}},
        _params(),
    )
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.provider == "chime"
    assert result.handle == f"chime:{CHANNEL};message=m1"
    assert result.status is status
    assert result.provider_status == raw
    assert result.is_final is final
    assert result.detail == f"detail of {raw}"
    assert result.error_code is None
    assert result.updated_at is None
    assert result.raw == {"Status": {"Value": raw, "Detail": f"detail of {raw}"}}


async def test_unknown_values_are_unknown_and_logged_once(
    stubber: Stubber, boto_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        stubber.add_response(
            "get_channel_message_status", {"Status": {"Value": "TELEPORTED"}}, _params()
        )
    stubber.add_response("get_channel_message_status", {"Status": {"Value": " sent "}}, _params())
    stubber.add_response("get_channel_message_status", {"Status": {}}, _params())
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        first = await provider.get_status(f"chime:{CHANNEL};message=m1")
        await provider.get_status(f"chime:{CHANNEL};message=m1")
    assert (first.status, first.provider_status, first.is_final) == (
        MessageStatus.UNKNOWN,
        "TELEPORTED",
        False,
    )
    assert [r.getMessage() for r in caplog.records].count(
        "chime sent a status this version does not know: 'TELEPORTED'; reported as UNKNOWN"
    ) == 1
    trimmed = await provider.get_status(f"{CHANNEL};message=m1")
    assert (trimmed.status, trimmed.provider_status) == (MessageStatus.SENT, " sent ")
    empty = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert (empty.status, empty.provider_status, empty.detail) == (
        MessageStatus.UNKNOWN,
        None,
        None,
    )


async def test_sub_channel_and_bearer_go_into_the_request(
    stubber: Stubber, boto_client: Any
) -> None:
    stubber.add_response(
        "get_channel_message_status",
        {"Status": {"Value": "SENT"}},
        _params(bearer=OTHER, SubChannelId="sub-7"),
    )
    stubber.add_response("get_channel_message_status", {"Status": {"Value": "SENT"}}, _params())
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    # The handle's bearer wins over the provider's default.
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1", "sub-7", OTHER))
    assert result.handle == f"chime:{CHANNEL};message=m1;sub_channel=sub-7;bearer={OTHER}"
    # The default bearer is used, and not written into the result's handle.
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.handle == f"chime:{CHANNEL};message=m1"


async def test_no_bearer_anywhere_is_refused_before_any_call(
    stubber: Stubber, boto_client: Any
) -> None:
    provider = ChimeProvider(client=boto_client, retry=ONCE)
    with pytest.raises(InvalidHandleError, match="bearer") as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert caught.value.handle == f"chime:{CHANNEL};message=m1"


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param(f"chime:{CHANNEL}/../x;message=m1", id="traversal"),
        pytest.param(f"chime:{CHANNEL};message=m1\r\n", id="crlf-id"),
        pytest.param(f"chime:{CHANNEL};message=m1;bearer={SENDER}\r\nX-Evil: 1", id="crlf"),
        pytest.param(f"chime:{CHANNEL};message={'x' * 129}", id="id-129"),
        pytest.param("chime:channel-1;message=m1", id="not-an-arn"),
        pytest.param("sendblue:abc", id="other-provider"),
        pytest.param(42, id="not-a-handle"),
    ],
)
async def test_invalid_handles_make_no_call(
    stubber: Stubber, boto_client: Any, handle: Any
) -> None:
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(InvalidHandleError):
        await provider.get_status(handle)


async def test_typed_handles_of_other_providers(stubber: Stubber, boto_client: Any) -> None:
    @dataclasses.dataclass(frozen=True)
    class Typed:
        name: str
        native: str

        @property
        def provider(self) -> str:
            return self.name

        def __str__(self) -> str:
            return f"{self.name}:{self.native}"

    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(InvalidHandleError, match="sendblue"):
        await provider.get_status(Typed("sendblue", "abc"))
    stubber.add_response("get_channel_message_status", {"Status": {"Value": "SENT"}}, _params())
    result = await provider.get_status(Typed("chime", f"{CHANNEL};message=m1"))
    assert result.status is MessageStatus.SENT


ERROR_ROWS: list[tuple[str, int, type[MsgStatusError]]] = [
    ("BadRequestException", 400, InvalidHandleError),
    ("UnauthorizedClientException", 401, AuthenticationError),
    ("ForbiddenException", 403, PermissionDeniedError),
    ("NotFoundException", 404, MessageNotFoundError),
    ("ThrottledClientException", 429, RateLimitedError),
    ("ServiceFailureException", 500, ProviderUnavailableError),
    ("ServiceUnavailableException", 503, ProviderUnavailableError),
    ("UnrecognizedClientException", 403, AuthenticationError),
    ("InvalidSignatureException", 403, AuthenticationError),
    ("IncompleteSignatureException", 403, AuthenticationError),
    ("MissingAuthenticationTokenException", 403, AuthenticationError),
    ("ExpiredTokenException", 403, AuthenticationError),
    ("AccessDeniedException", 403, PermissionDeniedError),
    ("ThrottlingException", 400, RateLimitedError),
    ("TooManyRequestsException", 429, RateLimitedError),
    # Codes no table knows: the HTTP status decides, or a plain MsgStatusError.
    ("502", 502, ProviderUnavailableError),
    ("504", 504, ProviderUnavailableError),
    ("InternalFailure", 500, ProviderUnavailableError),
    ("429", 429, RateLimitedError),
    ("ConflictException", 409, MsgStatusError),
    ("WeirdNewException", 400, MsgStatusError),
]


def test_error_rows_cover_the_table() -> None:
    named = {code: kind for code, _, kind in ERROR_ROWS if code in CHIME_ERROR_CODES}
    assert named == {code: rule.error for code, rule in CHIME_ERROR_CODES.items()}


@pytest.mark.parametrize(("code", "http_status", "kind"), ERROR_ROWS)
async def test_every_error_code(
    stubber: Stubber, boto_client: Any, code: str, http_status: int, kind: type[MsgStatusError]
) -> None:
    stubber.add_client_error(
        "get_channel_message_status",
        service_error_code=code,
        service_message="Something\r\nhappened",
        http_status_code=http_status,
        expected_params=_params(),
    )
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(MsgStatusError) as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    error = caught.value
    assert type(error) is kind
    assert isinstance(error.__cause__, bce.ClientError)
    assert (error.provider, error.handle) == ("chime", f"chime:{CHANNEL};message=m1")
    assert code in error.message
    assert f"HTTP {http_status}" in error.message
    # The service's message is quoted on one line.
    assert "Something happened" in error.message
    assert "\r" not in str(error)
    if kind is RateLimitedError:
        assert isinstance(error, RateLimitedError)
        assert error.retry_after is None


async def test_long_service_messages_are_cut(stubber: Stubber, boto_client: Any) -> None:
    stubber.add_client_error(
        "get_channel_message_status", "ForbiddenException", "x" * 5000, 403, expected_params=None
    )
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(PermissionDeniedError) as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert len(caught.value.message) < 400
    assert "only its sender may" in caught.value.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("-1", None), ("soon", None), ("1e9", 86400.0)],
)
async def test_retry_after_is_used_when_sent(
    stubber: Stubber, boto_client: Any, header: str, expected: float | None
) -> None:
    stubber.add_client_error(
        "get_channel_message_status",
        "ThrottledClientException",
        "slow down",
        429,
        response_meta={"HTTPHeaders": {"retry-after": header}},
    )
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(RateLimitedError) as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert caught.value.retry_after == expected


async def test_retry_after_as_an_http_date(stubber: Stubber, boto_client: Any) -> None:
    from email.utils import formatdate

    stubber.add_client_error(
        "get_channel_message_status",
        "ThrottledClientException",
        "",
        429,
        response_meta={"HTTPHeaders": {"retry-after": formatdate(time.time() + 30, usegmt=True)}},
    )
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=ONCE)
    with pytest.raises(RateLimitedError) as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 31


async def test_retryable_errors_are_retried_per_policy(stubber: Stubber, boto_client: Any) -> None:
    stubber.add_client_error("get_channel_message_status", "ThrottledClientException", "", 429)
    stubber.add_client_error("get_channel_message_status", "ServiceUnavailableException", "", 503)
    stubber.add_response("get_channel_message_status", {"Status": {"Value": "SENT"}}, _params())
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=FAST)
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.status is MessageStatus.SENT


async def test_retries_run_out(stubber: Stubber, boto_client: Any) -> None:
    for _ in range(3):
        stubber.add_client_error("get_channel_message_status", "ServiceFailureException", "", 500)
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=FAST)
    with pytest.raises(ProviderUnavailableError):
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))


async def test_non_retryable_errors_are_not_retried(stubber: Stubber, boto_client: Any) -> None:
    stubber.add_client_error("get_channel_message_status", "ForbiddenException", "", 403)
    provider = ChimeProvider(client=boto_client, bearer=SENDER, retry=FAST)
    with pytest.raises(PermissionDeniedError):
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    # assert_no_pending_responses in the fixture: exactly one call was made.


# -- the provider with a fake client ----------------------------------------------------------


class FakeClient:
    """Stands in for a boto3 client: answers with ``behaviour`` and counts threads in flight."""

    def __init__(self, behaviour: Callable[..., Any], delay: float = 0.0) -> None:
        self.behaviour = behaviour
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = 0
        self._lock = threading.Lock()
        self.meta = type("Meta", (), {"region_name": "us-east-1", "endpoint_url": "http://x"})()

    def get_channel_message_status(self, **params: Any) -> Any:
        with self._lock:
            self.calls.append(params)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self.behaviour(**params)
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        self.closed += 1


def _raises(exc: BaseException) -> Callable[..., Any]:
    def behaviour(**_: Any) -> Any:
        raise exc

    return behaviour


def _parse_with_botocore(body: bytes) -> Callable[..., Any]:
    # What botocore does with a 200 body of the wrong shape: its parser raises.
    def behaviour(**_: Any) -> Any:
        import botocore.session

        service = botocore.session.get_session().get_service_model("chime-sdk-messaging")
        shape = service.operation_model("GetChannelMessageStatus").output_shape
        parser = botocore.parsers.create_parser("rest-json")
        return parser.parse({"status_code": 200, "headers": {}, "body": body}, shape)

    return behaviour


def _fake_provider(
    behaviour: Callable[..., Any], **kwargs: Any
) -> tuple[ChimeProvider, FakeClient]:
    fake = FakeClient(behaviour, delay=kwargs.pop("delay", 0.0))
    kwargs.setdefault("retry", ONCE)
    kwargs.setdefault("bearer", SENDER)
    return ChimeProvider(client=fake, **kwargs), fake  # type: ignore[arg-type]


TRANSPORT_ROWS: list[Any] = [
    pytest.param(bce.NoCredentialsError(), AuthenticationError, id="no-credentials"),
    pytest.param(
        bce.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        AuthenticationError,
        id="partial-credentials",
    ),
    pytest.param(
        bce.CredentialRetrievalError(provider="sso", error_msg="expired"),
        AuthenticationError,
        id="credential-retrieval",
    ),
    pytest.param(
        bce.EndpointConnectionError(endpoint_url="https://x"),
        ProviderUnavailableError,
        id="connection-refused",
    ),
    pytest.param(
        bce.ConnectTimeoutError(endpoint_url="https://x"),
        ProviderUnavailableError,
        id="connect-timeout",
    ),
    pytest.param(
        bce.ReadTimeoutError(endpoint_url="https://x"), ProviderUnavailableError, id="read-timeout"
    ),
    pytest.param(
        bce.ConnectionClosedError(endpoint_url="https://x"),
        ProviderUnavailableError,
        id="connection-closed",
    ),
    pytest.param(
        bce.SSLError(endpoint_url="https://x", error="bad cert"),
        ProviderUnavailableError,
        id="tls",
    ),
    pytest.param(
        urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
        ProviderUnavailableError,
        id="body-cut-short",
    ),
    pytest.param(
        botocore.parsers.ResponseParserError("bad"), ProviderResponseError, id="parser-error"
    ),
    pytest.param(bce.ParamValidationError(report="bad"), MsgStatusError, id="param-validation"),
    pytest.param(RuntimeError("boom"), MsgStatusError, id="anything-else"),
]


@pytest.mark.parametrize(("exc", "kind"), TRANSPORT_ROWS)
async def test_botocore_exceptions_never_escape(
    exc: BaseException, kind: type[MsgStatusError]
) -> None:
    provider, _ = _fake_provider(_raises(exc))
    with pytest.raises(MsgStatusError) as caught:
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert type(caught.value) is kind
    assert caught.value.__cause__ is exc
    assert type(exc).__name__ in caught.value.message


@pytest.mark.parametrize(
    "body",
    [b'{"Status": "SENT"}', b'{"Status": ["SENT"]}', b"[1, 2]"],
    ids=["status-string", "status-list", "not-an-object"],
)
async def test_bodies_botocore_cannot_parse_are_response_errors(body: bytes) -> None:
    provider, _ = _fake_provider(_parse_with_botocore(body))
    with pytest.raises(ProviderResponseError):
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))


@pytest.mark.parametrize(
    "response",
    [
        {},
        {"Status": None},
        {"Status": "SENT"},
        {"Status": {"Value": 3}},
        {"Status": {"Value": ["SENT"]}},
        {"Status": {"Value": "SENT"}, "Extra": object()},
    ],
    ids=["no-status", "null-status", "status-string", "value-int", "value-list", "not-json"],
)
async def test_malformed_responses(response: dict[str, Any]) -> None:
    provider, _ = _fake_provider(lambda **_: response)
    with pytest.raises(ProviderResponseError):
        await provider.get_status(ChimeHandle(CHANNEL, "m1"))


async def test_odd_details_are_dropped_and_metadata_is_not_raw() -> None:
    response = {"Status": {"Value": "FAILED", "Detail": 42}, "ResponseMetadata": {"x": 1}}
    provider, _ = _fake_provider(lambda **_: response)
    result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert (result.status, result.detail) == (MessageStatus.FAILED, None)
    assert result.raw == {"Status": {"Value": "FAILED", "Detail": 42}}


def _gated(fake_ref: list[FakeClient], width: int) -> Callable[..., Any]:
    """A behaviour that holds each call until ``width`` calls are in flight at once (or 10 s
    passed, after which nobody waits): a pool that runs fewer than ``width`` in parallel shows
    as ``max_in_flight < width`` instead of passing by luck of the timing."""
    reached = threading.Event()

    def behaviour(**_: Any) -> Any:
        if fake_ref[0].in_flight >= width:
            reached.set()
        if not reached.wait(timeout=10):
            reached.set()
        return {"Status": {"Value": "SENT"}}

    return behaviour


async def test_concurrency_is_bounded_by_max_concurrency() -> None:
    ref: list[FakeClient] = []
    provider, fake = _fake_provider(_gated(ref, 3), max_concurrency=3)
    ref.append(fake)
    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(provider.get_status, ChimeHandle(CHANNEL, f"m{i}"))
    assert len(fake.calls) == 30
    # Exactly the bound: never more, and not fewer (a pool that serialized everything fails).
    assert fake.max_in_flight == 3


def test_a_provider_built_outside_a_loop_works_on_every_backend() -> None:
    # Built here, outside any event loop, then used concurrently on each backend in turn.
    ref: list[FakeClient] = []
    provider, fake = _fake_provider(_gated(ref, 2), max_concurrency=2)
    ref.append(fake)

    async def six_lookups() -> list[MessageStatus]:
        statuses: list[MessageStatus] = []

        async def one(i: int) -> None:
            statuses.append((await provider.get_status(ChimeHandle(CHANNEL, f"m{i}"))).status)

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
        return statuses

    for backend in ("asyncio", "trio"):
        fake.behaviour = _gated(ref, 2)
        fake.calls.clear()
        fake.max_in_flight = 0
        assert anyio.run(six_lookups, backend=backend) == [MessageStatus.SENT] * 6
        assert len(fake.calls) == 6
        assert fake.max_in_flight == 2, backend


def test_a_provider_serves_two_event_loops_one_after_the_other() -> None:
    provider, fake = _fake_provider(lambda **_: {"Status": {"Value": "SENT"}})
    for backend in ("asyncio", "trio", "asyncio"):
        result = anyio.run(provider.get_status, ChimeHandle(CHANNEL, "m1"), backend=backend)
        assert result.status is MessageStatus.SENT
    assert len(fake.calls) == 3


# -- send responses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "action"),
    [
        ("SENT", MessageStatus.SENT, ResendAction.SKIP),
        ("PENDING", MessageStatus.PENDING, ResendAction.WAIT),
        ("FAILED", MessageStatus.FAILED, ResendAction.RESEND),
        ("DENIED", MessageStatus.DENIED, ResendAction.BLOCKED),
    ],
)
def test_result_from_payload(raw: str, status: MessageStatus, action: ResendAction) -> None:
    provider, fake = _fake_provider(_raises(AssertionError("no call")))
    response = {
        "ChannelArn": CHANNEL,
        "MessageId": "m9",
        "Status": {"Value": raw, "Detail": "why"},
        "SubChannelId": "sub-2",
        "ResponseMetadata": {"HTTPStatusCode": 201},
    }
    result = provider.result_from_payload(response)
    assert result.status is status
    assert result.provider_status == raw
    assert result.detail == "why"
    assert result.handle == f"chime:{CHANNEL};message=m9;sub_channel=sub-2"
    assert result.raw == {
        key: value for key, value in response.items() if key != "ResponseMetadata"
    }
    assert ResendDecision.from_result(result).action is action
    assert fake.calls == []
    with_bearer = provider.result_from_payload(response, bearer=SENDER)
    assert ChimeHandle.parse(with_bearer.handle) == ChimeHandle(CHANNEL, "m9", "sub-2", SENDER)


def test_send_response_without_status_is_unknown() -> None:
    provider, _ = _fake_provider(_raises(AssertionError("no call")))
    result = provider.result_from_payload({"ChannelArn": CHANNEL, "MessageId": "m9"})
    assert (result.status, result.provider_status, result.is_final) == (
        MessageStatus.UNKNOWN,
        None,
        False,
    )
    assert result.handle == f"chime:{CHANNEL};message=m9"


@pytest.mark.parametrize(
    "response",
    [
        {"MessageId": "m9", "Status": {"Value": "SENT"}},
        {"ChannelArn": "nope", "MessageId": "m9"},
        {"ChannelArn": CHANNEL, "MessageId": ""},
        {"ChannelArn": CHANNEL, "MessageId": "m9", "Status": "SENT"},
        {"ChannelArn": CHANNEL, "MessageId": "m9", "Status": {"Value": 1}},
        ["not", "a", "dict"],
    ],
)
def test_malformed_send_responses(response: Any) -> None:
    provider, _ = _fake_provider(_raises(AssertionError("no call")))
    with pytest.raises(ProviderResponseError):
        provider.result_from_payload(response)


def test_send_response_with_a_bad_bearer() -> None:
    provider, _ = _fake_provider(_raises(AssertionError("no call")))
    with pytest.raises(InvalidHandleError):
        provider.result_from_payload({"ChannelArn": CHANNEL, "MessageId": "m9"}, bearer="bob")


# -- construction ----------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AWS settings at all but the ones a test sets."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_built_client_has_retries_off_and_a_sized_pool(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_REGION", "eu-central-1")
    aws_env.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING", "http://127.0.0.1:9")
    provider = ChimeProvider(max_concurrency=7)
    config = provider.client.meta.config
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.max_pool_connections == 7
    assert (config.connect_timeout, config.read_timeout) == (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_READ_TIMEOUT,
    )
    assert provider.client.meta.region_name == "eu-central-1"
    assert provider.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert repr(provider) == (
        "ChimeProvider(region_name='eu-central-1', endpoint_url='http://127.0.0.1:9', "
        "max_concurrency=7)"
    )
    anyio.run(provider.aclose)


def test_aws_default_region_works_too(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    aws_env.setenv("AWS_REGION", "eu-central-1")
    # botocore's own variable wins where both are set (it is what the session reads).
    assert ChimeProvider().client.meta.region_name == "ap-south-1"


def test_arguments_win_over_the_environment(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_REGION", "eu-central-1")
    provider = ChimeProvider(
        region_name="us-west-2",
        endpoint_url="http://127.0.0.1:10",
        connect_timeout=1.5,
        read_timeout=2.5,
    )
    meta = provider.client.meta
    assert (meta.region_name, meta.endpoint_url) == ("us-west-2", "http://127.0.0.1:10")
    assert (meta.config.connect_timeout, meta.config.read_timeout) == (1.5, 2.5)


def test_no_region_is_a_value_error(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="region"):
        ChimeProvider()


def test_a_missing_profile_is_a_value_error(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ValueError, match="ProfileNotFound"):
        ChimeProvider(region_name="us-east-1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": -1},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
        {"connect_timeout": 0},
        {"read_timeout": float("nan")},
        {"read_timeout": -1.0},
    ],
)
def test_bad_arguments(aws_env: pytest.MonkeyPatch, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"max_concurrency|timeout"):
        ChimeProvider(region_name="us-east-1", **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region_name": "us-east-1"},
        {"endpoint_url": "http://x"},
        {"read_timeout": 1.0},
        {"session": object()},
    ],
)
def test_client_excludes_the_settings_to_build_one(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="either client"):
        ChimeProvider(client=FakeClient(lambda **_: None), **kwargs)  # type: ignore[arg-type]


def test_a_bad_default_bearer_is_refused() -> None:
    with pytest.raises(InvalidHandleError):
        ChimeProvider(client=FakeClient(lambda **_: None), bearer="alice")  # type: ignore[arg-type]


async def test_missing_credentials_are_an_authentication_error(
    aws_env: pytest.MonkeyPatch,
) -> None:
    provider = ChimeProvider(
        region_name="us-east-1", endpoint_url="http://127.0.0.1:9", bearer=SENDER, retry=FAST
    )
    async with provider:
        with pytest.raises(AuthenticationError, match="credentials") as caught:
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert isinstance(caught.value.__cause__, bce.NoCredentialsError)


async def test_aclose_closes_only_what_the_provider_built(aws_env: pytest.MonkeyPatch) -> None:
    passed, fake = _fake_provider(lambda **_: {"Status": {"Value": "SENT"}})
    async with passed:
        pass
    assert fake.closed == 0
    with pytest.raises(RuntimeError, match="ChimeProvider is closed"):
        await passed.get_status(ChimeHandle(CHANNEL, "m1"))
    assert fake.calls == []

    built = ChimeProvider(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    closes: list[int] = []
    original = built.client.close
    built.client.close = lambda: (closes.append(1), original())[1]  # type: ignore[method-assign]
    await built.aclose()
    assert closes == [1]


def test_secrets_stay_out_of_repr(aws_env: pytest.MonkeyPatch) -> None:
    session = boto3.session.Session(
        aws_access_key_id="AKIDUNITTEST", aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    provider = ChimeProvider(session=session, bearer=SENDER)
    assert SECRET not in repr(provider)
    assert SECRET not in repr(provider.client)
    assert SECRET not in str(vars(provider))


def test_the_old_send_response_name_still_works_but_warns(aws_env: pytest.MonkeyPatch) -> None:
    provider = ChimeProvider(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    response = {"ChannelArn": CHANNEL, "MessageId": "m9", "Status": {"Value": "SENT"}}
    with pytest.warns(DeprecationWarning, match="result_from_payload"):
        old = provider.result_from_send_response(response)
    assert old == provider.result_from_payload(response).model_copy(
        update={"checked_at": old.checked_at}
    )
