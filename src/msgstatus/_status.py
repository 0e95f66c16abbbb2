"""The normalized status vocabulary and the result of one lookup."""

from __future__ import annotations

import enum
import logging
import math
import re
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

__all__ = [
    "CONFLICT_PREFIX",
    "MAX_RAW_BYTES",
    "MAX_RAW_DEPTH",
    "MAX_RAW_VALUES",
    "MAX_RESULT_MEMORY",
    "MAX_TEXT_LENGTH",
    "RAW_TRUNCATED_KEY",
    "MessageStatus",
    "StatusResult",
    "StatusTable",
    "evidence_rank",
    "shows_delivery",
]

logger = logging.getLogger("msgstatus")


class MessageStatus(str, enum.Enum):
    """What happened to a message, in one vocabulary for every provider.

    The lifecycle runs ``PENDING < SENT < DELIVERED < READ``; ``FAILED`` and ``DENIED`` are
    terminal. Where two observations of one message meet, the higher :attr:`rank` wins, and the
    ranks follow evidence: a failure outranks ``PENDING`` and ``SENT`` (a sent message can still
    fail) but never evidence of delivery (``DELIVERED``, ``READ``), which providers may report
    out of order with a failure. ``UNKNOWN`` (a value this version does not know, or no status at
    all) ranks below everything, so any real observation replaces it.
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
    # A failure after SENT is a real failure (SENT -> ERROR happens); DENIED is the more specific
    # of the two terminal failures (a rule refused it), so it wins a tie between them.
    MessageStatus.FAILED: 3,
    MessageStatus.DENIED: 4,
    # Evidence of delivery is never unsaid: providers (WhatsApp, Twilio, Sendblue relays) report
    # failed/delivered in either order, and a resend after a delivery is a duplicate.
    MessageStatus.DELIVERED: 5,
    MessageStatus.READ: 6,
}

# A final SENT (a provider with nothing after SENT, such as Chime) is evidence that the message
# went out: in a merge of observations it outranks every failure, and stays below a delivery.
_FINAL_SENT_RANK = (_RANK[MessageStatus.DENIED] + _RANK[MessageStatus.DELIVERED]) / 2

#: Conflict notes in ``StatusResult.detail`` start with this, so that a later merge keeps the
#: first conflict it recorded instead of stacking notes.
CONFLICT_PREFIX = "conflict: "


def evidence_rank(status: MessageStatus, is_final: bool) -> float:
    """The rank of one observation in a merge: :attr:`MessageStatus.rank`, except that a final
    ``SENT`` ranks between the failures and ``DELIVERED``."""
    if status is MessageStatus.SENT and is_final:
        return _FINAL_SENT_RANK
    return _RANK[status]


def shows_delivery(status: MessageStatus, is_final: bool) -> bool:
    """Whether an observation is evidence that the message went out to its recipient:
    ``DELIVERED``, ``READ``, or a final ``SENT``. After such evidence a resend is a duplicate,
    whatever failure is reported later."""
    return evidence_rank(status, is_final) >= _FINAL_SENT_RANK


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


# -- what a result keeps ----------------------------------------------------------------------

#: ``raw`` keeps the provider's payload whole when its compact JSON form is at most this many
#: bytes (UTF-8), it has at most :data:`MAX_RAW_VALUES` values and nests at most
#: :data:`MAX_RAW_DEPTH` containers deep. A real status payload is a few hundred bytes.
MAX_RAW_BYTES = 8192
#: Values (containers, strings, numbers, booleans, nulls; keys not counted) in a kept ``raw``.
MAX_RAW_VALUES = 256
#: Containers nested in a kept ``raw`` (``{"a": {}}`` is 2 deep). Providers refuse a payload
#: nested deeper than this with :class:`~msgstatus.ProviderResponseError`.
MAX_RAW_DEPTH = 8
#: ``provider_status``, ``detail`` and ``error_code`` are cut to this many characters.
MAX_TEXT_LENGTH = 1024
#: What one :class:`StatusResult` can hold in memory at most (measured with ``tracemalloc`` for
#: the worst shapes within the limits above and a handle of 4,096 characters): the client's cache
#: of final results stays within ``cache_size`` times this.
MAX_RESULT_MEMORY = 64 * 1024
#: The key ``raw`` carries (``true``) when the payload was larger than the limits above and only
#: its top-level text, number, boolean and null fields were kept.
RAW_TRUNCATED_KEY = "msgstatus_raw_truncated"
# Strings kept in a truncated raw are cut to this many characters.
_TRUNCATED_STRING = 256

# A lone surrogate (valid in JSON as "\udc80", not encodable as UTF-8) makes JSON output fail.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_CONTAINER_TYPES = frozenset({dict, list, tuple})


def clean_text(text: str) -> str:
    """``text`` as a plain ``str`` with every lone surrogate replaced by U+FFFD, so that it
    always encodes as UTF-8 (JSON output, logs, terminals)."""
    text = str.__str__(text)
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _clean_bounded_text(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = clean_text(value)
    return text if len(text) <= MAX_TEXT_LENGTH else text[:MAX_TEXT_LENGTH]


def _json_size(value: object) -> int:
    """Bytes ``value`` (a scalar) takes in compact JSON, closely enough for a bound."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace")) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return len(str(value)) if abs(value) < 10**30 else MAX_RAW_BYTES + 1
    if isinstance(value, float):
        return len(repr(value)) if math.isfinite(value) else MAX_RAW_BYTES + 1
    return 16


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` has dicts or lists nested more than ``limit`` deep (``{"a": {}}`` is 2
    deep), without recursion: any depth is safe to ask about."""
    if not isinstance(value, (Mapping, list, tuple)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, Mapping) else item:
            kind = type(child)
            if kind in _CONTAINER_TYPES or (
                kind not in _SCALAR_TYPES and isinstance(child, (Mapping, list, tuple))
            ):
                if depth >= limit:
                    return True
                if child:
                    stack.append((child, depth + 1))
    return False


class _BoundedRaw(dict):  # type: ignore[type-arg]
    """What :func:`bounded_raw` returns: already within the limits, so that a provider which
    bounds a payload before working on it does not have it walked again by ``StatusResult``'s
    validator. pydantic stores a plain ``dict`` copy; only msgstatus makes these."""

    __slots__ = ()


def _copy_within_limits(payload: Mapping[Any, Any]) -> dict[str, Any] | None:
    """A copy of ``payload`` with clean text, or None as soon as it is past a raw limit. The
    work is bounded by the limits, whatever the payload's size or depth."""
    root: dict[str, Any] = _BoundedRaw()
    stack: list[tuple[Any, Any, int]] = [(payload, root, 1)]
    values, size = 1, 2
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_RAW_DEPTH:
            return None
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, item in items:
            values += 1
            if isinstance(source, Mapping):
                if not isinstance(key, str):
                    return None
                key = clean_text(key)
                size += _json_size(key) + 2
            else:
                size += 1
            if values > MAX_RAW_VALUES or size > MAX_RAW_BYTES:
                return None
            if isinstance(item, Mapping):
                copy: Any = {}
                stack.append((item, copy, depth + 1))
                size += 2
            elif isinstance(item, (list, tuple)):
                copy = []
                stack.append((item, copy, depth + 1))
                size += 2
            elif isinstance(item, _SCALARS):
                copy = clean_text(item) if isinstance(item, str) else item
                size += _json_size(copy)
            else:
                copy = item  # not JSON: kept for validation to refuse
                size += _json_size(item)
            if isinstance(target, dict):
                target[key] = copy
            else:
                target.append(copy)
    return root if size <= MAX_RAW_BYTES else None


def bounded_raw(payload: object) -> object:
    """What :attr:`StatusResult.raw` keeps of ``payload``: all of it within the limits
    (:data:`MAX_RAW_BYTES`, :data:`MAX_RAW_VALUES`, :data:`MAX_RAW_DEPTH`), else its top-level
    text (cut to 256 characters), number, boolean and null fields within the same limits, plus
    ``RAW_TRUNCATED_KEY: True``. Lone surrogates become U+FFFD. Anything but a mapping is left
    for validation to refuse."""
    if type(payload) is _BoundedRaw:
        return payload
    if not isinstance(payload, Mapping):
        return payload
    whole = _copy_within_limits(payload)
    if whole is not None:
        return whole
    kept: dict[str, Any] = _BoundedRaw()
    size = _json_size(RAW_TRUNCATED_KEY) + 10
    for examined, (key, value) in enumerate(payload.items()):
        if examined >= 4 * MAX_RAW_VALUES or len(kept) >= MAX_RAW_VALUES - 1:
            break
        if not isinstance(key, str) or isinstance(value, (Mapping, list, tuple)):
            continue
        if isinstance(value, str):
            value = clean_text(value[:_TRUNCATED_STRING])
        name = clean_text(key[:_TRUNCATED_STRING])
        cost = _json_size(name) + _json_size(value) + 2
        if size + cost > MAX_RAW_BYTES:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        kept[name] = value
        size += cost
    kept[RAW_TRUNCATED_KEY] = True
    return kept


class StatusResult(BaseModel):
    """The answer of one status lookup: a frozen value, comparable and JSON-serializable.

    ``model_dump_json()`` gives one object with exactly these keys: ``provider``, ``handle``
    (the canonical handle string), ``status`` (a :class:`MessageStatus` name), ``provider_status``
    (the raw value as the provider sent it, or null), ``is_final``, ``detail``, ``error_code``
    (a string, or null), ``not_before`` (ISO 8601 or null: set when the provider refused to send
    the message for a quota window; it was not sent and may be sent again from that moment),
    ``updated_at`` (ISO 8601 or null), ``checked_at`` (ISO 8601, UTC) and ``raw`` (the provider's
    payload).

    What a result keeps is bounded, so that a cache of them is too (SECURITY.md): ``raw`` is the
    payload when it is within :data:`MAX_RAW_BYTES` of JSON, :data:`MAX_RAW_VALUES` values and
    :data:`MAX_RAW_DEPTH` levels, else only its top-level scalar fields plus
    ``"msgstatus_raw_truncated": true``; ``provider_status``, ``detail`` and ``error_code`` are
    cut to :data:`MAX_TEXT_LENGTH` characters; lone surrogates in any text become U+FFFD, so
    ``model_dump_json()`` never fails.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Annotated[str, AfterValidator(clean_text)]
    handle: Annotated[str, AfterValidator(clean_text)]
    status: MessageStatus
    provider_status: Annotated[str | None, AfterValidator(_clean_bounded_text)] = None
    is_final: bool = False
    detail: Annotated[str | None, AfterValidator(_clean_bounded_text)] = None
    error_code: Annotated[str | None, AfterValidator(_clean_bounded_text)] = None
    not_before: Annotated[datetime | None, AfterValidator(_to_utc_if_aware)] = None
    updated_at: Annotated[datetime | None, AfterValidator(_to_utc_if_aware)] = None
    checked_at: Annotated[datetime, AfterValidator(_require_utc)] = Field(default_factory=_utc_now)
    raw: Annotated[dict[str, JsonValue], BeforeValidator(bounded_raw)] = Field(default_factory=dict)

    @property
    def shows_delivery(self) -> bool:
        """Whether this observation is evidence the message went out: ``DELIVERED``, ``READ`` or a
        final ``SENT`` (see :func:`shows_delivery`)."""
        return shows_delivery(self.status, self.is_final)

    def merge(self, other: StatusResult) -> StatusResult:
        """Combine two observations of the same message by the evidence rule (providers.md,
        "Several observations of one message").

        A status never moves backwards, and evidence of delivery (``DELIVERED``, ``READ``, a final
        ``SENT``) is never unsaid: a failure reported before or after it is kept as a conflict
        note in ``detail``, not as the status. Otherwise a failure outranks ``PENDING`` and a
        non-final ``SENT``, and ``DENIED`` outranks ``FAILED``. Between equal ranks the later
        ``checked_at`` wins (it carries the fresher detail). The merge is commutative, associative
        and idempotent in its status. Raises ``ValueError`` for two different messages.
        """
        if (self.provider, self.handle) != (other.provider, other.handle):
            raise ValueError("cannot merge observations of two different messages")
        mine = evidence_rank(self.status, self.is_final)
        theirs = evidence_rank(other.status, other.is_final)
        if mine != theirs:
            winner, loser = (self, other) if mine > theirs else (other, self)
        elif self.checked_at != other.checked_at:
            winner, loser = (self, other) if self.checked_at > other.checked_at else (other, self)
        else:
            # Same rank, same moment: pick by content so that the merge does not depend on order.
            ordered = sorted((self, other), key=lambda r: r.model_dump_json())
            winner, loser = ordered[1], ordered[0]
        if winner.shows_delivery and loser.status.is_terminal:
            return winner._with_conflict(loser)
        return winner

    def _with_conflict(self, failure: StatusResult) -> StatusResult:
        if self.detail is not None and self.detail.startswith(CONFLICT_PREFIX):
            return self
        when = "a later" if failure.checked_at > self.checked_at else "an earlier"
        raw = f" ({failure.provider_status})" if failure.provider_status else ""
        note = (
            f"{CONFLICT_PREFIX}{self.status.value.lower()} as of {self.checked_at.isoformat()}, "
            f"but {when} observation reported {failure.status.value}{raw} as of "
            f"{failure.checked_at.isoformat()}; the delivery stands"
        )
        if self.detail:
            note = f"{note}; {self.detail}"
        return self.model_copy(update={"detail": note})


# Hostile or buggy providers could send endless distinct values: remember only this many.
_MAX_WARNED_VALUES = 1024


class StatusTable:
    """A provider's mapping from raw status values to :class:`MessageStatus`.

    Matching is exact after trimming and upper-casing. A value the table does not know maps to
    ``UNKNOWN`` and is logged once per value, never raised.
    """

    def __init__(
        self, provider: str, mapping: Mapping[str, MessageStatus], *, what: str = "status"
    ) -> None:
        self.provider = provider
        self.mapping = dict(mapping)
        self.what = what
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
            "%s sent a %s this version does not know: %r; reported as UNKNOWN",
            self.provider,
            self.what,
            raw[:200],
        )
