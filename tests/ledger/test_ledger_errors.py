"""The ledger's errors: in the tree, exported, and which of them are retryable."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import msgstatus
import msgstatus.errors
from msgstatus import (
    ClaimLostError,
    InvalidKeyError,
    LedgerUnavailableError,
    MsgStatusError,
    SQLiteLedger,
)


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


async def test_many_ledgers_opening_a_new_sqlite_file_at_once_all_get_in(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite's busy timeout does not cover
    # that: eight workers starting together once got "database is locked" at once.
    for round_number in range(5):
        ledgers = [SQLiteLedger(tmp_path / f"new-{round_number}.sqlite3") for _ in range(8)]
        answers: list[object] = []

        async def claim(ledger: SQLiteLedger, key: str, answers: list[object]) -> None:
            answers.append(await ledger.claim(key))

        async with anyio.create_task_group() as tg:
            for number, ledger in enumerate(ledgers):
                tg.start_soon(claim, ledger, f"key-{number}", answers)
        assert len(answers) == 8
        for ledger in ledgers:
            await ledger.aclose()
