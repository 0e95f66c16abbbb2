from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstatus import InvalidHandleError, MessageStatus, MessageStatusProvider, StatusResult
from msgstatus._providers.base import (
    MAX_HANDLE_LENGTH,
    TypedHandle,
    native_handle,
    split_handle,
    validate_handle_text,
)

BAD_TEXT = [
    pytest.param("", id="empty"),
    pytest.param(" abc", id="leading-space"),
    pytest.param("abc ", id="trailing-space"),
    pytest.param("abc\r\n", id="crlf-at-end"),
    pytest.param("ab\r\nc", id="crlf-inside"),
    pytest.param("ab\x00c", id="nul"),
    pytest.param("ab\tc", id="tab"),
    pytest.param("ab\u2028c", id="line-separator"),
    pytest.param("x" * (MAX_HANDLE_LENGTH + 1), id="over-long"),
]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidHandleError):
        validate_handle_text(text)


@pytest.mark.parametrize("value", [None, 42, b"sendblue:abc"])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidHandleError, match="must be a string"):
        validate_handle_text(value)


@pytest.mark.parametrize(
    "text", ["msg_abc123", "é-ünïcödé-ok", "日本語", "a b", "x" * MAX_HANDLE_LENGTH]
)
def test_good_text_is_returned_unchanged(text: str) -> None:
    assert validate_handle_text(text) == text


def test_provider_may_set_a_stricter_length() -> None:
    with pytest.raises(InvalidHandleError, match="limit is 10") as info:
        validate_handle_text("x" * 11, provider="p", max_length=10)
    assert info.value.provider == "p"


def test_over_long_handle_is_shown_bounded_in_the_error() -> None:
    with pytest.raises(InvalidHandleError) as info:
        validate_handle_text("x" * 5000)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        ("sendblue:msg_abc123", ("sendblue", "msg_abc123")),
        ("chime:arn:aws:chime:us-east-1:1:x", ("chime", "arn:aws:chime:us-east-1:1:x")),
        ("my-provider_2:ü", ("my-provider_2", "ü")),
    ],
)
def test_split_handle(handle: str, expected: tuple[str, str]) -> None:
    assert split_handle(handle) == expected


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("msg_abc123", "no provider prefix"),
        (":abc", "not a provider name"),
        ("Sendblue:abc", "not a provider name"),
        ("send blue:abc", "not a provider name"),
        ("sendblue:", "empty after its prefix"),
        ("sendblue:abc\n", "white space"),
        ("sendblue:a\x00b", "control character"),
    ],
)
def test_split_handle_refuses(handle: str, message: str) -> None:
    with pytest.raises(InvalidHandleError, match=message):
        split_handle(handle)


@given(st.text(max_size=50))
def test_any_text_splits_or_raises_invalid_handle(text: str) -> None:
    try:
        provider, native = split_handle(text)
    except InvalidHandleError:
        return
    assert f"{provider}:{native}" == text


def test_native_handle_strips_only_its_own_prefix() -> None:
    assert native_handle("sendblue:abc", "sendblue") == "abc"
    assert native_handle("abc", "sendblue") == "abc"
    assert native_handle("chime:abc", "sendblue") == "chime:abc"
    with pytest.raises(InvalidHandleError):
        native_handle("sendblue:", "sendblue")


class _FakeProvider:
    name = "fake"

    async def get_status(self, handle: str | TypedHandle, /) -> StatusResult:
        return StatusResult(provider=self.name, handle=str(handle), status=MessageStatus.SENT)

    async def aclose(self) -> None:
        return None


def test_protocol_is_runtime_checkable() -> None:
    assert isinstance(_FakeProvider(), MessageStatusProvider)
    assert not isinstance(object(), MessageStatusProvider)
