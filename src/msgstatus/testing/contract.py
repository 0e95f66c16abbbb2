"""The provider contract suite: the checks every :class:`~msgstatus.MessageStatusProvider` must
pass, ours or yours, run against the provider's own fake or emulator, on asyncio and trio.

Use it from a test module::

    # the tests and the anyio_backend fixture:
    from msgstatus.testing.contract import *  # noqa: F403

    @pytest.fixture
    def provider_contract() -> Iterator[ProviderContract]:
        with MyFake() as fake:
            yield MyContract(fake)

``provider_contract`` yields an object with the :class:`ProviderContract` attributes: how to
build a provider pointed at the fake, how to script a message's raw status, which faults the
fake can inject and what each must raise, the expected mapping rows (write them out yourself:
a table copied from the code under test cannot catch its mistakes), the handles that must be
refused, and the secrets that must never show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import pytest

from msgstatus._client import Handle
from msgstatus._providers.base import MessageStatusProvider
from msgstatus._retry import RetryPolicy
from msgstatus._status import MessageStatus, StatusResult
from msgstatus.errors import HandleError, MsgStatusError
from msgstatus.testing._server import Fault

__all__ = [
    "ProviderContract",
    "anyio_backend",
    "test_contract_bad_handles_make_no_request",
    "test_contract_faults_raise_typed_errors",
    "test_contract_lookup_after_close_raises",
    "test_contract_mapping_rows",
    "test_contract_retries_stay_within_the_policy",
    "test_contract_secrets_never_show",
    "test_contract_unknown_values_are_unknown_and_logged_once",
]

#: No waiting between retries: the suite counts attempts, not seconds.
NO_WAIT = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)


class ProviderContract(Protocol):
    """What a provider's test module gives the contract suite."""

    #: The provider's name (its handle prefix).
    name: str
    #: Raw status -> (normalized status, is_final), written out independently of the code.
    expected: Mapping[str, tuple[MessageStatus, bool]]
    #: Faults the fake can inject, and the error class each must end in after retries.
    faults: Mapping[Fault, type[MsgStatusError]]
    #: Faults that are retried (a subset of ``faults``), e.g. rate limits and 5xx.
    retried_faults: Sequence[Fault]
    #: Handles the provider must refuse before any request.
    bad_handles: Sequence[object]
    #: Strings that must never appear in a repr, an error, a chained cause, a result or a log.
    secrets: Sequence[str]

    def provider(self, *, retry: RetryPolicy) -> MessageStatusProvider:
        """A new provider pointed at the fake."""
        ...

    def add_message(self, raw_status: str) -> Handle:
        """Script a message whose lookups answer ``raw_status``; return its handle."""
        ...

    def inject(self, fault: Fault, *, times: int | None) -> None:
        """Answer the next ``times`` requests (None: all) with ``fault``."""
        ...

    def clear_faults(self) -> None:
        """Stop injecting faults."""
        ...

    def requests(self) -> int:
        """How many requests the fake has received so far."""
        ...


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The contract holds on both event loops anyio supports."""
    return str(request.param)


def _texts(error: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(vars(current)) if hasattr(current, "__dict__") else ""
        current = current.__cause__ or current.__context__


@pytest.mark.anyio
async def test_contract_mapping_rows(provider_contract: ProviderContract) -> None:
    """Every raw status maps to its expected status and finality, raw value kept exactly."""
    handles = {raw: provider_contract.add_message(raw) for raw in provider_contract.expected}
    provider = provider_contract.provider(retry=NO_WAIT)
    try:
        for raw, (status, final) in provider_contract.expected.items():
            result = await provider.get_status(handles[raw])
            assert isinstance(result, StatusResult)
            assert result.provider == provider_contract.name
            assert result.handle.startswith(f"{provider_contract.name}:")
            assert (result.status, result.is_final) == (status, final), raw
            assert result.provider_status == raw
    finally:
        await provider.aclose()


@pytest.mark.anyio
async def test_contract_unknown_values_are_unknown_and_logged_once(
    provider_contract: ProviderContract, caplog: pytest.LogCaptureFixture
) -> None:
    """A value no table knows is UNKNOWN (not final, never raised) and warned about once."""
    raw = "NEVER-SEEN-BEFORE-4711"
    handle = provider_contract.add_message(raw)
    provider = provider_contract.provider(retry=NO_WAIT)
    try:
        with caplog.at_level(logging.WARNING):
            results = [await provider.get_status(handle) for _ in range(3)]
    finally:
        await provider.aclose()
    assert all(r.status is MessageStatus.UNKNOWN and not r.is_final for r in results)
    assert all(r.provider_status == raw for r in results)
    assert len([r for r in caplog.records if raw in r.getMessage()]) == 1


@pytest.mark.anyio
async def test_contract_bad_handles_make_no_request(provider_contract: ProviderContract) -> None:
    """A malformed handle is a HandleError before any request reaches the fake."""
    provider = provider_contract.provider(retry=NO_WAIT)
    try:
        before = provider_contract.requests()
        for handle in provider_contract.bad_handles:
            with pytest.raises(HandleError):
                await provider.get_status(handle)  # type: ignore[arg-type]
        assert provider_contract.requests() == before
    finally:
        await provider.aclose()


@pytest.mark.anyio
async def test_contract_faults_raise_typed_errors(provider_contract: ProviderContract) -> None:
    """Every fault the fake injects ends in its documented MsgStatusError, nothing else."""
    handle = provider_contract.add_message(next(iter(provider_contract.expected)))
    provider = provider_contract.provider(retry=RetryPolicy(max_attempts=1))
    try:
        for fault, error in provider_contract.faults.items():
            provider_contract.inject(fault, times=None)
            with pytest.raises(MsgStatusError) as caught:
                await provider.get_status(handle)
            provider_contract.clear_faults()
            assert isinstance(caught.value, error), (fault, caught.value)
            assert caught.value.provider == provider_contract.name
    finally:
        await provider.aclose()


@pytest.mark.anyio
async def test_contract_retries_stay_within_the_policy(
    provider_contract: ProviderContract,
) -> None:
    """Retried faults are retried up to the policy's attempts, exactly, and then raised."""
    raw, (status, _) = next(iter(provider_contract.expected.items()))
    handle = provider_contract.add_message(raw)
    provider = provider_contract.provider(retry=NO_WAIT)
    try:
        for fault in provider_contract.retried_faults:
            provider_contract.inject(fault, times=NO_WAIT.max_attempts - 1)
            before = provider_contract.requests()
            assert (await provider.get_status(handle)).status is status
            assert provider_contract.requests() - before == NO_WAIT.max_attempts
            provider_contract.inject(fault, times=None)
            before = provider_contract.requests()
            with pytest.raises(provider_contract.faults[fault]):
                await provider.get_status(handle)
            assert provider_contract.requests() - before == NO_WAIT.max_attempts
            provider_contract.clear_faults()
    finally:
        await provider.aclose()


@pytest.mark.anyio
async def test_contract_lookup_after_close_raises(provider_contract: ProviderContract) -> None:
    """After aclose() a lookup raises RuntimeError and sends nothing; aclose() again is a no-op."""
    handle = provider_contract.add_message(next(iter(provider_contract.expected)))
    provider = provider_contract.provider(retry=NO_WAIT)
    await provider.get_status(handle)
    await provider.aclose()
    await provider.aclose()
    before = provider_contract.requests()
    with pytest.raises(RuntimeError, match="closed"):
        await provider.get_status(handle)
    assert provider_contract.requests() == before


@pytest.mark.anyio
async def test_contract_secrets_never_show(
    provider_contract: ProviderContract, caplog: pytest.LogCaptureFixture
) -> None:
    """No secret in the provider's repr, any error (and its causes), any result, or any log."""
    handle = provider_contract.add_message(next(iter(provider_contract.expected)))
    provider = provider_contract.provider(retry=RetryPolicy(max_attempts=2, max_backoff=0.0))
    shown: list[str] = [repr(provider), str(provider)]
    try:
        with caplog.at_level(logging.DEBUG):
            shown.append((await provider.get_status(handle)).model_dump_json())
            for fault in provider_contract.faults:
                provider_contract.inject(fault, times=None)
                try:
                    await provider.get_status(handle)
                except MsgStatusError as exc:
                    shown.extend(_texts(exc))
                provider_contract.clear_faults()
    finally:
        await provider.aclose()
    shown.extend(record.getMessage() for record in caplog.records)
    shown.extend(str(record.exc_info) for record in caplog.records if record.exc_info)
    for secret in provider_contract.secrets:
        assert not any(secret in text for text in shown), secret
