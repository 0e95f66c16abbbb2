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
from typing import IO, Any

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
    done = setup.run("get", sendblue, chime)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "HANDLE", "STATUS", "RAW", "FINAL", "DETAIL"]
    assert lines[1].split()[:2] == ["sendblue", sendblue]
    assert lines[1].split()[2:5] == ["DELIVERED", "DELIVERED", "yes"]
    assert lines[2].split()[0] == "chime"
    assert lines[2].split()[2:5] == ["SENT", "SENT", "yes"]
    assert done.stderr == ""


def test_get_json_gives_one_row_per_input_handle_in_input_order(setup: Setup) -> None:
    failed = setup.sendblue.add_message(
        status=SendblueState("ERROR", 4001, None, "carrier said no")
    )
    pending = _chime_handle(setup, "PENDING")
    done = setup.run("get", "--json", failed, "sendblue:no-such", pending)
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["handle"] for row in rows] == [failed, "sendblue:no-such", pending]
    for row in rows:
        assert set(row) == {"handle", "result", "error_type", "error"}
    results = [StatusResult.model_validate(rows[i]["result"]) for i in (0, 2)]
    assert [(r.provider, r.status.value, r.is_final) for r in results] == [
        ("sendblue", "FAILED", True),
        ("chime", "PENDING", False),
    ]
    assert results[0].detail == "carrier said no"
    assert results[0].error_code == "4001"
    assert rows[0]["error_type"] is rows[0]["error"] is None
    assert rows[1]["result"] is None
    assert rows[1]["error_type"] == "MessageNotFoundError"
    assert "no-such" in rows[1]["error"]


def test_get_failure_is_one_line_on_stderr_and_a_non_zero_exit(setup: Setup) -> None:
    found = setup.sendblue.add_message(status="SENT")
    done = setup.run("get", found, "sendblue:no-such-message")
    assert done.returncode == 1
    assert "SENT" in done.stdout
    errors = done.stderr.splitlines()
    assert len(errors) == 1
    assert "MessageNotFoundError" in errors[0]
    assert "no-such-message" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_malformed_handle_is_bad_input(setup: Setup) -> None:
    found = setup.sendblue.add_message(status="SENT")
    done = setup.run("get", found, "sendblue:no-such-message", "sendblue:bad\thandle")
    assert done.returncode == 2
    assert "SENT" in done.stdout
    errors = done.stderr.splitlines()
    assert len(errors) == 2
    assert "InvalidHandleError" in errors[1]
    assert "Traceback" not in done.stderr


def test_unconfigured_provider_says_which_variables_to_set(setup: Setup) -> None:
    env = {k: v for k, v in setup.env.items() if not k.startswith("SENDBLUE_")}
    done = setup.run("get", "sendblue:abc", env=env)
    assert done.returncode == 2
    assert "UnknownProviderError" in done.stderr
    assert "SENDBLUE_API_KEY" in done.stderr
    assert "SENDBLUE_API_SECRET" in done.stderr
    env = {k: v for k, v in setup.env.items() if not k.startswith("AWS_REGION")}
    done = setup.run(
        "get", "chime:arn:aws:chime:us-east-1:1:app-instance/x/channel/y;message=m", env=env
    )
    assert done.returncode == 2
    assert "AWS_REGION" in done.stderr


def test_check_a_500_line_file_gives_a_decision_per_handle(setup: Setup, tmp_path: Path) -> None:
    expected: dict[str, str] = {}
    for i in range(100):
        expected[setup.sendblue.add_message(status="DELIVERED")] = "SKIP"
        expected[setup.sendblue.add_message(status="QUEUED")] = "WAIT"
        expected[setup.sendblue.add_message(status="ERROR")] = "RESEND"
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
        row = json.loads(line)
        assert set(row) == {"handle", "action", "reason", "error_type", "result"}
        decision = ResendDecision.model_validate(
            {"action": row["action"], "reason": row["reason"], "result": row["result"]}
        )
        if decision.result is not None:
            assert decision.result.handle == row["handle"]
            assert row["error_type"] is None
        else:
            assert row["error_type"] == "MessageNotFoundError"
        seen[row["handle"]] = decision.action.value
    assert seen == expected
    assert "500 handles: SKIP 100, WAIT 100, RESEND 100, BLOCKED 100, UNKNOWN 100" in done.stderr


def test_check_reads_csv_from_stdin_as_a_table(setup: Setup) -> None:
    delivered = setup.sendblue.add_message(status="DELIVERED")
    sent = setup.sendblue.add_message(status="SENT")
    csv_text = f"id,handle,note\n1,{delivered},a\n2,{sent},b\n"
    done = setup.run("check", "-", stdin=csv_text)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[2]: line.split()[0] for line in done.stdout.splitlines()[1:3]}
    assert rows == {delivered: "SKIP", sent: "WAIT"}
    # stdout is a pipe here: the summary goes to stderr, the table stays clean.
    assert len(done.stdout.splitlines()) == 3
    assert "2 handles: SKIP 1, WAIT 1, RESEND 0, BLOCKED 0, UNKNOWN 0" in done.stderr


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
            handle,
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
    done = setup.run("watch", "--interval", "0.1", "--timeout", "3", stuck)
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
    # The closing pointer names a file this installation really has.
    pointer = next(line for line in out.splitlines() if line.startswith("The rules"))
    named = Path(pointer.split(": ", 1)[1])
    assert named.name == "providers.md"
    assert named.is_file()


# -- the first hour: tables, exit codes, input files --------------------------------------------


def test_tables_keep_whole_handles_when_stdout_is_not_a_terminal(setup: Setup) -> None:
    chime = _chime_handle(setup, "SENT")
    assert len(chime) > 100
    done = setup.run("get", chime)
    assert done.returncode == 0, done.stderr
    assert chime in done.stdout.splitlines()[1].split()


def test_shortened_handles_keep_their_distinguishing_end() -> None:
    from msgstatus._cli import _short

    first = "chime:arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c;message=m1"
    second = first.replace("m1", "m2")
    assert _short(first) != _short(second)
    assert _short(first).endswith(";message=m1")
    assert len(_short(first)) == 48
    assert _short("sendblue:short") == "sendblue:short"


def test_debug_is_accepted_after_the_subcommand(setup: Setup) -> None:
    found = setup.sendblue.add_message(status="SENT")
    done = setup.run("get", "--debug", found)
    assert done.returncode == 0, done.stderr
    assert "msgstatus.sendblue DEBUG" in done.stderr


def test_watch_says_at_once_why_a_handle_failed(setup: Setup) -> None:
    done = setup.run("watch", "--timeout", "30", "sendblue:no-such-message")
    assert done.returncode == 1
    assert "MessageNotFoundError" in done.stderr
    assert "not final" not in done.stderr
    bad = setup.run("watch", "--timeout", "30", "sendblue:bad\thandle")
    assert bad.returncode == 2
    assert "InvalidHandleError" in bad.stderr


def test_check_counts_handles_not_the_csv_header(tmp_path: Path) -> None:
    from msgstatus._cli import _open_handles

    path = tmp_path / "handles.csv"
    path.write_text("handle,note\nsendblue:a,x\nsendblue:b,y\n\n", encoding="utf-8")
    source, total = _open_handles(str(path))
    source.close()
    assert total == 2
    listed = tmp_path / "handles.txt"
    listed.write_text("# comment\nsendblue:a\n\nsendblue:b\nsendblue:c\n", encoding="utf-8")
    source, total = _open_handles(str(listed))
    source.close()
    assert total == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no handles"),
        (b"\n# only a comment\n\n", "no handles"),
        (b"handle\n", "no handles"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"sendblue:\xff\xfe\n", "not UTF-8"),
    ],
    ids=["empty", "comments-only", "header-only", "binary", "latin-1"],
)
def test_check_refuses_empty_or_binary_input_naming_it(
    setup: Setup, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(content)
    done = setup.run("check", str(path))
    assert done.returncode == 2
    assert str(path) in done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "msgstatus", "check", "-"],
        env=setup.env,
        input=content,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 2
    assert b"standard input" in piped.stderr


def test_check_with_a_malformed_handle_exits_2_after_every_decision(
    setup: Setup, tmp_path: Path
) -> None:
    good = setup.sendblue.add_message(status="DELIVERED")
    path = tmp_path / "handles.txt"
    path.write_text(f"{good}\nno-prefix-here\n", encoding="utf-8")
    done = setup.run("check", "--json", str(path))
    assert done.returncode == 2
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(row["action"] for row in rows) == ["SKIP", "UNKNOWN"]
    assert {row["error_type"] for row in rows} == {None, "InvalidHandleError"}
    assert "malformed" in done.stderr


def _exports(lines: list[str]) -> dict[str, str]:
    import shlex

    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0]
    return env


def test_emulate_serves_what_its_exports_point_at(tmp_path: Path) -> None:
    from msgstatus._emulate import SEEDS

    handles = tmp_path / "handles.csv"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgstatus",
            "emulate",
            "--messages",
            str(3 * len(SEEDS)),
            "--write-handles",
            str(handles),
        ],
        env=_base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background of a shell inherits SIGINT ignored, and Python
        # then keeps it ignored: Ctrl-C is what this test sends, so give the child the default.
        preexec_fn=_default_sigint,
    ) as emulate:
        try:
            _check_emulate(emulate, handles, 3 * len(SEEDS))
        finally:
            if emulate.poll() is None:
                emulate.kill()  # a failed check must not leave the with block waiting forever
    assert emulate.returncode == 0


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _check_emulate(emulate: subprocess.Popen[str], handles: Path, messages: int) -> None:
    import signal

    assert emulate.stdout is not None
    printed: list[str] = []
    while not printed or not printed[-1].startswith("Serving until interrupted"):
        line = emulate.stdout.readline()
        assert line, emulate.stderr.read() if emulate.stderr else "emulate ended"
        printed.append(line.rstrip("\n"))
    exports = _exports(printed)
    assert set(exports) >= {"SENDBLUE_BASE_URL", "AWS_REGION", "MSGSTATUS_CHIME_BEARER"}
    for url in (exports["SENDBLUE_BASE_URL"], exports["AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING"]):
        assert url.startswith("http://127.0.0.1:")
    # Only the printed exports (plus PATH and the like): no other configuration.
    env = _base_env() | exports
    run = partial_run(env)
    checked = run("check", "--json", str(handles))
    assert checked.returncode == 0, checked.stderr
    rows = [json.loads(line) for line in checked.stdout.splitlines()]
    assert len(rows) == messages
    assert {row["error_type"] for row in rows} == {None}
    actions = {row["action"] for row in rows}
    assert {"SKIP", "WAIT", "RESEND", "BLOCKED"} <= actions
    chime = next(row["handle"] for row in rows if row["handle"].startswith("chime:"))
    got = run("get", chime)
    assert got.returncode == 0, got.stderr
    emulate.send_signal(signal.SIGINT)
    emulate.communicate(timeout=30)


def partial_run(env: dict[str, str]) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "msgstatus", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run
