"""StatusClient against the real providers talking to the loopback emulators."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import pytest

from msgstatus import (
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    ProviderUnavailableError,
    ResendAction,
    RetryPolicy,
    SendblueProvider,
    StatusClient,
    StatusResult,
    StatusWaitTimeout,
    SyncStatusClient,
    UnknownProviderError,
)
from msgstatus.testing import Fault, SendblueEmulator, SendblueState

pytestmark = pytest.mark.anyio

S = MessageStatus

# Faulted lookups should fail fast: two quick attempts, not the default patience.
FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.005)


def _is_down(request: object) -> bool:
    handle = getattr(request, "query", {}).get("handle", "")
    return isinstance(handle, str) and handle.startswith("down-")


@pytest.fixture
def sendblue() -> Iterator[SendblueEmulator]:
    with SendblueEmulator() as emulator:
        # Every lookup of a "down-…" handle answers 503, however often it is retried.
        emulator.inject(Fault.SERVER_ERROR_503, times=None, match=_is_down)
        yield emulator


def sendblue_provider(emulator: SendblueEmulator) -> SendblueProvider:
    return emulator.provider(retry=FAST_RETRY)


# -- routing and batches ---------------------------------------------------------------------


async def test_routing_to_the_real_sendblue_provider(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        result = await client.get_status(f"sendblue:{handle}")
        with pytest.raises(UnknownProviderError):
            await client.get_status(f"nope:{handle}")
        with pytest.raises(MessageNotFoundError):
            await client.get_status(f"sendblue:{uuid.uuid4()}")
    assert (result.provider, result.handle) == ("sendblue", f"sendblue:{handle}")
    assert (result.status, result.provider_status, result.is_final) == (
        S.DELIVERED,
        "DELIVERED",
        True,
    )


async def test_batch_of_1000_mixed_handles_against_the_emulator(sendblue: SendblueEmulator) -> None:
    found = [sendblue.add_message(status="SENT") for _ in range(250)]
    handles: list[str] = []
    expected: list[type[object]] = []
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            handles.append(f"sendblue:{found[i // 4]}")
            expected.append(StatusResult)
        elif kind == 1:
            handles.append(f"sendblue:missing-{i}")
            expected.append(MessageNotFoundError)
        elif kind == 2:
            handles.append(f"sendblue:down-{i}")
            expected.append(ProviderUnavailableError)
        else:
            handles.append(f"elsewhere:{i}")
            expected.append(UnknownProviderError)
    sendblue.stats.reset()
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(60):
            results = await client.get_statuses(handles, concurrency=16)
    assert len(results) == 1000
    assert [type(r) for r in results] == expected
    for handle, result in zip(handles, results, strict=True):
        if isinstance(result, StatusResult):
            assert result.handle == handle
            assert result.status is S.SENT
        else:
            assert isinstance(result, MsgStatusError)
            assert result.handle == handle
    assert 1 < sendblue.stats.max_in_flight <= 16


async def test_iter_statuses_against_the_emulator(sendblue: SendblueEmulator) -> None:
    handles = [f"sendblue:{sendblue.add_message(status='DELIVERED')}" for _ in range(100)]
    sendblue.stats.reset()
    async with (
        StatusClient([sendblue_provider(sendblue)]) as client,
        client.iter_statuses(handles, concurrency=8) as results,
    ):
        seen = {handle: outcome async for handle, outcome in results}
    assert set(seen) == set(handles)
    assert all(isinstance(r, StatusResult) and r.status is S.DELIVERED for r in seen.values())
    assert sendblue.stats.max_in_flight <= 8


# -- waiting ---------------------------------------------------------------------------------


async def test_wait_for_final_follows_a_sendblue_lifecycle(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(steps=[(0.0, "QUEUED"), (0.1, "SENT"), (0.2, "DELIVERED")])
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(30):
            result = await client.wait_for_final(
                f"sendblue:{handle}", timeout=20, poll_interval=0.02, max_interval=0.05
            )
    assert (result.status, result.provider_status, result.is_final) == (
        S.DELIVERED,
        "DELIVERED",
        True,
    )
    assert sendblue.stats.requests >= 3  # QUEUED, SENT, DELIVERED at least


async def test_a_message_stuck_queued_times_out(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="QUEUED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(30), pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final(f"sendblue:{handle}", timeout=0.3, poll_interval=0.02)
    last = info.value.last_result
    assert last is not None
    assert (last.status, last.provider_status) == (S.PENDING, "QUEUED")
    assert info.value.handle == f"sendblue:{handle}"


async def test_wait_rides_out_transient_faults(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    # More 503s than one lookup's retries absorb: the wait keeps polling through them.
    sendblue.inject(Fault.SERVER_ERROR_503, times=5)
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(30):
            result = await client.wait_for_final(
                f"sendblue:{handle}", timeout=20, poll_interval=0.01, max_interval=0.02
            )
    assert result.status is S.DELIVERED


# -- may I resend? ---------------------------------------------------------------------------

SENDBLUE_ROWS = [
    ("QUEUED", ResendAction.WAIT),
    ("ACCEPTED", ResendAction.WAIT),
    ("SENT", ResendAction.WAIT),
    ("DELIVERED", ResendAction.SKIP),
    ("READ", ResendAction.SKIP),
    ("ERROR", ResendAction.RESEND),
    ("DECLINED", ResendAction.BLOCKED),
    (SendblueState("SENT", error_key="OPTED_OUT"), ResendAction.BLOCKED),
    ("TELEPORTED", ResendAction.UNKNOWN),
]


@pytest.mark.parametrize(("state", "action"), SENDBLUE_ROWS, ids=str)
async def test_sendblue_resend_table(
    sendblue: SendblueEmulator, state: str | SendblueState, action: ResendAction
) -> None:
    handle = sendblue.add_message(status=state)
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        decision = await client.resend_decision(f"sendblue:{handle}")
    assert decision.action is action, decision.reason
    assert decision.result is not None


@pytest.mark.parametrize(
    ("native", "named"),
    [("missing-1", "MessageNotFoundError"), ("down-1", "ProviderUnavailableError")],
)
async def test_sendblue_not_found_or_down_gives_unknown(
    sendblue: SendblueEmulator, native: str, named: str
) -> None:
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        decision = await client.resend_decision(f"sendblue:{native}")
    assert decision.action is ResendAction.UNKNOWN
    assert decision.result is None
    assert named in decision.reason


async def test_sendblue_bad_credentials_give_unknown(sendblue: SendblueEmulator) -> None:
    provider = SendblueProvider("wrong-key", "wrong-secret", base_url=sendblue.base_url)
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([provider]) as client:
        decision = await client.resend_decision(f"sendblue:{handle}")
    assert decision.action is ResendAction.UNKNOWN
    assert "AuthenticationError" in decision.reason


# -- cache -----------------------------------------------------------------------------------


async def test_a_final_sendblue_result_is_fetched_once(sendblue: SendblueEmulator) -> None:
    final = sendblue.add_message(status="DELIVERED")
    pending = sendblue.add_message(status="SENT")
    sendblue.stats.reset()
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        for _ in range(5):
            await client.get_status(f"sendblue:{final}")
        assert sendblue.stats.requests == 1
        for _ in range(5):
            await client.get_status(f"sendblue:{pending}")
        assert sendblue.stats.requests == 6
        await client.get_status(f"sendblue:{final}", refresh=True)
        assert sendblue.stats.requests == 7


async def test_a_stale_answer_after_a_final_one_does_not_move_backwards(
    sendblue: SendblueEmulator,
) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        assert (await client.get_status(f"sendblue:{handle}")).status is S.DELIVERED
        sendblue.set_status(handle, "SENT")  # a stale replica, say
        result = await client.get_status(f"sendblue:{handle}", refresh=True)
    assert result.status is S.DELIVERED


# -- the sync client -------------------------------------------------------------------------


def test_sync_client_with_the_real_sendblue_provider(sendblue: SendblueEmulator) -> None:
    delivered = sendblue.add_message(status="DELIVERED")
    failed = sendblue.add_message(status="ERROR")
    # The provider (and its httpx client) is built here, outside any event loop.
    with SyncStatusClient([sendblue_provider(sendblue)]) as client:
        assert client.get_status(f"sendblue:{delivered}").status is S.DELIVERED
        decisions = client.resend_decisions(
            [f"sendblue:{delivered}", f"sendblue:{failed}", "sendblue:missing-1", "bad"]
        )
        with pytest.raises(InvalidHandleError):
            client.get_status("bad")
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.RESEND,
        ResendAction.UNKNOWN,
        ResendAction.UNKNOWN,
    ]
