"""``msgstatus emulate``: both emulators on loopback with seeded messages, until interrupted.

The first five minutes of msgstatus without any account: one terminal serves, another runs
``msgstatus get``, ``check`` and ``watch`` (or the library's ``from_env()`` providers) with the
export lines printed here. Uses only public names.
"""

from __future__ import annotations

import csv
import shlex
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from msgstatus import ChimeHandle
from msgstatus.testing import ChimeEmulator, ChimeState, SendblueEmulator, SendblueState

__all__ = ["SEEDS", "Seed", "exports", "run_emulate"]

#: Seconds between the steps of the seeded lifecycles that still move: slow enough to watch.
STEP = 20.0
#: Seeded messages shown on the terminal; the rest are counted (and written by --write-handles).
_SHOWN = 24


@dataclass(frozen=True)
class Seed:
    """One seeded lifecycle: its provider, a name, and how to add a message in it."""

    provider: str
    name: str
    add: Callable[[SendblueEmulator, ChimeEmulator, str], str]


def _sendblue(
    status: str | SendblueState | None = None,
    steps: Sequence[tuple[float, str | SendblueState]] | None = None,
) -> Callable[[SendblueEmulator, ChimeEmulator, str], str]:
    def add(sendblue: SendblueEmulator, _chime: ChimeEmulator, _bearer: str) -> str:
        return sendblue.add_message(status=status, steps=steps)

    return add


def _chime(
    status: str | ChimeState | None = None,
    steps: Sequence[tuple[float, str | ChimeState]] | None = None,
) -> Callable[[SendblueEmulator, ChimeEmulator, str], str]:
    def add(_sendblue: SendblueEmulator, chime: ChimeEmulator, bearer: str) -> str:
        channel = chime.channel_arn("emulate")
        message_id = chime.add_message(channel, sender=bearer, status=status, steps=steps)
        # No bearer in the handle: MSGSTATUS_CHIME_BEARER (printed below) supplies it.
        return str(ChimeHandle(channel, message_id))

    return add


#: The lifecycles ``msgstatus emulate`` seeds, one message each by default.
SEEDS: tuple[Seed, ...] = (
    Seed("sendblue", "delivered (final: SKIP)", _sendblue("DELIVERED")),
    Seed("sendblue", "read (final: SKIP)", _sendblue("READ")),
    Seed("sendblue", "sent, delivery not confirmed yet (WAIT)", _sendblue("SENT")),
    Seed(
        "sendblue",
        f"queued -> sent -> delivered, {STEP:g} s apart (watch it)",
        _sendblue(steps=[(0, "QUEUED"), (STEP, "SENT"), (2 * STEP, "DELIVERED")]),
    ),
    Seed(
        "sendblue",
        "failed at the carrier (RESEND)",
        _sendblue(SendblueState("ERROR", 4001, None, "the carrier rejected the message")),
    ),
    Seed(
        "sendblue",
        "declined: the recipient opted out (BLOCKED)",
        _sendblue(SendblueState("DECLINED", 4002, "OPTED_OUT", "the recipient opted out")),
    ),
    Seed("sendblue", "received: an inbound message (SKIP)", _sendblue("RECEIVED")),
    Seed("chime", "sent (final: SKIP)", _chime("SENT")),
    Seed(
        "chime",
        f"pending in a channel flow -> sent after {STEP:g} s (watch it)",
        _chime(steps=[(0, "PENDING"), (STEP, "SENT")]),
    ),
    Seed(
        "chime",
        f"pending -> denied by the channel flow after {STEP:g} s (BLOCKED)",
        _chime(steps=[(0, "PENDING"), (STEP, ChimeState("DENIED", "blocked by the flow"))]),
    ),
    Seed(
        "chime",
        "failed in the channel flow (RESEND)",
        _chime(ChimeState("FAILED", "the processor failed")),
    ),
)


def exports(sendblue: SendblueEmulator, chime: ChimeEmulator, bearer: str) -> list[str]:
    """The shell lines that point the CLI and ``from_env()`` providers at the emulators."""
    values = {
        "SENDBLUE_API_KEY": sendblue.api_key,
        "SENDBLUE_API_SECRET": sendblue.api_secret,
        "SENDBLUE_BASE_URL": sendblue.base_url,
        "AWS_ACCESS_KEY_ID": chime.access_key_id,
        "AWS_SECRET_ACCESS_KEY": chime.secret_access_key,
        # Both: botocore reads AWS_DEFAULT_REGION first, and a stale one would sign for the
        # wrong region.
        "AWS_REGION": chime.region,
        "AWS_DEFAULT_REGION": chime.region,
        "AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING": chime.base_url,
        "MSGSTATUS_CHIME_BEARER": bearer,
    }
    lines = ["unset AWS_PROFILE AWS_SESSION_TOKEN"]
    lines.extend(f"export {name}={shlex.quote(value)}" for name, value in values.items())
    return lines


def _seeded(
    sendblue: SendblueEmulator, chime: ChimeEmulator, bearer: str, count: int
) -> Iterator[tuple[str, Seed]]:
    for index in range(count):
        seed = SEEDS[index % len(SEEDS)]
        yield seed.add(sendblue, chime, bearer), seed


def _wait_for_interrupt() -> None:
    # SIGTERM (a process manager, a test) stops as Ctrl-C does.
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        forever = threading.Event()
        while not forever.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_emulate(
    out: TextIO,
    *,
    sendblue_port: int = 0,
    chime_port: int = 0,
    messages: int | None = None,
    handles_file: str | None = None,
    wait: Callable[[], None] = _wait_for_interrupt,
) -> int:
    """Serve both emulators until interrupted; returns the exit code (0 on Ctrl-C)."""
    count = len(SEEDS) if messages is None else messages
    with (
        SendblueEmulator(port=sendblue_port) as sendblue,
        # A denied message stays visible for an hour, so that it can be looked at.
        ChimeEmulator(port=chime_port, denied_retention=3600) as chime,
    ):
        bearer = chime.user_arn("emulate-sender")
        seeded = list(_seeded(sendblue, chime, bearer, count))
        if handles_file is not None:
            with open(handles_file, "w", encoding="utf-8", newline="") as target:
                writer = csv.writer(target)
                writer.writerow(["handle", "lifecycle"])
                writer.writerows((handle, seed.name) for handle, seed in seeded)

        def line(text: str = "") -> None:
            out.write(text + "\n")

        line(f"msgstatus emulate: {len(seeded)} seeded messages on two loopback emulators")
        line(f"  sendblue  {sendblue.base_url}")
        line(f"  chime     {chime.base_url}")
        line()
        line("# In another terminal, paste these lines; the msgstatus command and the library's")
        line("# SendblueProvider.from_env() / ChimeProvider.from_env() read them:")
        for export in exports(sendblue, chime, bearer):
            line(export)
        line()
        line("Seeded messages:")
        for handle, seed in seeded[:_SHOWN]:
            line(f"  {seed.provider:<8}  {seed.name}")
            line(f"            {shlex.quote(handle)}")
        if len(seeded) > _SHOWN:
            line(f"  ... and {len(seeded) - _SHOWN} more")
        line()
        moving = [handle for handle, seed in seeded[: len(SEEDS)] if "watch it" in seed.name]
        first = seeded[0][0]
        line("Then try:")
        line(f"  msgstatus get {shlex.quote(first)}")
        if moving:
            line(f"  msgstatus watch {' '.join(shlex.quote(handle) for handle in moving)}")
        if handles_file is not None:
            line(f"  msgstatus check {shlex.quote(handles_file)}")
        else:
            line("  msgstatus check FILE   (run emulate with --write-handles FILE for one)")
        line()
        line("Serving until interrupted (Ctrl-C).")
        out.flush()
        wait()
    return 0
