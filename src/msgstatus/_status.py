"""The normalized status vocabulary and the result of one lookup."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

__all__ = ["MessageStatus", "StatusResult", "StatusTable"]

logger = logging.getLogger("msgstatus")


class MessageStatus(str, enum.Enum):
    """What happened to a message, in one vocabulary for every provider.

    The lifecycle runs ``PENDING < SENT < DELIVERED < READ``; ``FAILED`` and ``DENIED`` are
    terminal and outrank it; ``UNKNOWN`` (a value this version does not know, or no status at all)
    ranks below everything, so any real observation replaces it.
    """

    PENDING = "PENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"
    DENIED = "DENIED"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        """Position in the lifecycle: a merge of two observations keeps the higher rank."""
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        """``FAILED`` and ``DENIED``: nothing follows them, on any provider."""
        return self in (MessageStatus.FAILED, MessageStatus.DENIED)

    def merge(self, other: MessageStatus) -> MessageStatus:
        """The status of a message seen as ``self`` once and as ``other`` once, in any order.

        The higher rank wins, so a status never moves backwards; the merge is commutative,
        associative and idempotent.
        """
        return self if self.rank >= other.rank else other


_RANK: dict[MessageStatus, int] = {
    MessageStatus.UNKNOWN: 0,
    MessageStatus.PENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
    # Terminal failures outrank the lifecycle (SENT -> FAILED happens); DENIED is the more
    # specific of the two (a rule refused it), so it wins a tie between them.
    MessageStatus.FAILED: 5,
    MessageStatus.DENIED: 6,
}


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("checked_at must be timezone-aware")
    return value.astimezone(timezone.utc)


def _to_utc_if_aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StatusResult(BaseModel):
    """The answer of one status lookup: a frozen value, comparable and JSON-serializable.

    ``model_dump_json()`` gives one object with exactly these keys: ``provider``, ``handle``
    (the canonical handle string), ``status`` (a :class:`MessageStatus` name), ``provider_status``
    (the raw value as the provider sent it, or null), ``is_final``, ``detail``, ``error_code``
    (a string, or null), ``updated_at`` (ISO 8601 or null), ``checked_at`` (ISO 8601, UTC) and
    ``raw`` (the provider's payload).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    handle: str
    status: MessageStatus
    provider_status: str | None = None
    is_final: bool = False
    detail: str | None = None
    error_code: str | None = None
    updated_at: Annotated[datetime | None, AfterValidator(_to_utc_if_aware)] = None
    checked_at: Annotated[datetime, AfterValidator(_require_utc)] = Field(default_factory=_utc_now)
    raw: dict[str, JsonValue] = Field(default_factory=dict)

    def merge(self, other: StatusResult) -> StatusResult:
        """Combine two observations of the same message so that its status never moves backwards.

        The observation with the higher-ranked status wins; between equal ranks the later
        ``checked_at`` wins (it carries the fresher detail). Raises ``ValueError`` for two
        different messages.
        """
        if (self.provider, self.handle) != (other.provider, other.handle):
            raise ValueError("cannot merge observations of two different messages")
        if self.status.rank != other.status.rank:
            return self if self.status.rank > other.status.rank else other
        return self if self.checked_at >= other.checked_at else other


# Hostile or buggy providers could send endless distinct values: remember only this many.
_MAX_WARNED_VALUES = 1024


class StatusTable:
    """A provider's mapping from raw status values to :class:`MessageStatus`.

    Matching is exact after trimming and upper-casing. A value the table does not know maps to
    ``UNKNOWN`` and is logged once per value, never raised.
    """

    def __init__(self, provider: str, mapping: Mapping[str, MessageStatus]) -> None:
        self.provider = provider
        self.mapping = dict(mapping)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def lookup(self, raw: str | None) -> MessageStatus:
        """The normalized status of ``raw``; ``None`` or an unknown value gives ``UNKNOWN``."""
        if raw is None:
            return MessageStatus.UNKNOWN
        status = self.mapping.get(raw.strip().upper())
        if status is not None:
            return status
        self._warn_once(raw)
        return MessageStatus.UNKNOWN

    def _warn_once(self, raw: str) -> None:
        with self._lock:
            if raw in self._warned or len(self._warned) >= _MAX_WARNED_VALUES:
                return
            self._warned.add(raw)
        logger.warning(
            "%s sent a status this version does not know: %r; reported as UNKNOWN",
            self.provider,
            raw[:200],
        )
