"""The ledger for many machines: PostgreSQL through psycopg 3's sync pool, from worker threads.

psycopg's async API runs on asyncio only; its sync pool driven from anyio worker threads serves
asyncio and trio alike (as the Chime provider does with boto3's blocking parts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from msgstatus._ledger._base import _SQLLedger, _Tx
from msgstatus.errors import LedgerUnavailableError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresLedger", "redact_dsn"]

#: Seconds to wait for a pooled connection (or a lock) before LedgerUnavailableError.
DEFAULT_TIMEOUT = 10.0

# One constant advisory lock: creating the schema from many processes at once must not race.
_SCHEMA_LOCK = 0x6D73_6C65_6467  # "msledg"


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password (URL or ``key=value`` form) replaced by ``***``."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:  # pragma: no cover - without psycopg nothing connects anyway
        return "<dsn>"
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable dsn>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - the redaction mark, not a password
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def _password(dsn: str) -> str | None:
    try:
        from psycopg.conninfo import conninfo_to_dict

        value = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(value) if value else None


class PostgresLedger(_SQLLedger):
    """The send ledger in PostgreSQL at ``dsn`` (``postgresql://…`` or ``key=value``), for a
    fleet on many machines. Install ``msgstatus[postgres]``.

    Each call is one transaction on a pooled connection (at most ``max_connections``), run in a
    worker thread; a key is locked with a row lock (``INSERT … ON CONFLICT`` + ``SELECT … FOR
    UPDATE``) and leases use the database's clock (``clock_timestamp()``). The schema is created
    on first use. ``timeout`` bounds the wait for a connection and for locks
    (:class:`~msgstatus.LedgerUnavailableError` after it). The DSN's password never appears in
    a repr, a log line or an error.
    """

    def __init__(
        self, dsn: str, *, timeout: float = DEFAULT_TIMEOUT, max_connections: int = 8
    ) -> None:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool
        except ImportError as exc:
            raise ImportError(
                "PostgresLedger needs psycopg 3 and psycopg-pool: pip install 'msgstatus[postgres]'"
            ) from exc
        super().__init__()
        self.timeout = float(timeout)
        self.__dsn = dsn
        self.__password = _password(dsn)
        self._shown = redact_dsn(dsn)
        self._pool: ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=self.timeout,
            kwargs={
                "connect_timeout": max(1, int(self.timeout)),
                # A lock held by a dead session must not hold us past the timeout either.
                "options": f"-c lock_timeout={int(self.timeout * 1000)}",
            },
            name="msgstatus-ledger",
        )
        self._opened = False

    def __repr__(self) -> str:
        return f"PostgresLedger({self._shown!r})"

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}".strip()
        if self.__password:
            text = text.replace(self.__password, "***")
        return text[:500]

    def _unavailable(self, exc: BaseException) -> LedgerUnavailableError:
        return LedgerUnavailableError(
            f"the PostgreSQL ledger {self._shown!r} is unavailable ({self._describe(exc)})"
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        import psycopg
        import psycopg_pool

        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True
        # A driver error is described, not chained: its text may hold connection details.
        error: LedgerUnavailableError | None = None
        try:
            with self._pool.connection() as connection, connection.transaction():
                cursor = connection.cursor()
                tx = _Tx(cursor, "%s", for_update=True)
                cursor.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
                row = cursor.fetchone()
                assert row is not None
                tx.now = float(row[0])
                yield tx
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            error = self._unavailable(exc)
        except psycopg.errors.LockNotAvailable as exc:  # pragma: no cover - an OperationalError
            error = self._unavailable(exc)
        if error is not None:
            raise error

    def _ensure_schema(self, tx: _Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
        super()._ensure_schema(tx)

    def _close_sync(self) -> None:
        self._pool.close()
