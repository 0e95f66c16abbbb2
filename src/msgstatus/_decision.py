"""May I send it again? The resend decision over one or several observations of a message, and
what providers' refusal codes mean for it.

The decision follows evidence (providers.md, "Several observations of one message"): any
observation showing that the message reached its recipient (``DELIVERED``, ``READ``) or a final
``SENT`` means SKIP, whatever failure is reported before or after it. The client, the client's
cache and the send ledger all decide through this module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from msgstatus._status import CONFLICT_PREFIX, MessageStatus, StatusResult
from msgstatus.errors import MsgStatusError

__all__ = [
    "Outcome",
    "Refusal",
    "RefusalKind",
    "ResendAction",
    "ResendDecision",
    "merge_observations",
]

#: What a lookup gives for one handle: its result, or the error the lookup ended with.
Outcome: TypeAlias = StatusResult | MsgStatusError


class ResendAction(str, enum.Enum):
    """The answer to "may I send this message again?"; see :class:`ResendDecision`.

    ``SKIP``: it went out, a resend would be a duplicate. ``WAIT``: still in flight, ask again
    later. ``RESEND``: it failed or was never sent, a resend cannot duplicate it. ``BLOCKED``: a
    rule refused it, a resend as is will be refused again. ``UNKNOWN``: no safe answer (unknown
    status, no such message, or the lookup failed); the caller's policy decides.
    """

    SKIP = "SKIP"
    WAIT = "WAIT"
    RESEND = "RESEND"
    BLOCKED = "BLOCKED"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


class RefusalKind(str, enum.Enum):
    """What a provider's refusal code (Sendblue's ``error_key``, ``error_code``) means for a
    resend. An unknown code has no kind: the result is ``UNKNOWN``, never RESEND nor BLOCKED."""

    #: A quota window (hourly, daily, before-reply limits): the message was not sent and may be
    #: sent again once the window is over. Normalized as ``FAILED``; decision RESEND.
    QUOTA_WINDOW = "QUOTA_WINDOW"
    #: A permanent refusal (the recipient opted out): resending as is will be refused again.
    #: Normalized as ``DENIED``; decision BLOCKED.
    PERMANENT = "PERMANENT"


@dataclass(frozen=True)
class Refusal:
    """One row of a provider's refusal table: the kind, a human meaning, and for a quota window
    its length when the provider documents one (``not_before`` = the refusal's time + window)."""

    kind: RefusalKind
    meaning: str
    window: timedelta | None = None

    @property
    def status(self) -> MessageStatus:
        """The normalized status of a message refused this way."""
        if self.kind is RefusalKind.QUOTA_WINDOW:
            return MessageStatus.FAILED
        return MessageStatus.DENIED


def merge_observations(results: Iterable[StatusResult]) -> StatusResult:
    """Fold several observations of one message with :meth:`StatusResult.merge` (the evidence
    rule). Raises ``ValueError`` for no observation or for observations of different messages."""
    merged: StatusResult | None = None
    for result in results:
        merged = result if merged is None else merged.merge(result)
    if merged is None:
        raise ValueError("no observation to decide on")
    return merged


def _provider_status(result: StatusResult) -> str:
    shown = f"provider status {result.provider_status!r}" if result.provider_status else ""
    detail = result.detail
    if detail and not detail.startswith(CONFLICT_PREFIX):
        shown = f"{shown}: {detail}" if shown else detail
    return f" ({shown})" if shown else ""


class ResendDecision(BaseModel):
    """Whether a message may be sent again, why, and what the decision rests on.

    ``action`` is a :class:`ResendAction`; ``reason`` one human sentence naming the provider's
    status (and any conflict between observations); ``result`` the merged
    :class:`~msgstatus.StatusResult` (None when the lookup failed); ``error`` the
    :class:`~msgstatus.MsgStatusError` the decision rests on, or None; ``not_before`` the moment
    a resend may be made when the provider refused the message for a quota window. In
    ``model_dump_json()`` the error appears as ``error_type`` (its class name) and
    ``error_code`` (the provider's code), so that a batch can branch on them. A frozen value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    action: ResendAction
    reason: str
    result: StatusResult | None = None
    error: MsgStatusError | None = Field(default=None, exclude=True, repr=False)
    not_before: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_computed_fields(cls, data: object) -> object:
        # model_dump_json() writes error_type/error_code (computed from the error object, which
        # JSON cannot carry): reading that JSON back must not refuse them as unknown fields.
        if isinstance(data, dict) and ("error_type" in data or "error_code" in data):
            return {k: v for k, v in data.items() if k not in ("error_type", "error_code")}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_type(self) -> str | None:
        """The class name of :attr:`error` (``"ProviderUnavailableError"``), or None."""
        return None if self.error is None else type(self.error).__name__

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_code(self) -> str | None:
        """The provider's own code carried by :attr:`error`, or None."""
        return None if self.error is None else self.error.provider_code

    @classmethod
    def from_result(cls, result: StatusResult) -> ResendDecision:
        """The decision for one observed (or merged) status, per the table in providers.md.

        Finality comes from the provider (``result.is_final``): it only matters for ``SENT``, which
        is a final success on some providers and still in flight on others.
        """
        status = result.status
        raw = _provider_status(result)
        not_before = None
        if result.shows_delivery:
            action = ResendAction.SKIP
            if status is MessageStatus.SENT:
                went = f"sent and {result.provider} reports nothing after that"
            else:
                went = status.value.lower()
            reason = f"the message was {went}{raw}: a resend would send a duplicate"
            if result.detail is not None and result.detail.startswith(CONFLICT_PREFIX):
                reason = f"{reason} ({result.detail})"
        elif status is MessageStatus.FAILED:
            action = ResendAction.RESEND
            not_before = result.not_before
            if not_before is not None:
                reason = (
                    f"the message was refused for a quota window and not sent{raw}: a resend "
                    f"cannot duplicate it; send it again after {not_before.isoformat()}"
                )
            else:
                reason = f"delivery failed{raw}: a resend cannot duplicate it"
        elif status is MessageStatus.DENIED:
            action = ResendAction.BLOCKED
            reason = f"a rule refused the message{raw}: resending it as is will be refused again"
        elif status is MessageStatus.SENT:
            action = ResendAction.WAIT
            reason = (
                f"the message was sent{raw} but may still be delivered or fail: "
                "a resend now may duplicate it; ask again later"
            )
        elif status is MessageStatus.PENDING:
            action = ResendAction.WAIT
            reason = (
                f"the message is not sent yet{raw}: a resend now may duplicate it; ask again later"
            )
        else:
            action = ResendAction.UNKNOWN
            reason = (
                f"{result.provider} reported a status this version does not know{raw}: "
                "there is no safe answer"
                if raw
                else f"{result.provider} reported no status: there is no safe answer"
            )
        return cls(action=action, reason=reason, result=result, not_before=not_before)

    @classmethod
    def from_observations(cls, results: Iterable[StatusResult]) -> ResendDecision:
        """The decision over several observations of one message (polls, send responses, pushes,
        in any order): :meth:`from_result` of their evidence-rule merge. Raises ``ValueError`` for
        no observation or observations of different messages."""
        return cls.from_result(merge_observations(results))

    @classmethod
    def from_error(cls, error: MsgStatusError) -> ResendDecision:
        """``UNKNOWN`` for a lookup that ended with ``error``: ``result`` None, ``error`` set."""
        return cls(
            action=ResendAction.UNKNOWN,
            reason=f"no safe answer: the lookup failed with {type(error).__name__}: {error}",
            result=None,
            error=error,
        )

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> ResendDecision:
        """The decision for one slot of a batch: a result or the error its lookup ended with."""
        if isinstance(outcome, StatusResult):
            return cls.from_result(outcome)
        return cls.from_error(outcome)
