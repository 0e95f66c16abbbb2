from __future__ import annotations

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


# Who wins a merge of two statuses, written out by hand (not computed from ``rank``): rows are
# ``a``, columns ``b``, in the order U P S F Den Del R. Evidence of delivery beats every failure;
# a failure beats PENDING and SENT; DENIED beats FAILED; UNKNOWN loses to everything.
_U, _P, _S, _F, _DN, _DL, _R = (
    MessageStatus.UNKNOWN,
    MessageStatus.PENDING,
    MessageStatus.SENT,
    MessageStatus.FAILED,
    MessageStatus.DENIED,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
)
_ORDER = [_U, _P, _S, _F, _DN, _DL, _R]
MERGE_TABLE = [
    # b: U    P    S    F    DN   DL   R
    [_U, _P, _S, _F, _DN, _DL, _R],  # a = UNKNOWN
    [_P, _P, _S, _F, _DN, _DL, _R],  # a = PENDING
    [_S, _S, _S, _F, _DN, _DL, _R],  # a = SENT
    [_F, _F, _F, _F, _DN, _DL, _R],  # a = FAILED
    [_DN, _DN, _DN, _DN, _DN, _DL, _R],  # a = DENIED
    [_DL, _DL, _DL, _DL, _DL, _DL, _R],  # a = DELIVERED
    [_R, _R, _R, _R, _R, _R, _R],  # a = READ
]
MERGE_CASES = [
    (a, b, MERGE_TABLE[i][j]) for i, a in enumerate(_ORDER) for j, b in enumerate(_ORDER)
]


def test_terminal_statuses() -> None:
    assert {s for s in ALL if s.is_terminal} == {MessageStatus.FAILED, MessageStatus.DENIED}


@pytest.mark.parametrize(("a", "b", "winner"), MERGE_CASES)
def test_merge_of_two_statuses_follows_the_written_table(
    a: MessageStatus, b: MessageStatus, winner: MessageStatus
) -> None:
    assert a.merge(b) is winner
    assert (a.rank >= b.rank) == (winner is a)


def test_merge_table_is_symmetric() -> None:
    # The table above is typed by hand: a typo in one half shows here.
    for a, b, winner in MERGE_CASES:
        assert MERGE_TABLE[_ORDER.index(b)][_ORDER.index(a)] is winner


@given(st.lists(st.sampled_from(ALL), min_size=1, max_size=12))
def test_merge_of_any_sequence_is_the_same_in_any_order(seq: list[MessageStatus]) -> None:
    forward = seq[0]
    for status in seq[1:]:
        forward = forward.merge(status)
    backward = seq[-1]
    for status in reversed(seq[:-1]):
        backward = backward.merge(status)
    assert forward == backward
    assert forward in seq


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
        "not_before",
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


# (first status, its is_final, second status, its is_final) -> the merged status, by hand. A final
# SENT (Chime) is evidence the message went out; a non-final SENT (Sendblue) is not.
FINALITY_CASES = [
    (_S, True, _F, True, _S),
    (_S, True, _DN, True, _S),
    (_S, False, _F, True, _F),
    (_S, False, _DN, True, _DN),
    (_S, True, _DL, True, _DL),
    (_S, True, _P, False, _S),
    (_S, True, _S, False, _S),
    (_F, True, _P, False, _F),
    (_F, True, _U, False, _F),
    (_DL, True, _F, True, _DL),
    (_R, True, _DN, True, _R),
]


@pytest.mark.parametrize(("a", "a_final", "b", "b_final", "winner"), FINALITY_CASES)
@pytest.mark.parametrize("a_first", [True, False])
def test_result_merge_follows_evidence_in_either_order(
    a: MessageStatus,
    a_final: bool,
    b: MessageStatus,
    b_final: bool,
    winner: MessageStatus,
    a_first: bool,
) -> None:
    early = datetime(2026, 1, 1, tzinfo=timezone.utc)
    late = early + timedelta(seconds=5)
    first = _result(a, early if a_first else late, is_final=a_final)
    second = _result(b, late if a_first else early, is_final=b_final)
    assert first.merge(second).status is winner
    assert second.merge(first).status is winner


def test_a_failure_after_delivery_is_kept_as_a_conflict_in_detail() -> None:
    delivered_at = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    delivered = _result(MessageStatus.DELIVERED, delivered_at, is_final=True)
    failed = _result(
        MessageStatus.FAILED,
        delivered_at + timedelta(minutes=1),
        is_final=True,
        provider_status="ERROR",
        detail="carrier said no",
    )
    merged = delivered.merge(failed)
    assert merged.status is MessageStatus.DELIVERED
    assert merged.detail is not None
    assert merged.detail.startswith("conflict: delivered as of 2026-01-01T12:00:00+00:00")
    assert "later observation reported FAILED (ERROR)" in merged.detail
    # The other order says "earlier", and a merge with the same failure again changes nothing.
    reversed_merge = failed.merge(delivered)
    assert reversed_merge.status is MessageStatus.DELIVERED
    assert reversed_merge.detail == merged.detail
    assert merged.merge(failed) == merged
    early_failure = failed.model_copy(update={"checked_at": delivered_at - timedelta(minutes=1)})
    assert "earlier observation reported FAILED" in (delivered.merge(early_failure).detail or "")


def test_a_merge_without_conflict_keeps_the_winner_unchanged() -> None:
    pending = _result(MessageStatus.PENDING, is_final=False)
    failed = _result(MessageStatus.FAILED, is_final=True, detail="carrier said no")
    assert pending.merge(failed) is failed
    assert failed.merge(pending) is failed


def test_result_merge_of_equal_rank_and_time_does_not_depend_on_order() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    a = _result(MessageStatus.SENT, now, detail="a")
    b = _result(MessageStatus.SENT, now, detail="b")
    assert a.merge(b) == b.merge(a)


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
