"""Amazon Chime SDK Messaging (boto3 ``chime-sdk-messaging``)."""

from __future__ import annotations

from msgstatus._status import MessageStatus

__all__ = ["CHIME_STATUS_MAP"]

#: ``Status.Value`` of GetChannelMessageStatus and what it means here. Mirrored in providers.md
#: (a test compares the two). Any other value maps to UNKNOWN.
CHIME_STATUS_MAP: dict[str, MessageStatus] = {
    "PENDING": MessageStatus.PENDING,
    "SENT": MessageStatus.SENT,
    "FAILED": MessageStatus.FAILED,
    "DENIED": MessageStatus.DENIED,
}
