"""The dedup-safety property: for any sequence of observations of one message, in any order, with
repeats, failures between them, unknown values and stale results, the resend decision is never
RESEND when an observation showed the message delivered, read or finally sent, and never SKIP when
every observation is a failure. Checked three ways: the decision over observations, a left fold
of merges, and a real StatusClient (its cache) fed the observations one poll at a time, on
asyncio and on trio. Then every raw status and error key of both providers is walked through a
client and its emulator against a table written out here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MessageStatus,
    ResendAction,
    ResendDecision,
    RetryPolicy,
    SendblueProvider,
    StatusClient,
    StatusResult,
)
from msgstatus.testing import ChimeEmulator, SendblueEmulator, SendblueState

S = MessageStatus
T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/app/channel/general"

SENDBLUE = SendblueProvider("test-key", "test-secret-long-enough")
CHIME = ChimeProvider(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")

_SENDBLUE_STATUSES = [
    "QUEUED",
    "REGISTERED",
    "PENDING",
    "ACCEPTED",
    "SENT",
    "SUCCESS",
    "DELIVERED",
    "RECEIVED",
    "READ",
    "ERROR",
    "DECLINED",
    " delivered ",
    "error",
    "TELEPORTED",
]
_SENDBLUE_KEYS = [
    "LINE_HOURLY_LIMIT_REACHED",
    "LINE_DAILY_LIMIT_REACHED",
    "PRE_REPLY_LIMIT_REACHED",
    "OPTED_OUT",
    "SOME_FUTURE_RULE",
]
_CHIME_VALUES = ["PENDING", "SENT", "FAILED", "DENIED", "sent", "TELEPORTED"]


@st.composite
def _sendblue_observation(draw: st.DrawFn) -> StatusResult:
    payload: dict[str, Any] = {
        "message_handle": "m-1",
        "status": draw(st.sampled_from(_SENDBLUE_STATUSES) | st.none() | st.text(max_size=6)),
        "error_key": draw(st.none() | st.none() | st.sampled_from(_SENDBLUE_KEYS)),
        "error_code": draw(st.none() | st.sampled_from([429, 10001])),
    }
    return SENDBLUE.result_from_payload(payload)


@st.composite
def _chime_observation(draw: st.DrawFn) -> StatusResult:
    value = draw(st.sampled_from(_CHIME_VALUES) | st.text(max_size=6))
    response: dict[str, Any] = {"ChannelArn": CHANNEL, "MessageId": "m-1"}
    if draw(st.booleans()) or value:
        response["Status"] = {"Value": value}
    return CHIME.result_from_payload(response)


def _timed(observation: StatusResult, seconds: int) -> StatusResult:
    # Arrival order is the list order; checked_at is independent of it, so results can be stale.
    return observation.model_copy(update={"checked_at": T0 + timedelta(seconds=seconds)})


def _sequences(observation: st.SearchStrategy[StatusResult]) -> st.SearchStrategy[list[Any]]:
    timed = st.builds(_timed, observation, st.integers(0, 50))
    return st.lists(timed, min_size=1, max_size=8).flatmap(
        # Repeats: sometimes observations come again, later in the list.
        lambda seq: st.lists(st.sampled_from(seq), max_size=3).map(lambda extra: seq + extra)
    )


SEQUENCES = _sequences(_sendblue_observation()) | _sequences(_chime_observation())


def _shows_delivery(result: StatusResult) -> bool:
    # Written from the rule, not from the code's ranks.
    return result.status in (S.DELIVERED, S.READ) or (result.status is S.SENT and result.is_final)


def _check(decision: ResendDecision, seen: Sequence[StatusResult]) -> None:
    if any(_shows_delivery(r) for r in seen):
        assert decision.action is ResendAction.SKIP, [r.status for r in seen]
    if all(r.status in (S.FAILED, S.DENIED) for r in seen):
        assert decision.action in (ResendAction.RESEND, ResendAction.BLOCKED)
        # DENIED anywhere among failures means the rule refuses a resend.
        expected = ResendAction.BLOCKED if any(r.status is S.DENIED for r in seen) else None
        if expected is not None:
            assert decision.action is expected


class _Replay:
    """A provider that answers each lookup with the next observation of a script."""

    def __init__(self, name: str, seen: Sequence[StatusResult]) -> None:
        self.name = name
        self._seen = list(seen)

    async def get_status(self, handle: object, /) -> StatusResult:
        await anyio.lowlevel.checkpoint()
        return self._seen.pop(0)

    async def aclose(self) -> None:
        pass


async def _through_client(seen: list[StatusResult]) -> ResendDecision:
    first = seen[0]
    async with StatusClient([_Replay(first.provider, seen)]) as client:
        for _ in seen[:-1]:
            await client.get_status(first.handle, refresh=True)
        return await client.resend_decision(first.handle, refresh=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seen=SEQUENCES)
def test_no_sequence_of_observations_invites_a_duplicate(
    backend: str, seen: list[StatusResult]
) -> None:
    _check(ResendDecision.from_observations(seen), seen)
    folded = seen[0]
    for result in seen[1:]:
        folded = folded.merge(result)
    _check(ResendDecision.from_result(folded), seen)
    _check(anyio.run(_through_client, seen, backend=backend), seen)


# -- every raw value through a client and its emulator --------------------------------------

FAST = RetryPolicy(max_attempts=1)

# raw Sendblue status -> the action providers.md documents.
SENDBLUE_ACTIONS = {
    "QUEUED": ResendAction.WAIT,
    "REGISTERED": ResendAction.WAIT,
    "PENDING": ResendAction.WAIT,
    "ACCEPTED": ResendAction.WAIT,
    "SENT": ResendAction.WAIT,
    "SUCCESS": ResendAction.WAIT,
    "DELIVERED": ResendAction.SKIP,
    "RECEIVED": ResendAction.SKIP,
    "READ": ResendAction.SKIP,
    "ERROR": ResendAction.RESEND,
    "DECLINED": ResendAction.BLOCKED,
    "TELEPORTED": ResendAction.UNKNOWN,
}
# error_key on an ERROR status -> the action.
SENDBLUE_KEY_ACTIONS = {
    "LINE_HOURLY_LIMIT_REACHED": ResendAction.RESEND,
    "LINE_DAILY_LIMIT_REACHED": ResendAction.RESEND,
    "PRE_REPLY_LIMIT_REACHED": ResendAction.RESEND,
    "OPTED_OUT": ResendAction.BLOCKED,
    "SOME_FUTURE_RULE": ResendAction.UNKNOWN,
}
# Chime stores no denied message, so a poll of one finds nothing (UNKNOWN, MessageNotFoundError);
# DENIED is seen only in a send response or a pushed event.
CHIME_POLLED_ACTIONS = {
    "PENDING": ResendAction.WAIT,
    "SENT": ResendAction.SKIP,
    "FAILED": ResendAction.RESEND,
    "DENIED": ResendAction.UNKNOWN,
    "TELEPORTED": ResendAction.UNKNOWN,
}
CHIME_HELD_ACTIONS = {
    "PENDING": ResendAction.WAIT,
    "SENT": ResendAction.SKIP,
    "FAILED": ResendAction.RESEND,
    "DENIED": ResendAction.BLOCKED,
    "TELEPORTED": ResendAction.UNKNOWN,
}


@pytest.mark.anyio
async def test_every_sendblue_status_and_error_key_gives_its_documented_action(
    sendblue_emulator: SendblueEmulator,
) -> None:
    cases: dict[str, ResendAction] = {}
    for raw, action in SENDBLUE_ACTIONS.items():
        cases[sendblue_emulator.add_message(status=raw)] = action
    for key, action in SENDBLUE_KEY_ACTIONS.items():
        state = SendblueState("ERROR", error_key=key)
        cases[sendblue_emulator.add_message(status=state)] = action
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        decisions = await client.resend_decisions(list(cases))
    assert [d.action for d in decisions] == list(cases.values())
    for decision in decisions:
        assert decision.result is not None
        assert repr(decision.result.provider_status) in decision.reason


@pytest.mark.anyio
async def test_every_chime_status_gives_its_documented_action(
    chime_emulator: ChimeEmulator,
) -> None:
    channel, sender = chime_emulator.channel_arn(), chime_emulator.user_arn()
    cases: dict[ChimeHandle, ResendAction] = {}
    for raw, action in CHIME_POLLED_ACTIONS.items():
        message_id = chime_emulator.add_message(channel, sender=sender, status=raw)
        cases[ChimeHandle(channel, message_id, bearer=sender)] = action
    async with StatusClient([chime_emulator.provider(retry=FAST)]) as client:
        decisions = await client.resend_decisions(list(cases))
    assert [d.action for d in decisions] == list(cases.values())
    denied = decisions[list(CHIME_POLLED_ACTIONS).index("DENIED")]
    assert denied.error_type == "MessageNotFoundError"
    for raw, action in CHIME_HELD_ACTIONS.items():
        response = {"ChannelArn": channel, "MessageId": "m-1", "Status": {"Value": raw}}
        held = CHIME.result_from_payload(response, bearer=sender)
        assert ResendDecision.from_result(held).action is action
