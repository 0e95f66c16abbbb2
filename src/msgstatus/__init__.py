"""msgstatus: what happened to the message I sent, whichever provider sent it?"""

from msgstatus._client import Handle, StatusClient, StatusStream
from msgstatus._decision import Outcome, ResendAction, ResendDecision
from msgstatus._provider import MessageStatusProvider, TypedHandle
from msgstatus._providers.chime import ChimeHandle, ChimeProvider
from msgstatus._providers.sendblue import SendblueProvider
from msgstatus._retry import RetryPolicy
from msgstatus._status import MessageStatus, StatusResult
from msgstatus._sync import SyncStatusClient
from msgstatus.errors import (
    AuthenticationError,
    HandleError,
    InvalidHandleError,
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
    "Handle",
    "HandleError",
    "InvalidHandleError",
    "MessageNotFoundError",
    "MessageStatus",
    "MessageStatusProvider",
    "MsgStatusError",
    "Outcome",
    "PermissionDeniedError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResendAction",
    "ResendDecision",
    "RetryPolicy",
    "SendblueProvider",
    "StatusClient",
    "StatusResult",
    "StatusStream",
    "StatusWaitTimeout",
    "SyncStatusClient",
    "TypedHandle",
    "UnknownProviderError",
]
