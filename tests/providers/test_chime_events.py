"""ChimeProvider.result_from_event: websocket envelopes and Kinesis records, and the emulator's
event feed that produces them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from msgstatus import ChimeHandle, ChimeProvider, MessageStatus, ProviderResponseError
from msgstatus._providers.chime import CHIME_EVENT_TYPES
from msgstatus.errors import InvalidHandleError
from msgstatus.testing import ChimeEmulator, ManualClock

CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
SENDER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/sender"


@pytest.fixture(scope="module")
def provider() -> ChimeProvider:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "chime-sdk-messaging",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    return ChimeProvider(client=client)  # type: ignore[arg-type]


def message(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ChannelArn": CHANNEL,
        "MessageId": "m-1",
        "Content": "hi",
        "Type": "STANDARD",
        "Sender": {"Arn": SENDER, "Name": "sender"},
        "Persistence": "PERSISTENT",
    }
    payload.update(fields)
    return payload


def envelope(kind: str, payload: Any, **headers: str) -> dict[str, Any]:
    return {
        "Headers": {
            "x-amz-chime-event-type": kind,
            "x-amz-chime-message-type": "STANDARD",
            **headers,
        },
        "Payload": payload if isinstance(payload, str) else json.dumps(payload),
    }


def test_the_table_has_the_ten_message_event_types() -> None:
    assert len(CHIME_EVENT_TYPES) == 10
    assert all(kind.endswith("_CHANNEL_MESSAGE") for kind in CHIME_EVENT_TYPES)


@pytest.mark.parametrize(("kind", "status"), sorted(CHIME_EVENT_TYPES.items()))
def test_each_websocket_event_type_maps_per_the_table(
    provider: ChimeProvider, kind: str, status: MessageStatus | None
) -> None:
    result = provider.result_from_event(envelope(kind, message()), bearer=SENDER)
    if status is None:
        assert result is None
    else:
        assert result is not None
        assert result.status is status
        assert result.provider_status == kind
        assert result.is_final is (status is not MessageStatus.PENDING)


@pytest.mark.parametrize(("kind", "status"), sorted(CHIME_EVENT_TYPES.items()))
def test_kinesis_records_map_the_same(
    provider: ChimeProvider, kind: str, status: MessageStatus | None
) -> None:
    record = {"EventType": kind, "Payload": json.dumps(message())}
    result = provider.result_from_event(json.dumps(record), bearer=SENDER)
    assert (None if result is None else result.status) is status


def test_the_handle_equals_the_handle_of_a_poll(provider: ChimeProvider) -> None:
    result = provider.result_from_event(
        envelope("DENIED_CREATE_CHANNEL_MESSAGE", message(SubChannelId="sub-1")), bearer=SENDER
    )
    assert result is not None
    polled = ChimeHandle(CHANNEL, "m-1", "sub-1", SENDER)
    assert result.handle == str(polled)
    assert provider.parse_handle(result.handle) == polled


def test_status_detail_and_event_reason_become_the_detail(provider: ChimeProvider) -> None:
    with_detail = provider.result_from_event(
        envelope(
            "FAILED_CREATE_CHANNEL_MESSAGE",
            message(Status={"Value": "FAILED", "Detail": "processor timed out"}),
        ),
        bearer=SENDER,
    )
    assert with_detail is not None
    assert with_detail.detail == "processor timed out"
    with_reason = provider.result_from_event(
        envelope(
            "DENIED_CREATE_CHANNEL_MESSAGE",
            message(),
            **{"x-amz-chime-event-reason": "profanity"},
        ),
        bearer=SENDER,
    )
    assert with_reason is not None
    assert with_reason.detail == "profanity"


@pytest.mark.parametrize(
    "kind", ["CREATE_CHANNEL_MEMBERSHIP", "UPDATE_CHANNEL", "TELEPORT_CHANNEL_MESSAGE"]
)
def test_other_events_give_none(provider: ChimeProvider, kind: str) -> None:
    assert (
        provider.result_from_event(envelope(kind, {"ChannelArn": CHANNEL}), bearer=SENDER) is None
    )


@pytest.mark.parametrize(
    "event",
    [
        ["not", "an", "object"],
        "not json",
        {"Headers": "x", "Payload": "{}"},
        {"Headers": {"x-amz-chime-message-type": "STANDARD"}, "Payload": "{}"},
        envelope("CREATE_CHANNEL_MESSAGE", "{not json"),
        envelope("CREATE_CHANNEL_MESSAGE", "[1, 2]"),
        envelope("CREATE_CHANNEL_MESSAGE", message(MessageId="bad id")),
        envelope("CREATE_CHANNEL_MESSAGE", message(ChannelArn=None)),
        {"EventType": "CREATE_CHANNEL_MESSAGE"},
    ],
    ids=[
        "array",
        "text",
        "headers-not-object",
        "no-event-type",
        "payload-not-json",
        "payload-array",
        "bad-message-id",
        "no-channel",
        "no-payload",
    ],
)
def test_bad_events_raise_provider_response_error(provider: ChimeProvider, event: Any) -> None:
    with pytest.raises(ProviderResponseError):
        provider.result_from_event(event, bearer=SENDER)


def test_a_bad_bearer_is_refused(provider: ChimeProvider) -> None:
    with pytest.raises(InvalidHandleError):
        provider.result_from_event(envelope("CREATE_CHANNEL_MESSAGE", message()), bearer="x y")


# -- the emulator's feed ---------------------------------------------------------------------


def test_the_feed_gives_a_denied_message_that_no_lookup_can_see() -> None:
    with ChimeEmulator() as emulator:
        clock = ManualClock()
        emulator.clock = clock
        channel, sender = emulator.channel_arn(), emulator.user_arn()
        other = emulator.user_arn("other")
        emulator.set_channel_flow(channel, [(0.0, "PENDING"), (1.0, "DENIED")])
        feed = emulator.event_feed(sender)
        others = emulator.event_feed(other)
        client = emulator.client()
        try:
            sent = client.send_channel_message(
                ChannelArn=channel,
                Content="rude words",
                Type="STANDARD",
                Persistence="PERSISTENT",
                ClientRequestToken="token-1",
                ChimeBearer=sender,
            )
        finally:
            client.close()
        first = feed.pending()
        assert [e["Headers"]["x-amz-chime-event-type"] for e in first] == [
            "PENDING_CREATE_CHANNEL_MESSAGE"
        ]
        assert feed.pending() == []
        clock.advance(1.0)
        [denied] = feed.pending()
        assert denied["Headers"] == {
            "x-amz-chime-event-type": "DENIED_CREATE_CHANNEL_MESSAGE",
            "x-amz-chime-message-type": "STANDARD",
        }
        payload = json.loads(denied["Payload"])
        assert (payload["ChannelArn"], payload["MessageId"]) == (channel, sent["MessageId"])
        assert payload["Status"] == {"Value": "DENIED"}
        assert payload["Sender"]["Arn"] == sender
        assert emulator.status_payload(channel, sent["MessageId"]) is None
        assert others.pending() == []


@pytest.mark.anyio
async def test_the_feed_is_an_async_iterator_that_ends_with_the_emulator() -> None:
    emulator = ChimeEmulator()
    async with emulator:
        sender = emulator.user_arn()
        feed = emulator.event_feed(sender)
        emulator.add_message(emulator.channel_arn(), sender=sender, status="SENT")
        kinds = []
        async for event in feed:
            kinds.append(event["Headers"]["x-amz-chime-event-type"])
            await feed.aclose()
        assert kinds == ["CREATE_CHANNEL_MESSAGE"]
        after_stop = emulator.event_feed(sender)
    assert [event async for event in after_stop] == []


def test_the_feed_skips_values_without_an_event_and_refuses_bad_senders() -> None:
    with ChimeEmulator() as emulator:
        sender = emulator.user_arn()
        feed = emulator.event_feed(sender)
        emulator.add_message(emulator.channel_arn(), sender=sender, status="TELEPORTED")
        assert feed.pending() == []
        with pytest.raises(ValueError, match="sender"):
            emulator.event_feed("not an arn")
