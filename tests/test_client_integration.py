"""StatusClient against the real providers talking to the loopback emulators."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
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
from msgstatus.testing import (
    ChimeEmulator,
    ChimeState,
    Fault,
    ManualClock,
    SendblueEmulator,
    SendblueState,
)

pytestmark = pytest.mark.anyio

S = MessageStatus

# Faulted lookups should fail fast: two quick attempts, not the default patience.
FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.005)


def _sendblue_down(request: Any) -> bool:
    return str(request.query.get("handle", "")).startswith("down-")


def _chime_down(request: Any) -> bool:
    return "/messages/down-" in request.target


@pytest.fixture
def sendblue() -> Iterator[SendblueEmulator]:
    with SendblueEmulator() as emulator:
        # Every lookup of a "down-…" handle answers 503, however often it is retried.
        emulator.inject(Fault.SERVER_ERROR_503, times=None, match=_sendblue_down)
        yield emulator


def sendblue_provider(emulator: SendblueEmulator) -> SendblueProvider:
    return emulator.provider(retry=FAST_RETRY)


@pytest.fixture(scope="module")
def chime_server() -> Iterator[ChimeEmulator]:
    # One server and one boto3 client for the module: building a boto3 client takes ~0.1 s.
    with ChimeEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def chime_boto_client(chime_server: ChimeEmulator) -> Iterator[Any]:
    client = chime_server.client()
    yield client
    client.close()


@pytest.fixture
def chime(chime_server: ChimeEmulator) -> ChimeEmulator:
    chime_server.reset()
    chime_server.clock = time.monotonic
    chime_server.denied_retention = 0.0
    # Every lookup of a "down-…" message answers 503 ServiceUnavailable, however often retried.
    chime_server.inject_error("ServiceUnavailableException", times=None, match=_chime_down)
    return chime_server


@pytest.fixture
def chime_provider(chime: ChimeEmulator, chime_boto_client: Any) -> ChimeProvider:
    """A provider the StatusClient may close: the shared boto3 client was passed in and stays."""
    return ChimeProvider(client=chime_boto_client, bearer=chime.user_arn(), retry=FAST_RETRY)


def chime_message(chime: ChimeEmulator, **kwargs: Any) -> ChimeHandle:
    message_id = chime.add_message(chime.channel_arn(), sender=chime.user_arn(), **kwargs)
    return ChimeHandle(chime.channel_arn(), message_id)


# -- routing and batches ---------------------------------------------------------------------


async def test_routing_across_both_real_providers(
    sendblue: SendblueEmulator, chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    sb = sendblue.add_message(status="DELIVERED")
    typed = chime_message(chime, status="SENT")
    async with StatusClient([sendblue_provider(sendblue), chime_provider]) as client:
        by_sendblue = await client.get_status(sb)
        by_typed = await client.get_status(typed)
        chime.reset()  # a fresh lookup by text would now fail: it must come from the cache
        by_text = await client.get_status(str(typed))
        with pytest.raises(UnknownProviderError):
            await client.get_status("nope:x")
    assert (by_sendblue.provider, by_sendblue.status) == ("sendblue", S.DELIVERED)
    assert (by_typed.provider, by_typed.handle, by_typed.status) == ("chime", str(typed), S.SENT)
    assert by_text == by_typed


async def test_routing_to_the_real_sendblue_provider(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        result = await client.get_status(handle)
        with pytest.raises(UnknownProviderError):
            await client.get_status(f"nope:{handle}")
        with pytest.raises(MessageNotFoundError):
            await client.get_status(f"sendblue:{uuid.uuid4()}")
    assert (result.provider, result.handle) == ("sendblue", handle)
    assert (result.status, result.provider_status, result.is_final) == (
        S.DELIVERED,
        "DELIVERED",
        True,
    )


async def test_batch_of_1000_mixed_handles_across_both_emulators(
    sendblue: SendblueEmulator, chime: ChimeEmulator
) -> None:
    sendblue_found = [sendblue.add_message(status="SENT") for _ in range(125)]
    chime_found = [chime_message(chime, status="SENT") for _ in range(125)]
    channel = chime.channel_arn()
    kinds: list[tuple[Any, type[object]]] = []
    for i in range(1000):
        kind = i % 8
        if kind == 0:
            kinds.append((sendblue_found[i // 8], StatusResult))
        elif kind == 1:
            kinds.append((chime_found[i // 8], StatusResult))
        elif kind == 2:
            kinds.append((f"sendblue:missing-{i}", MessageNotFoundError))
        elif kind == 3:
            kinds.append((str(ChimeHandle(channel, f"missing-{i}")), MessageNotFoundError))
        elif kind == 4:
            kinds.append((f"sendblue:down-{i}", ProviderUnavailableError))
        elif kind == 5:
            kinds.append((ChimeHandle(channel, f"down-{i}"), ProviderUnavailableError))
        elif kind == 6:
            kinds.append((f"elsewhere:{i}", UnknownProviderError))
        else:
            kinds.append((f"no-prefix-{i}", InvalidHandleError))
    handles = [handle for handle, _ in kinds]
    sendblue.stats.reset()
    chime.stats.reset()
    concurrency = 16
    # Chime's own limit is above the client's, so that the client's is the one tested.
    async with StatusClient(
        [
            sendblue_provider(sendblue),
            chime.provider(bearer=chime.user_arn(), retry=FAST_RETRY, max_concurrency=32),
        ]
    ) as client:
        with anyio.fail_after(120):
            results = await client.get_statuses(handles, concurrency=concurrency)
    assert len(results) == 1000
    assert [type(r) for r in results] == [expected for _, expected in kinds]
    for handle, result in zip(handles, results, strict=True):
        if isinstance(result, StatusResult):
            assert result.handle == str(handle)
            assert result.status is S.SENT
        elif not isinstance(result, InvalidHandleError):
            assert isinstance(result, MsgStatusError)
            assert result.handle == str(handle)
    assert 1 < sendblue.stats.max_in_flight <= concurrency
    assert 1 < chime.stats.max_in_flight <= concurrency
    assert chime.errors == []


async def test_iter_statuses_against_the_emulator(sendblue: SendblueEmulator) -> None:
    handles = [sendblue.add_message(status="DELIVERED") for _ in range(100)]
    # Latency makes the eight workers' requests overlap at the server.
    sendblue.latency = max(sendblue.latency, 0.05)
    sendblue.stats.reset()
    async with (
        StatusClient([sendblue_provider(sendblue)]) as client,
        client.iter_statuses(handles, concurrency=8) as results,
    ):
        seen = {handle: outcome async for handle, outcome in results}
    assert set(seen) == set(handles)
    assert all(isinstance(r, StatusResult) and r.status is S.DELIVERED for r in seen.values())
    # Side by side (a stream that looked handles up one at a time fails), never more than 8.
    assert 1 < sendblue.stats.max_in_flight <= 8


# -- waiting ---------------------------------------------------------------------------------


async def _advance_after_each_answer(
    emulator: SendblueEmulator | ChimeEmulator, clock: ManualClock, steps: list[float]
) -> None:
    """Move ``clock`` on by each of ``steps`` once the emulator has answered one more request
    (counted in and out again): every state of a lifecycle is served at least once, however
    slow the machine or the emulator's latency, and the wait cannot skip one by luck."""
    for step in steps:
        answered = emulator.stats.requests
        with anyio.fail_after(20):
            while emulator.stats.requests == answered or emulator.stats.in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        clock.advance(step)


async def test_wait_for_final_follows_a_sendblue_lifecycle(sendblue: SendblueEmulator) -> None:
    sendblue.clock = clock = ManualClock()
    handle = sendblue.add_message(steps=[(0.0, "QUEUED"), (1.0, "SENT"), (2.0, "DELIVERED")])
    sendblue.stats.reset()
    async with (
        StatusClient([sendblue_provider(sendblue)]) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_advance_after_each_answer, sendblue, clock, [1.0, 1.0])
        with anyio.fail_after(30):
            result = await client.wait_for_final(
                handle, timeout=20, poll_interval=0.02, max_interval=0.05
            )
    assert (result.status, result.provider_status, result.is_final) == (
        S.DELIVERED,
        "DELIVERED",
        True,
    )
    # QUEUED and SENT were each answered (and were not final) before DELIVERED was.
    assert sendblue.stats.requests >= 3


async def test_wait_for_final_follows_a_chime_lifecycle(
    chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    chime.clock = clock = ManualClock()
    handle = chime_message(chime, steps=[(0.0, "PENDING"), (1.0, "SENT")])
    chime.stats.reset()
    async with StatusClient([chime_provider]) as client, anyio.create_task_group() as tg:
        tg.start_soon(_advance_after_each_answer, chime, clock, [1.0])
        with anyio.fail_after(30):
            result = await client.wait_for_final(
                handle, timeout=20, poll_interval=0.02, max_interval=0.05
            )
    assert (result.status, result.is_final) == (S.SENT, True)
    assert chime.stats.requests >= 2


async def test_a_message_stuck_queued_times_out(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="QUEUED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(30), pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final(handle, timeout=0.3, poll_interval=0.02)
    last = info.value.last_result
    assert last is not None
    assert (last.status, last.provider_status) == (S.PENDING, "QUEUED")
    assert info.value.handle == handle


async def test_wait_rides_out_transient_faults(sendblue: SendblueEmulator) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    # More 503s than one lookup's retries absorb: the wait keeps polling through them.
    sendblue.inject(Fault.SERVER_ERROR_503, times=5)
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        with anyio.fail_after(30):
            result = await client.wait_for_final(
                handle, timeout=20, poll_interval=0.01, max_interval=0.02
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
        decision = await client.resend_decision(handle)
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


CHIME_ROWS = [
    ("PENDING", ResendAction.WAIT),
    ("SENT", ResendAction.SKIP),
    ("FAILED", ResendAction.RESEND),
    (ChimeState("FAILED", "the processor timed out"), ResendAction.RESEND),
    ("DENIED", ResendAction.BLOCKED),
    ("TELEPORTED", ResendAction.UNKNOWN),
]


@pytest.mark.parametrize(("state", "action"), CHIME_ROWS, ids=str)
async def test_chime_resend_table(
    chime: ChimeEmulator,
    chime_provider: ChimeProvider,
    state: str | ChimeState,
    action: ResendAction,
) -> None:
    chime.denied_retention = 60.0  # Chime deletes a denied message; look before it does
    handle = chime_message(chime, status=state)
    async with StatusClient([chime_provider]) as client:
        decision = await client.resend_decision(handle)
    assert decision.action is action, decision.reason
    assert decision.result is not None


@pytest.mark.parametrize(
    ("message_id", "named"),
    [("missing-1", "MessageNotFoundError"), ("down-1", "ProviderUnavailableError")],
)
async def test_chime_not_found_or_down_gives_unknown(
    chime: ChimeEmulator, chime_provider: ChimeProvider, message_id: str, named: str
) -> None:
    async with StatusClient([chime_provider]) as client:
        decision = await client.resend_decision(ChimeHandle(chime.channel_arn(), message_id))
    assert decision.action is ResendAction.UNKNOWN
    assert decision.result is None
    assert named in decision.reason


async def test_chime_asked_by_someone_else_than_the_sender_gives_unknown(
    chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    handle = chime_message(chime, status="SENT").with_bearer(chime.user_arn("intruder"))
    async with StatusClient([chime_provider]) as client:
        decision = await client.resend_decision(handle)
    assert decision.action is ResendAction.UNKNOWN
    assert "PermissionDeniedError" in decision.reason


async def test_resend_decisions_across_both_providers(
    sendblue: SendblueEmulator, chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    handles: list[Any] = [
        chime_message(chime, status="SENT"),
        sendblue.add_message(status="SENT"),
        sendblue.add_message(status="DELIVERED"),
        str(chime_message(chime, status="PENDING")),
        chime_message(chime, status="FAILED"),
        "elsewhere:1",
    ]
    async with StatusClient([sendblue_provider(sendblue), chime_provider]) as client:
        decisions = await client.resend_decisions(handles, concurrency=3)
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,  # Chime's SENT is final
        ResendAction.WAIT,  # Sendblue's SENT is not
        ResendAction.SKIP,
        ResendAction.WAIT,
        ResendAction.RESEND,
        ResendAction.UNKNOWN,
    ]


async def test_sendblue_bad_credentials_give_unknown(sendblue: SendblueEmulator) -> None:
    provider = SendblueProvider("wrong-key", "wrong-secret", base_url=sendblue.base_url)
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([provider]) as client:
        decision = await client.resend_decision(handle)
    assert decision.action is ResendAction.UNKNOWN
    assert "AuthenticationError" in decision.reason


# -- cache -----------------------------------------------------------------------------------


async def test_a_final_sendblue_result_is_fetched_once(sendblue: SendblueEmulator) -> None:
    final = sendblue.add_message(status="DELIVERED")
    pending = sendblue.add_message(status="SENT")
    sendblue.stats.reset()
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        for _ in range(5):
            await client.get_status(final)
        assert sendblue.stats.requests == 1
        for _ in range(5):
            await client.get_status(pending)
        assert sendblue.stats.requests == 6
        await client.get_status(final, refresh=True)
        assert sendblue.stats.requests == 7


async def test_a_final_chime_result_is_fetched_once(
    chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    final = chime_message(chime, status="SENT")
    pending = chime_message(chime, status="PENDING")
    chime.stats.reset()
    async with StatusClient([chime_provider]) as client:
        for _ in range(3):
            await client.get_status(final)
            await client.get_status(str(final))
        assert chime.stats.requests == 1
        for _ in range(5):
            await client.get_status(pending)
        assert chime.stats.requests == 6


async def test_a_stale_answer_after_a_final_one_does_not_move_backwards(
    sendblue: SendblueEmulator,
) -> None:
    handle = sendblue.add_message(status="DELIVERED")
    async with StatusClient([sendblue_provider(sendblue)]) as client:
        assert (await client.get_status(handle)).status is S.DELIVERED
        sendblue.set_status(handle, "SENT")  # a stale replica, say
        result = await client.get_status(handle, refresh=True)
    assert result.status is S.DELIVERED


# -- the sync client -------------------------------------------------------------------------


def test_sync_client_with_both_real_providers(
    sendblue: SendblueEmulator, chime: ChimeEmulator, chime_provider: ChimeProvider
) -> None:
    delivered = sendblue.add_message(status="DELIVERED")
    failed = sendblue.add_message(status="ERROR")
    sent = chime_message(chime, status="SENT")
    # The providers (and the httpx client) are built here, outside any event loop.
    with SyncStatusClient([sendblue_provider(sendblue), chime_provider]) as client:
        assert client.get_status(delivered).status is S.DELIVERED
        assert client.get_status(sent).status is S.SENT
        decisions = client.resend_decisions([delivered, failed, sent, "sendblue:missing-1", "bad"])
        with pytest.raises(InvalidHandleError):
            client.get_status("bad")
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.RESEND,
        ResendAction.SKIP,
        ResendAction.UNKNOWN,
        ResendAction.UNKNOWN,
    ]
