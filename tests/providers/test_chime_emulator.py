"""ChimeProvider against ChimeEmulator through real boto3 clients: SigV4, errors, lifecycles."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
import boto3
import pytest

from msgstatus import (
    AuthenticationError,
    ChimeHandle,
    ChimeProvider,
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResendAction,
    ResendDecision,
    RetryPolicy,
    StatusClient,
)
from msgstatus.testing import ChimeEmulator, ChimeState, Fault, ManualClock

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture(scope="module")
def emulator() -> Iterator[ChimeEmulator]:
    # One server and one provider for the module: building a boto3 client takes ~0.1 s.
    with ChimeEmulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emulator: ChimeEmulator) -> Iterator[None]:
    emulator.reset()
    emulator.latency = 0.0
    emulator.denied_retention = 0.0
    emulator.clock = time.monotonic
    yield
    assert emulator.errors == []


@pytest.fixture
def clock(emulator: ChimeEmulator) -> ManualClock:
    clock = ManualClock()
    emulator.clock = clock
    return clock


@pytest.fixture(scope="module")
def provider(emulator: ChimeEmulator) -> Iterator[ChimeProvider]:
    """Default bearer: the emulator's ``sender`` user; retries without waiting."""
    provider = emulator.provider(bearer=emulator.user_arn(), retry=FAST)
    yield provider
    provider.client.close()


@pytest.fixture(scope="module")
def shared_client(emulator: ChimeEmulator) -> Iterator[Any]:
    client = emulator.client()
    yield client
    client.close()


@pytest.fixture
def own_provider(shared_client: Any, sender: str) -> ChimeProvider:
    """A provider a StatusClient may close: the boto3 client it uses was passed in."""
    return ChimeProvider(client=shared_client, bearer=sender, retry=FAST)


@pytest.fixture(scope="module")
def channel(emulator: ChimeEmulator) -> str:
    return emulator.channel_arn()


@pytest.fixture(scope="module")
def sender(emulator: ChimeEmulator) -> str:
    return emulator.user_arn()


# -- lifecycles -------------------------------------------------------------------------------


async def test_pending_then_sent(
    emulator: ChimeEmulator, provider: ChimeProvider, clock: ManualClock, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(
        channel, sender=sender, steps=[(0.0, "PENDING"), (1.0, "SENT")]
    )
    handle = ChimeHandle(channel, message_id)
    pending = await provider.get_status(handle)
    clock.now += 1.5
    sent = await provider.get_status(handle)
    assert (pending.status, pending.is_final) == (MessageStatus.PENDING, False)
    assert (sent.status, sent.is_final) == (MessageStatus.SENT, True)
    assert sent.raw == {"Status": {"Value": "SENT"}}
    assert sent.handle == str(handle)
    assert ResendDecision.from_result(pending).action is ResendAction.WAIT
    assert ResendDecision.from_result(sent).action is ResendAction.SKIP


async def test_failed_with_detail(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(
        channel, sender=sender, status="FAILED", detail="the processor crashed"
    )
    result = await provider.get_status(ChimeHandle(channel, message_id))
    assert (result.status, result.is_final, result.detail) == (
        MessageStatus.FAILED,
        True,
        "the processor crashed",
    )
    assert ResendDecision.from_result(result).action is ResendAction.RESEND


async def test_denied_messages_are_not_stored(
    emulator: ChimeEmulator, provider: ChimeProvider, clock: ManualClock, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(
        channel,
        sender=sender,
        steps=[(0.0, "PENDING"), (1.0, ChimeState("DENIED", "profanity filter"))],
    )
    handle = ChimeHandle(channel, message_id)
    assert (await provider.get_status(handle)).status is MessageStatus.PENDING
    clock.now += 1.0
    with pytest.raises(MessageNotFoundError, match="NotFoundException"):
        await provider.get_status(handle)
    assert emulator.messages == []


async def test_what_the_resend_decision_makes_of_a_denied_message(
    emulator: ChimeEmulator, own_provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender, status="DENIED")
    async with StatusClient([own_provider]) as client:
        decision = await client.resend_decision(ChimeHandle(channel, message_id))
    # Chime keeps no denied message: the lookup finds nothing, so there is no safe answer.
    assert decision.action is ResendAction.UNKNOWN
    assert decision.result is None
    assert "MessageNotFoundError" in decision.reason


async def test_denied_is_served_during_the_retention(
    emulator: ChimeEmulator, provider: ChimeProvider, clock: ManualClock, channel: str, sender: str
) -> None:
    emulator.denied_retention = 5.0
    message_id = emulator.add_message(
        channel, sender=sender, steps=[(0.0, "PENDING"), (1.0, ChimeState("DENIED", "no"))]
    )
    handle = ChimeHandle(channel, message_id)
    clock.now += 2.0
    denied = await provider.get_status(handle)
    assert (denied.status, denied.is_final, denied.detail) == (MessageStatus.DENIED, True, "no")
    assert ResendDecision.from_result(denied).action is ResendAction.BLOCKED
    clock.now += 4.0
    with pytest.raises(MessageNotFoundError):
        await provider.get_status(handle)


async def test_lifecycle_in_real_time(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    # Each answer is checked against the time window of its own request: no race with a slow
    # machine or the emulators' latency, and every poll checks something.
    steps = [(0.0, MessageStatus.PENDING), (0.3, MessageStatus.SENT)]
    before_add = time.monotonic()
    message_id = emulator.add_message(
        channel, sender=sender, steps=[(0.0, "PENDING"), (0.3, "SENT")]
    )
    after_add = time.monotonic()
    handle = ChimeHandle(channel, message_id)
    seen: list[MessageStatus] = []
    with anyio.fail_after(30):
        while not seen or seen[-1] is not MessageStatus.SENT:
            asked = time.monotonic()
            result = await provider.get_status(handle)
            possible = _possible(steps, asked - after_add, time.monotonic() - before_add)
            assert result.status in possible, (result.status, possible)
            assert result.is_final is (result.status is MessageStatus.SENT)
            seen.append(result.status)
            await anyio.sleep(0.05)


def _possible(
    steps: list[tuple[float, MessageStatus]], low: float, high: float
) -> set[MessageStatus]:
    """The states a lifecycle of ``steps`` can show at some elapsed time in ``[low, high]``."""
    return {
        status
        for i, (offset, status) in enumerate(steps)
        if offset <= high and (i + 1 == len(steps) or steps[i + 1][0] > low)
    }


# -- sends and channel flows ------------------------------------------------------------------


def _send(provider: ChimeProvider, channel: str, sender: str, content: str, **extra: Any) -> Any:
    return provider.client.send_channel_message(
        ChannelArn=channel,
        Content=content,
        Type="STANDARD",
        Persistence="PERSISTENT",
        ChimeBearer=sender,
        **extra,
    )


async def test_send_through_a_channel_flow(
    emulator: ChimeEmulator, provider: ChimeProvider, clock: ManualClock, channel: str, sender: str
) -> None:
    def flow(content: str) -> list[tuple[float, str | ChimeState]]:
        if "spam" in content:
            return [(0.0, "PENDING"), (1.0, ChimeState("DENIED", "looks like spam"))]
        return [(0.0, "PENDING"), (1.0, "SENT")]

    emulator.set_channel_flow(channel, flow)
    good = await anyio.to_thread.run_sync(_send, provider, channel, sender, "hello")
    spam = await anyio.to_thread.run_sync(_send, provider, channel, sender, "buy spam")
    assert good["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert set(good) == {"ChannelArn", "MessageId", "Status", "ResponseMetadata"}
    sent_now = provider.result_from_payload(good, bearer=sender)
    spam_now = provider.result_from_payload(spam)
    assert sent_now.status is spam_now.status is MessageStatus.PENDING
    assert ResendDecision.from_result(sent_now).action is ResendAction.WAIT

    clock.now += 1.0
    # The handle from the send response (with its bearer) is all a later lookup needs.
    later = await provider.get_status(sent_now.handle)
    assert later.status is MessageStatus.SENT
    with pytest.raises(MessageNotFoundError):
        await provider.get_status(spam_now.handle)


async def test_a_flow_that_denies_at_once(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    emulator.set_channel_flow(channel, [(0.0, ChimeState("DENIED", "blocked word"))])
    response = await anyio.to_thread.run_sync(_send, provider, channel, sender, "bad word")
    result = provider.result_from_payload(response)
    assert (result.status, result.detail) == (MessageStatus.DENIED, "blocked word")
    assert ResendDecision.from_result(result).action is ResendAction.BLOCKED
    with pytest.raises(MessageNotFoundError):
        await provider.get_status(result.handle)


async def test_sends_without_a_flow_are_sent_and_tokens_are_idempotent(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    first = await anyio.to_thread.run_sync(
        lambda: _send(provider, channel, sender, "hi", ClientRequestToken="token-1")
    )
    again = await anyio.to_thread.run_sync(
        lambda: _send(provider, channel, sender, "hi", ClientRequestToken="token-1")
    )
    other = await anyio.to_thread.run_sync(_send, provider, channel, sender, "hi")
    assert first["MessageId"] == again["MessageId"] != other["MessageId"]
    assert first["Status"] == {"Value": "SENT"}
    assert len(emulator.messages) == 2


# -- sub-channels and bearers -----------------------------------------------------------------


async def test_sub_channels(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender, sub_channel_id="sub-1")
    result = await provider.get_status(ChimeHandle(channel, message_id, "sub-1"))
    assert result.status is MessageStatus.SENT
    assert emulator.requests[-1].query["sub-channel-id"] == "sub-1"
    for wrong in (None, "sub-2"):
        with pytest.raises(MessageNotFoundError):
            await provider.get_status(ChimeHandle(channel, message_id, wrong))
    sent = await anyio.to_thread.run_sync(
        lambda: _send(provider, channel, sender, "hi", SubChannelId="sub-3")
    )
    assert sent["SubChannelId"] == "sub-3"
    result = provider.result_from_payload(sent)
    assert ChimeHandle.parse(result.handle).sub_channel_id == "sub-3"
    assert (await provider.get_status(result.handle)).status is MessageStatus.SENT


async def test_only_the_sender_may_ask(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=emulator.user_arn("alice"))
    # The provider's default bearer (sender) did not send it.
    with pytest.raises(PermissionDeniedError, match="ForbiddenException"):
        await provider.get_status(ChimeHandle(channel, message_id))
    assert emulator.stats.requests == 1  # not retried
    # The handle's bearer wins over the default.
    handle = ChimeHandle(channel, message_id, bearer=emulator.user_arn("alice"))
    assert (await provider.get_status(handle)).status is MessageStatus.SENT
    assert emulator.requests[-1].headers["x-amz-chime-bearer"] == emulator.user_arn("alice")


async def test_without_any_bearer_nothing_is_sent(emulator: ChimeEmulator, channel: str) -> None:
    provider = ChimeProvider(client=emulator.client(), retry=FAST)
    with pytest.raises(InvalidHandleError, match="bearer"):
        await provider.get_status(ChimeHandle(channel, "m1"))
    assert emulator.stats.requests == 0
    provider.client.close()


async def test_odd_but_valid_channel_arns_travel_intact(
    emulator: ChimeEmulator, provider: ChimeProvider, sender: str
) -> None:
    channel = "arn:aws:chime:us-east-1:1:app-instance/a;b=c%d?e#f&g/channel/é日本 x".replace(
        " ", ""
    )
    message_id = emulator.add_message(channel, sender=sender)
    handle = ChimeHandle(channel, message_id)
    result = await provider.get_status(str(handle))
    assert result.status is MessageStatus.SENT
    assert ChimeHandle.parse(result.handle) == handle


# -- errors over the wire ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("BadRequestException", InvalidHandleError),
        ("UnauthorizedClientException", AuthenticationError),
        ("ForbiddenException", PermissionDeniedError),
        ("NotFoundException", MessageNotFoundError),
        ("ThrottledClientException", RateLimitedError),
        ("ServiceFailureException", ProviderUnavailableError),
        ("ServiceUnavailableException", ProviderUnavailableError),
        ("ConflictException", MsgStatusError),
    ],
)
async def test_every_error_code_over_the_wire(
    emulator: ChimeEmulator,
    provider: ChimeProvider,
    channel: str,
    sender: str,
    code: str,
    kind: type[MsgStatusError],
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject_error(code, times=None)
    with pytest.raises(MsgStatusError) as caught:
        await provider.get_status(ChimeHandle(channel, message_id))
    assert type(caught.value) is kind
    assert code in caught.value.message
    assert emulator.stats.requests == (3 if kind.retryable else 1)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.RATE_LIMIT, RateLimitedError),
        (Fault.RATE_LIMIT_HTTP_DATE, RateLimitedError),
        (Fault.SERVER_ERROR_500, ProviderUnavailableError),
        (Fault.SERVER_ERROR_502, ProviderUnavailableError),
        (Fault.SERVER_ERROR_503, ProviderUnavailableError),
        (Fault.SERVER_ERROR_504, ProviderUnavailableError),
        (Fault.DROP, ProviderUnavailableError),
        (Fault.TRUNCATED, ProviderUnavailableError),
        (Fault.NOT_JSON, ProviderResponseError),
        (Fault.WRONG_SHAPE, ProviderResponseError),
        (Fault.HUGE_BODY, ProviderResponseError),
    ],
)
async def test_persistent_faults(
    emulator: ChimeEmulator,
    provider: ChimeProvider,
    channel: str,
    sender: str,
    fault: Fault,
    kind: type[MsgStatusError],
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(fault, times=None)
    with pytest.raises(MsgStatusError) as caught:
        await provider.get_status(ChimeHandle(channel, message_id))
    assert type(caught.value) is kind
    # botocore's own retries are off: the emulator sees exactly the policy's attempts.
    assert emulator.stats.requests == (3 if kind.retryable else 1)


async def test_a_persisting_throttle_is_three_requests(
    emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    # With botocore's retries on, 3 attempts per call would mean 9 requests.
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject_error("ThrottledClientException", times=None)
    async with emulator.provider(
        bearer=sender, retry=RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)
    ) as provider:
        with pytest.raises(RateLimitedError):
            await provider.get_status(ChimeHandle(channel, message_id))
    assert emulator.stats.requests == 3
    emulator.reset()
    emulator.inject_error("ForbiddenException", times=None)
    async with emulator.provider(bearer=sender, retry=FAST) as provider:
        with pytest.raises(PermissionDeniedError):
            await provider.get_status(ChimeHandle(channel, message_id))
    assert emulator.stats.requests == 1


async def test_retry_after_from_the_emulator(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(Fault.RATE_LIMIT, times=None)
    with pytest.raises(RateLimitedError) as caught:
        await provider.get_status(ChimeHandle(channel, message_id))
    assert caught.value.retry_after == 1.0


async def test_transient_faults_are_retried_away(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(Fault.SERVER_ERROR_503)
    emulator.inject(Fault.DROP)
    result = await provider.get_status(ChimeHandle(channel, message_id))
    assert result.status is MessageStatus.SENT
    assert emulator.stats.requests == 3


async def test_unknown_status_fault(
    emulator: ChimeEmulator, provider: ChimeProvider, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(Fault.UNKNOWN_STATUS)
    result = await provider.get_status(ChimeHandle(channel, message_id))
    assert (result.status, result.provider_status, result.is_final) == (
        MessageStatus.UNKNOWN,
        "TELEPORTED",
        False,
    )


async def test_a_stalled_server_times_out(
    chime_emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    # The plugin's own emulator: the stalled request dies with it, not in the shared one.
    message_id = chime_emulator.add_message(channel, sender=sender)
    chime_emulator.inject(Fault.STALL)
    async with chime_emulator.provider(
        bearer=sender, retry=RetryPolicy(max_attempts=1), read_timeout=0.3
    ) as provider:
        with anyio.fail_after(20):
            with pytest.raises(ProviderUnavailableError, match="timeout"):
                await provider.get_status(ChimeHandle(channel, message_id))


async def test_nothing_listening_is_unavailable(sender: str, channel: str) -> None:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEMULATOR", aws_secret_access_key="x", region_name="us-east-1"
    )
    async with ChimeProvider(
        session=session,
        endpoint_url="http://127.0.0.1:9",
        bearer=sender,
        retry=FAST,
        connect_timeout=1.0,
    ) as provider:
        with pytest.raises(ProviderUnavailableError, match="EndpointConnectionError"):
            await provider.get_status(ChimeHandle(channel, "m1"))


@pytest.mark.parametrize(
    ("akid", "secret", "region", "code"),
    [
        ("AKIDEMULATOR", "wrong-secret", "us-east-1", "InvalidSignatureException"),
        ("AKIDSOMEONEELSE", "emulator-secret", "us-east-1", "UnrecognizedClientException"),
        ("AKIDEMULATOR", "emulator-secret", "eu-west-1", "InvalidSignatureException"),
    ],
    ids=["wrong-secret", "unknown-key", "wrong-region"],
)
async def test_bad_credentials_are_refused(
    emulator: ChimeEmulator,
    channel: str,
    sender: str,
    akid: str,
    secret: str,
    region: str,
    code: str,
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    session = boto3.session.Session(
        aws_access_key_id=akid, aws_secret_access_key=secret, region_name=region
    )
    async with ChimeProvider(
        session=session, endpoint_url=emulator.base_url, bearer=sender, retry=FAST
    ) as provider:
        with pytest.raises(AuthenticationError, match=rf"{code}, HTTP 403"):
            await provider.get_status(ChimeHandle(channel, message_id))
    assert emulator.stats.requests == 1


# -- what never reaches the server ------------------------------------------------------------


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param("chime:arn:aws:chime:us-east-1:1:app-instance/a/../b;message=m", id="dotdot"),
        pytest.param("chime:arn:aws:chime:us-east-1:1:app-instance/a;message=m\r\n", id="crlf-id"),
        pytest.param(
            "chime:arn:aws:chime:us-east-1:1:app-instance/a;message=m;"
            "bearer=arn:aws:chime:us-east-1:1:u\r\nX-Evil: 1",
            id="crlf-bearer",
        ),
        pytest.param(
            "chime:arn:aws:chime:us-east-1:1:app-instance/a;message=" + "x" * 129, id="id-129"
        ),
        pytest.param("chime:channel-1;message=m", id="not-an-arn"),
    ],
)
async def test_invalid_handles_send_nothing(
    emulator: ChimeEmulator, provider: ChimeProvider, own_provider: ChimeProvider, handle: str
) -> None:
    with pytest.raises(InvalidHandleError):
        await provider.get_status(handle)
    async with StatusClient([own_provider]) as client:
        with pytest.raises(InvalidHandleError):
            await client.get_status(handle)
    assert emulator.stats.requests == 0


# -- concurrency ------------------------------------------------------------------------------


async def test_two_hundred_lookups_at_concurrency_four(
    emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    ids = [emulator.add_message(channel, sender=sender) for _ in range(20)]
    emulator.latency = 0.005
    async with emulator.provider(bearer=sender, retry=FAST, max_concurrency=4) as provider:
        results: list[MessageStatus] = []

        async def look(message_id: str) -> None:
            results.append((await provider.get_status(ChimeHandle(channel, message_id))).status)

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(look, ids[i % len(ids)])
    assert results == [MessageStatus.SENT] * 200
    assert emulator.stats.requests == 200
    assert 2 <= emulator.stats.max_in_flight <= 4
    # The pool is sized to the limit: no connection beyond the 4 botocore keeps.
    assert emulator.stats.connections <= 4


# -- configuration from the environment, secrets ----------------------------------------------


async def test_the_standard_aws_chain_and_endpoint_variable(
    emulator: ChimeEmulator, channel: str, sender: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", emulator.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", emulator.secret_access_key)
    monkeypatch.setenv("AWS_REGION", emulator.region)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING", emulator.base_url)
    message_id = emulator.add_message(channel, sender=sender)
    async with ChimeProvider(bearer=sender) as provider:
        result = await provider.get_status(ChimeHandle(channel, message_id))
    assert result.status is MessageStatus.SENT


async def test_no_secret_in_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture, channel: str
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    sender = "arn:aws:chime:us-east-1:111122223333:app-instance/emulator/user/sender"
    seen: list[str] = []
    with ChimeEmulator(access_key_id="AKIDSECRETTEST", secret_access_key=secret) as emulator:
        ok = emulator.add_message(channel, sender=sender)
        forbidden = emulator.add_message(channel, sender=emulator.user_arn("alice"))
        for name in ("msgstatus", "botocore", "urllib3"):
            caplog.set_level(logging.DEBUG, logger=name)
        async with emulator.provider(bearer=sender, retry=FAST) as provider:
            seen.append(repr(provider))
            await provider.get_status(ChimeHandle(channel, ok))
            emulator.inject(Fault.RATE_LIMIT)
            await provider.get_status(ChimeHandle(channel, ok))
            for message_id in (forbidden, "missing"):
                with pytest.raises(MsgStatusError) as caught:
                    await provider.get_status(ChimeHandle(channel, message_id))
                seen.extend([str(caught.value), repr(caught.value)])
        wrong = boto3.session.Session(
            aws_access_key_id="AKIDSECRETTEST", aws_secret_access_key=secret + "x"
        )
        async with ChimeProvider(
            session=wrong, region_name="us-east-1", endpoint_url=emulator.base_url, bearer=sender
        ) as provider:
            with pytest.raises(AuthenticationError) as caught:
                await provider.get_status(ChimeHandle(channel, ok))
            seen.extend([str(caught.value), repr(caught.value), str(caught.value.__cause__)])
    messages = [record.getMessage() for record in caplog.records]
    assert any("Signature" in message for message in messages)  # botocore did log at DEBUG
    assert any("GetChannelMessageStatus" in message for message in messages)
    for text in messages + seen:
        assert secret not in text


# -- through the client -----------------------------------------------------------------------


async def test_through_the_status_client(
    emulator: ChimeEmulator, own_provider: ChimeProvider, channel: str, sender: str
) -> None:
    sent = emulator.add_message(channel, sender=sender)
    failed = emulator.add_message(channel, sender=sender, status="FAILED")
    async with StatusClient([own_provider]) as client:
        by_typed = await client.get_status(ChimeHandle(channel, sent))
        by_text = await client.get_status(str(ChimeHandle(channel, failed)))
        decisions = await client.resend_decisions(
            [ChimeHandle(channel, sent), str(ChimeHandle(channel, failed)), "chime:nope"]
        )
    assert by_typed.status is MessageStatus.SENT
    assert by_text.status is MessageStatus.FAILED
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.RESEND,
        ResendAction.UNKNOWN,
    ]


# -- configuration from the environment -------------------------------------------------------


@pytest.fixture
def aws_env(emulator: ChimeEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": emulator.access_key_id,
        "AWS_SECRET_ACCESS_KEY": emulator.secret_access_key,
        "AWS_REGION": emulator.region,
        "AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING": emulator.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


async def test_from_env_reads_the_aws_chain_and_the_bearer_variable(
    emulator: ChimeEmulator,
    channel: str,
    sender: str,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message_id = emulator.add_message(channel, sender=sender, status="PENDING")
    monkeypatch.setenv("MSGSTATUS_CHIME_BEARER", sender)
    async with ChimeProvider.from_env(retry=FAST) as provider:
        assert provider.bearer == sender
        result = await provider.get_status(ChimeHandle(channel, message_id))
    assert result.status is MessageStatus.PENDING


async def test_without_a_bearer_the_message_names_the_variable_and_the_argument(
    emulator: ChimeEmulator,
    channel: str,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MSGSTATUS_CHIME_BEARER", raising=False)
    async with ChimeProvider.from_env(retry=FAST) as provider:
        with pytest.raises(InvalidHandleError) as caught:
            await provider.get_status(ChimeHandle(channel, "m1"))
    assert "MSGSTATUS_CHIME_BEARER" in caught.value.message
    assert "bearer=" in caught.value.message
    assert emulator.stats.requests == 0
    monkeypatch.setenv("MSGSTATUS_CHIME_BEARER", "not an ARN")
    with pytest.raises(InvalidHandleError, match="MSGSTATUS_CHIME_BEARER"):
        ChimeProvider.from_env()


async def test_result_from_payload_takes_boto3_responses_with_datetimes(
    provider: ChimeProvider, channel: str, sender: str
) -> None:
    import json
    from datetime import datetime, timezone

    sent = await anyio.to_thread.run_sync(_send, provider, channel, sender, "hi")
    result = provider.result_from_payload(sent, bearer=sender)
    assert result.status is MessageStatus.SENT
    assert (await provider.get_status(result.handle)).status is MessageStatus.SENT
    # botocore parses timestamps into datetimes (GetChannelMessage's ChannelMessage has them):
    # a mapping carrying them is accepted and raw stays JSON-safe.
    stamped = {**sent, "CreatedTimestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)}
    result = provider.result_from_payload(stamped)
    assert result.raw["CreatedTimestamp"] == "2026-01-02T03:04:05+00:00"
    json.loads(result.model_dump_json())
