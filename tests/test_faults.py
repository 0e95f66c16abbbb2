"""Fault-and-abuse suite: thousands of lookups through ``StatusClient.get_statuses`` against both
emulators while every kind of fault is injected at random into 10% of the requests.

What each batch proves, for each provider:

- every handle gets exactly one slot, in input order, holding either a ``StatusResult`` for that
  handle or a typed ``MsgStatusError`` naming that handle; nothing else escapes the provider (a
  recording wrapper sees every exception before the client could translate a stray one);
- no lookup hangs: each one ends within its retry budget (attempts x (timeout + backoff)) plus a
  generous margin, and the whole batch within ``anyio.fail_after``;
- retries never exceed the policy: the provider sends at most ``max_attempts`` requests per handle
  (counted where its HTTP layer sends them), exactly ``max_attempts`` for a lookup that ended in a
  retryable error, and the emulator reads no more than were sent;
- and, so that the test can fail, the batch really met faults: successes, unknown statuses,
  several error types and retries all occur.

A last test runs one client with both providers over faults and abusive input (malformed handles,
unknown prefixes, objects that are not handles, repeats).

Budget: 5,000 lookups per provider on asyncio, 1,000 per provider on trio (the emulators and the
providers are the same code on both loops; trio repeats the batch at a smaller size to keep the
whole file under a minute).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    ProviderResponseError,
    RetryPolicy,
    StatusClient,
    StatusResult,
)
from msgstatus._providers.base import MessageStatusProvider, TypedHandle
from msgstatus.testing import ChimeEmulator, ChimeState, Fault, SendblueEmulator, SendblueState
from msgstatus.testing._server import Request

pytestmark = pytest.mark.anyio

#: Every fault the issue lists: 429 (seconds and HTTP date), 5xx with HTML, stalls past the
#: timeout, dropped connections, truncated and non-JSON bodies, JSON of the wrong shape, unknown
#: status values and a 10 MB body.
ALL_FAULTS = list(Fault)
FAULT_RATE = 0.1

#: Seconds one attempt may take.
ATTEMPT_TIMEOUT = 0.5
POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
#: The longest a lookup may take by the policy, and the margin a loaded CI machine gets on top.
LOOKUP_BUDGET = POLICY.max_attempts * (ATTEMPT_TIMEOUT + POLICY.max_backoff)
HANG_MARGIN = 15.0
#: A stalled request is held longer than any lookup may take, so that a client that ignored its
#: timeout would fail the duration check rather than be rescued by the emulator's late answer.
#: (Held requests cost the emulator a sleeping task each; stopping it cancels them.)
STALL_SECONDS = 60.0
assert STALL_SECONDS > LOOKUP_BUDGET + HANG_MARGIN

#: One in this many handles names a message the emulator does not have (404 / NotFound).
MISSING_EVERY = 50


def _count(anyio_backend: str) -> int:
    return 5_000 if anyio_backend == "asyncio" else 1_000


@dataclass
class Recording:
    """A transparent wrapper around a real provider: it sees each lookup's duration and any
    exception the provider raises before the client could translate it."""

    inner: MessageStatusProvider
    durations: list[float] = field(default_factory=list)
    escaped: list[BaseException] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    async def get_status(self, handle: str | TypedHandle, /) -> StatusResult:
        started = time.monotonic()
        try:
            return await self.inner.get_status(handle)
        except MsgStatusError:
            raise
        except Exception as exc:
            self.escaped.append(exc)
            raise
        finally:
            self.durations.append(time.monotonic() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _run_batch(
    provider: Recording,
    handles: Sequence[str | TypedHandle],
    keys: Sequence[str],
    requests_per_key: Callable[[], Counter[str]],
    sent: Counter[str],
) -> list[StatusResult | MsgStatusError]:
    # A lookup ends within LOOKUP_BUDGET; at the batch's concurrency the batch needs far less
    # than one budget per handle. The bound only catches a hang.
    with anyio.fail_after(60 + len(handles) * 0.05):
        async with StatusClient([provider], cache_final=False) as client:
            slots = await client.get_statuses(handles, concurrency=32)
    _check_slots(slots, keys)
    _check_no_hang(provider)
    _check_retries(slots, keys, sent, requests_per_key())
    return slots


def _check_slots(slots: Sequence[object], keys: Sequence[str]) -> None:
    assert len(slots) == len(keys)
    for slot, key in zip(slots, keys, strict=True):
        assert isinstance(slot, (StatusResult, MsgStatusError)), repr(slot)
        # Typed: one of the library's own classes, and a specific one (the base class is what a
        # provider would give for something it did not understand).
        assert type(slot).__module__.startswith("msgstatus"), type(slot)
        assert type(slot) is not MsgStatusError, repr(slot)
        assert slot.handle == key, (slot, key)  # the slot belongs to its handle


def _check_no_hang(provider: Recording) -> None:
    assert provider.escaped == [], provider.escaped[:5]
    assert max(provider.durations) < LOOKUP_BUDGET + HANG_MARGIN


def _check_retries(
    slots: Sequence[StatusResult | MsgStatusError],
    keys: Sequence[str],
    sent: Counter[str],
    seen: Counter[str],
) -> None:
    """``sent``: attempts per handle as the provider's HTTP layer made them (counted before the
    network); ``seen``: requests per handle as the emulator read them. An attempt that timed out
    before the emulator read its request (a loaded machine) is sent but not seen."""
    for slot, key in zip(slots, keys, strict=True):
        attempts = sent[key]
        assert 1 <= attempts <= POLICY.max_attempts, (key, attempts, slot)
        assert seen[key] <= attempts, (key, seen[key], attempts, slot)
        if isinstance(slot, MsgStatusError) and slot.retryable:
            # A transient error is what is left once every attempt failed.
            assert attempts == POLICY.max_attempts, (key, attempts, slot)
    assert any(count > 1 for count in sent.values()), "no lookup was retried"


def _check_variety(slots: Sequence[StatusResult | MsgStatusError]) -> None:
    kinds = Counter(type(slot).__name__ for slot in slots)
    assert kinds[StatusResult.__name__] > len(slots) * 0.8, kinds
    assert kinds[MessageNotFoundError.__name__] > 0, kinds
    assert kinds[ProviderResponseError.__name__] > 0, kinds
    statuses = {slot.status for slot in slots if isinstance(slot, StatusResult)}
    assert MessageStatus.UNKNOWN in statuses  # the unknown-status fault came through as a result
    assert len(statuses) >= 3, statuses


def _capture_all_requests(emulator: SendblueEmulator | ChimeEmulator) -> None:
    # The default keeps the last 10,000; a batch with its retries must be counted in full.
    emulator.requests = deque(maxlen=None)


def _arm(emulator: SendblueEmulator | ChimeEmulator, seed: int) -> None:
    emulator.stall_seconds = STALL_SECONDS
    emulator.set_random_faults(FAULT_RATE, ALL_FAULTS, seed=seed)


# -- Sendblue -----------------------------------------------------------------------------------

SENDBLUE_STATES: list[str | SendblueState] = [
    "QUEUED",
    "SENT",
    "DELIVERED",
    "READ",
    SendblueState("ERROR", error_code=10001, error_message="Message failed to send"),
    SendblueState("DECLINED", error_key="OPTED_OUT"),
]


async def test_sendblue_under_random_faults(anyio_backend: str) -> None:
    count = _count(anyio_backend)
    async with SendblueEmulator() as emulator:
        keys = []
        for index in range(count):
            if index % MISSING_EVERY == 0:
                keys.append(f"sendblue:missing-{index}")
                continue
            handle = emulator.add_message(status=SENDBLUE_STATES[index % len(SENDBLUE_STATES)])
            keys.append(handle)
        _capture_all_requests(emulator)
        _arm(emulator, seed=7)
        sent: Counter[str] = Counter()

        async def count_attempt(request: httpx.Request) -> None:
            sent[f"sendblue:{request.url.params['handle']}"] += 1

        async with httpx.AsyncClient(event_hooks={"request": [count_attempt]}) as http_client:
            provider = Recording(
                emulator.provider(timeout=ATTEMPT_TIMEOUT, retry=POLICY, http_client=http_client)
            )

            def requests_per_key() -> Counter[str]:
                return Counter(f"sendblue:{r.query.get('handle')}" for r in emulator.requests)

            slots = await _run_batch(provider, keys, keys, requests_per_key, sent)
        injected = emulator.stats.faults_injected
    _check_variety(slots)
    assert injected >= count * FAULT_RATE * 0.7, injected


# -- Chime --------------------------------------------------------------------------------------

CHIME_STATES: list[str | ChimeState] = [
    "PENDING",
    "SENT",
    ChimeState("FAILED", "the processor timed out"),
    "DENIED",
]


def _chime_key(request: Request, channel: str) -> str:
    # /channels/<channel ARN>/messages/<message id>?scope=message-status
    message_id = urlsplit(request.target).path.split("/")[-1]
    return str(ChimeHandle(channel, message_id))


async def test_chime_under_random_faults(anyio_backend: str) -> None:
    count = _count(anyio_backend)
    # Denied messages are kept for the test's length (Chime would delete them at once).
    async with ChimeEmulator(denied_retention=3600) as emulator:
        channel = emulator.channel_arn("faults")
        sender = emulator.user_arn("faults")
        handles: list[str | TypedHandle] = []
        for index in range(count):
            if index % MISSING_EVERY == 0:
                message_id = f"missing-{index}"
            else:
                state = CHIME_STATES[index % len(CHIME_STATES)]
                message_id = emulator.add_message(channel, sender=sender, status=state)
            handle = ChimeHandle(channel, message_id)
            # Both spellings of a handle go through the batch: typed and its string.
            handles.append(handle if index % 2 else str(handle))
        keys = [str(handle) for handle in handles]
        _capture_all_requests(emulator)
        _arm(emulator, seed=11)
        provider = Recording(
            emulator.provider(
                bearer=sender,
                retry=POLICY,
                connect_timeout=ATTEMPT_TIMEOUT,
                read_timeout=ATTEMPT_TIMEOUT,
            )
        )

        sent: Counter[str] = Counter()

        def count_attempt(request: Any, **_: object) -> None:
            # botocore's request, signed and about to be sent (in the worker thread).
            message_id = urlsplit(request.url).path.split("/")[-1]
            sent[str(ChimeHandle(channel, message_id))] += 1

        assert isinstance(provider.inner, ChimeProvider)
        provider.inner.client.meta.events.register(
            "before-send.chime-sdk-messaging.GetChannelMessageStatus", count_attempt
        )

        def requests_per_key() -> Counter[str]:
            return Counter(_chime_key(r, channel) for r in emulator.requests)

        slots = await _run_batch(provider, handles, keys, requests_per_key, sent)
        injected = emulator.stats.faults_injected
    _check_variety(slots)
    assert injected >= count * FAULT_RATE * 0.7, injected


# -- one client, both providers, abusive input ----------------------------------------------------

ABUSIVE: list[object] = [
    "",
    " sendblue:abc",
    "sendblue:abc ",
    "sendblue:a\nb",
    "sendblue:a\x00b",
    "sendblue:a\u2028b",
    "sendblue:a b",
    "sendblue:\u200babc",
    "sendblue:",
    "sendblue:" + "a" * 5_000,
    "no-prefix",
    ":abc",
    "SENDBLUE:abc",
    "chime:arn:aws:chime:us-east-1:1:app-instance/a/channel/../x;message=m",
    "chime:arn:aws:chime:us-east-1:1:app-instance/a/channel/c;message=bad id",
    "chime:arn:aws:chime:us-east-1:1:app-instance/a/channel/c",
    "chime:not-an-arn;message=m",
    None,
    42,
    b"sendblue:abc",
    ["sendblue:abc"],
]
UNKNOWN_PREFIXES = ["twilio:SM123", "other:x", "a_b-c:1"]


async def test_one_client_with_both_providers_under_faults_and_abusive_input(
    anyio_backend: str,
) -> None:
    """2,000 items mixing both providers' handles (typed and text, some repeated), malformed
    handles, unknown prefixes and objects that are not handles, with faults on both emulators:
    one typed slot each, refusals without any request, and only valid handles reach a server."""
    async with (
        SendblueEmulator() as sendblue,
        ChimeEmulator(denied_retention=3600) as chime,
    ):
        channel = chime.channel_arn("abuse")
        sender = chime.user_arn("abuse")
        items: list[object] = []
        valid: set[str] = set()
        for index in range(2_000):
            kind = index % 10
            if kind < 4:
                key = sendblue.add_message(status="DELIVERED")
                items.append(key)
            elif kind < 8:
                handle = ChimeHandle(channel, chime.add_message(channel, sender=sender))
                key = str(handle)
                items.append(handle if kind % 2 else key)
            elif kind == 8:
                # A repeat of an earlier handle: the cache of final results may answer it.
                items.append(items[index - (7 if index // 10 % 2 else 3)])
                continue
            else:
                items.append((ABUSIVE + UNKNOWN_PREFIXES)[index // 10 % 24])
                continue
            valid.add(key)
        for emulator in (sendblue, chime):
            _capture_all_requests(emulator)
            _arm(emulator, seed=5)
        sendblue_provider = Recording(sendblue.provider(timeout=ATTEMPT_TIMEOUT, retry=POLICY))
        chime_provider = Recording(
            chime.provider(bearer=sender, retry=POLICY, read_timeout=ATTEMPT_TIMEOUT)
        )
        with anyio.fail_after(120):
            async with StatusClient([sendblue_provider, chime_provider]) as client:
                slots = await client.get_statuses(items)  # type: ignore[arg-type]
        reached = {f"sendblue:{r.query.get('handle')}" for r in sendblue.requests}
        reached |= {_chime_key(r, channel) for r in chime.requests}
        total = sendblue.stats.requests + chime.stats.requests
    assert len(slots) == len(items)
    for item, slot in zip(items, slots, strict=True):
        assert isinstance(slot, (StatusResult, MsgStatusError)), repr(slot)
        assert type(slot).__module__.startswith("msgstatus"), type(slot)
        if item in UNKNOWN_PREFIXES:
            assert type(slot).__name__ == "UnknownProviderError", (item, slot)
        elif item in ABUSIVE:
            assert type(slot).__name__ == "InvalidHandleError", (item, slot)
        else:
            assert type(slot) is not MsgStatusError, (item, slot)
            assert slot.handle == str(item), (item, slot)
    for provider in (sendblue_provider, chime_provider):
        _check_no_hang(provider)
    # Only valid handles reached a server, each within the policy.
    assert reached <= valid
    assert total <= len(valid) * POLICY.max_attempts
    kinds = Counter(type(slot).__name__ for slot in slots)
    assert kinds["StatusResult"] > 1_000, kinds
