"""Push end to end, on SQLite and PostgreSQL.

Sendblue: the official SDK sends to the emulator with a ``status_callback`` pointing at a real
``msgstatus listen`` process (uvicorn); the emulator POSTs each transition there and the ledger
reaches DELIVERED with no status lookup made. Chime: a message the channel flow denies is
NotFound to every poll (UNKNOWN) and ends BLOCKED through its websocket event.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import pytest

from msgstatus import (
    ChimeProvider,
    Ledger,
    MessageNotFoundError,
    MessageStatus,
    ResendAction,
    SendClaim,
    StatusClient,
    StatusResult,
)
from msgstatus.testing import ChimeEmulator, ManualClock, SendblueEmulator

SRC = Path(__file__).resolve().parents[2] / "src"
SECRET = "listen-secret-0123456789"


class Listen:
    """A ``msgstatus listen`` process and the lines it printed."""

    def __init__(self, ledger_url: str, cwd: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
        env["MSGSTATUS_SENDBLUE_WEBHOOK_SECRET"] = SECRET
        self.process = subprocess.Popen(
            [sys.executable, "-m", "msgstatus", "listen", "--ledger", ledger_url, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        first = self.next_line()
        assert "receiving Sendblue webhooks on http://127.0.0.1:" in first, first
        self.url = first.rsplit(" ", 1)[1].strip()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def next_line(self, seconds: float = 30.0) -> str:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(f"msgstatus listen printed nothing; stderr: {err}") from None
        self.seen.append(line)
        return line

    def wait_for_line(self, predicate: Callable[[str], bool], seconds: float = 30.0) -> str:
        deadline = time.monotonic() + seconds
        while True:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            if predicate(line):
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture
def listen(ledger_url: str, tmp_path: Path) -> Iterator[Listen]:
    server = Listen(ledger_url, tmp_path)
    try:
        yield server
    finally:
        server.stop()


async def wait_for_action(ledger: Ledger, key: str, action: ResendAction) -> None:
    # Bounded: the pushes travel through two real servers in other threads and processes.
    with anyio.fail_after(30):
        # Another process writes the ledger: there is no event to wait on, so poll it.
        while (await ledger.decision(key)).action is not action:  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_sendblue_pushes_through_listen_reach_delivered_with_no_poll(
    listen: Listen, ledger: Ledger
) -> None:
    import sendblue_api

    clock = ManualClock()
    async with SendblueEmulator() as emulator:
        emulator.clock = clock
        emulator.signing_secret = SECRET
        claim = await ledger.claim("welcome-sms")
        assert isinstance(claim, SendClaim)

        def send() -> str:
            with sendblue_api.SendblueAPI(
                api_key=emulator.api_key,
                api_secret=emulator.api_secret,
                base_url=emulator.base_url,
                max_retries=0,
            ) as sdk:
                sent = sdk.messages.send(
                    number="+15551234567",
                    content="Welcome!",
                    status_callback=f"{listen.url}/sendblue",
                )
            assert sent.message_handle is not None
            return sent.message_handle

        handle = await anyio.to_thread.run_sync(send)
        await claim.sent(f"sendblue:{handle}")
        clock.advance(0.5)
        await wait_for_action(ledger, "welcome-sms", ResendAction.WAIT)
        clock.advance(0.5)
        await wait_for_action(ledger, "welcome-sms", ResendAction.SKIP)

        entry = await ledger.entry("welcome-sms")
        assert entry is not None
        observation = entry.attempts[0].observation
        assert observation is not None
        assert observation.status is MessageStatus.DELIVERED
        assert observation.handle == f"sendblue:{handle}"
        decision = await ledger.decision("welcome-sms")
        assert decision.action is ResendAction.SKIP
        # Learned from pushes alone: the emulator saw one send and not a single status lookup.
        paths = [request.path for request in emulator.requests]
        assert paths.count("/api/send-message") == 1
        assert "/api/status" not in paths
        # The ledger may be written before the emulator has read listen's 200: wait for the log.
        with anyio.fail_after(30):
            while len(emulator.callback_log) < 3:  # noqa: ASYNC110 - another thread's list
                await anyio.sleep(0.02)
        assert [a.status for a in emulator.callback_log] == ["QUEUED", "SENT", "DELIVERED"]
        assert all(a.http_status == 200 for a in emulator.callback_log)
    listen.wait_for_line(lambda line: f"DELIVERED sendblue:{handle} recorded" in line)
    assert listen.stop() == 0


@pytest.mark.anyio
async def test_listen_refuses_a_wrong_secret_and_writes_nothing(
    listen: Listen, ledger: Ledger
) -> None:
    claim = await ledger.claim("k")
    assert isinstance(claim, SendClaim)
    await claim.sent("sendblue:abc")
    body = {"message_handle": "abc", "status": "DELIVERED"}
    async with httpx.AsyncClient(trust_env=False) as http:
        wrong = await http.post(listen.url, json=body, headers={"sb-signing-secret": "nope"})
        garbage = await http.post(
            listen.url,
            content=b"{" * 70_000,
            headers={"sb-signing-secret": SECRET, "content-type": "application/json"},
        )
    assert (wrong.status_code, wrong.content) == (401, b"")
    assert garbage.status_code == 400
    entry = await ledger.entry("k")
    assert entry is not None
    assert entry.attempts[0].observation is None
    assert listen.stop() == 0


@pytest.mark.anyio
async def test_a_chime_message_denied_by_the_flow_ends_blocked_through_its_event(
    ledger: Ledger,
) -> None:
    clock = ManualClock()
    async with ChimeEmulator() as emulator:
        emulator.clock = clock
        channel, sender = emulator.channel_arn("moderated"), emulator.user_arn()
        emulator.set_channel_flow(channel, [(0.0, "PENDING"), (1.0, "DENIED")])
        feed = emulator.event_feed(sender)
        provider: ChimeProvider = emulator.provider(bearer=sender)
        boto = emulator.client()
        try:
            async with StatusClient([provider], ledger=ledger) as client:

                async def send(token: str) -> StatusResult:
                    response: dict[str, Any] = await anyio.to_thread.run_sync(
                        lambda: boto.send_channel_message(
                            ChannelArn=channel,
                            Content="something the processor refuses",
                            Type="STANDARD",
                            Persistence="PERSISTENT",
                            ClientRequestToken=token,
                            ChimeBearer=sender,
                        )
                    )
                    return provider.result_from_payload(response, bearer=sender)

                outcome = await client.send_once("moderated-post", send)
                assert outcome.sent
                assert outcome.handle is not None
                clock.advance(1.0)

                # Polling alone: Chime stores no denied message, so every lookup is NotFound.
                await client.reconcile()
                polled = await client.resend_decision(outcome.handle, refresh=True)
                assert polled.action is ResendAction.UNKNOWN
                assert isinstance(polled.error, MessageNotFoundError)
                assert (await ledger.decision("moderated-post")).action is ResendAction.UNKNOWN

                # The sender's websocket saw the denial: that event ends it BLOCKED.
                events = feed.pending()
                kinds = [e["Headers"]["x-amz-chime-event-type"] for e in events]
                assert kinds == ["PENDING_CREATE_CHANNEL_MESSAGE", "DENIED_CREATE_CHANNEL_MESSAGE"]
                for event in events:
                    result = provider.result_from_event(event, bearer=sender)
                    assert result is not None
                    assert result.handle == outcome.handle
                    await client.observe(result)
                decision = await ledger.decision("moderated-post")
                assert decision.action is ResendAction.BLOCKED
                entry = await ledger.entry("moderated-post")
                assert entry is not None
                observation = entry.attempts[0].observation
                assert observation is not None
                assert observation.status is MessageStatus.DENIED
                # The client's cache holds the denial too: a lookup is not even made.
                before = emulator.stats.requests
                cached = await client.get_status(outcome.handle)
                assert cached.status is MessageStatus.DENIED
                assert emulator.stats.requests == before
        finally:
            boto.close()
