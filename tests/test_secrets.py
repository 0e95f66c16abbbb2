"""No secret in any output: with DEBUG logging on for msgstatus and every library under it, run
successful lookups, every kind of failure, faults, and the command; the Sendblue API secret and the
AWS secret access key (right and wrong ones) must appear in no log record (message, arguments,
formatted traceback), no exception (str, repr, traceback, anything chained), no repr, no result
(``raw`` included) and no command output.

tests/providers/test_sendblue.py and test_chime_emulator.py check each provider alone; this is the
whole library at once, through the client and the command.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import httpx
import pytest

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MsgStatusError,
    RetryPolicy,
    SendblueProvider,
    StatusClient,
    StatusWaitTimeout,
    SyncStatusClient,
)
from msgstatus.testing import ChimeEmulator, Fault, SendblueEmulator

pytestmark = pytest.mark.anyio

SENDBLUE_KEY = "sb-key-for-secrets-test"
SENDBLUE_SECRET = "sb-SECRET-7c1e9a4f-never-print-me"
WRONG_SENDBLUE_SECRET = "sb-WRONG-SECRET-0b3d5f7e-never-print-me"
AWS_KEY_ID = "AKIDSECRETSSUITE"
AWS_SECRET = "AwsSecret/K7MDENG+bPxRfiCY-never-print-me"
WRONG_AWS_SECRET = "AwsWrongSecret/9f8e7d6c+5b4a-never-print-me"
SECRETS = (SENDBLUE_SECRET, WRONG_SENDBLUE_SECRET, AWS_SECRET, WRONG_AWS_SECRET)

LOGGERS = ("msgstatus", "httpx", "httpcore", "botocore", "boto3", "urllib3", "anyio", "asyncio")
FAST = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.005)
_FORMATTER = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")


class Capture(logging.Handler):
    """Every record at DEBUG and above, kept as the texts a log file could show."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.names: set[str] = set()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        # The formatted line includes the traceback of exc_info; args are checked as given too,
        # in case a handler formats them differently (structured logging).
        self.texts.extend([_FORMATTER.format(record), repr(record.args), repr(record.__dict__)])


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and traceback of ``exc`` and of everything chained to it."""
    texts: list[str] = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts.extend([str(current), repr(current), repr(vars(current))])
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return texts


def assert_no_secret(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:500])


@dataclass
class Emulators:
    sendblue: SendblueEmulator
    chime: ChimeEmulator
    bearer: str
    channel: str
    handles: dict[str, str | ChimeHandle] = field(default_factory=dict)


@pytest.fixture
def emulators() -> Iterator[Emulators]:
    with (
        SendblueEmulator(SENDBLUE_KEY, SENDBLUE_SECRET) as sendblue,
        ChimeEmulator(access_key_id=AWS_KEY_ID, secret_access_key=AWS_SECRET) as chime,
    ):
        bearer = chime.user_arn("secrets")
        channel = chime.channel_arn("secrets")
        setup = Emulators(sendblue, chime, bearer, channel)
        # A payload that echoes the secret back must not carry it into a result.
        echo = sendblue.add_message(status="DELIVERED", content=f"echo {SENDBLUE_SECRET}")
        setup.handles = {
            "sendblue ok": sendblue.add_message(status="SENT"),
            "sendblue echo": echo,
            "sendblue missing": "sendblue:no-such-message",
            "chime ok": ChimeHandle(channel, chime.add_message(channel, sender=bearer)),
            "chime pending": ChimeHandle(
                channel, chime.add_message(channel, sender=bearer, status="PENDING")
            ),
            "chime forbidden": ChimeHandle(
                channel, chime.add_message(channel, sender=chime.user_arn("someone-else"))
            ),
            "chime missing": ChimeHandle(channel, "no-such-message"),
        }
        yield setup


def _providers(setup: Emulators) -> tuple[SendblueProvider, ChimeProvider]:
    sendblue = SendblueProvider(
        SENDBLUE_KEY, SENDBLUE_SECRET, base_url=setup.sendblue.base_url, retry=FAST, timeout=0.5
    )
    chime = setup.chime.provider(bearer=setup.bearer, retry=FAST, read_timeout=0.5)
    return sendblue, chime


def _wrong_providers(setup: Emulators) -> tuple[SendblueProvider, ChimeProvider]:
    sendblue = SendblueProvider(
        SENDBLUE_KEY, WRONG_SENDBLUE_SECRET, base_url=setup.sendblue.base_url, retry=FAST
    )
    session = boto3.session.Session(
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=WRONG_AWS_SECRET,
        region_name=setup.chime.region,
    )
    chime = ChimeProvider(
        session=session,
        region_name=setup.chime.region,
        endpoint_url=setup.chime.base_url,
        bearer=setup.bearer,
        retry=FAST,
    )
    return sendblue, chime


async def test_lookups_errors_and_faults_never_show_a_secret(
    emulators: Emulators, captured: Capture
) -> None:
    seen: list[str] = []
    handles = list(emulators.handles.values())
    async with StatusClient(_providers(emulators)) as client:
        seen.extend([repr(client), *(repr(p) for p in client.providers.values())])
        # Successes, not found, forbidden: one slot each, and the resend decisions' reasons.
        outcomes = await client.get_statuses(handles)
        decisions = await client.resend_decisions(handles, refresh=True)
        # A wait that runs out carries its last result and the last error.
        emulators.sendblue.inject(Fault.SERVER_ERROR_503, times=None)
        with pytest.raises(StatusWaitTimeout) as waited:
            await client.wait_for_final(
                emulators.handles["chime pending"], timeout=0.3, poll_interval=0.05
            )
        with pytest.raises(MsgStatusError) as down:
            await client.get_status(emulators.handles["sendblue missing"])
        emulators.sendblue.clear_faults()
        # Every fault but the 10 MB body (tests/test_faults.py has it; here botocore would log
        # it at DEBUG, and scanning megabytes of padding for secrets costs seconds, proves nothing).
        faults = [fault for fault in Fault if fault is not Fault.HUGE_BODY]
        for emulator in (emulators.sendblue, emulators.chime):
            emulator.stall_seconds = 1.0
            emulator.set_random_faults(0.5, faults, seed=3)
        faulted = await client.get_statuses(handles * 30, refresh=True)
        for emulator in (emulators.sendblue, emulators.chime):
            emulator.clear_faults()
    # A client of the caller's goes through httpx's send(), which logs each request (the
    # provider's own client sends straight to msgstatus's pool, and neither logs).
    async with (
        httpx.AsyncClient() as http_client,
        SendblueProvider(
            SENDBLUE_KEY,
            SENDBLUE_SECRET,
            base_url=emulators.sendblue.base_url,
            retry=FAST,
            http_client=http_client,
        ) as borrowed,
    ):
        for key in ("sendblue ok", "sendblue echo"):
            outcomes.append(await borrowed.get_status(emulators.handles[key]))
    errors = [o for o in [*outcomes, *faulted] if isinstance(o, MsgStatusError)]
    errors += [waited.value, down.value]
    assert {type(e).__name__ for e in errors} >= {
        "MessageNotFoundError",
        "PermissionDeniedError",
        "ProviderUnavailableError",
        "ProviderResponseError",
        "StatusWaitTimeout",
    }
    for error in errors:
        seen.extend(exception_texts(error))
    for outcome in [*outcomes, *faulted, *decisions]:
        seen.extend([repr(outcome), str(outcome)])
    for outcome in outcomes + faulted:
        if not isinstance(outcome, MsgStatusError):
            seen.append(outcome.model_dump_json())
    assert_no_secret(seen)
    assert any("echo [redacted]" in text for text in seen)  # the echo came back, scrubbed
    # The libraries underneath did log at DEBUG, so the capture saw what a debug log would show.
    assert {"msgstatus.client", "httpx", "botocore.auth"} <= captured.names
    assert any("CanonicalRequest" in text or "StringToSign" in text for text in captured.texts)
    assert_no_secret(captured.texts)


async def test_rejected_credentials_never_show_a_secret(
    emulators: Emulators, captured: Capture
) -> None:
    seen: list[str] = []
    handles = list(emulators.handles.values())
    async with StatusClient(_wrong_providers(emulators)) as client:
        seen.extend(repr(p) for p in client.providers.values())
        outcomes = await client.get_statuses(handles)
    assert {type(o).__name__ for o in outcomes} == {"AuthenticationError"}
    for outcome in outcomes:
        assert isinstance(outcome, MsgStatusError)
        seen.extend(exception_texts(outcome))
    assert_no_secret(seen)
    assert_no_secret(captured.texts)


def test_sync_client_and_bad_configuration_never_show_a_secret(
    emulators: Emulators, captured: Capture
) -> None:
    seen: list[str] = []
    with SyncStatusClient(_providers(emulators)) as client:
        seen.append(repr(client))
        for handle in emulators.handles.values():
            try:
                seen.append(repr(client.get_status(handle)))
            except MsgStatusError as exc:
                seen.extend(exception_texts(exc))
    # Configuration the provider refuses names the problem, never the value.
    for key, secret, base_url in (
        (SENDBLUE_KEY, SENDBLUE_SECRET + "\n", "https://api.example"),
        (SENDBLUE_KEY, SENDBLUE_SECRET, f"http://user:{SENDBLUE_SECRET}@api.example"),
        (SENDBLUE_KEY, SENDBLUE_SECRET, "http://api.example"),
    ):
        with pytest.raises((MsgStatusError, ValueError)) as refused:
            SendblueProvider(key, secret, base_url=base_url)
        seen.extend(exception_texts(refused.value))
    assert_no_secret(seen)
    assert_no_secret(captured.texts)


# -- the command -------------------------------------------------------------------------------

# The command with every logger at DEBUG (its own --debug turns on msgstatus' loggers only).
_ALL_DEBUG = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from msgstatus._cli import main; sys.exit(main())"
)


def _env(setup: Emulators, **overrides: str) -> dict[str, str]:
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
        SENDBLUE_API_KEY=SENDBLUE_KEY,
        SENDBLUE_API_SECRET=SENDBLUE_SECRET,
        SENDBLUE_BASE_URL=setup.sendblue.base_url,
        AWS_ACCESS_KEY_ID=AWS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWS_REGION=setup.chime.region,
        AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING=setup.chime.base_url,
        MSGSTATUS_CHIME_BEARER=setup.bearer,
    )
    env.update(overrides)
    return env


def _run(
    command: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [["-m", "msgstatus", "--debug"], ["-c", _ALL_DEBUG, "--debug"]],
    ids=["msgstatus-debug", "every-logger-debug"],
)
def test_the_command_never_prints_a_secret(emulators: Emulators, command: list[str]) -> None:
    handles = [str(handle) for handle in emulators.handles.values()]
    runs = [
        # Successes, not found, forbidden, the echo; table and JSON.
        _run([*command, "get", *handles], _env(emulators)),
        _run([*command, "get", "--json", *handles], _env(emulators)),
        _run([*command, "check", "-"], _env(emulators), stdin="\n".join(handles)),
        # Both secrets wrong: authentication errors with tracebacks.
        _run(
            [*command, "get", *handles],
            _env(
                emulators,
                SENDBLUE_API_SECRET=WRONG_SENDBLUE_SECRET,
                AWS_SECRET_ACCESS_KEY=WRONG_AWS_SECRET,
            ),
        ),
        # A configuration the provider refuses.
        _run([*command, "get", *handles], _env(emulators, SENDBLUE_BASE_URL="http://api.example")),
    ]
    emulators.sendblue.inject(Fault.SERVER_ERROR_503, times=None)
    emulators.chime.inject(Fault.DROP, times=None)
    runs.append(_run([*command, "get", *handles], _env(emulators)))
    assert [run.returncode for run in runs] == [1, 1, 0, 1, 2, 1]
    assert "DELIVERED" in runs[0].stdout
    assert "AuthenticationError" in runs[3].stderr
    assert "Traceback" in runs[3].stderr  # --debug printed tracebacks: they were checked too
    if command[0] == "-c":
        assert "botocore" in runs[0].stderr  # the libraries' DEBUG lines were printed
    for run in runs:
        assert_no_secret([run.stdout, run.stderr])
