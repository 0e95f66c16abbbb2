from __future__ import annotations

import random

import pytest

from msgstatus import (
    AuthenticationError,
    MessageNotFoundError,
    MsgStatusError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryPolicy,
)
from msgstatus._retry import MAX_RETRY_AFTER, call_with_retry, retry_after_seconds

pytestmark = pytest.mark.anyio


class Script:
    """An attempt function that raises the scripted errors in turn, then returns "ok"."""

    def __init__(self, *errors: MsgStatusError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize(
    "error", [RateLimitedError("429"), ProviderUnavailableError("503")], ids=["429", "503"]
)
async def test_retries_transient_errors_until_success(error: MsgStatusError) -> None:
    attempt, sleeps = Script(error, error), Sleeps()
    assert await call_with_retry(RetryPolicy(max_attempts=3), attempt, sleep=sleeps) == "ok"
    assert attempt.calls == 3
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "error",
    [AuthenticationError("401"), MessageNotFoundError("404"), MsgStatusError("other")],
    ids=["401", "404", "base"],
)
async def test_does_not_retry_other_errors(error: MsgStatusError) -> None:
    attempt, sleeps = Script(error), Sleeps()
    with pytest.raises(type(error)):
        await call_with_retry(RetryPolicy(max_attempts=5), attempt, sleep=sleeps)
    assert attempt.calls == 1
    assert sleeps.waits == []


async def test_stops_at_max_attempts_and_raises_the_last_error() -> None:
    last = ProviderUnavailableError("third")
    attempt = Script(ProviderUnavailableError("first"), ProviderUnavailableError("second"), last)
    sleeps = Sleeps()
    with pytest.raises(ProviderUnavailableError) as info:
        await call_with_retry(RetryPolicy(max_attempts=3), attempt, sleep=sleeps)
    assert info.value is last
    assert attempt.calls == 3
    assert len(sleeps.waits) == 2


async def test_max_attempts_one_means_no_retry() -> None:
    attempt = Script(ProviderUnavailableError("down"))
    with pytest.raises(ProviderUnavailableError):
        await call_with_retry(RetryPolicy(max_attempts=1), attempt, sleep=Sleeps())
    assert attempt.calls == 1


async def test_honours_retry_after() -> None:
    attempt, sleeps = Script(RateLimitedError("429", retry_after=1.25)), Sleeps()
    await call_with_retry(RetryPolicy(max_backoff=5.0), attempt, sleep=sleeps)
    assert sleeps.waits == [1.25]


async def test_retry_after_is_capped() -> None:
    attempt, sleeps = Script(RateLimitedError("429", retry_after=3600)), Sleeps()
    await call_with_retry(RetryPolicy(max_backoff=2.0), attempt, sleep=sleeps)
    assert sleeps.waits == [2.0]


async def test_total_sleep_is_bounded_by_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, initial_backoff=1.0, max_backoff=1.5)
    errors = [RateLimitedError("429", retry_after=100), *[ProviderUnavailableError("x")] * 6]
    attempt, sleeps = Script(*errors), Sleeps()
    await call_with_retry(policy, attempt, sleep=sleeps)
    assert len(sleeps.waits) == 7
    assert all(0 <= wait <= 1.5 for wait in sleeps.waits)
    assert sum(sleeps.waits) <= (policy.max_attempts - 1) * policy.max_backoff


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=5.0, rng=random.Random(7))
    for retry_number, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0), (200, 5.0)]:
        waits = [policy.backoff(retry_number) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(waits) < ceiling * 0.2
        assert max(waits) > ceiling * 0.8


@pytest.mark.parametrize("retry_after", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_retry_after_falls_back_to_the_jittered_wait(retry_after: float) -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=5.0, rng=random.Random(3))
    waits = [policy.backoff(1, retry_after) for _ in range(50)]
    assert all(0 <= wait <= 0.2 for wait in waits)
    assert len(set(waits)) > 1  # the jitter, not one fixed value


def test_a_finite_retry_after_is_clamped_to_zero_and_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=5.0)
    assert policy.backoff(1, 3.0) == 3.0
    assert policy.backoff(1, 60.0) == 5.0
    assert policy.backoff(1, -2.0) == 0.0


async def test_sleeps_for_real_through_anyio() -> None:
    attempt = Script(ProviderUnavailableError("blip"))
    policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.001)
    assert await call_with_retry(policy, attempt) == "ok"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_backoff": -1.0},
        {"max_backoff": float("nan")},
        {"max_backoff": float("inf")},
        {"initial_backoff": float("inf")},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


async def test_each_retry_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    attempt = Script(ProviderUnavailableError("blip"), ProviderUnavailableError("blip"))
    with caplog.at_level("DEBUG", logger="msgstatus.retry"):
        await call_with_retry(RetryPolicy(max_attempts=3), attempt, sleep=Sleeps())
    lines = [r.getMessage() for r in caplog.records if r.name == "msgstatus.retry"]
    assert len(lines) == 2
    assert "attempt 2 of 3" in lines[0]
    assert "attempt 3 of 3" in lines[1]


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        (None, None),
        ("Tue, 14 Nov 2023 22:13:30 GMT", 10.0),  # NOW + 10 s
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past
        ("99999999", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == expected
