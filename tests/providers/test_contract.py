"""Both built-in providers run the provider contract suite (msgstatus.testing.contract) against
their emulators, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from msgstatus import (
    ChimeHandle,
    MessageStatus,
    MessageStatusProvider,
    MsgStatusError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryPolicy,
)
from msgstatus._client import Handle
from msgstatus.testing import ChimeEmulator, Fault, SendblueEmulator
from msgstatus.testing.contract import *  # noqa: F403
from msgstatus.testing.contract import ProviderContract

S = MessageStatus

# Written out here, not read from the provider modules: a table copied from the code under test
# cannot catch its mistakes.
SENDBLUE_EXPECTED = {
    "QUEUED": (S.PENDING, False),
    "REGISTERED": (S.PENDING, False),
    "PENDING": (S.PENDING, False),
    "ACCEPTED": (S.PENDING, False),
    "SENT": (S.SENT, False),
    "SUCCESS": (S.SENT, False),
    "DELIVERED": (S.DELIVERED, True),
    "RECEIVED": (S.DELIVERED, True),
    "READ": (S.READ, True),
    "ERROR": (S.FAILED, True),
    "DECLINED": (S.DENIED, True),
    " delivered ": (S.DELIVERED, True),
}
CHIME_EXPECTED = {
    "PENDING": (S.PENDING, False),
    "SENT": (S.SENT, True),
    "FAILED": (S.FAILED, True),
    "sent": (S.SENT, True),
}
FAULTS: Mapping[Fault, type[MsgStatusError]] = {
    Fault.RATE_LIMIT: RateLimitedError,
    Fault.RATE_LIMIT_HTTP_DATE: RateLimitedError,
    Fault.SERVER_ERROR_500: ProviderUnavailableError,
    Fault.SERVER_ERROR_502: ProviderUnavailableError,
    Fault.SERVER_ERROR_503: ProviderUnavailableError,
    Fault.SERVER_ERROR_504: ProviderUnavailableError,
    Fault.DROP: ProviderUnavailableError,
    Fault.TRUNCATED: ProviderUnavailableError,
    Fault.NOT_JSON: ProviderResponseError,
    Fault.WRONG_SHAPE: ProviderResponseError,
}
RETRIED = [Fault.RATE_LIMIT, Fault.SERVER_ERROR_503, Fault.DROP]
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/app/channel/contract"
SENDER = "arn:aws:chime:us-east-1:111122223333:app-instance/app/user/sender"


@dataclass
class _EmulatorContract:
    emulator: SendblueEmulator | ChimeEmulator
    name: str
    expected: Mapping[str, tuple[MessageStatus, bool]]
    bad_handles: Sequence[object]
    secrets: Sequence[str]
    faults: Mapping[Fault, type[MsgStatusError]] = field(default_factory=lambda: FAULTS)
    retried_faults: Sequence[Fault] = field(default_factory=lambda: RETRIED)

    def inject(self, fault: Fault, *, times: int | None) -> None:
        self.emulator.inject(fault, times=times)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    def requests(self) -> int:
        return self.emulator.stats.requests


class _SendblueContract(_EmulatorContract):
    emulator: SendblueEmulator

    def provider(self, *, retry: RetryPolicy) -> MessageStatusProvider:
        return self.emulator.provider(retry=retry)

    def add_message(self, raw_status: str) -> Handle:
        return self.emulator.add_message(status=raw_status)


class _ChimeContract(_EmulatorContract):
    emulator: ChimeEmulator

    def provider(self, *, retry: RetryPolicy) -> MessageStatusProvider:
        return self.emulator.provider(retry=retry)

    def add_message(self, raw_status: str) -> Handle:
        message_id = self.emulator.add_message(CHANNEL, sender=SENDER, status=raw_status)
        return ChimeHandle(CHANNEL, message_id, bearer=SENDER)


@pytest.fixture(params=["sendblue", "chime"])
def provider_contract(request: pytest.FixtureRequest) -> Iterator[ProviderContract]:
    if request.param == "sendblue":
        with SendblueEmulator(api_secret="contract-secret-7f3a") as sendblue:
            yield _SendblueContract(
                sendblue,
                "sendblue",
                SENDBLUE_EXPECTED,
                ["", " padded", "sendblue:", "sendblue:a b", 42, ChimeHandle(CHANNEL, "m1")],
                ["contract-secret-7f3a"],
            )
    else:
        with ChimeEmulator(secret_access_key="contract-aws-secret-9c2e") as chime:
            yield _ChimeContract(
                chime,
                "chime",
                CHIME_EXPECTED,
                [
                    "",
                    "chime:not-an-arn;message=m1",
                    f"chime:{CHANNEL};message=bad id",
                    "sendblue:abc",
                    42,
                    ChimeHandle(CHANNEL, "m1"),  # no bearer, and the provider has no default
                ],
                ["contract-aws-secret-9c2e"],
            )
