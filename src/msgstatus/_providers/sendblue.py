"""Sendblue (iMessage / SMS REST API)."""

from __future__ import annotations

from msgstatus._status import MessageStatus

__all__ = ["SENDBLUE_STATUS_MAP"]

#: Sendblue's raw ``status`` values and what they mean here. Mirrored in providers.md (a test
#: compares the two). Any other value maps to UNKNOWN; a non-null ``error_key`` means DENIED
#: whatever the status says.
SENDBLUE_STATUS_MAP: dict[str, MessageStatus] = {
    "QUEUED": MessageStatus.PENDING,
    "REGISTERED": MessageStatus.PENDING,
    "PENDING": MessageStatus.PENDING,
    "ACCEPTED": MessageStatus.PENDING,
    "SENT": MessageStatus.SENT,
    "SUCCESS": MessageStatus.SENT,
    "DELIVERED": MessageStatus.DELIVERED,
    "RECEIVED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "ERROR": MessageStatus.FAILED,
    "DECLINED": MessageStatus.DENIED,
}
