"""The send ledger's contract: the protocol, its values, and the claim rules every backend shares.

A backend only moves rows: it runs :meth:`_SQLLedger._claim_rows` and friends inside one
database transaction that holds the key's lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a row
lock). What the rows mean, and what a claim answers, is decided here, once, for every backend.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import unicodedata
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, cast, runtime_checkable

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict

from msgstatus._decision import ResendAction, ResendDecision
from msgstatus._providers.base import TypedHandle, split_handle
from msgstatus._status import MessageStatus, StatusResult
from msgstatus.errors import (
    ClaimLostError,
    InvalidHandleError,
    InvalidKeyError,
    LedgerUnavailableError,
    MsgStatusError,
)

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ATTEMPTS",
    "SCHEMA_VERSION",
    "AttemptRecord",
    "Ledger",
    "LedgerEntry",
    "SendClaim",
    "SendNotAttempted",
    "check_key",
    "idempotency_token",
]

logger = logging.getLogger("msgstatus.ledger")

#: Seconds a claim lasts unless the caller asks for another lease.
DEFAULT_LEASE = 30.0
#: Attempts per key unless the caller says otherwise.
DEFAULT_MAX_ATTEMPTS = 3
#: The schema this version writes and reads; a database with a newer one is refused.
SCHEMA_VERSION = 1

MAX_KEY_LENGTH = 255

AttemptState = Literal["claimed", "sent", "ambiguous"]


class SendNotAttempted(Exception):
    """Raise it from your ``send`` callable when you know nothing left the process (a refused
    connection, a validation error of your own): :meth:`StatusClient.send_once` then gives the
    claim back instead of marking the attempt ambiguous, and re-raises it."""


def check_key(key: object) -> str:
    """``key`` if it is a valid ledger key (1-255 characters of text, no control characters);
    else :class:`~msgstatus.InvalidKeyError`. Called before any database call."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"a ledger key is text, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("a ledger key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"a ledger key is at most {MAX_KEY_LENGTH} characters, not {len(key)}"
        )
    for char in key:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidKeyError(
                f"a ledger key must not contain control characters ({char!r} in {key[:40]!r})"
            )
    return key


def check_handle(handle: object) -> str:
    """The canonical handle string of ``handle`` (``"<provider>:<native>"`` or a typed handle),
    validated as the client validates it; :class:`~msgstatus.InvalidHandleError` otherwise."""
    if isinstance(handle, TypedHandle) and not isinstance(handle, str):
        handle = str(handle)
    if not isinstance(handle, str):
        raise InvalidHandleError(
            "a handle must be a '<provider>:<handle>' string or a provider's typed handle, "
            f"not {type(handle).__name__}"
        )
    split_handle(handle)
    return handle


def idempotency_token(key: str, attempt: int) -> str:
    """The token of attempt ``attempt`` of ``key``: the same on every machine, 2-64 characters
    of ``[-_a-zA-Z0-9]`` (it fits Chime's ``ClientRequestToken``)."""
    digest = hashlib.sha256(f"msgstatus-ledger\x00{key}\x00{attempt}".encode()).hexdigest()
    return f"msl-{digest[:40]}-{attempt}"


def _check_lease(lease: float) -> float:
    if not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
        raise ValueError("lease must be a finite number of seconds > 0")
    return float(lease)


def _check_max_attempts(max_attempts: int) -> int:
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise ValueError("max_attempts must be an integer >= 1")
    return max_attempts


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


# -- values ------------------------------------------------------------------------------------


class AttemptRecord(BaseModel):
    """One attempt of a key as the ledger holds it: a frozen value.

    ``state`` is ``"claimed"`` (a worker holds it; ``lease_until`` says until when), ``"sent"``
    (the handle is recorded) or ``"ambiguous"`` (the send failed in a way that may have sent it).
    ``observation`` is the merged latest :class:`~msgstatus.StatusResult`, ``lookup_error`` the
    last lookup failure (cleared by the next observation).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int
    idempotency_token: str
    state: AttemptState
    handle: str | None
    lease_until: datetime
    expired: bool
    observation: StatusResult | None = None
    lookup_error: str | None = None


class LedgerEntry(BaseModel):
    """What the ledger holds for a key: its attempts, oldest first, and the decision they give."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    attempts: tuple[AttemptRecord, ...]
    decision: ResendDecision


@dataclass(frozen=True)
class _Row:
    """An attempt row as a backend reads it; times are the database clock's epoch seconds."""

    attempt: int
    token: str
    fence: int
    grants: int
    state: AttemptState
    handle: str | None
    lease_until: float
    observation: str | None
    lookup_error: str | None
    lookup_retryable: bool

    def result(self) -> StatusResult | None:
        if self.observation is None:
            return None
        return StatusResult.model_validate_json(self.observation)

    def record(self, now: float) -> AttemptRecord:
        return AttemptRecord(
            attempt=self.attempt,
            idempotency_token=self.token,
            state=self.state,
            handle=self.handle,
            lease_until=_utc(self.lease_until),
            expired=self.lease_until <= now,
            observation=self.result(),
            lookup_error=self.lookup_error,
        )


@dataclass(frozen=True)
class _Grant:
    attempt: int
    regrant: bool


def _refuse(
    action: ResendAction,
    reason: str,
    result: StatusResult | None = None,
    not_before: datetime | None = None,
) -> ResendDecision:
    return ResendDecision(action=action, reason=reason, result=result, not_before=not_before)


def decide(
    rows: Sequence[_Row], now: float, *, max_attempts: int, reclaim_expired: bool
) -> _Grant | ResendDecision:
    """The claim table of DESIGN.md ("The send ledger"), over one key's attempts (oldest first)
    at database time ``now``: a grant, or the refusal."""
    if not rows:
        return _Grant(1, regrant=False)
    for row in rows:
        result = row.result()
        if result is not None and result.shows_delivery:
            return _refuse(
                ResendAction.SKIP,
                f"attempt {row.attempt} went out ({result.status}): "
                "a resend would send a duplicate",
                result,
            )
    last = rows[-1]
    result = last.result()
    if last.handle is None:
        if last.state == "claimed" and last.lease_until > now:
            return _refuse(
                ResendAction.WAIT,
                f"another worker holds attempt {last.attempt} and may be sending it: "
                "ask again later",
            )
        if reclaim_expired:
            return _Grant(last.attempt, regrant=True)
        why = (
            f"the send of attempt {last.attempt} failed in a way that may have sent it"
            if last.state == "ambiguous"
            else f"the claim on attempt {last.attempt} expired without a recorded handle"
        )
        return _refuse(
            ResendAction.UNKNOWN,
            f"{why}: it may have been sent, and a resend could duplicate it "
            "(declare idempotent sends with reclaim_expired=True to retry it safely)",
        )
    if (
        last.lookup_error is not None
        and not last.lookup_retryable
        and (result is None or not result.is_final)
    ):
        return _refuse(
            ResendAction.UNKNOWN,
            f"the lookup of attempt {last.attempt} fails: {last.lookup_error}; "
            "there is no safe answer",
            result,
        )
    if result is None:
        return _refuse(
            ResendAction.WAIT,
            f"attempt {last.attempt} was sent and not observed yet: a resend now may "
            "duplicate it; ask again later",
        )
    if result.status is MessageStatus.DENIED:
        return _refuse(
            ResendAction.BLOCKED,
            f"a rule refused attempt {last.attempt}: resending it as is will be refused again",
            result,
        )
    if result.status is MessageStatus.FAILED:
        not_before = result.not_before
        if not_before is not None and not_before.timestamp() > now:
            return _refuse(
                ResendAction.WAIT,
                f"attempt {last.attempt} was refused for a quota window: "
                f"it may be sent again after {not_before.isoformat()}",
                result,
                not_before,
            )
        if last.attempt >= max_attempts:
            return _refuse(
                ResendAction.BLOCKED,
                f"attempt limit: {last.attempt} of {max_attempts} attempts failed",
                result,
            )
        return _Grant(last.attempt + 1, regrant=False)
    if result.status is MessageStatus.UNKNOWN:
        return _refuse(
            ResendAction.UNKNOWN,
            f"attempt {last.attempt} has a status this version does not know: "
            "there is no safe answer",
            result,
        )
    return _refuse(
        ResendAction.WAIT,
        f"attempt {last.attempt} is still in flight ({result.status}): a resend now may "
        "duplicate it; ask again later",
        result,
    )


def decision_of(rows: Sequence[_Row], now: float, *, max_attempts: int) -> ResendDecision:
    """What :meth:`Ledger.decision` answers: the claim table, with a grant said as RESEND."""
    if not rows:
        return _refuse(ResendAction.RESEND, "the ledger holds nothing for this key: send it")
    answer = decide(rows, now, max_attempts=max_attempts, reclaim_expired=False)
    if isinstance(answer, _Grant):
        last = rows[-1]
        return _refuse(
            ResendAction.RESEND,
            f"attempt {last.attempt} failed: attempt {answer.attempt} may be sent",
            last.result(),
        )
    return answer


def merge_observation(stored: StatusResult | None, fresh: StatusResult) -> StatusResult:
    """The evidence rule: the merge of the stored and the fresh observation of one message."""
    if stored is None:
        return fresh
    return stored.merge(fresh)


# -- the protocol ------------------------------------------------------------------------------


@runtime_checkable
class Ledger(Protocol):
    """The one shared place where a fleet agrees who may send a key next (DESIGN.md,
    "The send ledger"). :class:`SQLiteLedger` and :class:`PostgresLedger` implement it."""

    async def claim(
        self,
        key: str,
        *,
        lease: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        reclaim_expired: bool = False,
    ) -> SendClaim | ResendDecision: ...

    async def observe(self, result: StatusResult) -> bool: ...

    async def observe_error(self, handle: str, error: MsgStatusError) -> bool: ...

    async def decision(
        self, key: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> ResendDecision: ...

    async def entry(self, key: str) -> LedgerEntry | None: ...

    async def in_flight(self, limit: int = 100) -> list[str]: ...

    async def aclose(self) -> None: ...


class SendClaim:
    """A granted claim: the right to send attempt ``attempt`` of ``key`` until ``lease_until``.

    ``idempotency_token`` is the same for the same attempt on every machine (pass it to the
    provider where it has one: Chime's ``ClientRequestToken``); ``fence`` orders the grants of a
    key. Record the outcome with :meth:`sent` or :meth:`abandon` (or :meth:`mark_ambiguous`);
    a claim taken over by another worker raises :class:`~msgstatus.ClaimLostError` there.
    """

    def __init__(
        self,
        ledger: _SQLLedger,
        *,
        key: str,
        attempt: int,
        fence: int,
        lease: float,
        lease_until: datetime,
        started: float,
    ) -> None:
        self._ledger = ledger
        self.key = key
        self.attempt = attempt
        self.fence = fence
        self.idempotency_token = idempotency_token(key, attempt)
        self.lease = lease
        self.lease_until = lease_until
        # Local monotonic time taken before the database granted the lease: the lease cannot
        # end sooner, by this process's clock, than started + lease.
        self._started = started

    def __repr__(self) -> str:
        return (
            f"SendClaim(key={self.key!r}, attempt={self.attempt}, fence={self.fence}, "
            f"lease_until={self.lease_until.isoformat()!r})"
        )

    def remaining(self) -> float:
        """Seconds left of the lease by this process's monotonic clock (conservative)."""
        return self._started + self.lease - time.monotonic()

    async def sent(self, handle: str | TypedHandle, result: StatusResult | None = None) -> None:
        """Record that this attempt was sent as ``handle`` (with the send's response as
        ``result``, if any). Raises :class:`~msgstatus.ClaimLostError` when another worker has
        taken the attempt over, :class:`~msgstatus.InvalidHandleError` for a bad handle."""
        text = check_handle(handle)
        if result is not None and result.handle != text:
            raise ValueError("result is about another message than handle")
        await self._ledger._run(self._ledger._sent_rows, self, text, result)

    async def abandon(self) -> None:
        """Give the claim back: the send certainly did not happen. Raises
        :class:`~msgstatus.ClaimLostError` when another worker has taken the attempt over."""
        await self._ledger._run(self._ledger._abandon_rows, self)

    async def mark_ambiguous(self, reason: str) -> None:
        """The send failed in a way that may have sent it: end the lease now and keep the
        attempt as ambiguous (UNKNOWN, or a re-grant under ``reclaim_expired=True``)."""
        await self._ledger._run(self._ledger._ambiguous_rows, self, reason[:500])


# -- the shared SQL implementation ------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS msgstatus_schema (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS msgstatus_keys (
        key TEXT PRIMARY KEY,
        fence BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS msgstatus_attempts (
        key TEXT NOT NULL REFERENCES msgstatus_keys (key),
        attempt INTEGER NOT NULL,
        token TEXT NOT NULL,
        fence BIGINT NOT NULL,
        grants INTEGER NOT NULL,
        state TEXT NOT NULL,
        handle TEXT UNIQUE,
        lease_until DOUBLE PRECISION NOT NULL,
        observation TEXT,
        final INTEGER NOT NULL DEFAULT 0,
        lookup_error TEXT,
        lookup_retryable INTEGER NOT NULL DEFAULT 0,
        checked_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (key, attempt))""",
    """CREATE INDEX IF NOT EXISTS msgstatus_attempts_in_flight
        ON msgstatus_attempts (final, checked_at)""",
)

_ROWS_OF_KEY = (
    "SELECT attempt, token, fence, grants, state, handle, lease_until, observation, "
    "lookup_error, lookup_retryable FROM msgstatus_attempts WHERE key = ? ORDER BY attempt"
)
_ROW_OF_HANDLE = (
    "SELECT attempt, token, fence, grants, state, handle, lease_until, observation, "
    "lookup_error, lookup_retryable FROM msgstatus_attempts WHERE handle = ?"
)
_LOCK_KEY = {
    False: "SELECT fence FROM msgstatus_keys WHERE key = ?",
    True: "SELECT fence FROM msgstatus_keys WHERE key = ? FOR UPDATE",
}


class _Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Tx:
    """One transaction of a backend: qmark SQL in, the backend's cursor underneath."""

    def __init__(self, cursor: _Cursor, placeholder: str, for_update: bool) -> None:
        self._cursor = cursor
        self._placeholder = placeholder
        self.for_update = for_update
        self.now = 0.0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Tx:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cursor.execute(sql, tuple(params))
        return self

    def one(self) -> Any:
        return self._cursor.fetchone()

    def all(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def rows(self, key: str) -> list[_Row]:
        self.execute(_ROWS_OF_KEY, (key,))
        return [_row(values) for values in self.all()]

    def lock_key(self, key: str) -> int:
        """Lock ``key`` for the rest of the transaction (creating its row); its fence counter."""
        self.execute(
            "INSERT INTO msgstatus_keys (key, fence, created_at) VALUES (?, 0, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, self.now),
        )
        self.execute(_LOCK_KEY[self.for_update], (key,))
        return int(self.one()[0])


def _row(values: Sequence[Any]) -> _Row:
    return _Row(
        attempt=int(values[0]),
        token=str(values[1]),
        fence=int(values[2]),
        grants=int(values[3]),
        state=cast("AttemptState", str(values[4])),
        handle=values[5],
        lease_until=float(values[6]),
        observation=values[7],
        lookup_error=values[8],
        lookup_retryable=bool(values[9]),
    )


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError("limit must be an integer >= 1")
    return limit


class _SQLLedger:
    """What both backends share: every operation is one transaction of qmark SQL, run in a
    worker thread so that the event loop (asyncio or trio) never blocks on the database."""

    def __init__(self) -> None:
        self._closed = False
        self._schema_ready = False
        self._limiter = anyio.CapacityLimiter(8)

    # A backend provides these two.
    def _transaction(self) -> AbstractContextManager[_Tx]:
        raise NotImplementedError

    def _close_sync(self) -> None:
        raise NotImplementedError

    def _ensure_schema(self, tx: _Tx) -> None:
        """Create the tables on first use; refuse a schema newer than this version knows."""
        for statement in _SCHEMA:
            tx.execute(statement)
        tx.execute(
            "INSERT INTO msgstatus_schema (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
            (SCHEMA_VERSION,),
        )
        tx.execute("SELECT version FROM msgstatus_schema WHERE id = 1")
        version = int(tx.one()[0])
        if version > SCHEMA_VERSION:
            error = LedgerUnavailableError(
                f"the ledger's schema is version {version}, newer than this msgstatus knows "
                f"({SCHEMA_VERSION}): upgrade msgstatus"
            )
            error.retryable = False
            raise error

    def _schema_sync(self) -> None:
        if self._schema_ready:
            return
        with self._transaction() as tx:
            self._ensure_schema(tx)
        self._schema_ready = True

    async def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise RuntimeError("the ledger is closed")

        def call() -> Any:
            self._schema_sync()
            return operation(*args)

        # The write runs to its end even if the caller is cancelled: a transaction abandoned
        # half way would leave the caller unsure whether it committed.
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    # -- the protocol ------------------------------------------------------------------------

    async def claim(
        self,
        key: str,
        *,
        lease: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        reclaim_expired: bool = False,
    ) -> SendClaim | ResendDecision:
        """Claim the next attempt of ``key``: a :class:`SendClaim`, or the refusal as a
        :class:`~msgstatus.ResendDecision` (SKIP, WAIT, BLOCKED or UNKNOWN, with its reason).

        One transaction decides it by the claim table in DESIGN.md. With
        ``reclaim_expired=True`` (declare it only when your sends are idempotent for the same
        :attr:`SendClaim.idempotency_token`) an attempt whose claim expired without a handle is
        granted again with the same token. Raises :class:`~msgstatus.InvalidKeyError` before any
        database call, :class:`~msgstatus.LedgerUnavailableError` when the database is down or
        locked past its timeout (and then no claim was granted).
        """
        check_key(key)
        lease = _check_lease(lease)
        _check_max_attempts(max_attempts)
        started = time.monotonic()
        answer = await self._run(self._claim_rows, key, lease, max_attempts, reclaim_expired)
        if isinstance(answer, ResendDecision):
            return answer
        attempt, fence, lease_until = answer
        claim = SendClaim(
            self,
            key=key,
            attempt=attempt,
            fence=fence,
            lease=lease,
            lease_until=_utc(lease_until),
            started=started,
        )
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            # Cancelled while the grant was being written: nothing was sent, give it back.
            with anyio.CancelScope(shield=True):
                await claim.abandon()
            raise
        return claim

    async def observe(self, result: StatusResult) -> bool:
        """Merge ``result`` into the attempt sent as ``result.handle`` (evidence rule: a status
        never moves backwards, a delivery is never unsaid). ``False`` for a handle the ledger
        does not know: it is not invented into a key."""
        if not isinstance(result, StatusResult):
            raise TypeError(f"observe() takes a StatusResult, not {type(result).__name__}")
        return bool(await self._run(self._observe_rows, result))

    async def observe_error(self, handle: str, error: MsgStatusError) -> bool:
        """Record that the lookup of ``handle`` failed with ``error`` (it moves to the back of
        :meth:`in_flight`; a non-retryable error stops it being polled). ``False`` for an
        unknown handle."""
        text = check_handle(handle)
        message = f"{type(error).__name__}: {error}"[:500]
        return bool(await self._run(self._observe_error_rows, text, message, error.retryable))

    async def decision(
        self, key: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> ResendDecision:
        """What a claim of ``key`` would answer now, without claiming: RESEND where it would
        grant an attempt."""
        check_key(key)
        _check_max_attempts(max_attempts)
        result: ResendDecision = await self._run(self._decision_rows, key, max_attempts)
        return result

    async def entry(self, key: str) -> LedgerEntry | None:
        """Everything the ledger holds for ``key`` (None for a key it never saw)."""
        check_key(key)
        result: LedgerEntry | None = await self._run(self._entry_rows, key)
        return result

    async def in_flight(self, limit: int = 100) -> list[str]:
        """Handles of sent attempts whose status is not final yet, least recently checked
        first, at most ``limit`` of them: what :meth:`StatusClient.reconcile` polls."""
        _check_limit(limit)
        result: list[str] = await self._run(self._in_flight_rows, limit)
        return result

    async def aclose(self) -> None:
        """Close the database connections. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_sync)

    async def __aenter__(self) -> _SQLLedger:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the transactions (worker threads) ---------------------------------------------------

    def _claim_rows(
        self, key: str, lease: float, max_attempts: int, reclaim_expired: bool
    ) -> tuple[int, int, float] | ResendDecision:
        with self._transaction() as tx:
            fence = tx.lock_key(key) + 1
            rows = tx.rows(key)
            answer = decide(
                rows, tx.now, max_attempts=max_attempts, reclaim_expired=reclaim_expired
            )
            if isinstance(answer, ResendDecision):
                return answer
            lease_until = tx.now + lease
            tx.execute("UPDATE msgstatus_keys SET fence = ? WHERE key = ?", (fence, key))
            if answer.regrant:
                tx.execute(
                    "UPDATE msgstatus_attempts SET fence = ?, grants = grants + 1, "
                    "state = 'claimed', lease_until = ? WHERE key = ? AND attempt = ?",
                    (fence, lease_until, key, answer.attempt),
                )
            else:
                tx.execute(
                    "INSERT INTO msgstatus_attempts (key, attempt, token, fence, grants, state, "
                    "lease_until, created_at) VALUES (?, ?, ?, ?, 1, 'claimed', ?, ?)",
                    (
                        key,
                        answer.attempt,
                        idempotency_token(key, answer.attempt),
                        fence,
                        lease_until,
                        tx.now,
                    ),
                )
            return answer.attempt, fence, lease_until

    @staticmethod
    def _fenced(tx: _Tx, claim: SendClaim) -> _Row:
        tx.lock_key(claim.key)
        for row in tx.rows(claim.key):
            if row.attempt == claim.attempt and row.fence == claim.fence:
                return row
        raise ClaimLostError(
            f"the claim on attempt {claim.attempt} of {claim.key!r} was taken over by another "
            "worker after its lease ran out"
        )

    def _sent_rows(self, claim: SendClaim, handle: str, result: StatusResult | None) -> None:
        with self._transaction() as tx:
            row = self._fenced(tx, claim)
            stored = row.result()
            if row.handle is not None and row.handle != handle:
                logger.warning(
                    "attempt %d of %r was recorded as %r and is now sent as %r",
                    claim.attempt,
                    claim.key,
                    row.handle,
                    handle,
                )
                # The stored observation is about the other message: it neither merges with
                # this one's result nor stays under this handle.
                stored = None
            merged = merge_observation(stored, result) if result is not None else stored
            observation = merged.model_dump_json() if merged is not None else None
            final = int(merged.is_final) if merged is not None else 0
            tx.execute(
                "UPDATE msgstatus_attempts SET state = 'sent', handle = ?, observation = ?, "
                "final = ?, checked_at = ?, lookup_error = NULL, lookup_retryable = 0 "
                "WHERE key = ? AND attempt = ?",
                (handle, observation, final, tx.now, claim.key, claim.attempt),
            )

    def _abandon_rows(self, claim: SendClaim) -> None:
        with self._transaction() as tx:
            row = self._fenced(tx, claim)
            if row.handle is not None:
                raise ValueError("the attempt was already recorded as sent: it cannot be abandoned")
            if row.grants > 1:
                # An earlier holder of this attempt may have sent it: only this try is given back.
                tx.execute(
                    "UPDATE msgstatus_attempts SET state = 'ambiguous', lease_until = ? "
                    "WHERE key = ? AND attempt = ?",
                    (tx.now, claim.key, claim.attempt),
                )
            else:
                tx.execute(
                    "DELETE FROM msgstatus_attempts WHERE key = ? AND attempt = ?",
                    (claim.key, claim.attempt),
                )

    def _ambiguous_rows(self, claim: SendClaim, reason: str) -> None:
        with self._transaction() as tx:
            row = self._fenced(tx, claim)
            if row.handle is not None:
                return
            tx.execute(
                "UPDATE msgstatus_attempts SET state = 'ambiguous', lease_until = ?, "
                "lookup_error = ? WHERE key = ? AND attempt = ?",
                (min(tx.now, row.lease_until), reason, claim.key, claim.attempt),
            )

    def _find(self, tx: _Tx, handle: str) -> _Row | None:
        tx.execute("SELECT key FROM msgstatus_attempts WHERE handle = ?", (handle,))
        found = tx.one()
        if found is None:
            return None
        key = str(found[0])
        tx.lock_key(key)
        tx.execute(_ROW_OF_HANDLE, (handle,))
        values = tx.one()
        return None if values is None else _row(values)

    def _observe_rows(self, result: StatusResult) -> bool:
        with self._transaction() as tx:
            row = self._find(tx, result.handle)
            if row is None:
                return False
            merged = merge_observation(row.result(), result)
            tx.execute(
                "UPDATE msgstatus_attempts SET observation = ?, final = ?, checked_at = ?, "
                "lookup_error = NULL, lookup_retryable = 0 WHERE handle = ?",
                (merged.model_dump_json(), int(merged.is_final), tx.now, result.handle),
            )
            return True

    def _observe_error_rows(self, handle: str, message: str, retryable: bool) -> bool:
        with self._transaction() as tx:
            row = self._find(tx, handle)
            if row is None:
                return False
            tx.execute(
                "UPDATE msgstatus_attempts SET lookup_error = ?, lookup_retryable = ?, "
                "checked_at = ? WHERE handle = ?",
                (message, int(retryable), tx.now, handle),
            )
            return True

    def _decision_rows(self, key: str, max_attempts: int) -> ResendDecision:
        with self._transaction() as tx:
            return decision_of(tx.rows(key), tx.now, max_attempts=max_attempts)

    def _entry_rows(self, key: str) -> LedgerEntry | None:
        with self._transaction() as tx:
            rows = tx.rows(key)
            if not rows:
                return None
            return LedgerEntry(
                key=key,
                attempts=tuple(row.record(tx.now) for row in rows),
                decision=decision_of(rows, tx.now, max_attempts=DEFAULT_MAX_ATTEMPTS),
            )

    def _in_flight_rows(self, limit: int) -> list[str]:
        with self._transaction() as tx:
            tx.execute(
                "SELECT handle FROM msgstatus_attempts WHERE final = 0 AND handle IS NOT NULL "
                "AND (lookup_error IS NULL OR lookup_retryable = 1) "
                "ORDER BY checked_at, key, attempt LIMIT ?",
                (limit,),
            )
            return [str(values[0]) for values in tx.all()]
