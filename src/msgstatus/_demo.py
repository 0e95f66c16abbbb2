"""``msgstatus demo``: the whole library at work against the loopback emulators.

This module uses only public names (``msgstatus``, ``msgstatus.testing``, boto3, httpx) on
purpose: it is the example to copy. No credentials and no network: both providers are stood in
for by emulators on 127.0.0.1 that speak the real wire formats.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread
import boto3
import httpx

from msgstatus import (
    ChimeProvider,
    SendblueProvider,
    StatusClient,
    StatusResult,
)
from msgstatus.testing import ChimeEmulator, ChimeState, SendblueEmulator, SendblueState

__all__ = ["run_demo"]

# Each scripted step is this many seconds after the previous one: slow enough to watch.
STEP = 0.8
POLL = 0.2

SENDBLUE_SCRIPTS: dict[str, tuple[str, list[tuple[float, str | SendblueState]]]] = {
    "+15550100001": (
        "delivered, then read",
        [(0, "QUEUED"), (STEP, "SENT"), (2 * STEP, "DELIVERED"), (3 * STEP, "READ")],
    ),
    "+15550100002": (
        "fails at the carrier",
        [
            (0, "QUEUED"),
            (STEP, "SENT"),
            (2 * STEP, SendblueState("ERROR", 4001, None, "the carrier rejected the message")),
        ],
    ),
    "+15550100003": (
        "declined by a rule",
        [
            (0, "QUEUED"),
            (STEP, SendblueState("DECLINED", 4002, "OPTED_OUT", "the recipient opted out")),
        ],
    ),
}


def _channel_flow(content: str) -> list[tuple[float, str | ChimeState]]:
    """The emulated channel-flow processor: it denies messages that mention a password."""
    if "password" in content:
        return [(0, "PENDING"), (1.5 * STEP, ChimeState("DENIED", "blocked by the channel flow"))]
    return [(0, "PENDING"), (STEP, "SENT")]


def rules_document() -> str:
    """Where an installed msgstatus keeps providers.md (the wheel ships it inside the package);
    in a source checkout, the repository's copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "providers.md", here.parent.parent / "providers.md"):
        if candidate.is_file():
            return str(candidate)
    return "python -m pydoc msgstatus (providers.md is not installed here)"


def _line(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


async def _send_sendblue(emulator: SendblueEmulator, provider: SendblueProvider) -> list[str]:
    """Send one message per scripted number through Sendblue's send API; return the handles."""
    handles = []
    headers = {"sb-api-key-id": emulator.api_key, "sb-api-secret-key": emulator.api_secret}
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers) as http:
        for number in SENDBLUE_SCRIPTS:
            reply = await http.post(
                "/api/send-message", json={"number": number, "content": "Your code is 123456"}
            )
            reply.raise_for_status()
            # The send response already carries a status: no lookup needed for the first one.
            result = provider.result_from_payload(reply.json())
            handles.append(result.handle)
    return handles


async def _send_chime(emulator: ChimeEmulator, provider: ChimeProvider, bearer: str) -> list[str]:
    """Send two messages through a real boto3 client; the channel flow decides their fate."""
    session = boto3.session.Session(
        aws_access_key_id=emulator.access_key_id,
        aws_secret_access_key=emulator.secret_access_key,
        region_name=emulator.region,
    )
    client = session.client("chime-sdk-messaging", endpoint_url=emulator.base_url)
    channel = emulator.channel_arn("support")
    emulator.set_channel_flow(channel, _channel_flow)
    handles = []
    try:
        for token, content in (("demo-1", "Your order shipped"), ("demo-2", "My password is…")):

            def send(token: str = token, content: str = content) -> dict[str, Any]:
                response: dict[str, Any] = client.send_channel_message(  # type: ignore[assignment]
                    ChannelArn=channel,
                    Content=content,
                    Type="STANDARD",
                    Persistence="PERSISTENT",
                    ClientRequestToken=token,
                    ChimeBearer=bearer,
                )
                return response

            response = await anyio.to_thread.run_sync(send)
            result = provider.result_from_payload(response, bearer=bearer)
            handles.append(result.handle)
    finally:
        client.close()
    return handles


def _describe(result: StatusResult) -> str:
    shown_raw = result.provider_status and result.provider_status != result.status.value
    raw = f" ({result.provider_status})" if shown_raw else ""
    final = ", final" if result.is_final else ""
    detail = f": {result.detail}" if result.detail else ""
    return f"{result.status.value}{raw}{final}{detail}"


def _short(handle: str) -> str:
    return handle if len(handle) <= 44 else f"{handle[:20]}...{handle[-21:]}"


async def _watch(client: StatusClient, names: dict[str, str], out: TextIO, start: float) -> None:
    """Poll every handle until its status is final, printing each change as it happens."""

    async def follow(handle: str) -> None:
        last = ""
        while True:
            result = await client.get_status(handle)
            now = _describe(result)
            if now != last:
                _line(out, f"  {time.monotonic() - start:5.1f}s  {names[handle]:<34} {now}")
                last = now
            if result.is_final:
                return
            await anyio.sleep(POLL)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for handle in names:
                tg.start_soon(follow, handle)


async def run_demo(out: TextIO) -> int:
    """Run the demo, writing to ``out``; returns the exit code."""
    start = time.monotonic()
    async with SendblueEmulator() as sendblue_emu, ChimeEmulator(denied_retention=60) as chime_emu:
        for number, (_, steps) in SENDBLUE_SCRIPTS.items():
            sendblue_emu.script_recipient(number, steps)
        bearer = chime_emu.user_arn("demo-sender")

        # What an app configures in production, pointed at the emulators instead.
        sendblue = SendblueProvider(
            sendblue_emu.api_key, sendblue_emu.api_secret, base_url=sendblue_emu.base_url
        )
        chime = ChimeProvider(
            session=boto3.session.Session(
                aws_access_key_id=chime_emu.access_key_id,
                aws_secret_access_key=chime_emu.secret_access_key,
            ),
            region_name=chime_emu.region,
            endpoint_url=chime_emu.base_url,
            bearer=bearer,
        )
        async with StatusClient([sendblue, chime]) as client:
            _line(out, "msgstatus demo: two providers on loopback emulators, no credentials")
            _line(out, f"  sendblue emulator at {sendblue_emu.base_url}")
            _line(out, f"  chime    emulator at {chime_emu.base_url}")
            _line(out)
            sendblue_handles = await _send_sendblue(sendblue_emu, sendblue)
            chime_handles = await _send_chime(chime_emu, chime, bearer)
            names = {
                handle: f"sendblue {what}"
                for handle, (what, _) in zip(
                    sendblue_handles, SENDBLUE_SCRIPTS.values(), strict=True
                )
            }
            names.update(
                zip(
                    chime_handles,
                    ["chime    passes the channel flow", "chime    denied by flow"],
                    strict=True,
                )
            )
            _line(out, "Sent 5 messages. Handles:")
            for handle, name in names.items():
                _line(out, f"  {name:<34} {_short(handle)}")
            _line(out)

            _line(out, "Watching until every status is final (changes as they happen):")
            await _watch(client, names, out, start)
            _line(out)

            # Sendblue's DELIVERED is final for delivery, but READ may follow: ask once more.
            await anyio.sleep(1.5 * STEP)
            decisions = await client.resend_decisions(list(names), refresh=True)
            _line(out, "May each message be sent again?")
            for handle, decision in zip(names, decisions, strict=True):
                status = _describe(decision.result) if decision.result else "lookup failed"
                _line(out, f"  {names[handle]:<34} {decision.action.value:<8} {status}")
                _line(out, f"  {'':<34} {decision.reason}")
            _line(out)
            _line(out, f"Done in {time.monotonic() - start:.1f}s.")
            _line(out, f"The rules (statuses, resend actions, errors): {rules_document()}")
            _line(out, "Try the command on emulators of your own: msgstatus emulate")
    return 0
