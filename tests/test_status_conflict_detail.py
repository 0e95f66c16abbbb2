"""A conflict note keeps the delivery's own detail after it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from msgstatus import MessageStatus, StatusResult

AT = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def test_a_conflict_note_is_put_before_the_deliverys_own_detail() -> None:
    delivered = StatusResult(
        provider="sendblue",
        handle="sendblue:h1",
        status=MessageStatus.DELIVERED,
        is_final=True,
        detail="delivered to +15550100",
        checked_at=AT,
    )
    failed = StatusResult(
        provider="sendblue",
        handle="sendblue:h1",
        status=MessageStatus.FAILED,
        is_final=True,
        provider_status="ERROR",
        checked_at=AT + timedelta(minutes=1),
    )
    merged = delivered.merge(failed)
    assert merged.status is MessageStatus.DELIVERED
    assert merged.detail == (
        "conflict: delivered as of 2026-01-01T12:00:00+00:00, but a later observation reported "
        "FAILED (ERROR) as of 2026-01-01T12:01:00+00:00; the delivery stands; "
        "delivered to +15550100"
    )
