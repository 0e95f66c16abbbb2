"""The msgstatus command, run as a subprocess (``python -m msgstatus``) against the emulators."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from msgstatus import ResendDecision, StatusResult
from msgstatus.testing import ChimeEmulator, SendblueEmulator, SendblueState

SENDBLUE_SECRET = "sb-cli-secret-5f1d2c"
AWS_SECRET = "aws-cli-secret-9e8d7c6b"


@dataclass
class Setup:
    sendblue: SendblueEmulator
    chime: ChimeEmulator
    env: dict[str, str]
    bearer: str

    def run(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "msgstatus", *args],
            env=self.env if env is None else env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "SYSTEMROOT", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    # Coverage measures the subprocesses too (`nox -s coverage`); the emulators' latency
    # switch reaches the demo's own emulators.
    keep += ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START", "MSGSTATUS_EMULATOR_LATENCY")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with (
        SendblueEmulator("cli-key", SENDBLUE_SECRET) as sendblue,
        ChimeEmulator(
            access_key_id="AKIDCLI", secret_access_key=AWS_SECRET, denied_retention=60
        ) as chime,
    ):
        bearer = chime.user_arn("cli")
        env = _base_env()
        env.update(
            SENDBLUE_API_KEY="cli-key",
            SENDBLUE_API_SECRET=SENDBLUE_SECRET,
            SENDBLUE_BASE_URL=sendblue.base_url,
            AWS_ACCESS_KEY_ID="AKIDCLI",
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_REGION=chime.region,
            AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING=chime.base_url,
            MSGSTATUS_CHIME_BEARER=bearer,
        )
        yield Setup(sendblue, chime, env, bearer)


def _chime_handle(setup: Setup, status: str = "SENT", **kw: object) -> str:
    channel = setup.chime.channel_arn("cli")
    message_id = setup.chime.add_message(channel, sender=setup.bearer, status=status, **kw)  # type: ignore[arg-type]
    return f"chime:{channel};message={message_id}"


def test_get_prints_a_table_for_both_providers(setup: Setup) -> None:
    sendblue = setup.sendblue.add_message(status="DELIVERED")
    chime = _chime_handle(setup, "SENT")
    done = setup.run("get", f"sendblue:{sendblue}", chime)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "HANDLE", "STATUS", "RAW", "FINAL", "DETAIL"]
    assert lines[1].split()[:2] == ["sendblue", f"sendblue:{sendblue}"]
    assert lines[1].split()[2:5] == ["DELIVERED", "DELIVERED", "yes"]
    assert lines[2].split()[0] == "chime"
    assert lines[2].split()[2:5] == ["SENT", "SENT", "yes"]
    assert done.stderr == ""


def test_get_json_gives_one_status_result_per_handle(setup: Setup) -> None:
    failed = setup.sendblue.add_message(
        status=SendblueState("ERROR", 4001, None, "carrier said no")
    )
    pending = _chime_handle(setup, "PENDING")
    done = setup.run("get", "--json", f"sendblue:{failed}", pending)
    assert done.returncode == 0, done.stderr
    results = [StatusResult.model_validate_json(line) for line in done.stdout.splitlines()]
    assert [(r.provider, r.status.value, r.is_final) for r in results] == [
        ("sendblue", "FAILED", True),
        ("chime", "PENDING", False),
    ]
    assert results[0].detail == "carrier said no"
    assert results[0].error_code == "4001"
    assert results[1].handle.startswith("chime:")


def test_get_failure_is_one_line_on_stderr_and_a_non_zero_exit(setup: Setup) -> None:
    found = setup.sendblue.add_message(status="SENT")
    done = setup.run("get", f"sendblue:{found}", "sendblue:no-such-message", "sendblue:bad\thandle")
    assert done.returncode == 1
    assert "SENT" in done.stdout
    errors = done.stderr.splitlines()
    assert len(errors) == 2
    assert "MessageNotFoundError" in errors[0]
    assert "no-such-message" in errors[0]
    assert "InvalidHandleError" in errors[1]
    assert "Traceback" not in done.stderr


def test_unconfigured_provider_says_which_variables_to_set(setup: Setup) -> None:
    env = {k: v for k, v in setup.env.items() if not k.startswith("SENDBLUE_")}
    done = setup.run("get", "sendblue:abc", env=env)
    assert done.returncode == 1
    assert "UnknownProviderError" in done.stderr
    assert "SENDBLUE_API_KEY" in done.stderr
    assert "SENDBLUE_API_SECRET" in done.stderr
    env = {k: v for k, v in setup.env.items() if not k.startswith("AWS_REGION")}
    done = setup.run(
        "get", "chime:arn:aws:chime:us-east-1:1:app-instance/x/channel/y;message=m", env=env
    )
    assert done.returncode == 1
    assert "AWS_REGION" in done.stderr


def test_check_a_500_line_file_gives_a_decision_per_handle(setup: Setup, tmp_path: Path) -> None:
    expected: dict[str, str] = {}
    for i in range(100):
        expected[f"sendblue:{setup.sendblue.add_message(status='DELIVERED')}"] = "SKIP"
        expected[f"sendblue:{setup.sendblue.add_message(status='QUEUED')}"] = "WAIT"
        expected[f"sendblue:{setup.sendblue.add_message(status='ERROR')}"] = "RESEND"
        expected[_chime_handle(setup, "DENIED")] = "BLOCKED"
        expected[f"sendblue:missing-{i}"] = "UNKNOWN"
    path = tmp_path / "handles.txt"
    path.write_text("# one handle per line\n\n" + "\n".join(expected) + "\n", encoding="utf-8")
    done = setup.run("check", "--json", "--concurrency", "16", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 500
    seen: dict[str, str] = {}
    for line in lines:
        decision = ResendDecision.model_validate(
            {k: v for k, v in json.loads(line).items() if k != "handle"}
        )
        handle = decision.result.handle if decision.result else json.loads(line)["handle"]
        seen[handle] = decision.action.value
    assert seen == expected
    assert "500 handles: SKIP 100, WAIT 100, RESEND 100, BLOCKED 100, UNKNOWN 100" in done.stderr


def test_check_reads_csv_from_stdin_as_a_table(setup: Setup) -> None:
    delivered = setup.sendblue.add_message(status="DELIVERED")
    sent = setup.sendblue.add_message(status="SENT")
    csv_text = f"id,handle,note\n1,sendblue:{delivered},a\n2,sendblue:{sent},b\n"
    done = setup.run("check", "-", stdin=csv_text)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[2]: line.split()[0] for line in done.stdout.splitlines()[1:3]}
    assert rows == {f"sendblue:{delivered}": "SKIP", f"sendblue:{sent}": "WAIT"}
    assert "2 handles: SKIP 1, WAIT 1, RESEND 0, BLOCKED 0, UNKNOWN 0" in done.stdout


def test_check_refuses_a_missing_file(setup: Setup, tmp_path: Path) -> None:
    done = setup.run("check", str(tmp_path / "nope.txt"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr


class _LineReader:
    """Reads a subprocess's output on a thread, so that every read has a timeout: a ``watch``
    that sticks fails the test instead of hanging the suite."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.rest: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, *, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output line within {timeout} s")
        assert line is not None, "the command ended before printing this line"
        return line

    def done(self, *, timeout: float) -> None:
        """Wait for the end of the output, keeping whatever came after the lines read."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"the output did not end within {timeout} s")
            if line is None:
                return
            self.rest.append(line)


def test_watch_prints_each_change_until_final(setup: Setup) -> None:
    handle = setup.sendblue.add_message(status="QUEUED")
    # The test moves the message on only once watch has printed the state before: no race with
    # the start-up time of the subprocess.
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgstatus",
            "watch",
            "--interval",
            "0.1",
            "--timeout",
            "60",
            f"sendblue:{handle}",
        ],
        env=setup.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watch:
        assert watch.stdout is not None
        try:
            reader = _LineReader(watch.stdout)
            lines = []
            for next_status in ("SENT", "DELIVERED", None):
                lines.append(reader.next_line(timeout=60))
                if next_status:
                    setup.sendblue.set_status(handle, next_status)
            reader.done(timeout=60)
            _, errors = watch.communicate(timeout=60)
        finally:
            watch.kill()
        rest = "".join(reader.rest)
    assert watch.returncode == 0, errors
    assert rest == ""
    assert [line.split()[3] for line in lines] == ["PENDING", "SENT", "DELIVERED"]
    assert lines[-1].rstrip().endswith("final")


def test_watch_exit_code_says_a_message_did_not_become_final(setup: Setup) -> None:
    stuck = setup.sendblue.add_message(status="QUEUED")
    # The timeout starts once the command is up; 3 s leave room for a loaded machine and slow
    # emulators to answer the first lookup.
    done = setup.run("watch", "--interval", "0.1", "--timeout", "3", f"sendblue:{stuck}")
    assert done.returncode == 1
    assert "not final after 3 s" in done.stderr
    assert "PENDING" in done.stdout


def test_secrets_are_never_printed_even_with_debug(setup: Setup) -> None:
    env = dict(setup.env, SENDBLUE_API_KEY="wrong-key")
    chime = _chime_handle(setup, "SENT")
    done = setup.run("--debug", "get", "sendblue:abc", chime, env=env)
    assert done.returncode == 1
    assert "AuthenticationError" in done.stderr
    for output in (done.stdout, done.stderr):
        assert SENDBLUE_SECRET not in output
        assert AWS_SECRET not in output


def test_help_documents_the_environment(setup: Setup) -> None:
    done = setup.run("--help")
    assert done.returncode == 0
    for variable in ("SENDBLUE_API_KEY", "SENDBLUE_BASE_URL", "MSGSTATUS_CHIME_BEARER"):
        assert variable in done.stdout


def test_demo_shows_both_providers_and_their_outcomes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "msgstatus", "demo"],
        env=_base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for word in ("sendblue", "chime", "DELIVERED", "READ", "FAILED", "DENIED"):
        assert word in out
    decisions = out.split("May each message be sent again?")[1]
    for action in ("SKIP", "RESEND", "BLOCKED"):
        assert action in decisions
