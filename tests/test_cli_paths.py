"""The msgstatus command's less travelled paths, run in process (``main([...])``): no command,
configuration a provider refuses or cannot read, bad CSV input, bad numbers, the progress line
and long tables, a watch through a transient failure, and emulate (a busy port, its output,
SIGTERM). The end-to-end runs as a subprocess are in test_cli.py."""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgstatus._cli import main
from msgstatus._emulate import _wait_for_interrupt, run_emulate
from msgstatus.testing import Fault, SendblueEmulator


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No provider configured; no AWS config file (a HOME without ~/.aws)."""
    for name in list(os.environ):
        if name.startswith(("SENDBLUE_", "AWS_", "MSGSTATUS_CHIME")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode()), "utf-8"))


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: msgstatus")
    for command in ("get", "check", "watch", "demo", "emulate"):
        assert f"\n    {command} " in out


def test_a_bad_default_bearer_is_bad_usage_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("MSGSTATUS_CHIME_BEARER", "not-an-arn")
    assert main(["get", "sendblue:h1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msgstatus: ")
    assert "MSGSTATUS_CHIME_BEARER" in err
    assert "Traceback" not in err


CHIME = "chime:arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c;message=m1"


@pytest.mark.parametrize("config", [None, "[default\nregion = us-east-1\n"], ids=["none", "broken"])
def test_without_a_readable_region_chime_is_not_configured(
    config: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No region and no AWS config file, or a config file boto3 cannot parse: Chime is not
    registered, and its handles say what to set."""
    if config is not None:
        path = tmp_path / "aws-config"
        path.write_text(config)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    assert main(["get", CHIME]) == 2
    err = capsys.readouterr().err
    assert "UnknownProviderError" in err
    assert "chime is not configured: set AWS credentials and a region" in err


def test_a_provider_msgstatus_does_not_know_gets_no_setup_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["get", "twilio:SM123"]) == 2
    err = capsys.readouterr().err
    assert "UnknownProviderError" in err
    assert "twilio" in err
    assert "is not configured" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,name\n1,x\n", "the CSV header has no 'handle' column"),
        ("id,handle\n1,sendblue:h1\n2\n", "line 3 has no handle column"),
    ],
)
def test_bad_csv_input_is_bad_usage_naming_what_is_wrong(
    text: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, text)
    assert main(["check", "-"]) == 2
    out, err = capsys.readouterr()
    assert err == f"msgstatus: {message}\n"
    # Input is streamed: rows before the bad line may have been answered already, nothing else.
    assert all("sendblue:h1" in line for line in out.splitlines()[1:])


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "not a number: 'abc'"), ("0", "must be > 0: '0'"), ("nan", "must be > 0: 'nan'")],
)
def test_a_bad_number_is_refused_by_argparse(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["watch", "--timeout", value, "sendblue:h1"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_check_shows_progress_on_a_terminal_and_flushes_long_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """250 handles of a provider that is not configured (no network): a decision each, the
    table printed in pieces of 200 rows as it goes, and a progress line every 25 on stderr."""
    handles = [f"nope:h{i:03d}" for i in range(250)]
    path = tmp_path / "handles.txt"
    path.write_text("\n".join(handles) + "\n")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("ACTION") for line in out) == 2
    assert sorted(line.split()[2] for line in out if line.startswith("UNKNOWN")) == handles
    err = terminal.getvalue()
    steps = [part.split(" checked")[0] for part in err.split("\r")[1:]]
    assert [step.rsplit(" ", 1)[-1] for step in steps] == [f"{n}/250" for n in range(25, 251, 25)]
    assert steps[-1].startswith("[" + "#" * 30 + "] ")
    assert "250/250 checked\n250 handles: " in err


def test_watch_shows_a_transient_failure_once_and_goes_on_to_the_final_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with SendblueEmulator("cli-key", "cli-secret") as sendblue:
        handle = sendblue.add_message(status="DELIVERED")
        # Every attempt of the first lookup (three) fails; the next lookup succeeds.
        sendblue.inject(Fault.SERVER_ERROR_503, times=3)
        monkeypatch.setenv("SENDBLUE_API_KEY", "cli-key")
        monkeypatch.setenv("SENDBLUE_API_SECRET", "cli-secret")
        monkeypatch.setenv("SENDBLUE_BASE_URL", sendblue.base_url)
        code = main(["watch", "--timeout", "60", "--interval", "0.05", handle])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert f"{handle}  (retrying: " in lines[0]
    assert "503" in lines[0]
    assert lines[1].endswith(f"{handle}  DELIVERED (DELIVERED)  final")
    assert "cli-secret" not in out + err


# -- emulate ----------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_emulate_on_a_busy_port_is_bad_usage(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulate", "--sendblue-port", str(busy_port)]) == 2
    out, err = capsys.readouterr()
    assert err == "msgstatus: cannot serve or write: Address already in use\n"
    assert out == ""


def test_emulate_without_a_handles_file_says_how_to_get_one() -> None:
    out = io.StringIO()
    waited: list[bool] = []
    assert run_emulate(out, messages=1, wait=lambda: waited.append(True)) == 0
    text = out.getvalue()
    assert waited == [True]
    assert text.startswith("msgstatus emulate: 1 seeded messages on two loopback emulators\n")
    # One message: not one that moves, so no watch line; no file, so how to write one.
    assert "msgstatus watch" not in text
    assert "msgstatus check FILE   (run emulate with --write-handles FILE for one)" in text
    assert "more\n" not in text


def test_emulate_lists_the_first_messages_and_counts_the_rest() -> None:
    out = io.StringIO()
    assert run_emulate(out, messages=30, wait=lambda: None) == 0
    text = out.getvalue()
    assert "msgstatus emulate: 30 seeded messages" in text
    assert "  ... and 6 more\n" in text
    assert "  msgstatus watch " in text


def test_sigterm_ends_the_emulators_wait_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        _wait_for_interrupt()  # returns: SIGTERM was taken as Ctrl-C
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) is before
