"""User code that must type-check under ``mypy --strict`` without annotations or casts
(tests/test_typing.py runs mypy on it; it is not run itself)."""

from __future__ import annotations

from msgstatus import (
    ChimeHandle,
    Handle,
    Outcome,
    SendblueProvider,
    StatusClient,
    SyncStatusClient,
)
from msgstatus.testing import ChimeEmulator, SendblueEmulator


async def batch(sendblue_emulator: SendblueEmulator, chime_emulator: ChimeEmulator) -> None:
    # A list of built-in providers needs no annotation.
    providers = [sendblue_emulator.provider(), chime_emulator.provider()]
    async with StatusClient(providers) as client:
        handles = [ChimeHandle("arn:aws:chime:us-east-1:1:app-instance/a/channel/b", "m1")]
        outcomes: list[Outcome] = await client.get_statuses(handles)
        async with client.iter_statuses(handles) as results:
            async for handle, outcome in results:
                # The caller's own handle type comes back.
                print(handle.message_id, outcome)
        mixed: list[Handle] = ["sendblue:x", *handles]
        for decision in await client.resend_decisions(mixed):
            print(decision.action, decision.error_type, decision.not_before, outcomes)


def blocking(sendblue_emulator: SendblueEmulator) -> None:
    with SyncStatusClient([SendblueProvider.from_env()]) as client:
        for handle, outcome in client.iter_statuses(["sendblue:a", "sendblue:b"]):
            print(handle.upper(), outcome)
