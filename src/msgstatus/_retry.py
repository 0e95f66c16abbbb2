"""One retry policy, shared by every provider."""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import TypeVar

import anyio

from msgstatus.errors import MsgStatusError, RateLimitedError

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "call_with_retry",
    "non_negative_number",
    "parse_retry_after",
    "retry_after_seconds",
]

logger = logging.getLogger("msgstatus.retry")

T = TypeVar("T")

#: A provider asking for a longer wait than a day is taken to ask for a day.
MAX_RETRY_AFTER = 24 * 60 * 60.0


def non_negative_number(text: str) -> float | None:
    """``text`` as a finite number >= 0, or None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value: delay-seconds or an HTTP date.

    A date in the past gives ``0.0``; a negative, non-finite or unparsable value, or None, gives
    None; the result is capped at :data:`MAX_RETRY_AFTER`. ``now`` (epoch seconds) is for tests.
    """
    if value is None:
        return None
    seconds = non_negative_number(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max(when.timestamp() - (time.time() if now is None else now), 0.0)
    return min(seconds, MAX_RETRY_AFTER)


def parse_retry_after(headers: Mapping[str, object], *, now: float | None = None) -> float | None:
    """Seconds to wait from a response's headers (names lower-case, or a case-insensitive
    mapping): ``retry-after-ms`` (which wins, as in the official Sendblue SDK) or ``Retry-After``
    (seconds or an HTTP date). A date in the past gives ``0.0``; a negative, non-finite or
    unparsable value gives None; the result is capped at :data:`MAX_RETRY_AFTER`."""
    millis = headers.get("retry-after-ms")
    if isinstance(millis, str):
        seconds = non_negative_number(millis)
        if seconds is not None:
            return min(seconds / 1000.0, MAX_RETRY_AFTER)
    value = headers.get("retry-after")
    return retry_after_seconds(value, now=now) if isinstance(value, str) else None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a provider retries a lookup that failed transiently.

    Only :class:`~msgstatus.RateLimitedError` and :class:`~msgstatus.ProviderUnavailableError` are
    retried. ``max_attempts`` counts the first try (``1`` turns retries off). Waits use exponential
    backoff with full jitter: before retry *n* the wait is uniform in
    ``[0, min(max_backoff, initial_backoff * 2**(n-1))]``. A provider's ``Retry-After`` replaces the
    jittered wait but is capped at ``max_backoff`` too, so one lookup sleeps at most
    ``(max_attempts - 1) * max_backoff`` seconds in all.

    Raises ``ValueError`` for a negative backoff or fewer than one attempt.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    # Tests pass a seeded Random to make the jitter reproducible.
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_backoff)
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** min(retry_number - 1, 62))
        return self.rng.uniform(0.0, ceiling)


async def call_with_retry(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Await ``attempt()`` until it succeeds, raises a non-retryable error, or attempts run out.

    The last error is raised as it is. Each retry is logged at DEBUG with attempt number and wait.
    """
    retry_number = 0
    while True:
        try:
            return await attempt()
        except MsgStatusError as exc:
            if not exc.retryable or retry_number + 1 >= policy.max_attempts:
                raise
            retry_number += 1
            retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None
            wait = policy.backoff(retry_number, retry_after)
            logger.debug(
                "retrying after %s (attempt %d of %d) in %.3fs",
                exc,
                retry_number + 1,
                policy.max_attempts,
                wait,
            )
            await sleep(wait)
