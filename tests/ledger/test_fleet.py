"""The fleet test, small: 4 worker processes x 100 keys, workers dying, first sends failing and
lookups faulting; counted from the emulator's own store of sent messages. ``nox -s fleet`` runs
it at full scale (8 processes x 1,000 keys)."""

from __future__ import annotations

import pytest
from _fleet_harness import MAX_ATTEMPTS, run_fleet


@pytest.mark.parametrize(
    ("provider", "ledger_backend"),
    [("sendblue", "sqlite"), ("sendblue", "postgres"), ("chime", "sqlite"), ("chime", "postgres")],
)
def test_fleet_sends_each_key_at_most_once(
    provider: str, ledger_backend: str, request: pytest.FixtureRequest, tmp_path: object
) -> None:
    if ledger_backend == "sqlite":
        url = f"sqlite:///{tmp_path}/fleet.sqlite3"
    else:
        url = request.getfixturevalue("postgres_dsn")
    report = run_fleet(provider=provider, ledger_url=url, processes=4, keys=100, timeout=50)
    print(report.summary())
    assert report.duplicates == []
    assert report.over_limit == []
    assert report.unsettled == {}
    assert sum(report.actions.values()) == 100
    assert report.sends >= 100 - report.actions.get("UNKNOWN", 0)
    assert report.sends <= 100 * MAX_ATTEMPTS
    if provider == "chime":
        # Idempotent sends: every expired claim was re-granted and resent with its token, so
        # no key is left UNKNOWN and every key went out.
        assert report.actions.get("UNKNOWN", 0) == 0
