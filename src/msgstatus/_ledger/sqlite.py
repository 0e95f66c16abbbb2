"""The embedded ledger: one SQLite file, safe across the processes of one machine."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from msgstatus._ledger._base import _SQLLedger, _Tx
from msgstatus.errors import LedgerUnavailableError

__all__ = ["SQLiteLedger"]

#: Seconds a transaction waits for another process's lock before LedgerUnavailableError.
DEFAULT_TIMEOUT = 10.0

# The database's clock, as epoch seconds with milliseconds (julianday of the Unix epoch).
_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch the database to WAL (persistent in the file) unless it already is.

    Changing the journal mode needs the database to itself and SQLite does not wait for that
    with its busy timeout: several processes opening a new ledger at once would get "database is
    locked" at once. So read the mode first, and retry the switch until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _unavailable(path: Path, what: str, exc: sqlite3.DatabaseError) -> LedgerUnavailableError:
    """The error for a database error: retryable when it is operational (locked, busy, I/O),
    not when the file itself is wrong (not a database, corrupt, a constraint or permission)."""
    error = LedgerUnavailableError(f"the SQLite ledger {str(path)!r} {what}: {exc}")
    if not isinstance(exc, sqlite3.OperationalError):
        error.retryable = False
    return error


class SQLiteLedger(_SQLLedger):
    """The send ledger in a SQLite file at ``path``: the embedded default.

    WAL journal, every claim in a ``BEGIN IMMEDIATE`` transaction (the database's write lock
    serializes claims across every process on the machine), calls in worker threads so that
    neither asyncio nor trio blocks. ``timeout`` is how long a call waits for another process's
    lock before :class:`~msgstatus.LedgerUnavailableError`. The file (and its schema) is created
    on first use. Not for a network file system: SQLite's locks do not hold there; use
    :class:`PostgresLedger` for many machines.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.path = Path(path)
        self.timeout = float(timeout)
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE
                check_same_thread=False,
            )
            try:
                _use_wal(connection, self.timeout)
            except BaseException:
                connection.close()
                raise
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._connection = connection
        return self._connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        # One connection per ledger object, one transaction at a time on it; other processes
        # are kept out by SQLite's own lock.
        with self._lock:
            try:
                connection = self._connect()
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise _unavailable(self.path, "is unavailable", exc) from exc
            try:
                tx = _Tx(cursor, "?", for_update=False)
                tx.now = float(cursor.execute(_NOW).fetchone()[0])
                yield tx
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    cursor.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise _unavailable(self.path, "is unavailable", exc) from exc
                raise
            else:
                try:
                    cursor.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    with contextlib.suppress(sqlite3.Error):
                        cursor.execute("ROLLBACK")
                    raise _unavailable(self.path, "could not commit", exc) from exc
            finally:
                cursor.close()

    def _close_sync(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
