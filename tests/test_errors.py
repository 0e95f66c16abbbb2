from __future__ import annotations

import pytest

import msgstatus
from msgstatus import (
    AuthenticationError,
    ChimeHandle,
    HandleError,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryPolicy,
    StatusResult,
    StatusWaitTimeout,
    UnknownProviderError,
)
from msgstatus.testing import ChimeEmulator, SendblueEmulator

ERRORS = [
    InvalidHandleError,
    UnknownProviderError,
    MessageNotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitedError,
    ProviderUnavailableError,
    ProviderResponseError,
    StatusWaitTimeout,
]


@pytest.mark.parametrize("cls", ERRORS)
def test_every_error_is_a_msgstatus_error_and_exported(cls: type[MsgStatusError]) -> None:
    assert issubclass(cls, MsgStatusError)
    assert cls.__name__ in msgstatus.__all__
    assert getattr(msgstatus, cls.__name__) is cls


@pytest.mark.parametrize("cls", ERRORS)
def test_errors_name_provider_and_handle(cls: type[MsgStatusError]) -> None:
    error = cls("it went wrong", provider="sendblue", handle="msg_1")
    assert error.provider == "sendblue"
    assert error.handle == "msg_1"
    assert str(error) == "it went wrong [provider=sendblue, handle='msg_1']"
    assert error.message == "it went wrong"


def test_only_transient_errors_are_retryable() -> None:
    retryable = {cls for cls in ERRORS if cls.retryable}
    assert retryable == {RateLimitedError, ProviderUnavailableError}


def test_rate_limited_carries_retry_after() -> None:
    assert RateLimitedError("slow down", retry_after=2.5).retry_after == 2.5
    assert RateLimitedError("slow down").retry_after is None


def test_wait_timeout_is_a_timeout_error_with_last_result() -> None:
    last = StatusResult(provider="p", handle="p:1", status=MessageStatus.PENDING)
    error = StatusWaitTimeout("not final after 3s", last_result=last)
    assert isinstance(error, TimeoutError)
    assert error.last_result is last
    with pytest.raises(TimeoutError):
        raise error


def test_invalid_handle_is_also_a_value_error() -> None:
    assert issubclass(InvalidHandleError, ValueError)


def test_error_without_context_is_its_message() -> None:
    assert str(MsgStatusError("plain")) == "plain"


@pytest.mark.anyio
async def test_errors_carry_the_providers_code_and_http_status(
    sendblue_emulator: SendblueEmulator, chime_emulator: ChimeEmulator
) -> None:
    async with sendblue_emulator.provider(retry=RetryPolicy(max_attempts=1)) as sendblue:
        with pytest.raises(MessageNotFoundError) as missing:
            await sendblue.get_status("sendblue:no-such-message")
    assert missing.value.http_status == 404
    assert missing.value.provider_code is None
    channel = chime_emulator.channel_arn()
    message_id = chime_emulator.add_message(channel, sender=chime_emulator.user_arn())
    intruder = chime_emulator.user_arn("intruder")
    async with chime_emulator.provider(retry=RetryPolicy(max_attempts=1)) as chime:
        with pytest.raises(PermissionDeniedError) as forbidden:
            await chime.get_status(ChimeHandle(channel, message_id, bearer=intruder))
    assert forbidden.value.provider_code == "ForbiddenException"
    assert forbidden.value.http_status == 403
    assert isinstance(forbidden.value, MsgStatusError)


def test_handle_errors_form_one_family() -> None:
    assert issubclass(InvalidHandleError, HandleError)
    assert issubclass(UnknownProviderError, HandleError)
    assert not issubclass(MessageNotFoundError, HandleError)
