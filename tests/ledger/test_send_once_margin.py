"""send_once's margin: a bad one is refused before anything is claimed, and one that leaves the
send no time gives the claim back without sending."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from msgstatus import SendNotAttempted, SQLiteLedger
from msgstatus._ledger._send import send_once

pytestmark = pytest.mark.anyio


async def _never(token: str) -> str:  # pragma: no cover - reached only on a bug
    raise AssertionError(f"the send ran with {token}")


@pytest.mark.parametrize("margin", [-0.1, 10.0, 11.0, math.nan])
async def test_a_bad_margin_claims_nothing(tmp_path: Path, margin: float) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    with pytest.raises(ValueError, match="margin must be >= 0 and shorter than the lease"):
        await send_once(ledger, "k", _never, lease=10.0, margin=margin)
    # Nothing held: the key is free for the next try at once.
    assert await ledger.entry("k") is None
    await ledger.aclose()


async def test_a_bad_lease_is_named_before_the_margin(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    with pytest.raises(ValueError, match="lease must be a finite number of seconds > 0"):
        await send_once(ledger, "k", _never, lease=-1.0, margin=0.5)
    await ledger.aclose()


async def test_a_margin_that_leaves_no_time_sends_nothing_and_gives_the_claim_back(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    # The claim itself takes longer than the microsecond the margin leaves.
    with pytest.raises(SendNotAttempted, match="the lease was over before the send could start"):
        await send_once(ledger, "k", _never, lease=1.0, margin=0.999999)
    assert await ledger.entry("k") is None
    await ledger.aclose()
