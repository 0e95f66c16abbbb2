from __future__ import annotations

import gc
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import trio.testing

from msgstatus import (
    AuthenticationError,
    ClientClosedError,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MessageStatusProvider,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResendAction,
    ResendDecision,
    StatusClient,
    StatusResult,
    StatusWaitTimeout,
    SyncStatusClient,
    UnknownProviderError,
)
from msgstatus._client import StatusStream
from msgstatus._providers.base import native_handle

pytestmark = pytest.mark.anyio

S = MessageStatus
ROOT = Path(__file__).resolve().parent.parent

Step = MessageStatus | BaseException

_FINAL = frozenset({S.DELIVERED, S.READ, S.FAILED, S.DENIED})


@dataclass(frozen=True)
class FakeHandle:
    """A typed handle, as a provider like Chime has one."""

    provider: str
    native: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.native}"


class FakeProvider:
    """An in-memory provider: scripted statuses and errors per native handle.

    A script's steps are returned one per call, the last one for every call after. Unscripted
    handles answer by their prefix: ``missing…`` not found, ``down…`` unavailable, ``buggy…`` a
    KeyError (a provider bug), ``pending…`` PENDING, anything else ``default``. Counts calls and
    lookups in flight; ``track=False`` keeps no per-handle state (for the memory test).
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        sent_is_final: bool = False,
        delay: float = 0.0,
        default: MessageStatus = S.DELIVERED,
        track: bool = True,
    ) -> None:
        self.name = name
        self.sent_is_final = sent_is_final
        self.delay = delay
        self.default = default
        self.track = track
        self.scripts: dict[str, list[Step]] = {}
        self.calls: Counter[str] = Counter()
        self.received: list[object] = []
        self.call_times: list[float] = []
        self.total_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = 0

    def script(self, native: str, *steps: Step) -> None:
        self.scripts[native] = list(steps)

    def is_final(self, status: MessageStatus) -> bool:
        return self.sent_is_final if status is S.SENT else status in _FINAL

    def result(self, native: str, status: MessageStatus) -> StatusResult:
        return StatusResult(
            provider=self.name,
            handle=f"{self.name}:{native}",
            status=status,
            provider_status=None if status is S.UNKNOWN else f"raw-{status.value}",
            is_final=self.is_final(status),
        )

    def _step(self, native: str) -> Step:
        script = self.scripts.get(native)
        if script:
            return script.pop(0) if len(script) > 1 else script[0]
        canonical = f"{self.name}:{native}"
        if native.startswith("missing"):
            return MessageNotFoundError("no such message", provider=self.name, handle=canonical)
        if native.startswith("down"):
            return ProviderUnavailableError("503", provider=self.name, handle=canonical)
        if native.startswith("buggy"):
            return KeyError(native)
        if native.startswith("pending"):
            return S.PENDING
        return self.default

    async def get_status(self, handle: object, /) -> StatusResult:
        if isinstance(handle, FakeHandle):
            native = handle.native
        else:
            native = native_handle(handle, self.name)
        self.total_calls += 1
        if self.track:
            self.calls[native] += 1
            self.received.append(handle)
            self.call_times.append(anyio.current_time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delay)
            step = self._step(native)
            if isinstance(step, BaseException):
                raise step
            return self.result(native, step)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed += 1


def chime_like() -> FakeProvider:
    """SENT is final: the provider reports nothing after it."""
    return FakeProvider("chimelike", sent_is_final=True)


def sendblue_like() -> FakeProvider:
    """SENT is not final: it can still become DELIVERED or FAILED."""
    return FakeProvider("sendbluelike", sent_is_final=False)


def test_fake_provider_satisfies_the_protocol() -> None:
    assert isinstance(FakeProvider(), MessageStatusProvider)


# -- construction, routing, closing -----------------------------------------------------------


async def test_string_handle_is_routed_by_prefix_with_the_full_string() -> None:
    a, b = FakeProvider("alpha"), FakeProvider("beta")
    async with StatusClient([a, b]) as client:
        result = await client.get_status("beta:m1")
    assert result.provider == "beta"
    assert result.handle == "beta:m1"
    assert b.received == ["beta:m1"]
    assert a.received == []


async def test_typed_handle_is_routed_by_its_provider_and_passed_as_is() -> None:
    a, b = FakeProvider("alpha"), FakeProvider("beta")
    handle = FakeHandle("alpha", "m2")
    async with StatusClient([a, b]) as client:
        result = await client.get_status(handle)
    assert result.handle == "alpha:m2"
    assert a.received == [handle]
    assert b.received == []


@pytest.mark.parametrize("handle", ["nope:m1", FakeHandle("nope", "m1")])
async def test_unknown_prefix_raises_unknown_provider_error(handle: object) -> None:
    provider = FakeProvider("alpha")
    async with StatusClient([provider]) as client:
        with pytest.raises(UnknownProviderError, match="no provider named 'nope'") as info:
            await client.get_status(handle)  # type: ignore[arg-type]
    assert info.value.provider == "nope"
    assert info.value.handle == "nope:m1"
    assert provider.total_calls == 0


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param("m1", id="no-prefix"),
        pytest.param("alpha:", id="empty-native"),
        pytest.param("Alpha:m1", id="bad-prefix"),
        pytest.param("alpha:m1\r\n", id="crlf"),
        pytest.param(42, id="int"),
        pytest.param(None, id="none"),
        pytest.param(b"alpha:m1", id="bytes"),
    ],
)
async def test_bad_handles_raise_invalid_handle_error_before_any_request(handle: object) -> None:
    provider = FakeProvider("alpha")
    async with StatusClient([provider]) as client:
        with pytest.raises(InvalidHandleError):
            await client.get_status(handle)  # type: ignore[arg-type]
    assert provider.total_calls == 0


def test_two_providers_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two providers are named 'alpha'"):
        StatusClient([FakeProvider("alpha"), FakeProvider("alpha")])


def test_an_object_that_is_not_a_provider_is_refused() -> None:
    with pytest.raises(TypeError, match="not a MessageStatusProvider"):
        StatusClient([object()])  # type: ignore[list-item]


def test_negative_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        StatusClient([], cache_size=-1)


async def test_async_with_closes_every_provider_once() -> None:
    a, b = FakeProvider("alpha"), FakeProvider("beta")
    async with StatusClient([a, b]) as client:
        pass
    await client.aclose()
    assert (a.closed, b.closed) == (1, 1)
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_status("alpha:m1")
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_statuses(["alpha:m1"])
    with pytest.raises(RuntimeError, match="closed"):
        await client.resend_decisions(["alpha:m1"])
    with pytest.raises(RuntimeError, match="closed"):
        client.iter_statuses(["alpha:m1"])


async def test_one_provider_failing_to_close_does_not_keep_the_others_open() -> None:
    class Broken(FakeProvider):
        async def aclose(self) -> None:
            raise OSError("cannot close")

    good = FakeProvider("good")
    client = StatusClient([Broken("broken"), good])
    with pytest.raises(OSError, match="cannot close"):
        await client.aclose()
    assert good.closed == 1


async def test_providers_mapping_lists_them_by_name() -> None:
    a = FakeProvider("alpha")
    async with StatusClient([a]) as client:
        assert dict(client.providers) == {"alpha": a}


async def test_a_non_msgstatus_exception_from_a_provider_is_translated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(MsgStatusError, match="unexpected KeyError from provider") as info:
            await client.get_status("fake:buggy-1")
    assert type(info.value) is MsgStatusError
    assert isinstance(info.value.__cause__, KeyError)
    assert (info.value.provider, info.value.handle) == ("fake", "fake:buggy-1")
    assert "KeyError" in caplog.text


# -- batches ---------------------------------------------------------------------------------


def mixed_handles(count: int) -> list[object]:
    kinds: list[Callable[[int], object]] = [
        lambda i: f"fake:ok-{i}",
        lambda i: f"fake:missing-{i}",
        lambda i: f"fake:down-{i}",
        lambda i: f"nope:x-{i}",
        lambda i: f"fake:buggy-{i}",
        lambda i: f"noprefix-{i}",
        lambda i: FakeHandle("fake", f"typed-{i}"),
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


EXPECTED_TYPES: list[type[object]] = [
    StatusResult,
    MessageNotFoundError,
    ProviderUnavailableError,
    UnknownProviderError,
    MsgStatusError,
    InvalidHandleError,
    StatusResult,
]


async def test_batch_of_1000_mixed_handles_gives_1000_slots_in_order() -> None:
    provider = FakeProvider()
    handles = mixed_handles(1000)
    async with StatusClient([provider]) as client:
        results = await client.get_statuses(handles, concurrency=16)  # type: ignore[arg-type]
    assert len(results) == 1000
    for i, (handle, outcome) in enumerate(zip(handles, results, strict=True)):
        assert type(outcome) is EXPECTED_TYPES[i % len(EXPECTED_TYPES)], (i, outcome)
        if not isinstance(outcome, InvalidHandleError):
            assert outcome.handle == str(handle)
    buggy = results[4 :: len(EXPECTED_TYPES)]
    assert all(isinstance(r, MsgStatusError) and isinstance(r.__cause__, KeyError) for r in buggy)
    # The workers really ran side by side, and never more of them than allowed.
    assert 1 < provider.max_in_flight <= 16


@pytest.mark.parametrize("concurrency", [1, 3, 64])
async def test_batch_never_has_more_than_concurrency_lookups_in_flight(concurrency: int) -> None:
    provider = FakeProvider(delay=0.001)
    async with StatusClient([provider]) as client:
        results = await client.get_statuses(
            (f"fake:m{i}" for i in range(200)), concurrency=concurrency
        )
    assert [r.handle for r in results if isinstance(r, StatusResult)] == [
        f"fake:m{i}" for i in range(200)
    ]
    assert provider.max_in_flight == concurrency


async def test_batch_accepts_an_async_iterable() -> None:
    async def handles() -> AsyncIterator[str]:
        for i in range(50):
            await anyio.lowlevel.checkpoint()
            yield f"fake:m{i}"

    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        results = await client.get_statuses(handles(), concurrency=8)
    assert [r.handle for r in results if isinstance(r, StatusResult)] == [
        f"fake:m{i}" for i in range(50)
    ]


async def test_empty_batch_is_an_empty_list() -> None:
    async with StatusClient([FakeProvider()]) as client:
        assert await client.get_statuses([]) == []
        assert await client.get_statuses(iter([])) == []
        assert await client.resend_decisions([]) == []


@pytest.mark.parametrize("concurrency", [0, -1])
async def test_concurrency_below_one_is_refused(concurrency: int) -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(ValueError, match="concurrency"):
            await client.get_statuses(["fake:a"], concurrency=concurrency)
        with pytest.raises(ValueError, match="concurrency"):
            client.iter_statuses(["fake:a"], concurrency=concurrency)
        with pytest.raises(ValueError, match="concurrency"):
            await client.resend_decisions(["fake:a"], concurrency=concurrency)


async def test_a_single_string_is_not_taken_for_a_list_of_handles() -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(TypeError, match="not a single string"):
            await client.get_statuses("fake:abc")
        with pytest.raises(TypeError, match="not a single string"):
            client.iter_statuses("fake:abc")


async def test_an_error_from_the_input_iterable_is_raised_as_is() -> None:
    def handles() -> Iterator[str]:
        yield "fake:a"
        yield "fake:b"
        raise OSError("input broke")

    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(OSError, match="input broke"):
            await client.get_statuses(handles())
        seen: list[object] = []
        with pytest.raises(OSError, match="input broke"):
            await drain(client.iter_statuses(handles()), seen)
        assert sorted(map(str, seen)) == ["fake:a", "fake:b"]


async def test_outer_cancellation_cancels_the_batch() -> None:
    provider = FakeProvider(delay=60)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                await client.get_statuses([f"fake:m{i}" for i in range(100)], concurrency=8)
    assert scope.cancelled_caught
    assert provider.in_flight == 0
    assert provider.total_calls == 8


async def test_iter_statuses_yields_every_handle_with_its_outcome() -> None:
    # Each lookup takes a moment, so that the five workers are all in flight at once.
    provider = FakeProvider(delay=0.01)
    handles = mixed_handles(70)
    async with (
        StatusClient([provider]) as client,
        client.iter_statuses(handles, concurrency=5) as results,  # type: ignore[arg-type]
    ):
        pairs = [pair async for pair in results]
    assert len(pairs) == 70
    assert Counter(map(str, (h for h, _ in pairs))) == Counter(map(str, handles))
    position = {str(h): i for i, h in enumerate(handles)}
    for handle, outcome in pairs:
        expected = EXPECTED_TYPES[position[str(handle)] % len(EXPECTED_TYPES)]
        assert type(outcome) is expected
    # Exactly the bound: never more, and not fewer (a stream that serialized them fails).
    assert provider.max_in_flight == 5


async def test_iter_statuses_yields_in_completion_order() -> None:
    class Slow(FakeProvider):
        async def get_status(self, handle: object, /) -> StatusResult:
            self.delay = 0.5 if str(handle).endswith("slow") else 0.0
            return await super().get_status(handle)

    async with (
        StatusClient([Slow()]) as client,
        client.iter_statuses(["fake:slow", "fake:fast"], concurrency=2) as results,
    ):
        order = [handle async for handle, _ in results]
    assert order == ["fake:fast", "fake:slow"]


async def test_iter_statuses_early_break_cancels_the_workers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FakeProvider(delay=0.01)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            async with client.iter_statuses(
                (f"fake:m{i}" for i in range(10_000)), concurrency=8
            ) as results:
                async for count, _ in aenumerate(results):
                    if count == 20:
                        break
        assert provider.in_flight == 0
        calls = provider.total_calls
        await anyio.sleep(0.05)
        assert provider.total_calls == calls < 100
    gc.collect()
    assert "destroyed" not in caplog.text


async def test_an_error_in_the_consumer_propagates_unwrapped_and_cancels_the_workers() -> None:
    provider = FakeProvider(delay=0.01)
    async with StatusClient([provider]) as client:
        stream = client.iter_statuses([f"fake:m{i}" for i in range(1000)])
        with pytest.raises(KeyError, match="consumer"):
            await drain(stream, fail_with=KeyError("consumer"))
        assert provider.in_flight == 0


async def test_outer_cancellation_cancels_the_stream() -> None:
    provider = FakeProvider(delay=60)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                async with client.iter_statuses([f"fake:m{i}" for i in range(100)]) as results:
                    async for _ in results:
                        pass
    assert scope.cancelled_caught
    assert provider.in_flight == 0


async def test_the_stream_must_be_entered_and_only_once() -> None:
    async with StatusClient([FakeProvider()]) as client:
        stream = client.iter_statuses(["fake:a"])
        with pytest.raises(RuntimeError, match=r"async with client\.iter_statuses"):
            async for _ in stream:
                pass
        async with stream:
            pass
        with pytest.raises(RuntimeError, match="only once"):
            async with stream:
                pass


class ConstantProvider:
    """As cheap as a provider can be (one shared result), so that tracemalloc, which slows every
    allocation, measures the client rather than the fake."""

    name = "fake"

    def __init__(self) -> None:
        self.answer = StatusResult(provider="fake", handle="fake:m", status=S.DELIVERED)
        self.total_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def get_status(self, handle: object, /) -> StatusResult:
        self.total_calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            return self.answer
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


async def test_iter_statuses_over_100000_handles_keeps_memory_flat() -> None:
    provider = ConstantProvider()
    concurrency = 32
    count = 0
    async with StatusClient([provider], cache_final=False) as client:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            async with client.iter_statuses(
                (f"fake:m{i}" for i in range(100_000)), concurrency=concurrency
            ) as results:
                async for _ in results:
                    count += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == provider.total_calls == 100_000
    # Holding 100,000 results (or tasks) would take well over this; the stream holds ~2 * 32.
    assert peak - before < 64 * 2**20
    assert provider.max_in_flight == concurrency


async def aenumerate(iterable: AsyncIterable[object]) -> AsyncIterator[tuple[int, object]]:
    count = 0
    async for item in iterable:
        yield count, item
        count += 1


async def drain(
    stream: StatusStream, seen: list[object] | None = None, fail_with: Exception | None = None
) -> None:
    async with stream as results:
        async for handle, _ in results:
            if fail_with is not None:
                raise fail_with
            if seen is not None:
                seen.append(handle)


def on_trio_mock_clock() -> pytest.MarkDecorator:
    """Run on trio with a clock that jumps over sleeps: exact schedules, no real waiting."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return pytest.mark.parametrize("anyio_backend", [("trio", {"clock": clock})])


# -- wait_for_final ------------------------------------------------------------------------


async def test_wait_for_final_follows_a_lifecycle_to_delivered() -> None:
    provider = sendblue_like()
    provider.script("m1", S.PENDING, S.SENT, S.DELIVERED)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            result = await client.wait_for_final(
                "sendbluelike:m1", timeout=5, poll_interval=0.01, max_interval=0.02
            )
    assert result.status is S.DELIVERED
    assert result.is_final
    assert provider.calls["m1"] == 3


async def test_wait_for_final_returns_at_once_for_a_final_status() -> None:
    provider = chime_like()
    provider.script("m1", S.SENT)
    async with StatusClient([provider]) as client:
        result = await client.wait_for_final("chimelike:m1", timeout=5)
    assert result.status is S.SENT
    assert provider.calls["m1"] == 1


async def test_a_message_stuck_pending_times_out_with_its_last_result() -> None:
    provider = sendblue_like()
    provider.script("m1", S.PENDING)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10), pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final(
                "sendbluelike:m1", timeout=0.1, poll_interval=0.01, max_interval=0.02
            )
    error = info.value
    assert isinstance(error, TimeoutError)
    assert error.last_result is not None
    assert error.last_result.status is S.PENDING
    assert (error.provider, error.handle) == ("sendbluelike", "sendbluelike:m1")
    assert provider.calls["m1"] >= 2


async def test_last_result_never_moves_backwards() -> None:
    provider = sendblue_like()
    # An eventually consistent read can answer with an older state.
    provider.script("m1", S.SENT, S.PENDING)
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final(
                "sendbluelike:m1", timeout=0.1, poll_interval=0.01, max_interval=0.02
            )
    assert info.value.last_result is not None
    assert info.value.last_result.status is S.SENT


async def test_transient_errors_are_retried_while_waiting() -> None:
    provider = sendblue_like()
    provider.script(
        "m1",
        ProviderUnavailableError("503", provider="sendbluelike"),
        RateLimitedError("429", provider="sendbluelike", retry_after=0.01),
        S.SENT,
        ProviderUnavailableError("503", provider="sendbluelike"),
        S.DELIVERED,
    )
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            result = await client.wait_for_final(
                "sendbluelike:m1", timeout=5, poll_interval=0.01, max_interval=0.01
            )
    assert result.status is S.DELIVERED
    assert provider.calls["m1"] == 5


async def test_only_transient_errors_until_the_deadline_give_no_last_result() -> None:
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout, match="no lookup succeeded") as info:
            await client.wait_for_final("fake:down-1", timeout=0.1, poll_interval=0.01)
    assert info.value.last_result is None
    assert isinstance(info.value.__cause__, ProviderUnavailableError)


@pytest.mark.parametrize(
    "error",
    [
        MessageNotFoundError("gone"),
        AuthenticationError("401"),
        PermissionDeniedError("403"),
        ProviderResponseError("bad body"),
    ],
)
async def test_other_errors_are_raised_at_once_while_waiting(error: MsgStatusError) -> None:
    provider = FakeProvider()
    provider.script("m1", S.PENDING, error)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10), pytest.raises(type(error)):
            await client.wait_for_final("fake:m1", timeout=5, poll_interval=0.01)
    assert provider.calls["m1"] == 2


async def test_bad_handles_are_raised_at_once_while_waiting() -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(UnknownProviderError):
            await client.wait_for_final("nope:m1", timeout=5)
        with pytest.raises(InvalidHandleError):
            await client.wait_for_final("m1", timeout=5)


async def test_a_slow_lookup_is_cancelled_at_the_deadline() -> None:
    provider = FakeProvider(delay=60)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10), pytest.raises(StatusWaitTimeout):
            await client.wait_for_final("fake:m1", timeout=0.1)
    assert provider.in_flight == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("inf")},
        {"timeout": float("nan")},
        {"timeout": 1, "poll_interval": 0},
        {"timeout": 1, "max_interval": -1},
    ],
)
async def test_bad_wait_arguments_are_refused(kwargs: dict[str, float]) -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(ValueError, match="> 0"):
            await client.wait_for_final("fake:m1", **kwargs)


@on_trio_mock_clock()
async def test_poll_intervals_grow_up_to_the_cap_and_stop_at_the_deadline() -> None:
    provider = FakeProvider()
    start = anyio.current_time()
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout):
            await client.wait_for_final("fake:pending", timeout=20, poll_interval=1, max_interval=4)
        assert anyio.current_time() - start == pytest.approx(20)
    times = [t - start for t in provider.call_times]
    assert times == pytest.approx([0, 1, 2.5, 4.75, 8.125, 12.125, 16.125])


@on_trio_mock_clock()
async def test_a_poll_interval_above_the_cap_is_capped() -> None:
    provider = FakeProvider()
    start = anyio.current_time()
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout):
            await client.wait_for_final("fake:pending", timeout=7, poll_interval=10, max_interval=2)
    assert [t - start for t in provider.call_times] == pytest.approx([0, 2, 4, 6])


@on_trio_mock_clock()
async def test_a_timeout_after_a_successful_poll_carries_no_stale_cause() -> None:
    provider = FakeProvider()
    provider.script("m1", ProviderUnavailableError("503", provider="fake"), S.PENDING)
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final("fake:m1", timeout=10, poll_interval=1)
    last = info.value.last_result
    assert last is not None
    assert last.status is S.PENDING
    # The 503 was followed by successful polls: it is not why the wait ended.
    assert info.value.__cause__ is None
    assert provider.calls["m1"] > 2


@on_trio_mock_clock()
async def test_a_timeout_after_failed_polls_is_caused_by_the_last_error() -> None:
    provider = FakeProvider()
    provider.script("m1", S.PENDING, ProviderUnavailableError("503", provider="fake"))
    async with StatusClient([provider]) as client:
        with pytest.raises(StatusWaitTimeout) as info:
            await client.wait_for_final("fake:m1", timeout=10, poll_interval=1)
    assert isinstance(info.value.__cause__, ProviderUnavailableError)
    assert info.value.last_result is not None


@on_trio_mock_clock()
async def test_retry_after_stretches_the_next_poll() -> None:
    provider = FakeProvider()
    provider.script("m1", RateLimitedError("429", provider="fake", retry_after=7), S.DELIVERED)
    start = anyio.current_time()
    async with StatusClient([provider]) as client:
        await client.wait_for_final("fake:m1", timeout=20, poll_interval=1)
    assert [t - start for t in provider.call_times] == pytest.approx([0, 7])


# -- resend decisions -------------------------------------------------------------------------

RESEND_TABLE = [
    ("chimelike", S.PENDING, ResendAction.WAIT),
    ("chimelike", S.SENT, ResendAction.SKIP),
    ("chimelike", S.FAILED, ResendAction.RESEND),
    ("chimelike", S.DENIED, ResendAction.BLOCKED),
    ("chimelike", S.UNKNOWN, ResendAction.UNKNOWN),
    ("sendbluelike", S.PENDING, ResendAction.WAIT),
    ("sendbluelike", S.SENT, ResendAction.WAIT),
    ("sendbluelike", S.DELIVERED, ResendAction.SKIP),
    ("sendbluelike", S.READ, ResendAction.SKIP),
    ("sendbluelike", S.FAILED, ResendAction.RESEND),
    ("sendbluelike", S.DENIED, ResendAction.BLOCKED),
    ("sendbluelike", S.UNKNOWN, ResendAction.UNKNOWN),
]


@pytest.mark.parametrize(("provider_name", "status", "action"), RESEND_TABLE)
async def test_resend_decision_follows_the_table(
    provider_name: str, status: MessageStatus, action: ResendAction
) -> None:
    providers = [chime_like(), sendblue_like()]
    for provider in providers:
        provider.script("m1", status)
    async with StatusClient(providers) as client:
        decision = await client.resend_decision(f"{provider_name}:m1")
    assert decision.action is action
    assert decision.result is not None
    assert decision.result.status is status
    assert decision.reason
    assert "\n" not in decision.reason


async def test_an_unknown_status_without_a_raw_value_says_so() -> None:
    provider = FakeProvider()
    provider.script("m1", S.UNKNOWN)
    async with StatusClient([provider]) as client:
        decision = await client.resend_decision("fake:m1")
    assert decision.action is ResendAction.UNKNOWN
    assert "no status" in decision.reason


@pytest.mark.parametrize(
    ("error", "named"),
    [
        (MessageNotFoundError("no such message", provider="fake"), "MessageNotFoundError"),
        (ProviderUnavailableError("503 after 3 attempts"), "ProviderUnavailableError"),
        (RateLimitedError("429", retry_after=1), "RateLimitedError"),
        (AuthenticationError("401"), "AuthenticationError"),
        (PermissionDeniedError("403"), "PermissionDeniedError"),
        (ProviderResponseError("not JSON"), "ProviderResponseError"),
        (RuntimeError("provider bug"), "unexpected RuntimeError"),
    ],
)
async def test_a_failed_lookup_gives_unknown_without_result(
    error: BaseException, named: str
) -> None:
    provider = FakeProvider()
    provider.script("m1", error)
    async with StatusClient([provider]) as client:
        decision = await client.resend_decision("fake:m1")
        [batch_decision] = await client.resend_decisions(["fake:m1"])
    for d in (decision, batch_decision):
        assert d.action is ResendAction.UNKNOWN
        assert d.result is None
        assert named in d.reason


@pytest.mark.parametrize(
    ("handle", "error"), [("nope:m1", UnknownProviderError), ("m1", InvalidHandleError)]
)
async def test_bad_input_raises_from_resend_decision_but_not_from_the_batch(
    handle: str, error: type[MsgStatusError]
) -> None:
    async with StatusClient([FakeProvider()]) as client:
        with pytest.raises(error):
            await client.resend_decision(handle)
        [decision] = await client.resend_decisions([handle])
    assert decision.action is ResendAction.UNKNOWN
    assert decision.result is None
    assert error.__name__ in decision.reason


async def test_resend_decisions_are_in_input_order() -> None:
    handles = [
        "sendbluelike:delivered",
        "chimelike:sent",
        "sendbluelike:sent",
        "sendbluelike:missing-1",
        "nope:x",
        "chimelike:failed",
    ]
    chime, sendblue = chime_like(), sendblue_like()
    chime.script("sent", S.SENT)
    chime.script("failed", S.FAILED)
    sendblue.script("sent", S.SENT)
    async with StatusClient([chime, sendblue]) as client:
        decisions = await client.resend_decisions(handles, concurrency=2)
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.SKIP,
        ResendAction.WAIT,
        ResendAction.UNKNOWN,
        ResendAction.UNKNOWN,
        ResendAction.RESEND,
    ]


def test_resend_decision_is_a_frozen_serializable_value() -> None:
    decision = ResendDecision.from_result(
        StatusResult(provider="fake", handle="fake:m1", status=S.FAILED, is_final=True)
    )
    with pytest.raises(ValueError, match="frozen"):
        decision.action = ResendAction.SKIP  # type: ignore[misc]
    assert ResendDecision.model_validate_json(decision.model_dump_json()) == decision
    assert str(ResendAction.RESEND) == "RESEND"
    assert [a.value for a in ResendAction] == [a.name for a in ResendAction]


def test_every_resend_action_is_documented() -> None:
    doc = (ROOT / "providers.md").read_text(encoding="utf-8")
    section = re.search(r"^## May I resend\?.*?(?=^## )", doc, re.M | re.S)
    assert section
    for action in ResendAction:
        assert f"| `{action.value}` |" in section.group(0)


# -- cache -----------------------------------------------------------------------------------


async def test_a_final_result_is_fetched_once() -> None:
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        results = [await client.get_status("fake:m1") for _ in range(5)]
        await client.get_statuses(["fake:m1"] * 10)
        decision = await client.resend_decision("fake:m1")
    assert provider.calls["m1"] == 1
    assert all(r == results[0] for r in results)
    assert decision.action is ResendAction.SKIP


async def test_a_pending_result_is_fetched_every_time() -> None:
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        for _ in range(5):
            await client.get_status("fake:pending-1")
        await client.get_statuses(["fake:pending-1"] * 10)
    assert provider.calls["pending-1"] == 15


async def test_errors_are_not_cached() -> None:
    provider = FakeProvider()
    provider.script("m1", ProviderUnavailableError("503"), S.DELIVERED)
    async with StatusClient([provider]) as client:
        with pytest.raises(ProviderUnavailableError):
            await client.get_status("fake:m1")
        assert (await client.get_status("fake:m1")).status is S.DELIVERED
        assert (await client.get_status("fake:m1")).status is S.DELIVERED
    assert provider.calls["m1"] == 2


async def test_refresh_bypasses_the_cache_and_never_moves_backwards() -> None:
    provider = FakeProvider()
    provider.script("m1", S.DELIVERED, S.PENDING, S.READ)
    async with StatusClient([provider]) as client:
        first = await client.get_status("fake:m1")
        # The provider answers PENDING (a stale replica): the cached DELIVERED stands.
        second = await client.get_status("fake:m1", refresh=True)
        third = await client.get_status("fake:m1", refresh=True)
        fourth = await client.get_status("fake:m1")
    assert provider.calls["m1"] == 3
    assert (first.status, second.status, third.status, fourth.status) == (
        S.DELIVERED,
        S.DELIVERED,
        S.READ,
        S.READ,
    )


async def test_cache_can_be_turned_off_or_cleared() -> None:
    provider = FakeProvider()
    async with StatusClient([provider], cache_final=False) as client:
        await client.get_status("fake:m1")
        await client.get_status("fake:m1")
    assert provider.calls["m1"] == 2
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        await client.get_status("fake:m1")
        client.clear_cache()
        await client.get_status("fake:m1")
    assert provider.calls["m1"] == 2


async def test_a_string_and_a_typed_handle_share_a_cache_entry() -> None:
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        await client.get_status(FakeHandle("fake", "m1"))
        await client.get_status("fake:m1")
    assert provider.calls["m1"] == 1


async def test_cache_is_bounded_least_recently_used_first_out() -> None:
    provider = FakeProvider()
    async with StatusClient([provider], cache_size=2) as client:
        await client.get_status("fake:a")
        await client.get_status("fake:b")
        await client.get_status("fake:a")  # a is now the most recently used
        await client.get_status("fake:c")  # evicts b
        await client.get_status("fake:a")
        await client.get_status("fake:c")
        await client.get_status("fake:b")
    assert provider.calls == Counter({"a": 1, "b": 2, "c": 1})


async def test_a_refreshed_entry_becomes_the_most_recently_used() -> None:
    provider = FakeProvider()
    async with StatusClient([provider], cache_size=2) as client:
        await client.get_status("fake:a")
        await client.get_status("fake:b")
        await client.get_status("fake:a", refresh=True)  # stored again: a is the most recent
        await client.get_status("fake:c")  # evicts b, the least recently used
        await client.get_status("fake:a")
        await client.get_status("fake:b")
    assert provider.calls == Counter({"a": 2, "b": 2, "c": 1})


async def test_a_cached_failure_refreshed_to_denied_is_blocked() -> None:
    # DENIED is the more specific of the two terminal outcomes: a refresh that says DENIED must
    # turn a cached FAILED (RESEND) into BLOCKED, not keep answering RESEND.
    provider = FakeProvider()
    provider.script("m1", S.FAILED, S.DENIED)
    async with StatusClient([provider]) as client:
        assert (await client.resend_decision("fake:m1")).action is ResendAction.RESEND
        decision = await client.resend_decision("fake:m1", refresh=True)
        cached = await client.get_status("fake:m1")
    assert decision.action is ResendAction.BLOCKED
    assert decision.result is not None
    assert decision.result.status is S.DENIED
    assert cached.status is S.DENIED
    assert provider.calls["m1"] == 2


async def test_a_zero_cache_size_caches_nothing() -> None:
    provider = FakeProvider()
    async with StatusClient([provider], cache_size=0) as client:
        await client.get_status("fake:a")
        await client.get_status("fake:a")
    assert provider.calls["a"] == 2


async def test_wait_for_final_serves_a_cached_final_result() -> None:
    provider = FakeProvider()
    async with StatusClient([provider]) as client:
        await client.get_status("fake:m1")
        result = await client.wait_for_final("fake:m1", timeout=1)
    assert result.status is S.DELIVERED
    assert provider.calls["m1"] == 1


def test_client_logs_on_the_msgstatus_client_logger() -> None:
    assert logging.getLogger("msgstatus.client").parent is logging.getLogger("msgstatus")


# -- SyncStatusClient: plain def tests, no event loop of their own ---------------------------

SYNC_BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@SYNC_BACKENDS
def test_get_status_blocks_and_routes(backend: str) -> None:
    chime, sendblue = chime_like(), sendblue_like()
    chime.script("m1", S.SENT)
    with SyncStatusClient([chime, sendblue], backend=backend) as client:
        result = client.get_status("chimelike:m1")
        typed = client.get_status(FakeHandle("sendbluelike", "m2"))
        with pytest.raises(UnknownProviderError):
            client.get_status("nope:m1")
        with pytest.raises(InvalidHandleError):
            client.get_status("m1")
        with pytest.raises(MessageNotFoundError):
            client.get_status("chimelike:missing-1")
    assert (result.status, result.is_final) == (S.SENT, True)
    assert typed.handle == "sendbluelike:m2"
    assert (chime.closed, sendblue.closed) == (1, 1)


@SYNC_BACKENDS
def test_batches_return_lists_in_order(backend: str) -> None:
    handles = ["fake:a", "fake:missing-1", "nope:x", "fake:pending-1"]
    with SyncStatusClient([FakeProvider()], backend=backend) as client:
        results = client.get_statuses(handles, concurrency=2)
        decisions = client.resend_decisions(handles, concurrency=2)
    assert [type(r).__name__ for r in results] == [
        "StatusResult",
        "MessageNotFoundError",
        "UnknownProviderError",
        "StatusResult",
    ]
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.UNKNOWN,
        ResendAction.UNKNOWN,
        ResendAction.WAIT,
    ]


@SYNC_BACKENDS
def test_iter_statuses_is_a_generator(backend: str) -> None:
    provider = FakeProvider()
    with SyncStatusClient([provider], backend=backend) as client:
        pairs = list(client.iter_statuses(f"fake:m{i}" for i in range(200)))
    assert sorted(str(h) for h, _ in pairs) == sorted(f"fake:m{i}" for i in range(200))
    assert all(isinstance(outcome, StatusResult) for _, outcome in pairs)


def test_closing_the_generator_early_cancels_the_lookups() -> None:
    provider = FakeProvider(delay=0.01)
    with SyncStatusClient([provider]) as client:
        with closing(client.iter_statuses(f"fake:m{i}" for i in range(10_000))) as pairs:
            for count, _ in enumerate(pairs):
                if count == 10:
                    break
        assert provider.in_flight == 0
        assert provider.total_calls < 100
        # The client still works afterwards.
        assert client.get_status("fake:after").status is S.DELIVERED


def _bounded_wait(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` for at most ``seconds`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@SYNC_BACKENDS
def test_close_while_another_thread_is_inside_iter_statuses(backend: str) -> None:
    """close() from one thread while another waits inside the generator's next(): close() ends
    the stream and returns (it used to wait for ever: the stream's task kept the loop alive),
    the other thread's iteration ends with ClientClosedError, and closing its generator
    afterwards is quiet."""
    entered, gate = threading.Event(), threading.Event()

    class Gated(FakeProvider):
        async def get_status(self, handle: object, /) -> StatusResult:
            entered.set()
            await anyio.to_thread.run_sync(gate.wait)
            return await super().get_status(handle)

    provider = Gated()
    client = SyncStatusClient([provider], backend=backend)
    pairs = client.iter_statuses([f"fake:m{i}" for i in range(5)], concurrency=1)
    seen: dict[str, object] = {}

    def consume() -> None:
        try:
            seen["pairs"] = list(pairs)
        except BaseException as exc:
            seen["error"] = exc

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert entered.wait(10), "the first lookup never started"
    closer = threading.Thread(target=client.close, daemon=True)
    closer.start()
    # close() has found the generator busy (it cannot close it from here) and gone on.
    assert _bounded_wait(lambda: client._closed), "close() did not get past the streams"
    gate.set()
    closer.join(10)
    consumer.join(10)
    assert not closer.is_alive(), "close() did not return"
    assert not consumer.is_alive(), "the iterating thread did not finish"
    assert isinstance(seen.get("error"), ClientClosedError), seen
    assert provider.closed == 1
    pairs.close()  # nothing left to clean up: no error
    with pytest.raises(StopIteration):
        next(pairs)


@SYNC_BACKENDS
def test_wait_for_final_and_its_timeout(backend: str) -> None:
    provider = sendblue_like()
    provider.script("m1", S.PENDING, S.SENT, S.DELIVERED)
    provider.script("stuck", S.PENDING)
    with SyncStatusClient([provider], backend=backend) as client:
        result = client.wait_for_final(
            "sendbluelike:m1", timeout=5, poll_interval=0.01, max_interval=0.02
        )
        with pytest.raises(StatusWaitTimeout) as info:
            client.wait_for_final("sendbluelike:stuck", timeout=0.1, poll_interval=0.01)
    assert result.status is S.DELIVERED
    assert info.value.last_result is not None
    assert info.value.last_result.status is S.PENDING


def test_resend_decision_and_cache() -> None:
    provider = FakeProvider()
    with SyncStatusClient([provider]) as client:
        assert client.resend_decision("fake:m1").action is ResendAction.SKIP
        assert client.get_status("fake:m1").status is S.DELIVERED
        assert provider.calls["m1"] == 1
        client.clear_cache()
        client.get_status("fake:m1")
        assert provider.calls["m1"] == 2
        with pytest.raises(UnknownProviderError):
            client.resend_decision("nope:m1")


def test_works_without_with_and_close_is_idempotent() -> None:
    provider = FakeProvider()
    client = SyncStatusClient([provider])
    assert client.get_status("fake:m1").status is S.DELIVERED
    client.close()
    client.close()
    assert provider.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        client.get_status("fake:m1")


def test_close_without_use_still_closes_the_providers() -> None:
    provider = FakeProvider()
    SyncStatusClient([provider]).close()
    assert provider.closed == 1


def test_many_threads_share_one_client() -> None:
    provider = FakeProvider(delay=0.001)
    with SyncStatusClient([provider]) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client.get_status, [f"fake:pending-{i}" for i in range(64)]))
    assert [r.handle for r in results] == [f"fake:pending-{i}" for i in range(64)]
    assert provider.total_calls == 64


def test_the_loop_runs_on_another_thread() -> None:
    seen: list[threading.Thread] = []

    class Recording(FakeProvider):
        async def get_status(self, handle: object, /) -> StatusResult:
            seen.append(threading.current_thread())
            return await super().get_status(handle)

    with SyncStatusClient([Recording()]) as client:
        client.get_status("fake:m1")
    assert seen
    assert seen[0] is not threading.current_thread()


def test_a_single_string_is_refused() -> None:
    with SyncStatusClient([FakeProvider()]) as client:
        with pytest.raises(TypeError, match="single string"):
            client.get_statuses("fake:abc")
        with pytest.raises(TypeError, match="single string"):
            client.resend_decisions("fake:abc")


def test_a_dropped_client_stops_its_thread() -> None:
    client = SyncStatusClient([FakeProvider()])
    client.get_status("fake:m1")
    thread = client._loop.thread if client._loop else None
    assert thread is not None
    assert thread.is_alive()
    del client
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


@SYNC_BACKENDS
def test_observe_feeds_the_cache_without_a_lookup(backend: str) -> None:
    provider = FakeProvider()
    with SyncStatusClient([provider], backend=backend) as client:
        merged = client.observe(provider.result("m1", S.DELIVERED))
        served = client.get_status("fake:m1")
        with pytest.raises(UnknownProviderError):
            client.observe(FakeProvider("other").result("m1", S.DELIVERED))
    assert merged.status is served.status is S.DELIVERED
    assert provider.total_calls == 0


@SYNC_BACKENDS
def test_a_client_dropped_on_its_own_loop_thread_does_not_join_itself(backend: str) -> None:
    """The finalizer of a client dropped by code running on its loop returns at once (a thread
    cannot join itself); the client then still works and closes."""
    client = SyncStatusClient([FakeProvider()], backend=backend)
    portal = client._get_portal()
    assert client._stop_loop is not None
    assert client._loop is not None
    thread = client._loop.thread
    portal.call(client._stop_loop)  # what a drop on the loop thread runs
    assert thread.is_alive()
    assert client.get_status("fake:m1").status is S.DELIVERED
    client.close()
    thread.join(10)
    assert not thread.is_alive()


@SYNC_BACKENDS
def test_a_generator_closed_on_the_loop_thread_does_not_wait_for_itself(backend: str) -> None:
    """A stream generator closed by code on the client's own loop (its last reference dropped
    there) cannot wait for the stream's task, which needs that loop to run: it returns, the
    task ends after it, and the client closes."""
    provider = FakeProvider()
    client = SyncStatusClient([provider], backend=backend)
    pairs = client.iter_statuses([f"fake:m{i}" for i in range(20)], concurrency=2)
    next(pairs)
    portal = client._get_portal()
    closer = threading.Thread(target=portal.call, args=(pairs.close,), daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "closing the generator on the loop thread hung the loop"
    with pytest.raises(StopIteration):
        next(pairs)
    assert client.get_status("fake:after").status is S.DELIVERED
    client.close()
    assert provider.in_flight == 0
    assert provider.closed == 1


def test_a_loop_that_fails_after_starting_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    class BreaksOnClose(asyncio.SelectorEventLoop):
        def close(self) -> None:
            super().close()
            raise OSError("the selector broke")

    client = SyncStatusClient(
        [FakeProvider()], backend="asyncio", backend_options={"loop_factory": BreaksOnClose}
    )
    with caplog.at_level(logging.ERROR, logger="msgstatus.client"):
        assert client.get_status("fake:m1").status is S.DELIVERED
        client.close()
    [record] = [r for r in caplog.records if r.name == "msgstatus.client"]
    assert record.getMessage() == "the SyncStatusClient event loop failed"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the selector broke"


def test_a_script_that_never_closes_the_client_still_exits() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_client import FakeProvider
        from msgstatus import SyncStatusClient
        client = SyncStatusClient([FakeProvider()])
        print(client.get_status("fake:m1").status)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "DELIVERED"


# -- what a decision's reason and a wait's merge carry ---------------------------------------


@pytest.mark.parametrize("status", [S.FAILED, S.DENIED, S.PENDING, S.DELIVERED, S.SENT])
async def test_the_reason_names_the_provider_status(status: MessageStatus) -> None:
    provider = sendblue_like()
    provider.script("m1", status)
    async with StatusClient([provider]) as client:
        decision = await client.resend_decision("sendbluelike:m1")
    assert f"provider status 'raw-{status.value}'" in decision.reason


async def test_a_failure_after_a_delivery_is_named_in_the_skip_reason() -> None:
    provider = FakeProvider()
    provider.script("m1", S.DELIVERED, S.FAILED)
    async with StatusClient([provider]) as client:
        await client.get_status("fake:m1")
        decision = await client.resend_decision("fake:m1", refresh=True)
    assert decision.action is ResendAction.SKIP
    assert "conflict: " in decision.reason
    assert "FAILED" in decision.reason


async def test_a_wait_survives_a_provider_that_renames_the_handle() -> None:
    class Renaming(FakeProvider):
        """Answers the second poll under another canonical handle (its form changed)."""

        def result(self, native: str, status: MessageStatus) -> StatusResult:
            renamed = native if status is S.PENDING else native.upper()
            return super().result(renamed, status)

    provider = Renaming()
    provider.script("m1", S.PENDING, S.DELIVERED)
    async with StatusClient([provider]) as client:
        with anyio.fail_after(10):
            result = await client.wait_for_final("fake:m1", timeout=5, poll_interval=0.01)
    assert (result.handle, result.status) == ("fake:M1", S.DELIVERED)
