"""Ledger backends for the contract suite: a SQLite file per test and a real PostgreSQL 16
(``pgserver``, started by the tests themselves on a unix socket) with a database per test."""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from msgstatus._ledger import Ledger, PostgresLedger, SQLiteLedger

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One PostgreSQL server for the session (pgserver: a pip-installed PostgreSQL 16 that
    listens on a unix socket in its data directory, no TCP port)."""
    with (
        tempfile.TemporaryDirectory(prefix="msgstatus-pg-") as data,
        tempfile.TemporaryDirectory(prefix="msgstatus-run-") as runtime,
    ):
        # pgserver asks platformdirs for a runtime directory, which warns when none is set (as
        # in CI): give it a private one of its own.
        os.environ.setdefault("XDG_RUNTIME_DIR", runtime)
        import pgserver

        server = pgserver.get_server(Path(data), cleanup_mode="stop")
        try:
            yield server
        finally:
            server.cleanup()


@pytest.fixture
def postgres_dsn(postgres_server: Any) -> str:
    """A fresh database on the session's server; its DSN."""
    name = f"ledger_{next(_databases)}_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE DATABASE {name};")
    uri: str = postgres_server.get_uri(name)
    return uri


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty ledger on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
def make_ledger(ledger_url: str) -> Iterator[Callable[..., Ledger]]:
    """Build ledger objects on the test's database (several: several workers); closed at the
    end by the ``ledger`` fixture's caller or here."""
    made: list[Ledger] = []

    def make(**options: Any) -> Ledger:
        ledger: Ledger
        if ledger_url.startswith("sqlite:"):
            ledger = SQLiteLedger(ledger_url.removeprefix("sqlite:///"), **options)
        else:
            ledger = PostgresLedger(ledger_url, **options)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        if isinstance(ledger, PostgresLedger):
            ledger._pool.close()
        elif isinstance(ledger, SQLiteLedger):
            ledger._close_sync()


@pytest.fixture
async def ledger(make_ledger: Callable[..., Ledger]) -> AsyncIterator[Ledger]:
    the_ledger = make_ledger()
    yield the_ledger
    await the_ledger.aclose()
