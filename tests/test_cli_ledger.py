"""The ledger commands of the CLI: ledger show, reconcile, check --ledger, and listen's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from msgstatus import SendClaim, SQLiteLedger
from msgstatus.testing import SendblueEmulator

SRC = Path(__file__).resolve().parents[1] / "src"
SECRET = "sb-cli-ledger-secret-77aa"


@pytest.fixture(scope="module")
def emulator() -> Iterator[SendblueEmulator]:
    with SendblueEmulator("cli-key", SECRET) as server:
        yield server


@pytest.fixture
def env(emulator: SendblueEmulator) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV")
    # Coverage measures the subprocesses too (`nox -s coverage`).
    keep += ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    values = {name: os.environ[name] for name in keep if name in os.environ}
    values.update(
        PYTHONPATH=str(SRC),
        PYTHONIOENCODING="utf-8",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        SENDBLUE_API_KEY="cli-key",
        SENDBLUE_API_SECRET=SECRET,
        SENDBLUE_BASE_URL=emulator.base_url,
    )
    return values


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msgstatus", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def record_send(path: Path, key: str, handle: str) -> None:
    async def main() -> None:
        async with SQLiteLedger(path) as ledger:
            claim = await ledger.claim(key)
            assert isinstance(claim, SendClaim)
            await claim.sent(handle)

    anyio.run(main)


def test_show_then_reconcile_then_show(
    emulator: SendblueEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "ledger.sqlite3"
    url = f"sqlite:///{path}"
    handle = emulator.add_message(status="DELIVERED")
    record_send(path, "order-7", handle)

    before = run(env, tmp_path, "ledger", "show", "order-7", "--ledger", url)
    assert before.returncode == 0, before.stderr
    assert "decision  WAIT" in before.stdout
    assert handle[:40] in before.stdout

    reconciled = run(env, tmp_path, "reconcile", "--ledger", url, "--limit", "10")
    assert reconciled.returncode == 0, reconciled.stderr
    assert "DELIVERED" in reconciled.stdout
    assert "1 in flight looked up, 0 failed" in reconciled.stdout

    after = run(env, tmp_path, "ledger", "show", "order-7", "--ledger", url, "--json")
    assert after.returncode == 0, after.stderr
    entry = json.loads(after.stdout)
    assert entry["decision"]["action"] == "SKIP"
    assert entry["attempts"][0]["observation"]["status"] == "DELIVERED"
    for done in (before, reconciled, after):
        assert SECRET not in done.stdout + done.stderr


def test_show_of_an_unknown_key_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    done = run(env, tmp_path, "ledger", "show", "nope", "--ledger", f"sqlite:///{tmp_path}/l.db")
    assert done.returncode == 1
    assert "nothing for 'nope'" in done.stderr


def test_a_bad_key_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    done = run(env, tmp_path, "ledger", "show", "a\tb", "--ledger", f"sqlite:///{tmp_path}/l.db")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


def test_check_with_ledger_records_what_it_sees_in_the_default_ledger(
    emulator: SendblueEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    handle = emulator.add_message(status="DELIVERED")
    default = tmp_path / "msgstatus-ledger.sqlite3"
    record_send(default, "welcome", handle)
    handles = tmp_path / "handles.txt"
    handles.write_text(f"{handle}\n")
    done = run(env, tmp_path, "check", str(handles), "--ledger")
    assert done.returncode == 0, done.stderr
    assert "SKIP" in done.stdout
    shown = run(env, tmp_path, "ledger", "show", "welcome", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["attempts"][0]["observation"]["status"] == "DELIVERED"


def test_check_without_ledger_writes_none(
    emulator: SendblueEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    handles = tmp_path / "handles.txt"
    handles.write_text(f"{emulator.add_message(status='SENT')}\n")
    done = run(env, tmp_path, "check", str(handles))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "msgstatus-ledger.sqlite3").exists()


def test_listen_without_a_secret_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    done = run(env, tmp_path, "listen", "--port", "0")
    assert done.returncode == 2
    assert "MSGSTATUS_SENDBLUE_WEBHOOK_SECRET" in done.stderr
    assert not (tmp_path / "msgstatus-ledger.sqlite3").exists()


def test_listen_with_a_bad_ledger_url_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    env = dict(env, MSGSTATUS_SENDBLUE_WEBHOOK_SECRET="s3cret-value-x")
    done = run(env, tmp_path, "listen", "--ledger", "mysql://u:hunter2@h/db", "--port", "0")
    assert done.returncode == 2
    assert "hunter2" not in done.stderr
    assert "s3cret-value-x" not in done.stderr + done.stdout
