"""The ledger's errors: in the tree, exported, and which of them are retryable."""

from __future__ import annotations

import pytest

import msgstatus
import msgstatus.errors
from msgstatus import ClaimLostError, InvalidKeyError, LedgerUnavailableError, MsgStatusError


@pytest.mark.parametrize("cls", [InvalidKeyError, LedgerUnavailableError, ClaimLostError])
def test_ledger_errors_are_msgstatus_errors_and_exported(cls: type[MsgStatusError]) -> None:
    assert issubclass(cls, MsgStatusError)
    assert cls.__name__ in msgstatus.__all__
    assert cls.__name__ in msgstatus.errors.__all__
    assert getattr(msgstatus, cls.__name__) is cls


def test_only_the_unavailable_ledger_is_retryable() -> None:
    assert LedgerUnavailableError.retryable
    assert not InvalidKeyError.retryable
    assert not ClaimLostError.retryable
    assert issubclass(InvalidKeyError, ValueError)


@pytest.mark.parametrize(
    "name",
    [
        "Ledger",
        "SQLiteLedger",
        "PostgresLedger",
        "open_ledger",
        "SendClaim",
        "SendNotAttempted",
    ],
)
def test_ledger_names_are_public(name: str) -> None:
    assert name in msgstatus.__all__
    assert hasattr(msgstatus, name)
