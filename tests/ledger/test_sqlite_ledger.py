"""The SQLite backend's own failures: a file that is not a database, a lock held while a new
file switches to WAL, a schema removed under it, a commit that fails. Each is a
LedgerUnavailableError naming the file (retryable only when waiting can help), and nothing is
left half written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from msgstatus import LedgerUnavailableError, SendClaim, SQLiteLedger

pytestmark = pytest.mark.anyio


def test_the_repr_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    assert repr(SQLiteLedger(path)) == f"SQLiteLedger({str(path)!r})"


async def test_a_file_that_is_not_a_database_is_refused_for_good(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    text = b"these are my notes, not a database\n" * 10
    path.write_bytes(text)
    ledger = SQLiteLedger(path)
    with pytest.raises(LedgerUnavailableError, match="file is not a database") as caught:
        await ledger.claim("k")
    assert str(path) in str(caught.value)
    # Waiting does not make it a database.
    assert not caught.value.retryable
    assert path.read_bytes() == text
    await ledger.aclose()


async def test_a_lock_held_while_a_new_file_switches_to_wal(tmp_path: Path) -> None:
    """A rollback-journal file another process holds exclusively: the switch to WAL is retried
    until the timeout, then LedgerUnavailableError (retryable); once the lock is gone the same
    ledger object opens it."""
    path = tmp_path / "ledger.sqlite3"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE other (x)")
    blocker.execute("BEGIN EXCLUSIVE")
    ledger = SQLiteLedger(path, timeout=0.2)
    try:
        with pytest.raises(LedgerUnavailableError, match="database is locked") as caught:
            await ledger.claim("k")
        assert caught.value.retryable
        assert str(path) in str(caught.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    claim = await ledger.claim("k")
    assert isinstance(claim, SendClaim)
    assert claim.attempt == 1
    await ledger.aclose()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_schema_dropped_under_the_ledger_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    assert await ledger.entry("k") is None  # creates the schema
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("DROP TABLE msgstatus_attempts")
    with pytest.raises(LedgerUnavailableError, match="no such table") as caught:
        await ledger.claim("k")
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    # Rolled back: the claim's key row was not left behind either.
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM msgstatus_keys").fetchone()[0] == 0
    await ledger.aclose()


async def test_a_commit_that_fails_grants_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    assert await ledger.entry("k") is None
    connection = ledger._connection
    assert connection is not None

    def deny_commit(action: int, arg: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    connection.set_authorizer(deny_commit)
    with pytest.raises(LedgerUnavailableError, match="could not commit: not authorized") as caught:
        await ledger.claim("k")
    assert str(path) in str(caught.value)
    assert not caught.value.retryable
    connection.set_authorizer(None)
    # Rolled back: the key was never claimed, and the next claim is attempt 1.
    assert await ledger.entry("k") is None
    claim = await ledger.claim("k")
    assert isinstance(claim, SendClaim)
    assert claim.attempt == 1
    await ledger.aclose()
