"""Property tests (hypothesis) for input the library does not control: raw status values from a
provider, and handles from a caller.

Already covered elsewhere and not repeated here: ``split_handle`` on any text
(tests/test_provider.py), a generic ``StatusTable`` on any text (tests/test_status.py) and
``ChimeHandle`` → string → ``ChimeHandle`` for every valid handle
(tests/providers/test_chime.py::test_every_valid_handle_round_trips). This file adds the other
directions and the real paths: each provider's own table and normalization, any text (and any
object) as a handle through a real ``StatusClient`` whose providers talk to the emulators, and
string → ``ChimeHandle`` → string.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    RetryPolicy,
    SendblueProvider,
    StatusResult,
    SyncStatusClient,
    UnknownProviderError,
)
from msgstatus._providers.base import MAX_HANDLE_LENGTH, validate_handle_text
from msgstatus._providers.chime import CHIME_STATUS_MAP
from msgstatus._providers.sendblue import SENDBLUE_STATUS_MAP
from msgstatus._status import StatusTable
from msgstatus.testing import ChimeEmulator, SendblueEmulator

# Raw values: any text, plus near misses of the real values (case, padding, look-alikes).
_KNOWN = sorted({*SENDBLUE_STATUS_MAP, *CHIME_STATUS_MAP})
RAW_STATUSES = st.one_of(
    st.text(),
    st.sampled_from(_KNOWN).flatmap(
        lambda value: st.sampled_from(
            [value, value.lower(), f" {value}\t", f"{value}\n", value + "\u200b", value[:-1]]
        )
    ),
)

SETTINGS = settings(max_examples=300, deadline=None)


# -- any raw status maps without raising ---------------------------------------------------------


@pytest.mark.parametrize(
    "mapping", [SENDBLUE_STATUS_MAP, CHIME_STATUS_MAP], ids=["sendblue", "chime"]
)
@SETTINGS
@given(raw=RAW_STATUSES)
def test_each_provider_table_maps_any_text(mapping: dict[str, MessageStatus], raw: str) -> None:
    table = StatusTable("p", mapping)
    status = table.lookup(raw)
    assert isinstance(status, MessageStatus)
    assert (status is MessageStatus.UNKNOWN) == (raw.strip().upper() not in mapping)


@pytest.fixture(scope="module")
def sendblue_offline() -> SendblueProvider:
    # Never calls the network: result_from_payload normalizes a payload already held.
    return SendblueProvider("key", "secret-for-properties")


@SETTINGS
@given(raw=RAW_STATUSES, error_key=st.none() | st.text())
def test_a_sendblue_payload_with_any_status_is_a_result(
    sendblue_offline: SendblueProvider, raw: str, error_key: str | None
) -> None:
    provider = sendblue_offline
    payload = {"status": raw, "message_handle": "msg-1", "error_key": error_key}
    result = provider.result_from_payload(payload)
    assert result.provider_status == raw  # kept exactly as the provider sent it
    if error_key is not None and error_key.strip():
        # Only documented keys decide a status; any other key is no safe answer.
        documented = {
            "LINE_HOURLY_LIMIT_REACHED": MessageStatus.FAILED,
            "LINE_DAILY_LIMIT_REACHED": MessageStatus.FAILED,
            "PRE_REPLY_LIMIT_REACHED": MessageStatus.FAILED,
            "OPTED_OUT": MessageStatus.DENIED,
        }
        expected = documented.get(error_key.strip().upper(), MessageStatus.UNKNOWN)
        assert result.status is expected
    assert StatusResult.model_validate_json(result.model_dump_json()) == result


@pytest.fixture(scope="module")
def chime_offline() -> ChimeProvider:
    # Never calls the network: result_from_payload normalizes a response already held.
    return ChimeProvider(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


@SETTINGS
@given(raw=RAW_STATUSES, detail=st.none() | st.text())
def test_a_chime_response_with_any_status_is_a_result(
    chime_offline: ChimeProvider, raw: str, detail: str | None
) -> None:
    status: dict[str, Any] = {"Value": raw}
    if detail is not None:
        status["Detail"] = detail
    response = {
        "ChannelArn": "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c",
        "MessageId": "m1",
        "Status": status,
    }
    result = chime_offline.result_from_payload(response)
    assert result.provider_status == raw
    assert result.status is CHIME_STATUS_MAP.get(raw.strip().upper(), MessageStatus.UNKNOWN)
    assert StatusResult.model_validate_json(result.model_dump_json()) == result


# -- any text as a handle: validated, or refused before the network -----------------------------

_CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/emulator/channel/properties"
_SENDER = "arn:aws:chime:us-east-1:111122223333:app-instance/emulator/user/properties"

# Text that gets past the first checks often enough to reach the providers' own rules.
_PIECES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [";", "\\", "\\;", "=", "%2F", "%2e%2e", "..", "/", ":", "\u200b", "\u202e", " ", "\n"]
    ),
    st.just(_CHANNEL),
    st.just(_SENDER),
)
_FREE = st.lists(_PIECES, max_size=6).map("".join)
ANY_HANDLE_TEXT = st.one_of(
    st.text(),
    st.builds(
        lambda p, t: p + t, st.sampled_from(["sendblue:", "chime:", "other:", "Chime:"]), _FREE
    ),
    st.builds(
        lambda channel, message, bearer: f"chime:{channel};message={message}{bearer}",
        st.one_of(st.just(_CHANNEL), _FREE),
        st.from_regex(r"[-_a-zA-Z0-9]{1,20}", fullmatch=True) | _FREE,
        st.sampled_from(["", f";bearer={_SENDER}", ";bearer="]) | _FREE.map(";bearer={}".format),
    ),
    st.integers(min_value=MAX_HANDLE_LENGTH - 2, max_value=MAX_HANDLE_LENGTH + 2).map(
        lambda n: ("sendblue:" + "a" * n)[:n]
    ),
)
NOT_TEXT = st.one_of(
    st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(), max_size=2)
)


@dataclass
class Setup:
    client: SyncStatusClient
    sendblue: SendblueEmulator
    chime: ChimeEmulator

    def requests(self) -> int:
        return self.sendblue.stats.requests + self.chime.stats.requests


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    once = RetryPolicy(max_attempts=1)
    with SendblueEmulator() as sendblue, ChimeEmulator() as chime:
        providers = [
            sendblue.provider(retry=once, timeout=5.0),
            chime.provider(bearer=_SENDER, retry=once),
        ]
        with SyncStatusClient(providers, cache_final=False) as client:
            yield Setup(client, sendblue, chime)


def _lookup(setup: Setup, handle: object) -> tuple[StatusResult | MsgStatusError, int]:
    """The outcome of one lookup and the number of requests the emulators saw for it."""
    before = setup.requests()
    try:
        outcome: StatusResult | MsgStatusError = setup.client.get_status(handle)  # type: ignore[arg-type]
    except MsgStatusError as exc:
        outcome = exc
    return outcome, setup.requests() - before


REFUSED = (InvalidHandleError, UnknownProviderError)


@SETTINGS
@given(text=ANY_HANDLE_TEXT)
def test_any_text_as_a_handle_validates_or_never_reaches_the_network(
    setup: Setup, text: str
) -> None:
    outcome, requests = _lookup(setup, text)
    if isinstance(outcome, REFUSED):
        assert requests == 0, outcome  # refused before any request
        return
    # Accepted text is a clean handle for a registered provider, and went out as one request
    # (the emulators know none of these messages: 404 or a refusal from the service).
    assert requests == 1, outcome
    assert isinstance(outcome, MsgStatusError)
    assert validate_handle_text(text) == text
    assert text.split(":", 1)[0] in ("sendblue", "chime")
    # The outcome names the handle in its canonical form (Chime's re-escaped, fields in order).
    expected = str(ChimeHandle.parse(text)) if text.startswith("chime:") else text
    assert outcome.handle == expected


@pytest.mark.parametrize(
    "text",
    [
        "sendblue:no-such-message",
        f"chime:{_CHANNEL};message=no-such-message",
        f"chime:{_CHANNEL};message=m;sub_channel=s;bearer={_SENDER}",
    ],
)
def test_a_valid_handle_goes_out_as_exactly_one_request(setup: Setup, text: str) -> None:
    # Calibrates the counter the properties rely on: it does move for a handle that passes.
    outcome, requests = _lookup(setup, text)
    assert isinstance(outcome, MessageNotFoundError)
    assert requests == 1


@SETTINGS
@given(value=NOT_TEXT)
def test_anything_but_a_handle_is_refused_before_the_network(setup: Setup, value: object) -> None:
    outcome, requests = _lookup(setup, value)
    assert isinstance(outcome, InvalidHandleError)
    assert requests == 0


# -- string -> ChimeHandle -> string -------------------------------------------------------------


@SETTINGS
@given(text=ANY_HANDLE_TEXT.filter(lambda t: t.startswith("chime:")))
def test_any_chime_text_that_parses_has_one_canonical_form(text: str) -> None:
    try:
        handle = ChimeHandle.parse(text)
    except InvalidHandleError:
        return
    canonical = str(handle)
    assert ChimeHandle.parse(canonical) == handle
    assert str(ChimeHandle.parse(canonical)) == canonical
    assert json.loads(json.dumps(canonical)) == canonical
