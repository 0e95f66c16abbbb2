"""Resend safety through real providers and their emulators: the decision never invites a
duplicate, and says what it rests on when it cannot answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from msgstatus import (
    ChimeHandle,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    ProviderResponseError,
    ProviderUnavailableError,
    ResendAction,
    ResendDecision,
    RetryPolicy,
    StatusClient,
    StatusResult,
)
from msgstatus.testing import ChimeEmulator, ChimeState, Fault, ManualClock, SendblueEmulator
from msgstatus.testing._server import Request, Response

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002)


@pytest.fixture
def clock(sendblue_emulator: SendblueEmulator) -> ManualClock:
    sendblue_emulator.clock = clock = ManualClock()
    return clock


# -- a delivered message never becomes RESEND ---------------------------------------------------


async def test_a_failure_reported_after_read_keeps_the_answer_skip(
    sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    # Sendblue (like WhatsApp and Twilio relays) may report ERROR after READ.
    handle = sendblue_emulator.add_message(
        steps=[(0.0, "READ"), (1.0, "ERROR"), (2.0, "DELIVERED")]
    )
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        first = await client.resend_decision(handle)
        assert first.action is ResendAction.SKIP
        clock.advance(1)
        after_error = await client.resend_decision(handle, refresh=True)
        assert after_error.action is ResendAction.SKIP
        assert after_error.result is not None
        assert after_error.result.status is MessageStatus.READ
        assert "later observation reported FAILED (ERROR)" in after_error.reason
        # The cache holds the merge: asked again without refresh, and refreshed to DELIVERED.
        assert (await client.resend_decision(handle)).action is ResendAction.SKIP
        clock.advance(1)
        again = await client.resend_decision(handle, refresh=True)
        assert again.action is ResendAction.SKIP
        assert again.result is not None
        assert again.result.status is MessageStatus.READ


async def test_a_chime_final_sent_is_not_unsaid_by_a_later_failure(
    chime_emulator: ChimeEmulator,
) -> None:
    channel, sender = chime_emulator.channel_arn(), chime_emulator.user_arn()
    message_id = chime_emulator.add_message(channel, sender=sender, status="SENT")
    handle = ChimeHandle(channel, message_id, bearer=sender)
    async with StatusClient([chime_emulator.provider(retry=FAST)]) as client:
        assert (await client.resend_decision(handle)).action is ResendAction.SKIP
        chime_emulator.set_status(channel, message_id, ChimeState("FAILED", "processor crashed"))
        decision = await client.resend_decision(handle, refresh=True)
    assert decision.action is ResendAction.SKIP
    assert decision.result is not None
    assert decision.result.status is MessageStatus.SENT
    assert "conflict" in decision.reason


async def test_wait_for_final_agrees_with_the_evidence_rule(
    sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    handle = sendblue_emulator.add_message(steps=[(0.0, "DELIVERED"), (1.0, "ERROR")])
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        first = await client.wait_for_final(handle, timeout=5)
        clock.advance(1)
        refreshed = await client.get_status(handle, refresh=True)
        waited = await client.wait_for_final(handle, timeout=5)
    assert first.status is MessageStatus.DELIVERED
    assert refreshed.status is MessageStatus.DELIVERED
    assert waited.status is MessageStatus.DELIVERED


# -- a 200 body is a status only if it is about the message asked for ---------------------------


class _BodyEmulator(SendblueEmulator):
    """A Sendblue emulator whose status endpoint answers HTTP 200 with a body set by the test."""

    body: bytes = b"{}"

    async def handle(self, request: Request) -> Response:
        if request.path == "/api/status":
            return Response.json(200, self.body)
        return await super().handle(request)


def _bodies(handle: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("error envelope", {"status": "ERROR", "message": "Message not found"}),
        ("another message", {"status": "ERROR", "message_handle": "someone-else", "number": "+1"}),
        ("odd-case error, nothing else", {"status": " error "}),
        ("a handle that is not text", {"status": "ERROR", "message_handle": 7}),
        ("the right handle but empty", {"status": "ERROR", "message_handle": ""}),
    ]


@pytest.mark.parametrize("case", range(len(_bodies("x"))))
async def test_a_200_body_about_no_or_another_message_is_no_answer(case: int) -> None:
    with _BodyEmulator() as emulator:
        handle = "sendblue:msg-asked-for"
        name, body = _bodies(handle)[case]
        emulator.body = json.dumps(body).encode()
        async with StatusClient([emulator.provider(retry=FAST)]) as client:
            decision = await client.resend_decision(handle)
            with pytest.raises(ProviderResponseError):
                await client.get_status(handle)
    assert decision.action is ResendAction.UNKNOWN, name
    assert isinstance(decision.error, ProviderResponseError)
    assert decision.result is None


async def test_a_200_body_naming_the_message_is_its_status() -> None:
    with _BodyEmulator() as emulator:
        emulator.body = json.dumps({"status": " error ", "message_handle": "m-1"}).encode()
        async with StatusClient([emulator.provider(retry=FAST)]) as client:
            decision = await client.resend_decision("sendblue:m-1")
    assert decision.action is ResendAction.RESEND
    assert decision.result is not None
    assert decision.result.provider_status == " error "


def test_a_pushed_payload_must_name_its_message(sendblue_emulator: SendblueEmulator) -> None:
    provider = sendblue_emulator.provider()
    with pytest.raises(ProviderResponseError, match="message_handle"):
        provider.result_from_payload({"status": "DELIVERED"})
    with pytest.raises(ProviderResponseError, match="another message"):
        provider.result_from_payload({"status": "DELIVERED", "message_handle": "b"}, handle="a")
    assert provider.result_from_payload({"status": "SENT", "message_handle": "a"}).handle == (
        "sendblue:a"
    )


# -- refusals: quota windows are not permanent ------------------------------------------------


@pytest.mark.parametrize(
    ("error_key", "window"),
    [("LINE_HOURLY_LIMIT_REACHED", timedelta(hours=1)), ("LINE_DAILY_LIMIT_REACHED", timedelta(1))],
)
async def test_a_quota_window_refusal_is_resend_after_the_window(
    sendblue_emulator: SendblueEmulator, error_key: str, window: timedelta
) -> None:
    from msgstatus.testing import SendblueState

    handle = sendblue_emulator.add_message(
        status=SendblueState("ERROR", error_code=429, error_key=error_key)
    )
    refused_at = datetime.fromisoformat(
        sendblue_emulator.payload(handle)["date_updated"].replace("Z", "+00:00")
    )
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        decision = await client.resend_decision(handle)
    assert decision.action is ResendAction.RESEND
    assert decision.not_before == refused_at + window
    assert decision.result is not None
    assert decision.result.status is MessageStatus.FAILED
    assert decision.result.not_before == refused_at + window
    assert "quota" in decision.reason
    assert "not sent" in decision.reason
    assert json.loads(decision.model_dump_json())["not_before"] is not None


@pytest.mark.parametrize(
    ("state_kwargs", "action", "status"),
    [
        ({"error_key": "PRE_REPLY_LIMIT_REACHED"}, ResendAction.RESEND, MessageStatus.FAILED),
        ({"error_key": "OPTED_OUT"}, ResendAction.BLOCKED, MessageStatus.DENIED),
        ({"error_key": "opted_out "}, ResendAction.BLOCKED, MessageStatus.DENIED),
        ({"error_key": "SOME_FUTURE_RULE"}, ResendAction.UNKNOWN, MessageStatus.UNKNOWN),
        ({"error_code": 429}, ResendAction.RESEND, MessageStatus.FAILED),
        ({"error_code": 10001}, ResendAction.RESEND, MessageStatus.FAILED),
    ],
)
async def test_refusal_meanings(
    sendblue_emulator: SendblueEmulator,
    state_kwargs: dict[str, Any],
    action: ResendAction,
    status: MessageStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from msgstatus.testing import SendblueState

    handle = sendblue_emulator.add_message(status=SendblueState("ERROR", **state_kwargs))
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        decision = await client.resend_decision(handle)
    assert decision.action is action
    assert decision.result is not None
    assert decision.result.status is status
    assert decision.not_before is None
    if state_kwargs.get("error_key") == "SOME_FUTURE_RULE":
        assert "SOME_FUTURE_RULE" in decision.reason
        assert any("SOME_FUTURE_RULE" in r.getMessage() for r in caplog.records)


# -- a failed lookup's decision names its error ------------------------------------------------


async def test_a_failed_lookup_carries_its_error(sendblue_emulator: SendblueEmulator) -> None:
    handle = sendblue_emulator.add_message(status="DELIVERED")
    sendblue_emulator.inject(Fault.SERVER_ERROR_503, times=10)
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        down = await client.resend_decision(handle)
        sendblue_emulator.clear_faults()
        missing, found = await client.resend_decisions(["sendblue:no-such", handle])
    assert down.action is ResendAction.UNKNOWN
    assert isinstance(down.error, ProviderUnavailableError)
    assert json.loads(down.model_dump_json())["error_type"] == "ProviderUnavailableError"
    assert "error" not in json.loads(down.model_dump_json())
    assert isinstance(missing.error, MessageNotFoundError)
    assert missing.error_type == "MessageNotFoundError"
    assert found.error is None
    assert found.error_type is None
    assert json.loads(found.model_dump_json())["error_type"] is None


def test_a_decision_reads_back_from_its_json() -> None:
    result = StatusResult(provider="p", handle="p:1", status=MessageStatus.FAILED, is_final=True)
    decision = ResendDecision.from_result(result)
    assert ResendDecision.model_validate_json(decision.model_dump_json()) == decision


# -- the cache is keyed by provider and handle -------------------------------------------------


class _Typed:
    """A typed handle whose provider and printed prefix disagree."""

    def __init__(self, provider: str, text: str) -> None:
        self.provider = provider
        self._text = text

    def __str__(self) -> str:
        return self._text


async def test_a_typed_handle_cannot_borrow_another_providers_result(
    sendblue_emulator: SendblueEmulator, chime_emulator: ChimeEmulator
) -> None:
    handle = sendblue_emulator.add_message(status="DELIVERED")
    providers = [sendblue_emulator.provider(retry=FAST), chime_emulator.provider(retry=FAST)]
    async with StatusClient(providers) as client:
        assert (await client.get_status(handle)).status is MessageStatus.DELIVERED
        requests = sendblue_emulator.stats.requests
        with pytest.raises(InvalidHandleError, match="prefix"):
            await client.get_status(_Typed("chime", handle))
        outcome = (await client.get_statuses([_Typed("chime", handle)]))[0]
    assert isinstance(outcome, InvalidHandleError)
    assert sendblue_emulator.stats.requests == requests


async def test_a_provider_answering_for_another_provider_is_refused() -> None:
    class Liar:
        name = "liar"

        async def get_status(self, handle: object, /) -> StatusResult:
            return StatusResult(provider="sendblue", handle="sendblue:x", status=MessageStatus.READ)

        async def aclose(self) -> None:
            pass

    async with StatusClient([Liar()]) as client:
        decision = await client.resend_decision("liar:x")
    assert decision.action is ResendAction.UNKNOWN
    assert isinstance(decision.error, ProviderResponseError)


def test_decision_of_observations_in_any_order() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seen = [
        StatusResult(provider="p", handle="p:1", status=s, is_final=f, checked_at=t0 + dt)
        for s, f, dt in [
            (MessageStatus.PENDING, False, timedelta(0)),
            (MessageStatus.DELIVERED, True, timedelta(seconds=2)),
            (MessageStatus.FAILED, True, timedelta(seconds=3)),
        ]
    ]
    for order in (seen, seen[::-1], [seen[2], seen[0], seen[1]]):
        assert ResendDecision.from_observations(order).action is ResendAction.SKIP
    with pytest.raises(ValueError, match="no observation"):
        ResendDecision.from_observations([])


async def test_a_body_already_read_by_a_response_hook_is_still_checked(
    sendblue_emulator: SendblueEmulator,
) -> None:
    # A caller's client may read responses in an event hook; the provider then takes the body
    # from memory, and still holds it to the message it asked about.
    import httpx

    async def read(response: httpx.Response) -> None:
        await response.aread()

    handle = sendblue_emulator.add_message(status="DELIVERED")
    async with httpx.AsyncClient(event_hooks={"response": [read]}) as http_client:
        provider = sendblue_emulator.provider(retry=FAST, http_client=http_client)
        async with StatusClient([provider]) as client:
            decision = await client.resend_decision(handle)
            assert decision.action is ResendAction.SKIP
            wrong = await client.resend_decision("sendblue:no-such-message")
    assert wrong.error_type == "MessageNotFoundError"
