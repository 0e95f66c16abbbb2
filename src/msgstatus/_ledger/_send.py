"""``send_once`` and ``reconcile``: the ledger driven by a caller's send and a client's lookups.

Functions over (ledger, client) so that :class:`~msgstatus.StatusClient` and
:class:`~msgstatus.SyncStatusClient` only wrap them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

import anyio
from pydantic import BaseModel, ConfigDict

from msgstatus._decision import ResendAction, ResendDecision
from msgstatus._ledger._base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    Ledger,
    SendClaim,
    SendNotAttempted,
    _check_lease,
    check_handle,
    check_key,
)
from msgstatus._providers.base import TypedHandle
from msgstatus._status import StatusResult
from msgstatus.errors import MsgStatusError

if TYPE_CHECKING:
    from msgstatus._client import StatusClient

__all__ = ["SendFunction", "SendOutcome", "reconcile", "send_once", "sent_nothing"]

logger = logging.getLogger("msgstatus.ledger")

#: The caller's send: given the attempt's idempotency token, it sends the message and returns
#: its handle, or the provider's send response as a StatusResult.
SendFunction: TypeAlias = Callable[[str], Awaitable["str | TypedHandle | StatusResult"]]

#: Of the lease, at most this many seconds are kept back so that a send ends before it.
MAX_MARGIN = 5.0


class SendOutcome(BaseModel):
    """What :meth:`StatusClient.send_once` did for a key: a frozen value.

    ``sent`` is True when this call sent the message (``attempt``, ``handle`` and
    ``idempotency_token`` say which); otherwise the ledger refused and ``decision`` says why
    (SKIP, WAIT, BLOCKED or UNKNOWN). After a send, ``decision`` is the answer for what was
    just sent (WAIT until it is final, SKIP once it went out, ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    sent: bool
    decision: ResendDecision
    attempt: int | None = None
    handle: str | None = None
    idempotency_token: str | None = None


def sent_nothing(error: BaseException) -> bool:
    """Whether ``error`` (raised by a caller's send) proves that nothing left the process:
    :class:`SendNotAttempted`, or a refused connection / failed DNS lookup of httpx or
    botocore, raised before any byte of the request was written."""
    if isinstance(error, SendNotAttempted):
        return True
    try:
        import httpx

        if isinstance(error, httpx.ConnectError):
            return True
    except ImportError:  # pragma: no cover - httpx is a dependency
        pass
    try:
        from botocore.exceptions import EndpointConnectionError
    except ImportError:  # pragma: no cover - botocore is a dependency
        return False
    return isinstance(error, EndpointConnectionError)


def _margin(lease: float, margin: float | None) -> float:
    if margin is None:
        return min(MAX_MARGIN, lease / 5)
    if not (0 <= margin < lease):
        raise ValueError("margin must be >= 0 and shorter than the lease")
    return float(margin)


async def _ambiguous(claim: SendClaim, error: BaseException) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await claim.mark_ambiguous(f"{type(error).__name__}: {error}")
        except MsgStatusError as exc:
            # The lease ends anyway; an expired claim without a handle is ambiguous too.
            logger.warning(
                "could not mark attempt %d of %r ambiguous: %s", claim.attempt, claim.key, exc
            )


async def send_once(
    ledger: Ledger,
    key: str,
    send: SendFunction,
    *,
    lease: float = DEFAULT_LEASE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    reclaim_expired: bool = False,
    margin: float | None = None,
    check: Callable[[str | TypedHandle], str] = check_handle,
) -> SendOutcome:
    """Claim ``key``, run ``send(idempotency_token)`` inside the lease, record what it sent.

    The send gets the lease minus ``margin`` seconds (default a fifth of the lease, at most
    5 s); past that it is cancelled and counts as ambiguous. When ``send`` raises, the attempt
    is marked ambiguous at once (UNKNOWN; re-granted with the same token under
    ``reclaim_expired=True``) and the exception is re-raised, except for an error that proves
    nothing was sent (:class:`SendNotAttempted`, a refused connection): then the claim is given
    back first. ``check`` validates the handle the send returned (the client's routing).
    """
    check_key(key)
    # Checked before the claim: a claim granted and then refused would stay held.
    margin = _margin(_check_lease(lease), margin)
    claim = await ledger.claim(
        key, lease=lease, max_attempts=max_attempts, reclaim_expired=reclaim_expired
    )
    if isinstance(claim, ResendDecision):
        return SendOutcome(key=key, sent=False, decision=claim)
    budget = claim.remaining() - margin
    try:
        if budget <= 0:
            raise SendNotAttempted("the lease was over before the send could start")
        with anyio.fail_after(budget):
            value = await send(claim.idempotency_token)
        if isinstance(value, StatusResult):
            result: StatusResult | None = value
            handle = check(value.handle)
        else:
            result = None
            handle = check(value)
    except BaseException as exc:
        if sent_nothing(exc):
            with anyio.CancelScope(shield=True):
                await claim.abandon()
        else:
            await _ambiguous(claim, exc)
        raise
    await claim.sent(handle, result)
    if result is not None:
        decision = ResendDecision.from_result(result)
    else:
        decision = ResendDecision(
            action=ResendAction.WAIT,
            reason=f"attempt {claim.attempt} was just sent: ask again once it is observed",
        )
    return SendOutcome(
        key=key,
        sent=True,
        decision=decision,
        attempt=claim.attempt,
        handle=handle,
        idempotency_token=claim.idempotency_token,
    )


async def reconcile(
    ledger: Ledger,
    client: StatusClient,
    *,
    limit: int = 100,
    observe: bool = True,
) -> list[tuple[str, StatusResult | MsgStatusError]]:
    """Look up the ledger's in-flight attempts (at most ``limit``, least recently checked
    first) with ``client`` and record what each lookup gave: a result is observed (unless the
    client writes through already: ``observe=False``), an error is recorded as the attempt's
    lookup failure. Returns ``(handle, result or error)`` pairs."""
    handles = await ledger.in_flight(limit)
    if not handles:
        return []
    outcomes: Sequence[StatusResult | MsgStatusError] = await client.get_statuses(
        handles, refresh=True
    )
    for handle, outcome in zip(handles, outcomes, strict=True):
        if isinstance(outcome, StatusResult):
            if observe:
                await ledger.observe(outcome)
        else:
            await ledger.observe_error(handle, outcome)
    return list(zip(handles, outcomes, strict=True))
