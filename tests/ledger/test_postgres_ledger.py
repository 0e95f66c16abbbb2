"""The PostgreSQL backend without a server to reach: what its repr and errors show of a DSN
that cannot be parsed or has no password, and the install hint without psycopg."""

from __future__ import annotations

import logging
import sys

import pytest

from msgstatus import LedgerUnavailableError, PostgresLedger


@pytest.mark.anyio
async def test_an_unparsable_dsn_is_shown_as_such_and_its_secret_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The unterminated quote makes the DSN unparsable, so its password cannot be picked out:
    # nothing of the DSN is shown.
    ledger = PostgresLedger("host=127.0.0.1 port=9 password='hunter2-secret", timeout=0.5)
    assert repr(ledger) == "PostgresLedger('<unparsable dsn>')"
    with caplog.at_level(logging.DEBUG), pytest.raises(LedgerUnavailableError) as caught:
        await ledger.claim("k")
    await ledger.aclose()
    assert str(caught.value).startswith("the PostgreSQL ledger '<unparsable dsn>' is unavailable (")
    error: BaseException | None = caught.value
    while error is not None:
        assert "hunter2" not in f"{error!s} {error!r}"
        error = error.__cause__ or error.__context__
    assert "hunter2" not in caplog.text


@pytest.mark.anyio
async def test_a_dsn_without_a_password_is_shown_whole() -> None:
    ledger = PostgresLedger("postgresql://app@127.0.0.1:9/db", timeout=0.5)
    shown = "user=app dbname=db host=127.0.0.1 port=9"
    assert repr(ledger) == f"PostgresLedger({shown!r})"
    with pytest.raises(LedgerUnavailableError, match=f"the PostgreSQL ledger '{shown}'"):
        await ledger.claim("k")
    await ledger.aclose()


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import psycopg_pool fails
    with pytest.raises(ImportError, match=r"pip install 'msgstatus\[postgres\]'"):
        PostgresLedger("postgresql://app@127.0.0.1:9/db")
