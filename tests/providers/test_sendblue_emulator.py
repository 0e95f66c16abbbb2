"""SendblueProvider against SendblueEmulator over real HTTP: lifecycles, faults, concurrency."""

from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest

from msgstatus import (
    AuthenticationError,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RetryPolicy,
    SendblueProvider,
    StatusClient,
    StatusResult,
)
from msgstatus.testing import Fault, ManualClock, SendblueEmulator, SendblueState

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("reuse_tls_context")]

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture
def clock(sendblue_emulator: SendblueEmulator) -> ManualClock:
    clock = ManualClock()
    sendblue_emulator.clock = clock
    return clock


async def test_lifecycle_queued_sent_delivered_read(
    sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    handle = sendblue_emulator.add_message(
        steps=[(0.0, "QUEUED"), (1.0, "SENT"), (2.0, "DELIVERED"), (5.0, "READ")]
    )
    seen: list[StatusResult] = []
    async with sendblue_emulator.provider(retry=FAST) as provider:
        for now in (1000.0, 1001.0, 1002.5, 1010.0):
            clock.now = now
            seen.append(await provider.get_status(handle))
    assert [r.status for r in seen] == [
        MessageStatus.PENDING,
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
    ]
    assert [r.provider_status for r in seen] == ["QUEUED", "SENT", "DELIVERED", "READ"]
    assert [r.is_final for r in seen] == [False, False, True, True]
    assert all(r.handle == handle for r in seen)
    updated = [r.updated_at for r in seen]
    assert None not in updated
    assert updated == sorted(updated)  # type: ignore[type-var]
    assert seen[-1].raw["message_handle"] == handle.removeprefix("sendblue:")
    assert sendblue_emulator.stats.requests == 4


async def test_lifecycle_runs_in_real_time(sendblue_emulator: SendblueEmulator) -> None:
    # Each answer is checked against the time window of its own request, so that neither a slow
    # machine nor the emulators' latency can make the test fail or check nothing.
    steps = [
        (0.0, MessageStatus.PENDING),
        (0.3, MessageStatus.SENT),
        (0.6, MessageStatus.DELIVERED),
    ]
    before_add = time.monotonic()
    handle = sendblue_emulator.add_message(
        steps=[(0.0, "QUEUED"), (0.3, "SENT"), (0.6, "DELIVERED")]
    )
    after_add = time.monotonic()
    seen: list[MessageStatus] = []
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with anyio.fail_after(30):
            while not seen or seen[-1] is not MessageStatus.DELIVERED:
                asked = time.monotonic()
                status = (await provider.get_status(handle)).status
                possible = _possible(steps, asked - after_add, time.monotonic() - before_add)
                assert status in possible, (status, possible)
                seen.append(status)
                await anyio.sleep(0.01)
    ranks = [status.rank for status in seen]
    assert ranks == sorted(ranks)


def _possible(
    steps: list[tuple[float, MessageStatus]], low: float, high: float
) -> set[MessageStatus]:
    """The states a lifecycle of ``steps`` can show at some elapsed time in ``[low, high]``."""
    return {
        status
        for i, (offset, status) in enumerate(steps)
        if offset <= high and (i + 1 == len(steps) or steps[i + 1][0] > low)
    }


@pytest.mark.parametrize(
    ("state", "status", "detail", "error_code"),
    [
        (
            SendblueState("ERROR", error_code=10001, error_message="Message failed to send"),
            MessageStatus.FAILED,
            "Message failed to send",
            "10001",
        ),
        (
            SendblueState(
                "DECLINED",
                error_code=4002,
                error_key="PRE_REPLY_LIMIT_REACHED",
                error_message="Pre-reply limit reached",
            ),
            MessageStatus.FAILED,
            "Pre-reply limit reached",
            "4002",
        ),
        (
            SendblueState("SENT", error_key="OPTED_OUT"),
            MessageStatus.DENIED,
            "the recipient opted out of messages",
            None,
        ),
    ],
)
async def test_failures_and_declines(
    sendblue_emulator: SendblueEmulator,
    clock: ManualClock,
    state: SendblueState,
    status: MessageStatus,
    detail: str | None,
    error_code: str | None,
) -> None:
    handle = sendblue_emulator.add_message(steps=[(0.0, "QUEUED"), (1.0, state)])
    async with sendblue_emulator.provider(retry=FAST) as provider:
        assert (await provider.get_status(handle)).status is MessageStatus.PENDING
        clock.now += 1
        result = await provider.get_status(handle)
    assert result.status is status
    assert result.is_final
    assert result.provider_status == state.status
    assert result.detail == detail
    assert result.error_code == error_code


async def test_sent_messages_follow_their_recipient_script(
    sendblue_emulator: SendblueEmulator, clock: ManualClock
) -> None:
    sendblue_emulator.script_recipient(
        "+15557654321",
        [(0.0, "QUEUED"), (0.5, SendblueState("DECLINED", error_key="OPTED_OUT"))],
    )
    headers = {"sb-api-key-id": "test-key", "sb-api-secret-key": "test-secret"}
    async with (
        httpx.AsyncClient(base_url=sendblue_emulator.base_url, headers=headers) as http,
        sendblue_emulator.provider(retry=FAST) as provider,
    ):
        sends = [
            await http.post("/api/send-message", json={"number": number, "content": "hi"})
            for number in ("+15557654321", "+15551112222")
        ]
        assert [reply.status_code for reply in sends] == [200, 200]
        opted_out, default = (reply.json() for reply in sends)
        # The send response is a status payload too: normalize it without another request.
        queued = provider.result_from_payload(opted_out)
        assert queued.status is MessageStatus.PENDING
        assert queued.handle == f"sendblue:{opted_out['message_handle']}"
        clock.now += 0.75
        declined = await provider.get_status(opted_out["message_handle"])
        other = await provider.get_status(default["message_handle"])
    assert declined.status is MessageStatus.DENIED
    assert other.status is MessageStatus.SENT  # default: QUEUED, SENT at 0.5 s, DELIVERED at 1 s


async def test_wrong_credentials_make_one_request(sendblue_emulator: SendblueEmulator) -> None:
    handle = sendblue_emulator.add_message()
    provider = SendblueProvider(
        "test-key", "wrong-secret", base_url=sendblue_emulator.base_url, retry=FAST
    )
    async with provider:
        with pytest.raises(AuthenticationError) as caught:
            await provider.get_status(handle)
    assert "wrong-secret" not in "".join(traceback.format_exception(caught.value))
    assert sendblue_emulator.stats.requests == 1


async def test_unknown_handle_makes_one_request(sendblue_emulator: SendblueEmulator) -> None:
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with pytest.raises(MessageNotFoundError) as caught:
            await provider.get_status("sendblue:no-such-message")
    assert caught.value.handle == "sendblue:no-such-message"
    assert sendblue_emulator.stats.requests == 1


@pytest.mark.parametrize(
    "handle", ["", "   ", "a\r\nb", "a\x00b", "a\tb", "x" * 5000, "sendblue:", "sendblue:a\nb"]
)
async def test_bad_handles_never_reach_the_server(
    sendblue_emulator: SendblueEmulator, handle: str
) -> None:
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with pytest.raises(InvalidHandleError):
            await provider.get_status(handle)
    assert sendblue_emulator.stats.requests == 0
    assert len(sendblue_emulator.requests) == 0


PERSISTENT_FAULTS = [
    (Fault.RATE_LIMIT, RateLimitedError, 3),
    (Fault.RATE_LIMIT_HTTP_DATE, RateLimitedError, 3),
    (Fault.SERVER_ERROR_500, ProviderUnavailableError, 3),
    (Fault.SERVER_ERROR_502, ProviderUnavailableError, 3),
    (Fault.SERVER_ERROR_503, ProviderUnavailableError, 3),
    (Fault.SERVER_ERROR_504, ProviderUnavailableError, 3),
    (Fault.DROP, ProviderUnavailableError, 3),
    (Fault.TRUNCATED, ProviderUnavailableError, 3),
    (Fault.NOT_JSON, ProviderResponseError, 1),
    (Fault.WRONG_SHAPE, ProviderResponseError, 1),
    (Fault.HUGE_BODY, ProviderResponseError, 1),
]


@pytest.mark.parametrize(("fault", "error", "requests"), PERSISTENT_FAULTS)
async def test_persistent_faults(
    sendblue_emulator: SendblueEmulator,
    fault: Fault,
    error: type[MsgStatusError],
    requests: int,
) -> None:
    handle = sendblue_emulator.add_message()
    sendblue_emulator.inject(fault, times=None)
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with anyio.fail_after(10), pytest.raises(error) as caught:
            await provider.get_status(handle)
        assert type(caught.value) is error
        assert caught.value.handle == handle
        assert sendblue_emulator.stats.requests == requests
        if isinstance(caught.value, RateLimitedError):
            assert caught.value.retry_after is not None
            assert 0.0 <= caught.value.retry_after <= 2.0
        # Once the fault is gone the same provider (and its pool) works again.
        sendblue_emulator.clear_faults()
        assert (await provider.get_status(handle)).status is MessageStatus.DELIVERED


@pytest.mark.parametrize(
    "fault", [fault for fault, error, _ in PERSISTENT_FAULTS if error.retryable]
)
async def test_one_transient_fault_is_retried_away(
    sendblue_emulator: SendblueEmulator, fault: Fault
) -> None:
    handle = sendblue_emulator.add_message(status="READ")
    sendblue_emulator.inject(fault)
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with anyio.fail_after(10):
            result = await provider.get_status(handle)
    assert result.status is MessageStatus.READ
    assert sendblue_emulator.stats.requests == 2
    assert sendblue_emulator.stats.faults_injected == 1


async def test_both_wrong_shapes_are_response_errors(sendblue_emulator: SendblueEmulator) -> None:
    handle = sendblue_emulator.add_message()
    sendblue_emulator.inject(Fault.WRONG_SHAPE, times=2)
    async with sendblue_emulator.provider(retry=FAST) as provider:
        for expected in ("not an object", "not text"):
            with pytest.raises(ProviderResponseError, match=expected):
                await provider.get_status(handle)


async def test_unknown_status_fault(
    sendblue_emulator: SendblueEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    handle = sendblue_emulator.add_message()
    sendblue_emulator.inject(Fault.UNKNOWN_STATUS, times=2)
    async with sendblue_emulator.provider(retry=FAST) as provider:
        with caplog.at_level(logging.WARNING, logger="msgstatus"):
            first = await provider.get_status(handle)
            await provider.get_status(handle)
    assert first.status is MessageStatus.UNKNOWN
    assert first.provider_status == "TELEPORTED"
    assert not first.is_final
    assert first.handle == handle
    assert sum("TELEPORTED" in record.getMessage() for record in caplog.records) == 1


async def test_timeout_against_a_stalled_server(sendblue_emulator: SendblueEmulator) -> None:
    handle = sendblue_emulator.add_message()
    sendblue_emulator.inject(Fault.STALL, times=None)
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=0.0)
    started = time.monotonic()
    async with sendblue_emulator.provider(timeout=0.2, retry=retry) as provider:
        with anyio.fail_after(5), pytest.raises(ProviderUnavailableError, match="timeout"):
            await provider.get_status(handle)
    assert time.monotonic() - started < 5
    assert sendblue_emulator.stats.requests == 2


async def test_latency_within_the_timeout_is_fine(sendblue_emulator: SendblueEmulator) -> None:
    handle = sendblue_emulator.add_message()
    sendblue_emulator.latency = 0.05
    async with sendblue_emulator.provider(timeout=2.0, retry=FAST) as provider:
        assert (await provider.get_status(handle)).status is MessageStatus.DELIVERED


async def test_a_thousand_lookups_at_concurrency_fifty(sendblue_emulator: SendblueEmulator) -> None:
    # A little latency makes requests overlap, so the bound is really exercised.
    sendblue_emulator.latency = 0.002
    statuses = ["QUEUED", "SENT", "DELIVERED", "READ", "ERROR"]
    handles = [sendblue_emulator.add_message(status=statuses[i % 5]) for i in range(100)]
    results: list[StatusResult] = []
    send, receive = anyio.create_memory_object_stream[str](50)

    async def worker(provider: SendblueProvider) -> None:
        async for handle in receive:
            results.append(await provider.get_status(handle))

    async with sendblue_emulator.provider(retry=FAST) as provider:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(worker, provider)
                async with send:
                    for i in range(1000):
                        await send.send(handles[i % 100])
    assert len(results) == 1000
    assert {r.provider_status for r in results} == set(statuses)
    stats = sendblue_emulator.stats
    assert stats.requests == 1000
    assert 1 < stats.max_in_flight <= 50
    # The server counts a request out just after its reply is written: give it a moment.
    with anyio.fail_after(5):
        while stats.in_flight:  # noqa: ASYNC110 - a counter of the server thread
            await anyio.sleep(0.01)


async def test_no_secret_in_any_log_over_real_http(
    sendblue_emulator: SendblueEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "live-secret-7d1e-do-not-log"
    sendblue_emulator.api_secret = secret
    handle = sendblue_emulator.add_message()
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        async with sendblue_emulator.provider(retry=FAST) as provider:
            await provider.get_status(handle)
            for fault in (Fault.SERVER_ERROR_500, Fault.RATE_LIMIT, Fault.DROP, Fault.NOT_JSON):
                sendblue_emulator.inject(fault, times=None)
                with pytest.raises(MsgStatusError) as caught:
                    await provider.get_status(handle)
                errors.append(caught.value)
                sendblue_emulator.clear_faults()
        sendblue_emulator.api_secret = "rotated"
        # A client of the caller's goes through httpx's send(), which logs each request.
        async with (
            httpx.AsyncClient() as http_client,
            SendblueProvider(
                "test-key",
                secret,
                base_url=sendblue_emulator.base_url,
                retry=FAST,
                http_client=http_client,
            ) as stale,
        ):
            with pytest.raises(AuthenticationError) as caught:
                await stale.get_status(handle)
            errors.append(caught.value)
    loggers = {record.name.split(".")[0] for record in caplog.records}
    # The capture saw both (the provider's own client logs nothing through httpx: its lookups go
    # straight to msgstatus's pool, which logs nothing either).
    assert {"httpx", "msgstatus"} <= loggers
    assert secret not in caplog.text
    for error in errors:
        assert secret not in "".join(traceback.format_exception(error))


async def test_through_the_status_client(sendblue_emulator: SendblueEmulator) -> None:
    delivered = sendblue_emulator.add_message(status="DELIVERED")
    failed = sendblue_emulator.add_message(status=SendblueState("ERROR", error_code=10001))
    async with StatusClient([sendblue_emulator.provider(retry=FAST)]) as client:
        first = await client.get_status(delivered)
        second = await client.get_status(failed)
    assert (first.status, second.status) == (MessageStatus.DELIVERED, MessageStatus.FAILED)
    assert second.error_code == "10001"


async def test_async_context_manager(anyio_backend: Any) -> None:
    async with SendblueEmulator(api_key="k", api_secret="s") as emulator:
        handle = emulator.add_message(status="SENT")
        async with emulator.provider() as provider:
            result = await provider.get_status(handle)
    assert result.status is MessageStatus.SENT
    assert not result.is_final


# -- payloads from the official SDK -----------------------------------------------------------


async def test_result_from_payload_takes_the_official_sdk_response(
    sendblue_emulator: SendblueEmulator,
) -> None:
    import json

    import sendblue_api
    from sendblue_api.types import MessageResponse

    async with sendblue_api.AsyncSendblueAPI(
        api_key=sendblue_emulator.api_key,
        api_secret=sendblue_emulator.api_secret,
        base_url=sendblue_emulator.base_url,
        max_retries=0,
    ) as sdk:
        response = await sdk.messages.send(number="+15551234567", content="Hello")
    assert isinstance(response, MessageResponse)
    dumped = response.model_dump()
    assert any(isinstance(value, datetime) for value in dumped.values())
    async with sendblue_emulator.provider() as provider:
        from_model = provider.result_from_payload(response)  # type: ignore[arg-type]
        from_dump = provider.result_from_payload(dumped)
        looked_up = await provider.get_status(response.message_handle or "")
    assert from_model.handle == from_dump.handle == looked_up.handle
    assert from_model.status is from_dump.status is MessageStatus.PENDING
    assert from_model.raw["date_created"] == from_dump.raw["date_created"]
    assert isinstance(from_model.raw["date_created"], str)
    assert from_model.updated_at == from_dump.updated_at is not None
    json.loads(from_model.model_dump_json())
    json.loads(from_dump.model_dump_json())


async def test_add_message_handles_work_as_documented(sendblue_emulator: SendblueEmulator) -> None:
    # providers.md: add_message returns the form a client takes; the provider takes it (and the
    # bare message_handle) too, and the payload carries the bare message_handle.
    handle = sendblue_emulator.add_message(status="SENT")
    assert handle.startswith("sendblue:")
    bare = handle.removeprefix("sendblue:")
    provider = sendblue_emulator.provider()
    async with StatusClient([provider]) as client:
        direct = await provider.get_status(handle)
        bare_direct = await provider.get_status(bare)
        routed = await client.get_status(handle)
        with pytest.raises(InvalidHandleError, match="no provider prefix"):
            await client.get_status(bare)
    assert direct.handle == bare_direct.handle == routed.handle == handle
    assert sendblue_emulator.payload(handle)["message_handle"] == bare
    assert sendblue_emulator.payload(bare) == sendblue_emulator.payload(handle)
    assert sendblue_emulator.handles == [handle]
    assert sendblue_emulator.add_message(bare, status="READ") == handle
