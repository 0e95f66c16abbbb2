"""StatusClient(…, ledger=…) and SyncStatusClient: lookups write through, send_once, reconcile."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from msgstatus import (
    Ledger,
    MessageStatus,
    ResendAction,
    SendOutcome,
    StatusClient,
    StatusResult,
    SyncStatusClient,
    UnknownProviderError,
)
from msgstatus.testing import ManualClock, SendblueEmulator


def _send_to(emulator: SendblueEmulator) -> Callable[[str], StatusResult]:
    provider = emulator.provider()

    def send(token: str) -> StatusResult:
        response = httpx.post(
            f"{emulator.base_url}/api/send-message",
            json={"number": "+15551230000", "content": token},
            headers={"sb-api-key-id": emulator.api_key, "sb-api-secret-key": emulator.api_secret},
        )
        response.raise_for_status()
        return provider.result_from_payload(response.json())

    return send


@pytest.mark.anyio
async def test_lookups_write_through_and_reconcile_settles(
    ledger: Ledger, sendblue_emulator: SendblueEmulator
) -> None:
    clock = ManualClock()
    sendblue_emulator.clock = clock
    send = _send_to(sendblue_emulator)

    async def async_send(token: str) -> StatusResult:
        return send(token)

    async with StatusClient([sendblue_emulator.provider()], ledger=ledger) as client:
        assert client.ledger is ledger
        outcome = await client.send_once("k", async_send)
        assert isinstance(outcome, SendOutcome)
        assert outcome.sent
        assert outcome.handle is not None
        clock.advance(2)
        # A plain lookup records what it saw.
        result = await client.get_status(outcome.handle)
        assert result.status is MessageStatus.DELIVERED
        assert (await ledger.decision("k")).action is ResendAction.SKIP
        assert await client.reconcile() == []
        again = await client.send_once("k", async_send)
    assert not again.sent
    assert again.decision.action is ResendAction.SKIP
    assert len(sendblue_emulator.handles) == 1


@pytest.mark.anyio
async def test_send_once_refuses_a_handle_of_an_unregistered_provider(
    ledger: Ledger, sendblue_emulator: SendblueEmulator
) -> None:
    async def send(token: str) -> str:
        return "chime:arn:aws:chime:us-east-1:1:app-instance/x/channel/y/message/z"

    async with StatusClient([sendblue_emulator.provider()], ledger=ledger) as client:
        with pytest.raises(UnknownProviderError):
            await client.send_once("k", send)
        assert (await ledger.decision("k")).action is ResendAction.UNKNOWN


@pytest.mark.anyio
async def test_without_a_ledger_send_once_is_refused(sendblue_emulator: SendblueEmulator) -> None:
    async def send(token: str) -> str:
        raise AssertionError("must not be called")

    async with StatusClient([sendblue_emulator.provider()]) as client:
        with pytest.raises(RuntimeError, match="no ledger"):
            await client.send_once("k", send)
        with pytest.raises(RuntimeError, match="no ledger"):
            await client.reconcile()


def test_sync_client_send_once_and_reconcile(
    make_ledger: Callable[..., Ledger], sendblue_emulator: SendblueEmulator
) -> None:
    clock = ManualClock()
    sendblue_emulator.clock = clock
    send = _send_to(sendblue_emulator)
    with SyncStatusClient([sendblue_emulator.provider()], ledger=make_ledger()) as client:
        first = client.send_once("k", send)
        assert first.sent
        assert not client.send_once("k", send).sent  # in flight: WAIT
        clock.advance(2)
        checked = client.reconcile()
        assert [handle for handle, _ in checked] == [first.handle]
        last = client.send_once("k", send)
    assert last.decision.action is ResendAction.SKIP
    assert len(sendblue_emulator.handles) == 1
