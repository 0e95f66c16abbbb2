"""StatusTable: exact matching after trimming and upper-casing, unknown values logged once, and a
bounded memory of the unknown values already logged."""

from __future__ import annotations

import logging

import pytest

from msgstatus import MessageStatus
from msgstatus._status import _MAX_WARNED_VALUES, StatusTable

TABLE = {"SENT": MessageStatus.SENT, "ERROR": MessageStatus.FAILED}


def test_matching_is_exact_after_trimming_and_upper_casing() -> None:
    table = StatusTable("p", TABLE)
    assert table.lookup(" sent\t") is MessageStatus.SENT
    assert table.lookup("Error") is MessageStatus.FAILED
    assert table.lookup("SENTX") is MessageStatus.UNKNOWN
    assert table.lookup(None) is MessageStatus.UNKNOWN


def test_an_unknown_value_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    table = StatusTable("p", TABLE)
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        for _ in range(3):
            assert table.lookup("TELEPORTED") is MessageStatus.UNKNOWN
        assert table.lookup(None) is MessageStatus.UNKNOWN
    assert len(caplog.records) == 1
    assert "'TELEPORTED'" in caplog.text
    assert caplog.records[0].name == "msgstatus"


def test_the_memory_of_logged_values_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    table = StatusTable("p", TABLE)
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        for i in range(_MAX_WARNED_VALUES + 500):
            assert table.lookup(f"NEW-{i}") is MessageStatus.UNKNOWN
    # A hostile provider's endless distinct values neither grow memory nor the log past the cap.
    assert len(table._warned) == _MAX_WARNED_VALUES
    assert len(caplog.records) == _MAX_WARNED_VALUES
    assert _MAX_WARNED_VALUES == 1024


def test_a_long_unknown_value_is_cut_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    table = StatusTable("p", TABLE)
    with caplog.at_level(logging.WARNING, logger="msgstatus"):
        table.lookup("X" * 5000)
    assert "X" * 200 in caplog.text
    assert "X" * 201 not in caplog.text
