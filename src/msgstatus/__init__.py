"""msgstatus: what happened to the message I sent, whichever provider sent it?"""

from msgstatus._client import Handle, StatusClient, StatusStream
from msgstatus._decision import Outcome, ResendAction, ResendDecision
from msgstatus._ledger import (
    Ledger,
    PostgresLedger,
    SendClaim,
    SendNotAttempted,
    SendOutcome,
    SQLiteLedger,
    open_ledger,
)
from msgstatus._provider import MessageStatusProvider, TypedHandle
from msgstatus._providers.chime import ChimeHandle, ChimeProvider
from msgstatus._providers.sendblue import SendblueProvider
from msgstatus._retry import RetryPolicy
from msgstatus._status import MessageStatus, StatusResult
from msgstatus._sync import SyncStatusClient
from msgstatus.errors import (
    AuthenticationError,
    ClaimLostError,
    HandleError,
    InvalidHandleError,
    InvalidKeyError,
    LedgerUnavailableError,
    MessageNotFoundError,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    StatusWaitTimeout,
    UnknownProviderError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ChimeHandle",
    "ChimeProvider",
    "ClaimLostError",
    "Handle",
    "HandleError",
    "InvalidHandleError",
    "InvalidKeyError",
    "Ledger",
    "LedgerUnavailableError",
    "MessageNotFoundError",
    "MessageStatus",
    "MessageStatusProvider",
    "MsgStatusError",
    "Outcome",
    "PermissionDeniedError",
    "PostgresLedger",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResendAction",
    "ResendDecision",
    "RetryPolicy",
    "SQLiteLedger",
    "SendClaim",
    "SendNotAttempted",
    "SendOutcome",
    "SendblueProvider",
    "StatusClient",
    "StatusResult",
    "StatusStream",
    "StatusWaitTimeout",
    "SyncStatusClient",
    "TypedHandle",
    "UnknownProviderError",
    "open_ledger",
]
