"""The one exception tree of msgstatus.

Every error a provider or the client raises is a :class:`MsgStatusError`; the provider's own
exceptions (``httpx.HTTPError``, ``botocore`` ``ClientError``, ...) are translated at the provider
boundary and chained as ``__cause__``. Errors name the provider and the handle where known, carry
the provider's own error code (``provider_code``) and HTTP status (``http_status``) where it gave
them, and never carry a secret::

    MsgStatusError
    ├── HandleError                 "my input was wrong", raised before any network call
    │   ├── InvalidHandleError      a malformed handle
    │   └── UnknownProviderError    no registered provider claims the handle's prefix
    ├── MessageNotFoundError        the provider has no such message
    ├── AuthenticationError         credentials missing or rejected
    ├── PermissionDeniedError       authenticated, but not allowed (e.g. not the sender)
    ├── RateLimitedError            throttled; retry_after when the provider sent one  (retried)
    ├── ProviderUnavailableError    5xx, timeouts, connection errors                    (retried)
    ├── ProviderResponseError       a 2xx body that is not what the API promises, or about
    │                               another message
    ├── StatusWaitTimeout           wait_for_final ran out of time (also a TimeoutError)
    ├── ClientClosedError           the client was closed (also a RuntimeError); a batch cut
    │                               short by it carries the results it finished
    ├── InvalidKeyError             a ledger key that is empty, too long or has control characters
    ├── LedgerUnavailableError      the ledger's database is down or locked past its timeout
    │                                                                                   (retryable)
    └── ClaimLostError              a claim was taken over after its lease ran out
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from msgstatus._status import StatusResult

__all__ = [
    "AuthenticationError",
    "ClaimLostError",
    "ClientClosedError",
    "HandleError",
    "InvalidHandleError",
    "InvalidKeyError",
    "LedgerUnavailableError",
    "MessageNotFoundError",
    "MsgStatusError",
    "PermissionDeniedError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "StatusWaitTimeout",
    "UnknownProviderError",
]

# Bad handles can be arbitrarily long or full of control characters: errors show a bounded repr.
_MAX_HANDLE_IN_MESSAGE = 120


def _handle_for_message(handle: str) -> str:
    shown = repr(handle)
    if len(shown) > _MAX_HANDLE_IN_MESSAGE:
        shown = f"{shown[: _MAX_HANDLE_IN_MESSAGE - 3]}...({len(handle)} characters)"
    return shown


class MsgStatusError(Exception):
    """Base class of every error msgstatus raises.

    ``provider`` and ``handle`` say which lookup failed, where known; ``message`` is the text
    without that context. ``str(error)`` gives both.
    """

    #: Whether the retry loop may try the same lookup again.
    retryable: bool = False

    #: The provider's own error code (a Chime error code, Sendblue's ``error_code``), if any.
    provider_code: str | None = None
    #: The HTTP status of the provider's answer, if the error came from one.
    http_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        handle: str | None = None,
        provider_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.handle = handle
        self.provider_code = provider_code
        self.http_status = http_status

    def __str__(self) -> str:
        context = []
        if self.provider is not None:
            context.append(f"provider={self.provider}")
        if self.handle is not None:
            context.append(f"handle={_handle_for_message(self.handle)}")
        if not context:
            return self.message
        return f"{self.message} [{', '.join(context)}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class HandleError(MsgStatusError):
    """The caller's handle was wrong (malformed, or for no registered provider); raised before any
    network call. Catch it to tell "my input was wrong" from a provider's answer."""


class InvalidHandleError(HandleError, ValueError):
    """The handle is malformed; raised before any network call."""


class UnknownProviderError(HandleError, LookupError):
    """No registered provider claims the handle's ``<provider>:`` prefix."""


class MessageNotFoundError(MsgStatusError, LookupError):
    """The provider says there is no such message (or it is no longer stored)."""


class AuthenticationError(MsgStatusError):
    """Credentials are missing, or the provider rejected them (401, UnauthorizedClient)."""


class PermissionDeniedError(MsgStatusError):
    """Authenticated, but not allowed to read this message (403, Forbidden: not the sender)."""


class RateLimitedError(MsgStatusError):
    """The provider is throttling us (429, Throttled). Retried by :class:`~msgstatus.RetryPolicy`.

    ``retry_after`` is the wait in seconds the provider asked for, or None when it named none.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        handle: str | None = None,
        retry_after: float | None = None,
        provider_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            handle=handle,
            provider_code=provider_code,
            http_status=http_status,
        )
        self.retry_after = retry_after


class ProviderUnavailableError(MsgStatusError):
    """5xx, service unavailable, a timeout or a connection error. Retried by the retry policy."""

    retryable = True


class ProviderResponseError(MsgStatusError):
    """A 2xx response whose body is not what the provider's API promises."""


class StatusWaitTimeout(MsgStatusError, TimeoutError):
    """``wait_for_final`` ran out of time; ``last_result`` is the last status seen, if any."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        handle: str | None = None,
        last_result: StatusResult | None = None,
    ) -> None:
        super().__init__(message, provider=provider, handle=handle)
        self.last_result = last_result


class ClientClosedError(MsgStatusError, RuntimeError):
    """The client was closed: raised by any use after ``aclose()``/``close()`` (it is a
    ``RuntimeError``, as before), and by a batch that the close cut short.

    A ``get_statuses``/``resend_decisions`` batch cut short raises it with ``results``: one slot
    per handle read before the close, in input order, each what the lookup gave (a
    :class:`~msgstatus.StatusResult` or a :class:`MsgStatusError`, or a ``ResendDecision``) or,
    for a lookup the close stopped or that never started, a ``ClientClosedError``. An
    ``iter_statuses`` stream yields the pairs it finished and then raises it. Handles not yet
    read from the input are not read.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        handle: str | None = None,
        results: Sequence[object] = (),
    ) -> None:
        super().__init__(message, provider=provider, handle=handle)
        self.results: list[object] = list(results)


# -- the send ledger ---------------------------------------------------------------------------


class InvalidKeyError(MsgStatusError, ValueError):
    """A ledger key that is not 1-255 characters of text without control characters; raised
    before any database call."""


class LedgerUnavailableError(MsgStatusError):
    """The ledger's database is down, or locked past its timeout. Retryable: no claim was
    granted by the call that raised it. (A schema newer than this version knows, or a file that
    is not a usable SQLite database, raises it too, with ``retryable`` False.)"""

    retryable = True


class ClaimLostError(MsgStatusError):
    """The claim was taken over by another worker after its lease ran out: this worker must not
    record anything for that attempt."""
