"""The ledger contract (DESIGN.md, "The send ledger"): every row of the claim table, fencing,
ambiguity, observations, on SQLite and PostgreSQL, on asyncio and trio."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from msgstatus import MessageStatus, ResendAction, ResendDecision, StatusResult
from msgstatus._ledger import (
    Ledger,
    PostgresLedger,
    SendClaim,
    SQLiteLedger,
    idempotency_token,
    open_ledger,
)
from msgstatus.errors import (
    ClaimLostError,
    InvalidHandleError,
    InvalidKeyError,
    LedgerUnavailableError,
    MessageNotFoundError,
    ProviderUnavailableError,
)

pytestmark = pytest.mark.anyio

LONG = 120.0  # a lease no test outlives
SHORT = 0.05  # a lease a test waits out (bounded, by the database's clock)


def observed(
    handle: str,
    status: MessageStatus,
    *,
    final: bool | None = None,
    provider: str = "sendblue",
) -> StatusResult:
    if final is None:
        final = status in (
            MessageStatus.DELIVERED,
            MessageStatus.READ,
            MessageStatus.FAILED,
            MessageStatus.DENIED,
        )
    return StatusResult(provider=provider, handle=handle, status=status, is_final=final)


async def granted(ledger: Ledger, key: str, **options: object) -> SendClaim:
    claim = await ledger.claim(key, **options)  # type: ignore[arg-type]
    assert isinstance(claim, SendClaim), claim
    return claim


async def refused(ledger: Ledger, key: str, **options: object) -> ResendDecision:
    answer = await ledger.claim(key, **options)  # type: ignore[arg-type]
    assert isinstance(answer, ResendDecision), answer
    return answer


async def wait_expired(ledger: Ledger, key: str) -> None:
    """Until the last attempt's lease is over by the database's clock (bounded)."""
    with anyio.fail_after(10):
        while True:
            entry = await ledger.entry(key)
            assert entry is not None
            if entry.attempts[-1].expired:
                return
            await anyio.sleep(0.02)


async def failed_attempt(ledger: Ledger, key: str, n: int) -> SendClaim:
    claim = await granted(ledger, key)
    assert claim.attempt == n
    handle = f"sendblue:{key}-{n}"
    await claim.sent(handle)
    assert await ledger.observe(observed(handle, MessageStatus.FAILED))
    return claim


# -- the claim table, row by row --------------------------------------------------------------


async def test_nothing_held_grants_attempt_1(ledger: Ledger) -> None:
    claim = await granted(ledger, "order-1", lease=LONG)
    assert claim.attempt == 1
    assert claim.key == "order-1"
    assert claim.idempotency_token == idempotency_token("order-1", 1)
    assert re.fullmatch(r"[-_a-zA-Z0-9]{2,64}", claim.idempotency_token)
    assert claim.lease_until > datetime.now(timezone.utc)
    assert 0 < claim.remaining() <= LONG


async def test_delivered_attempt_refuses_skip(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", MessageStatus.DELIVERED))
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.SKIP
    assert "duplicate" in answer.reason


@pytest.mark.parametrize(
    ("status", "final", "provider"),
    [(MessageStatus.READ, True, "sendblue"), (MessageStatus.SENT, True, "chime")],
)
async def test_read_or_final_sent_refuses_skip(
    ledger: Ledger, status: MessageStatus, final: bool, provider: str
) -> None:
    claim = await granted(ledger, "k")
    await claim.sent(f"{provider}:h1")
    assert await ledger.observe(observed(f"{provider}:h1", status, final=final, provider=provider))
    assert (await refused(ledger, "k")).action is ResendAction.SKIP


async def test_delivery_of_an_earlier_attempt_refuses_skip(ledger: Ledger) -> None:
    await failed_attempt(ledger, "k", 1)
    second = await granted(ledger, "k")
    await second.sent("sendblue:k-2")
    assert await ledger.observe(observed("sendblue:k-2", MessageStatus.FAILED))
    # Attempt 1 turns out delivered after all (a late report): nothing more may be sent.
    assert await ledger.observe(observed("sendblue:k-1", MessageStatus.DELIVERED))
    entry = await ledger.entry("k")
    assert entry is not None
    first = entry.attempts[0].observation
    assert first is not None
    # The evidence rule: the delivery stands, the earlier failure is kept as a conflict.
    assert first.status is MessageStatus.DELIVERED
    assert first.detail is not None
    assert "FAILED" in first.detail
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.SKIP
    assert "attempt 1" in answer.reason


async def test_failure_after_delivery_is_kept_as_a_conflict_and_skips(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", MessageStatus.DELIVERED))
    assert await ledger.observe(observed("sendblue:h1", MessageStatus.FAILED))
    entry = await ledger.entry("k")
    assert entry is not None
    observation = entry.attempts[0].observation
    assert observation is not None
    assert observation.status is MessageStatus.DELIVERED
    assert (await refused(ledger, "k")).action is ResendAction.SKIP


async def test_quota_window_not_over_refuses_wait_with_not_before(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    window_end = datetime.now(timezone.utc) + timedelta(hours=1)
    refusal = StatusResult(
        provider="sendblue",
        handle="sendblue:h1",
        status=MessageStatus.FAILED,
        is_final=True,
        not_before=window_end,
    )
    await claim.sent("sendblue:h1", refusal)
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.WAIT
    assert answer.not_before == window_end
    assert "quota window" in answer.reason


async def test_quota_window_over_grants_the_next_attempt(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    refusal = StatusResult(
        provider="sendblue",
        handle="sendblue:h1",
        status=MessageStatus.FAILED,
        is_final=True,
        not_before=datetime.now(timezone.utc) - timedelta(seconds=1),
    )
    await claim.sent("sendblue:h1", refusal)
    assert (await granted(ledger, "k")).attempt == 2


async def test_live_claim_refuses_wait(make_ledger: Callable[..., Ledger]) -> None:
    first, second = make_ledger(), make_ledger()
    await granted(first, "k", lease=LONG)
    answer = await refused(second, "k", lease=LONG)
    assert answer.action is ResendAction.WAIT
    assert "another worker" in answer.reason


async def test_expired_claim_without_handle_refuses_unknown(ledger: Ledger) -> None:
    await granted(ledger, "k", lease=SHORT)
    await wait_expired(ledger, "k")
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.UNKNOWN
    assert "may have been sent" in answer.reason
    # It stays so: a second look gives the same answer, never a new attempt.
    assert (await refused(ledger, "k")).action is ResendAction.UNKNOWN


async def test_expired_claim_is_regranted_with_the_same_token_when_sends_are_idempotent(
    make_ledger: Callable[..., Ledger],
) -> None:
    first, second = make_ledger(), make_ledger()
    old = await granted(first, "k", lease=SHORT)
    await wait_expired(first, "k")
    new = await granted(second, "k", lease=LONG, reclaim_expired=True)
    assert new.attempt == old.attempt == 1
    assert new.idempotency_token == old.idempotency_token
    assert new.fence > old.fence
    # The re-grant fences the earlier holder out.
    with pytest.raises(ClaimLostError):
        await old.sent("sendblue:late")
    with pytest.raises(ClaimLostError):
        await old.abandon()
    await new.sent("sendblue:h1")
    entry = await second.entry("k")
    assert entry is not None
    assert [a.handle for a in entry.attempts] == ["sendblue:h1"]


async def test_sent_after_the_lease_but_before_a_takeover_still_records(ledger: Ledger) -> None:
    claim = await granted(ledger, "k", lease=SHORT)
    await wait_expired(ledger, "k")
    await claim.sent("sendblue:h1")
    assert (await refused(ledger, "k")).action is ResendAction.WAIT
    assert await ledger.in_flight() == ["sendblue:h1"]


@pytest.mark.parametrize(
    ("status", "final"),
    [(MessageStatus.PENDING, False), (MessageStatus.SENT, False)],
)
async def test_last_attempt_in_flight_refuses_wait(
    ledger: Ledger, status: MessageStatus, final: bool
) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", status, final=final))
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.WAIT
    assert answer.result is not None
    assert answer.result.status is status


async def test_sent_not_observed_refuses_wait(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1")
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.WAIT
    assert "not observed" in answer.reason


async def test_denied_refuses_blocked(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", MessageStatus.DENIED))
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.BLOCKED
    assert "refused" in answer.reason


async def test_every_attempt_failed_grants_the_next(ledger: Ledger) -> None:
    await failed_attempt(ledger, "k", 1)
    second = await granted(ledger, "k")
    assert second.attempt == 2
    assert second.idempotency_token == idempotency_token("k", 2)
    assert second.idempotency_token != idempotency_token("k", 1)
    decision = await ledger.decision("k")
    assert decision.action is ResendAction.WAIT  # attempt 2 is claimed


async def test_attempt_limit_refuses_blocked(ledger: Ledger) -> None:
    for n in (1, 2, 3):
        await failed_attempt(ledger, "k", n)
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.BLOCKED
    assert "attempt limit" in answer.reason
    # A caller allowing more attempts gets attempt 4.
    assert (await granted(ledger, "k", max_attempts=4)).attempt == 4


async def test_max_attempts_one_blocks_after_one_failure(ledger: Ledger) -> None:
    await failed_attempt(ledger, "k", 1)
    answer = await refused(ledger, "k", max_attempts=1)
    assert answer.action is ResendAction.BLOCKED


async def test_unknown_status_refuses_unknown(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", MessageStatus.UNKNOWN))
    assert (await refused(ledger, "k")).action is ResendAction.UNKNOWN


async def test_failing_lookup_refuses_unknown(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1")
    error = MessageNotFoundError("no such message", provider="sendblue", handle="sendblue:h1")
    assert await ledger.observe_error("sendblue:h1", error)
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.UNKNOWN
    assert "MessageNotFoundError" in answer.reason
    # It is no longer polled: the lookup cannot succeed.
    assert await ledger.in_flight() == []


async def test_transient_lookup_failure_keeps_waiting_and_polling(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1")
    error = ProviderUnavailableError("503", provider="sendblue", handle="sendblue:h1")
    assert await ledger.observe_error("sendblue:h1", error)
    assert (await refused(ledger, "k")).action is ResendAction.WAIT
    assert await ledger.in_flight() == ["sendblue:h1"]


# -- abandon and ambiguity ---------------------------------------------------------------------


async def test_abandon_gives_the_attempt_back(ledger: Ledger) -> None:
    claim = await granted(ledger, "k", lease=LONG)
    await claim.abandon()
    again = await granted(ledger, "k")
    assert again.attempt == 1
    assert again.fence > claim.fence
    with pytest.raises(ClaimLostError):
        await claim.sent("sendblue:late")


async def test_abandoning_a_regrant_leaves_the_attempt_ambiguous(ledger: Ledger) -> None:
    await granted(ledger, "k", lease=SHORT)
    await wait_expired(ledger, "k")
    regrant = await granted(ledger, "k", reclaim_expired=True, lease=LONG)
    await regrant.abandon()
    # The first holder may have sent it: only this try was given back.
    assert (await refused(ledger, "k")).action is ResendAction.UNKNOWN
    assert (await granted(ledger, "k", reclaim_expired=True)).attempt == 1


async def test_ambiguous_send_refuses_unknown_at_once(ledger: Ledger) -> None:
    claim = await granted(ledger, "k", lease=LONG)
    await claim.mark_ambiguous("ReadTimeout: the send may have gone out")
    answer = await refused(ledger, "k")
    assert answer.action is ResendAction.UNKNOWN
    assert "may have sent it" in answer.reason
    regrant = await granted(ledger, "k", reclaim_expired=True)
    assert regrant.idempotency_token == claim.idempotency_token


# -- observations ------------------------------------------------------------------------------


async def test_observe_unknown_handle_is_reported_not_invented(ledger: Ledger) -> None:
    assert await ledger.observe(observed("sendblue:nobody", MessageStatus.DELIVERED)) is False
    assert await ledger.in_flight() == []
    error = ProviderUnavailableError("503", provider="sendblue")
    assert await ledger.observe_error("sendblue:nobody", error) is False


async def test_observe_never_moves_backwards(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    await claim.sent("sendblue:h1", observed("sendblue:h1", MessageStatus.PENDING))
    assert await ledger.observe(observed("sendblue:h1", MessageStatus.DELIVERED))
    assert await ledger.observe(observed("sendblue:h1", MessageStatus.PENDING))
    entry = await ledger.entry("k")
    assert entry is not None
    observation = entry.attempts[0].observation
    assert observation is not None
    assert observation.status is MessageStatus.DELIVERED
    assert entry.decision.action is ResendAction.SKIP


async def test_in_flight_lists_unfinished_handles_oldest_check_first(ledger: Ledger) -> None:
    for name in ("a", "b", "c"):
        claim = await granted(ledger, name)
        await claim.sent(f"sendblue:{name}", observed(f"sendblue:{name}", MessageStatus.PENDING))
    # The order is by the database's clock, which SQLite keeps in milliseconds: let one pass, so
    # that "b was checked before a" is a fact and not a tie broken by key.
    await anyio.sleep(0.005)
    assert await ledger.observe(observed("sendblue:a", MessageStatus.SENT))  # checked last now
    assert await ledger.observe(observed("sendblue:c", MessageStatus.DELIVERED))  # final
    assert await ledger.in_flight() == ["sendblue:b", "sendblue:a"]
    assert await ledger.in_flight(limit=1) == ["sendblue:b"]
    with pytest.raises(ValueError, match="limit"):
        await ledger.in_flight(limit=0)


async def test_entry_and_decision(ledger: Ledger) -> None:
    assert await ledger.entry("k") is None
    assert (await ledger.decision("k")).action is ResendAction.RESEND
    await failed_attempt(ledger, "k", 1)
    decision = await ledger.decision("k")
    assert decision.action is ResendAction.RESEND
    assert "attempt 2" in decision.reason
    entry = await ledger.entry("k")
    assert entry is not None
    assert [a.attempt for a in entry.attempts] == [1]
    assert entry.attempts[0].state == "sent"
    assert entry.attempts[0].handle == "sendblue:k-1"
    assert entry.model_dump_json()  # a JSON value for the CLI


async def test_one_grant_among_many_concurrent_claims(make_ledger: Callable[..., Ledger]) -> None:
    ledgers = [make_ledger() for _ in range(4)]
    answers: list[SendClaim | ResendDecision] = []

    async def claim(ledger: Ledger) -> None:
        for _ in range(5):
            answers.append(await ledger.claim("contended", lease=LONG))

    async with anyio.create_task_group() as tg:
        for ledger in ledgers:
            tg.start_soon(claim, ledger)
    grants = [a for a in answers if isinstance(a, SendClaim)]
    assert len(grants) == 1
    assert len(answers) == 20
    assert all(a.action is ResendAction.WAIT for a in answers if isinstance(a, ResendDecision))


# -- bad input and faults ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "x" * 256, "a\nb", "nul\x00", 42])
async def test_bad_key_is_refused_before_any_database_call(
    tmp_path: Path, key: object, anyio_backend: str
) -> None:
    # A ledger whose database cannot even be opened: a database call would fail differently.
    ledger = SQLiteLedger(tmp_path / "missing-dir" / "ledger.sqlite3")
    with pytest.raises(InvalidKeyError):
        await ledger.claim(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        await ledger.decision(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        await ledger.entry(key)  # type: ignore[arg-type]
    assert not (tmp_path / "missing-dir").exists()


async def test_longest_key_is_accepted(ledger: Ledger) -> None:
    assert (await granted(ledger, "é" * 255)).attempt == 1


async def test_bad_handle_is_refused(ledger: Ledger) -> None:
    claim = await granted(ledger, "k")
    with pytest.raises(InvalidHandleError):
        await claim.sent("no-prefix")
    with pytest.raises(InvalidHandleError):
        await claim.sent(42)  # type: ignore[arg-type]


async def test_locked_sqlite_is_unavailable_and_grants_nothing(
    tmp_path: Path, anyio_backend: str
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path, timeout=0.1)
    await ledger.decision("warm-up")  # creates the schema
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerUnavailableError) as caught:
            await ledger.claim("k")
        assert caught.value.retryable
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await ledger.entry("k") is None
    assert (await granted(ledger, "k")).attempt == 1
    await ledger.aclose()


async def test_postgres_down_is_unavailable_and_hides_the_password(anyio_backend: str) -> None:
    # Nothing listens on port 9 of the loopback.
    ledger = PostgresLedger("postgresql://app:hunter2-secret@127.0.0.1:9/db", timeout=1)
    assert "hunter2" not in repr(ledger)
    with pytest.raises(LedgerUnavailableError) as caught:
        await ledger.claim("k")
    error: BaseException | None = caught.value
    while error is not None:
        assert "hunter2" not in str(error)
        assert "hunter2" not in repr(error)
        error = error.__cause__ or error.__context__
    await ledger.aclose()


async def test_newer_schema_is_refused(make_ledger: Callable[..., Ledger]) -> None:
    first = make_ledger()
    await first.decision("k")
    await first.aclose()
    second = make_ledger()
    assert isinstance(second, (SQLiteLedger, PostgresLedger))
    with second._transaction() as tx:
        tx.execute("UPDATE msgstatus_schema SET version = 99")
    second._schema_ready = False
    with pytest.raises(LedgerUnavailableError, match="newer than this msgstatus knows") as caught:
        await second.decision("k")
    assert not caught.value.retryable


def test_open_ledger_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.sqlite3")
    assert isinstance(ledger, SQLiteLedger)
    assert ledger.path == tmp_path / "l.sqlite3"
    assert isinstance(open_ledger("postgresql://u:pw@localhost/db"), PostgresLedger)
    monkeypatch.setenv("MSGSTATUS_LEDGER_URL", "sqlite:///relative.sqlite3")
    relative = open_ledger()
    assert isinstance(relative, SQLiteLedger)
    assert relative.path == Path("relative.sqlite3")
    with pytest.raises(ValueError, match="scheme"):
        open_ledger("mysql://u:pw@h/db")
    monkeypatch.delenv("MSGSTATUS_LEDGER_URL")
    with pytest.raises(ValueError, match="MSGSTATUS_LEDGER_URL"):
        open_ledger()
