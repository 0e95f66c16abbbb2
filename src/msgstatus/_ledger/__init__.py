"""The send ledger: fleet-safe resends (DESIGN.md, "The send ledger")."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from msgstatus._ledger._base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    AttemptRecord,
    Ledger,
    LedgerEntry,
    SendClaim,
    SendNotAttempted,
    check_key,
    idempotency_token,
)
from msgstatus._ledger._send import SendOutcome
from msgstatus._ledger.postgres import PostgresLedger
from msgstatus._ledger.sqlite import SQLiteLedger

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ATTEMPTS",
    "LEDGER_URL_ENV",
    "AttemptRecord",
    "Ledger",
    "LedgerEntry",
    "PostgresLedger",
    "SQLiteLedger",
    "SendClaim",
    "SendNotAttempted",
    "SendOutcome",
    "check_key",
    "idempotency_token",
    "open_ledger",
]

#: The environment variable open_ledger() reads when it is given no URL.
LEDGER_URL_ENV = "MSGSTATUS_LEDGER_URL"


def open_ledger(url: str | None = None, *, timeout: float | None = None) -> Ledger:
    """The ledger at ``url``: ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or
    ``postgresql://…`` (``postgres://`` too). Without ``url``, ``$MSGSTATUS_LEDGER_URL``.

    Raises ``ValueError`` for a missing URL or an unknown scheme (the message never shows a
    password). Nothing connects until the first call.
    """
    if url is None:
        url = os.environ.get(LEDGER_URL_ENV)
        if not url:
            raise ValueError(f"no ledger URL given and ${LEDGER_URL_ENV} is not set")
    scheme = url.partition(":")[0].lower()
    options: dict[str, float] = {} if timeout is None else {"timeout": timeout}
    if scheme == "sqlite":
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(
                "a SQLite ledger URL is sqlite:///relative/path or sqlite:////absolute/path"
            )
        return SQLiteLedger(unquote(parts.path[1:]), **options)
    if scheme in ("postgresql", "postgres"):
        return PostgresLedger(url, **options)  # type: ignore[arg-type]
    raise ValueError(
        f"unknown ledger URL scheme {scheme[:20]!r}: use sqlite:///path or postgresql://…"
    )
