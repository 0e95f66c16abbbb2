"""The ledger's argument checks and the claim's edge paths, on SQLite and PostgreSQL: bad
arguments refused before any database call, a typed handle recorded as its string, a handle
sent twice, abandon or mark_ambiguous after a send, a claim cancelled as it is granted, and the
closed ledger."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import anyio
import pytest

from msgstatus import ChimeHandle, MessageStatus, SendClaim, SQLiteLedger, StatusResult
from msgstatus._ledger import Ledger

pytestmark = pytest.mark.anyio

CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"


async def granted(ledger: Ledger, key: str) -> SendClaim:
    claim = await ledger.claim(key)
    assert isinstance(claim, SendClaim), claim
    return claim


@pytest.mark.parametrize("lease", [0, -1.0, math.inf, math.nan, "60"])
async def test_a_bad_lease_is_refused_before_any_database_call(
    tmp_path: Path, lease: object
) -> None:
    path = tmp_path / "never.sqlite3"
    ledger = SQLiteLedger(path)
    with pytest.raises(ValueError, match="lease must be a finite number of seconds > 0"):
        await ledger.claim("k", lease=lease)  # type: ignore[arg-type]
    assert not path.exists()
    await ledger.aclose()


@pytest.mark.parametrize("max_attempts", [0, -3, True, 2.0, "3"])
async def test_a_bad_max_attempts_is_refused_before_any_database_call(
    tmp_path: Path, max_attempts: object
) -> None:
    path = tmp_path / "never.sqlite3"
    ledger = SQLiteLedger(path)
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1"):
        await ledger.claim("k", max_attempts=max_attempts)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1"):
        await ledger.decision("k", max_attempts=max_attempts)  # type: ignore[arg-type]
    assert not path.exists()
    await ledger.aclose()


async def test_observe_takes_only_a_status_result(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match=r"observe\(\) takes a StatusResult, not dict"):
        await ledger.observe({"handle": "sendblue:h1", "status": "DELIVERED"})  # type: ignore[arg-type]


async def test_the_claims_repr_shows_no_token(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    text = repr(claim)
    assert text == (
        f"SendClaim(key='k', attempt=1, fence={claim.fence}, "
        f"lease_until={claim.lease_until.isoformat()!r})"
    )
    assert claim.idempotency_token not in text


async def test_a_typed_handle_is_recorded_as_its_string(ledger: Ledger) -> None:
    handle = ChimeHandle(CHANNEL, "m1")
    claim = await granted(ledger, "k")
    await claim.sent(handle)
    entry = await ledger.entry("k")
    assert entry is not None
    assert entry.attempts[0].handle == str(handle)
    assert await ledger.in_flight() == [str(handle)]


async def test_a_result_about_another_message_is_refused(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    other = StatusResult(
        provider="sendblue", handle="sendblue:other", status=MessageStatus.SENT, is_final=False
    )
    with pytest.raises(ValueError, match="result is about another message than handle"):
        await claim.sent("sendblue:h1", other)
    entry = await ledger.entry("k")
    assert entry is not None
    assert (entry.attempts[0].state, entry.attempts[0].handle) == ("claimed", None)


async def test_sent_again_as_another_handle_records_the_new_one_and_warns(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    claim = await granted(ledger, "k")
    first = StatusResult(
        provider="sendblue", handle="sendblue:h1", status=MessageStatus.DELIVERED, is_final=True
    )
    await claim.sent("sendblue:h1", first)
    second = StatusResult(
        provider="sendblue", handle="sendblue:h2", status=MessageStatus.SENT, is_final=False
    )
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        await claim.sent("sendblue:h2", second)
    assert "attempt 1 of 'k' was recorded as 'sendblue:h1' and is now sent as 'sendblue:h2'" in (
        caplog.text
    )
    entry = await ledger.entry("k")
    assert entry is not None
    record = entry.attempts[0]
    assert record.handle == "sendblue:h2"
    # The other message's delivery is not merged into this one: its own result stands.
    assert record.observation == second


async def test_sent_again_without_a_result_drops_the_other_messages_observation(
    ledger: Ledger,
) -> None:
    claim = await granted(ledger, "k")
    delivered = StatusResult(
        provider="sendblue", handle="sendblue:h1", status=MessageStatus.DELIVERED, is_final=True
    )
    await claim.sent("sendblue:h1", delivered)
    await claim.sent("sendblue:h2")
    entry = await ledger.entry("k")
    assert entry is not None
    assert (entry.attempts[0].handle, entry.attempts[0].observation) == ("sendblue:h2", None)
    # The new handle is polled, and its observations merge with nothing of the other message.
    assert await ledger.in_flight() == ["sendblue:h2"]
    read = StatusResult(
        provider="sendblue", handle="sendblue:h2", status=MessageStatus.READ, is_final=True
    )
    assert await ledger.observe(read)
    entry = await ledger.entry("k")
    assert entry is not None
    assert entry.attempts[0].observation == read


async def test_sent_again_as_the_same_handle_keeps_its_final_observation(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    delivered = StatusResult(
        provider="sendblue", handle="sendblue:h1", status=MessageStatus.DELIVERED, is_final=True
    )
    await claim.sent("sendblue:h1", delivered)
    await claim.sent("sendblue:h1")
    entry = await ledger.entry("k")
    assert entry is not None
    assert entry.attempts[0].observation == delivered
    # Final: not polled again.
    assert await ledger.in_flight() == []


async def test_a_sent_attempt_cannot_be_abandoned_and_stays_sent(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1")
    with pytest.raises(ValueError, match="already recorded as sent: it cannot be abandoned"):
        await claim.abandon()
    # Marking it ambiguous after the send is recorded changes nothing either.
    await claim.mark_ambiguous("timeout after the send was recorded")
    entry = await ledger.entry("k")
    assert entry is not None
    assert (entry.attempts[0].state, entry.attempts[0].handle) == ("sent", "sendblue:h1")
    assert entry.attempts[0].lookup_error is None


async def test_a_claim_cancelled_as_it_is_granted_is_given_back(ledger: Ledger) -> None:
    """The grant is written in a shielded worker thread; a cancellation already pending is
    delivered after it, and the granted attempt is abandoned then: nothing was sent."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await ledger.claim("k")
        pytest.fail("the claim was not cancelled")  # pragma: no cover - reached only on a bug
    assert scope.cancelled_caught
    assert await ledger.entry("k") is None
    assert (await granted(ledger, "k")).attempt == 1


async def test_a_closed_ledger_refuses_calls(tmp_path: Path) -> None:
    async with SQLiteLedger(tmp_path / "ledger.sqlite3") as ledger:
        assert isinstance(ledger, SQLiteLedger)
        await granted(ledger, "k")
    with pytest.raises(RuntimeError, match="the ledger is closed"):
        await ledger.claim("k2")
    await ledger.aclose()  # again: nothing happens
