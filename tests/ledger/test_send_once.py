"""send_once and reconcile over both ledger backends: real sends to the Sendblue emulator,
lookups through a real StatusClient."""

from __future__ import annotations

import httpx
import pytest

from msgstatus import (
    ResendAction,
    SendblueProvider,
    SendNotAttempted,
    StatusClient,
    StatusResult,
)
from msgstatus._ledger import Ledger, idempotency_token
from msgstatus._ledger._send import reconcile, send_once
from msgstatus.testing import ManualClock, SendblueEmulator

pytestmark = pytest.mark.anyio


class Sender:
    """Sends through the emulator's real send endpoint and counts calls."""

    def __init__(self, emulator: SendblueEmulator, provider: SendblueProvider) -> None:
        self.emulator = emulator
        self.provider = provider
        self.tokens: list[str] = []

    async def __call__(self, token: str) -> StatusResult:
        self.tokens.append(token)
        async with httpx.AsyncClient(base_url=self.emulator.base_url) as http:
            response = await http.post(
                "/api/send-message",
                json={"number": "+15551230000", "content": f"hello {token}"},
                headers={
                    "sb-api-key-id": self.emulator.api_key,
                    "sb-api-secret-key": self.emulator.api_secret,
                },
            )
        response.raise_for_status()
        return self.provider.result_from_payload(response.json())


@pytest.fixture
def clock(sendblue_emulator: SendblueEmulator) -> ManualClock:
    clock = ManualClock()
    sendblue_emulator.clock = clock
    return clock


async def test_send_once_sends_once_and_then_skips(
    ledger: Ledger, sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    provider = sendblue_emulator.provider()
    sender = Sender(sendblue_emulator, provider)
    async with StatusClient([provider]) as client:
        first = await send_once(ledger, "order-1", sender)
        assert first.sent
        assert first.attempt == 1
        assert first.idempotency_token == idempotency_token("order-1", 1)
        assert sender.tokens == [first.idempotency_token]
        assert first.decision.action is ResendAction.WAIT  # QUEUED
        again = await send_once(ledger, "order-1", sender)
        assert not again.sent
        assert again.decision.action is ResendAction.WAIT
        clock.advance(2)  # the emulator's lifecycle: SENT, then DELIVERED
        checked = await reconcile(ledger, client)
        assert [handle for handle, _ in checked] == [first.handle]
        assert await ledger.in_flight() == []
        last = await send_once(ledger, "order-1", sender)
    assert not last.sent
    assert last.decision.action is ResendAction.SKIP
    assert len(sendblue_emulator.handles) == 1
    assert len(sender.tokens) == 1


async def test_failed_send_is_resent_as_the_next_attempt(
    ledger: Ledger, sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    provider = sendblue_emulator.provider()
    sender = Sender(sendblue_emulator, provider)
    sendblue_emulator.script_recipient("+15551230000", [(0.0, "QUEUED"), (1.0, "ERROR")])
    async with StatusClient([provider]) as client:
        first = await send_once(ledger, "k", sender)
        clock.advance(2)
        await reconcile(ledger, client)
        sendblue_emulator.script_recipient("+15551230000", [(0.0, "DELIVERED")])
        second = await send_once(ledger, "k", sender)
        assert second.sent
        assert second.attempt == 2
        assert second.decision.action is ResendAction.SKIP
        assert (await send_once(ledger, "k", sender)).decision.action is ResendAction.SKIP
    assert first.handle != second.handle
    assert sender.tokens == [idempotency_token("k", 1), idempotency_token("k", 2)]
    assert len(sendblue_emulator.handles) == 2


async def test_send_that_raises_is_ambiguous_and_reraised(ledger: Ledger) -> None:
    async def send(token: str) -> str:
        raise httpx.ReadTimeout("the response never came")

    with pytest.raises(httpx.ReadTimeout):
        await send_once(ledger, "k", send)
    outcome = await send_once(ledger, "k", send)
    assert not outcome.sent
    assert outcome.decision.action is ResendAction.UNKNOWN
    entry = await ledger.entry("k")
    assert entry is not None
    assert entry.attempts[0].state == "ambiguous"


async def test_ambiguous_send_is_retried_with_the_same_token_when_idempotent(
    ledger: Ledger,
) -> None:
    tokens: list[str] = []

    async def flaky(token: str) -> str:
        tokens.append(token)
        if len(tokens) == 1:
            raise httpx.ReadTimeout("the response never came")
        return "sendblue:h-1"

    with pytest.raises(httpx.ReadTimeout):
        await send_once(ledger, "k", flaky, reclaim_expired=True)
    outcome = await send_once(ledger, "k", flaky, reclaim_expired=True)
    assert outcome.sent
    assert outcome.attempt == 1
    assert tokens == [idempotency_token("k", 1)] * 2


@pytest.mark.parametrize(
    "error",
    [
        SendNotAttempted("validation failed before sending"),
        httpx.ConnectError("connection refused"),
    ],
)
async def test_send_that_proves_nothing_was_sent_gives_the_claim_back(
    ledger: Ledger, error: Exception
) -> None:
    async def send(token: str) -> str:
        raise error

    with pytest.raises(type(error)):
        await send_once(ledger, "k", send)
    assert await ledger.entry("k") is None

    async def works(token: str) -> str:
        return "sendblue:h-1"

    outcome = await send_once(ledger, "k", works)
    assert outcome.sent
    assert outcome.attempt == 1


async def test_send_past_its_lease_is_cancelled_and_ambiguous(ledger: Ledger) -> None:
    import anyio

    async def slow(token: str) -> str:
        await anyio.sleep(30)
        return "sendblue:never"

    with pytest.raises(TimeoutError):
        await send_once(ledger, "k", slow, lease=0.5, margin=0.2)
    assert (await ledger.decision("k")).action is ResendAction.UNKNOWN


async def test_send_returning_a_bad_handle_is_ambiguous(ledger: Ledger) -> None:
    from msgstatus.errors import InvalidHandleError

    async def send(token: str) -> str:
        return "no prefix"

    with pytest.raises(InvalidHandleError):
        await send_once(ledger, "k", send)
    assert (await ledger.decision("k")).action is ResendAction.UNKNOWN


async def test_reconcile_records_lookup_failures(
    ledger: Ledger, sendblue_emulator: SendblueEmulator
) -> None:
    async def send(token: str) -> str:
        return "sendblue:nobody-has-this"

    await send_once(ledger, "k", send)
    async with StatusClient([sendblue_emulator.provider()]) as client:
        (checked,) = await reconcile(ledger, client)
    assert not isinstance(checked[1], StatusResult)
    decision = await ledger.decision("k")
    assert decision.action is ResendAction.UNKNOWN
    assert "MessageNotFoundError" in decision.reason
    assert await ledger.in_flight() == []
