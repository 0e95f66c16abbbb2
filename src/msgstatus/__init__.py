"""msgstatus: what happened to the message I sent, whichever provider sent it?"""

import importlib.metadata as _metadata

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
from msgstatus._providers.base import MessageStatusProvider, TypedHandle
from msgstatus._providers.chime import ChimeHandle, ChimeProvider
from msgstatus._providers.sendblue import SendblueProvider, SendblueWebhook
from msgstatus._retry import RetryPolicy, call_with_retry
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

try:
    __version__ = _metadata.version("msgstatus")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

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
    "SendblueWebhook",
    "StatusClient",
    "StatusResult",
    "StatusStream",
    "StatusWaitTimeout",
    "SyncStatusClient",
    "TypedHandle",
    "UnknownProviderError",
    "call_with_retry",
    "open_ledger",
]

# Public names say they are msgstatus's, whatever private module defines them (as httpx does):
# reprs, docs and pickles then point at the public place.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = "msgstatus"
del _name, _value
