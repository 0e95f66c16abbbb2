from __future__ import annotations

import itertools
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from msgstatus import MessageStatus, StatusResult
from msgstatus._status import StatusTable

ALL = list(MessageStatus)
LIFECYCLE = [MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ]


def test_values_equal_names() -> None:
    assert [s.value for s in ALL] == [s.name for s in ALL]
    assert {s.value for s in ALL} == {
        "PENDING",
        "SENT",
        "DELIVERED",
        "READ",
        "FAILED",
        "DENIED",
        "UNKNOWN",
    }
    assert MessageStatus("SENT") is MessageStatus.SENT
    assert str(MessageStatus.READ) == "READ"


def test_lifecycle_ranks_ascend_and_terminals_outrank_it() -> None:
    ranks = [s.rank for s in LIFECYCLE]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)
    assert all(MessageStatus.UNKNOWN.rank < s.rank for s in ALL if s is not MessageStatus.UNKNOWN)
    for terminal in (MessageStatus.FAILED, MessageStatus.DENIED):
        assert terminal.is_terminal
        assert all(terminal.rank > s.rank for s in LIFECYCLE)
    assert not any(s.is_terminal for s in [*LIFECYCLE, MessageStatus.UNKNOWN])


@pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL, ALL)))
def test_merge_never_moves_backwards(a: MessageStatus, b: MessageStatus) -> None:
    merged = a.merge(b)
    assert merged in (a, b)
    assert merged.rank == max(a.rank, b.rank)
    assert merged == b.merge(a)


@given(st.lists(st.sampled_from(ALL), min_size=1, max_size=12))
def test_merge_of_any_sequence_is_its_highest_rank_in_any_order(seq: list[MessageStatus]) -> None:
    forward = seq[0]
    for status in seq[1:]:
        forward = forward.merge(status)
    backward = seq[-1]
    for status in reversed(seq[:-1]):
        backward = backward.merge(status)
    assert forward == backward == max(seq, key=lambda s: s.rank)


@given(st.sampled_from(ALL), st.sampled_from(ALL), st.sampled_from(ALL))
def test_merge_is_associative_and_idempotent(
    a: MessageStatus, b: MessageStatus, c: MessageStatus
) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a


def _result(
    status: MessageStatus, checked_at: datetime | None = None, **kw: object
) -> StatusResult:
    fields: dict[str, object] = {"provider": "p", "handle": "p:1", "status": status, **kw}
    if checked_at is not None:
        fields["checked_at"] = checked_at
    return StatusResult.model_validate(fields)


def test_result_is_frozen_and_compares_by_value() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    a = _result(MessageStatus.SENT, now)
    b = _result(MessageStatus.SENT, now)
    assert a == b
    with pytest.raises(ValidationError):
        a.status = MessageStatus.READ  # type: ignore[misc]


def test_checked_at_defaults_to_aware_utc_and_rejects_naive() -> None:
    result = _result(MessageStatus.PENDING)
    assert result.checked_at.utcoffset() == timedelta(0)
    plus_two = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert _result(MessageStatus.PENDING, plus_two).checked_at.hour == 10
    with pytest.raises(ValidationError, match="timezone-aware"):
        _result(MessageStatus.PENDING, datetime(2026, 1, 1))


def test_result_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        _result(MessageStatus.SENT, colour="blue")


def test_json_shape_is_stable_and_round_trips() -> None:
    result = _result(
        MessageStatus.FAILED,
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc),
        provider_status="ERROR",
        is_final=True,
        detail="carrier said no",
        error_code="4001",
        updated_at=datetime(2026, 3, 4, 5, 6, 0, tzinfo=timezone.utc),
        raw={"status": "ERROR", "nested": {"list": [1, 2.5, None, True]}},
    )
    data = json.loads(result.model_dump_json())
    assert list(data) == [
        "provider",
        "handle",
        "status",
        "provider_status",
        "is_final",
        "detail",
        "error_code",
        "updated_at",
        "checked_at",
        "raw",
    ]
    assert data["status"] == "FAILED"
    assert data["checked_at"] == "2026-03-04T05:06:07Z"
    assert data["updated_at"] == "2026-03-04T05:06:00Z"
    assert StatusResult.model_validate_json(result.model_dump_json()) == result


def test_result_merge_keeps_higher_rank_then_later_observation() -> None:
    early = datetime(2026, 1, 1, tzinfo=timezone.utc)
    late = early + timedelta(seconds=5)
    delivered = _result(MessageStatus.DELIVERED, early)
    sent_later = _result(MessageStatus.SENT, late)
    assert delivered.merge(sent_later) is delivered
    assert sent_later.merge(delivered) is delivered
    same_later = _result(MessageStatus.DELIVERED, late, detail="fresher")
    assert delivered.merge(same_later) is same_later
    assert same_later.merge(delivered) is same_later


def test_result_merge_refuses_two_messages() -> None:
    other = StatusResult(provider="p", handle="p:2", status=MessageStatus.SENT)
    with pytest.raises(ValueError, match="two different messages"):
        _result(MessageStatus.SENT).merge(other)


def test_table_matches_after_trim_and_upper_case() -> None:
    table = StatusTable("p", {"SENT": MessageStatus.SENT})
    assert table.lookup("SENT") is MessageStatus.SENT
    assert table.lookup("  sent\n") is MessageStatus.SENT
    assert table.lookup(None) is MessageStatus.UNKNOWN
    assert table.lookup("SENT_") is MessageStatus.UNKNOWN


def test_table_warns_once_per_unknown_value(caplog: pytest.LogCaptureFixture) -> None:
    table = StatusTable("p", {"SENT": MessageStatus.SENT})
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        for _ in range(3):
            assert table.lookup("TELEPORTED") is MessageStatus.UNKNOWN
        assert table.lookup("VANISHED") is MessageStatus.UNKNOWN
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "TELEPORTED" in messages[0]
    assert "VANISHED" in messages[1]


@given(st.text())
def test_table_maps_any_text_without_raising(raw: str) -> None:
    table = StatusTable("p", {"SENT": MessageStatus.SENT})
    assert table.lookup(raw) in ALL
