"""SendblueEmulator on its own: the wire format, auth, sends, lifecycles and fault rendering."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sendblue_api

from msgstatus.testing import Fault, SendblueEmulator, SendblueState

AUTH = {"sb-api-key-id": "test-key", "sb-api-secret-key": "test-secret"}
ISO_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def http(sendblue_emulator: SendblueEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sendblue_emulator.base_url, headers=AUTH) as client:
        yield client


def _bare(handle: str) -> str:
    # These tests speak the wire format, which carries the bare message_handle; add_message
    # returns the form a client takes ("sendblue:<message_handle>").
    return handle.removeprefix("sendblue:")


def status(http: httpx.Client, handle: str, **kwargs: object) -> httpx.Response:
    return http.get("/api/status", params={"handle": handle}, **kwargs)  # type: ignore[arg-type]


def test_status_payload_looks_like_sendblue(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    handle = _bare(sendblue_emulator.add_message(status="DELIVERED", content="Hi there"))
    reply = status(http, handle)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["status"] == "DELIVERED"
    assert body["message_handle"] == handle
    assert body["content"] == "Hi there"
    assert uuid.UUID(handle)
    for name in ("date_created", "date_updated"):
        assert ISO_MS_Z.fullmatch(body[name])
    for name in ("error_code", "error_key", "error_message"):
        assert body[name] is None
    assert body["is_outbound"] is True
    assert body["message_type"] == "message"
    assert {"account_email", "from_number", "number", "send_style", "media_url"} <= set(body)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"sb-api-key-id": "test-key"},
        {"sb-api-secret-key": "test-secret"},
        {"sb-api-key-id": "test-key", "sb-api-secret-key": "nope"},
        {"sb-api-key-id": "nope", "sb-api-secret-key": "test-secret"},
    ],
)
def test_both_auth_headers_are_required(
    sendblue_emulator: SendblueEmulator, headers: dict[str, str]
) -> None:
    handle = _bare(sendblue_emulator.add_message())
    with httpx.Client(base_url=sendblue_emulator.base_url, headers=headers) as client:
        get = client.get("/api/status", params={"handle": handle})
        post = client.post("/api/send-message", json={"number": "+15551234567", "content": "x"})
    assert (get.status_code, post.status_code) == (401, 401)
    assert get.json()["status"] == "ERROR"
    assert sendblue_emulator.handles == [f"sendblue:{handle}"]


def test_missing_handle_unknown_handle_wrong_method_and_path(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    assert http.get("/api/status").status_code == 400
    assert status(http, "").status_code == 400
    assert status(http, "nope").status_code == 404
    assert http.post("/api/status", params={"handle": "x"}).status_code == 405
    assert http.get("/api/send-message").status_code == 405
    # An endpoint the emulator does not serve must not look like "message not found".
    elsewhere = http.get("/api/v2/messages")
    assert elsewhere.status_code == 501
    assert elsewhere.headers["x-should-retry"] == "false"
    assert "does not serve GET /api/v2/messages" in elsewhere.json()["error_message"]
    assert sendblue_emulator.stats.requests == 6


def test_handles_with_odd_characters_round_trip(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    handle = _bare(sendblue_emulator.add_message("msg_a&b=c/é+%", status="SENT"))
    assert status(http, handle).json()["message_handle"] == handle


def test_lifecycle_on_a_hand_driven_clock(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    now = [50.0]
    sendblue_emulator.clock = lambda: now[0]
    handle = _bare(
        sendblue_emulator.add_message(
            steps=[
                (0.0, "QUEUED"),
                (1.0, "SENT"),
                (3.0, SendblueState("ERROR", error_code=10001, error_message="failed")),
            ]
        )
    )
    seen = []
    for moment in (50.0, 50.99, 51.0, 53.0, 1000.0):
        now[0] = moment
        body = status(http, handle).json()
        seen.append((body["status"], body["error_code"], body["error_message"]))
    assert seen == [
        ("QUEUED", None, None),
        ("QUEUED", None, None),
        ("SENT", None, None),
        ("ERROR", 10001, "failed"),
        ("ERROR", 10001, "failed"),
    ]
    assert sendblue_emulator.payload(handle)["status"] == "ERROR"


def test_date_updated_follows_the_steps(sendblue_emulator: SendblueEmulator) -> None:
    now = [0.0]
    sendblue_emulator.clock = lambda: now[0]
    handle = _bare(sendblue_emulator.add_message(steps=[(0.0, "QUEUED"), (2.5, "DELIVERED")]))
    first = sendblue_emulator.payload(handle)
    now[0] = 3.0
    second = sendblue_emulator.payload(handle)
    assert first["date_updated"] == first["date_created"]
    assert second["date_updated"] > first["date_updated"]
    assert second["date_created"] == first["date_created"]


def test_set_status_ends_the_lifecycle(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    handle = _bare(
        sendblue_emulator.add_message(steps=[(0.0, "QUEUED"), (60.0, "DELIVERED")], number="+1")
    )
    sendblue_emulator.set_status(handle, SendblueState("DECLINED", error_key="OPTED_OUT"))
    body = status(http, handle).json()
    assert (body["status"], body["error_key"], body["number"]) == ("DECLINED", "OPTED_OUT", "+1")
    with pytest.raises(KeyError):
        sendblue_emulator.set_status("nope", "SENT")


def test_add_message_arguments(sendblue_emulator: SendblueEmulator) -> None:
    handle = _bare(
        sendblue_emulator.add_message(
            "mine", status="ERROR", error_code=4002, error_message="blacklisted"
        )
    )
    assert handle == "mine"
    body = sendblue_emulator.payload("mine")
    assert (body["status"], body["error_code"], body["error_message"]) == (
        "ERROR",
        4002,
        "blacklisted",
    )
    assert sendblue_emulator.payload(sendblue_emulator.add_message())["status"] == "DELIVERED"
    with pytest.raises(ValueError, match="not both"):
        sendblue_emulator.add_message(status="SENT", steps=[(0.0, "QUEUED")])
    with pytest.raises(ValueError, match="not both"):
        sendblue_emulator.add_message(steps=[(0.0, "ERROR")], error_code=1)
    with pytest.raises(ValueError, match="ascending"):
        sendblue_emulator.add_message(steps=[(1.0, "SENT"), (0.5, "QUEUED")])
    with pytest.raises(ValueError, match="ascending"):
        sendblue_emulator.script_recipient("+1555", [(1.0, "SENT"), (0.5, "QUEUED")])
    with pytest.raises(ValueError, match="ascending"):
        sendblue_emulator.default_send_steps = [(1.0, "SENT"), (0.5, "QUEUED")]


def test_send_message(sendblue_emulator: SendblueEmulator, http: httpx.Client) -> None:
    now = [0.0]
    sendblue_emulator.clock = lambda: now[0]
    reply = http.post(
        "/api/send-message",
        json={"number": "+15551234567", "content": "Hello", "send_style": "invisible"},
    )
    assert reply.status_code == 200
    sent = reply.json()
    assert sent["status"] == "QUEUED"
    assert sent["number"] == "+15551234567"
    assert sent["content"] == "Hello"
    assert sent["send_style"] == "invisible"
    assert sent["from_number"] == sendblue_emulator.from_number
    handle = sent["message_handle"]
    assert sendblue_emulator.handles == [f"sendblue:{handle}"]
    now[0] = 10.0
    assert status(http, handle).json()["status"] == "DELIVERED"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        json.dumps({"content": "no number"}).encode(),
        json.dumps({"number": "5551234567", "content": "no plus"}).encode(),
        json.dumps({"number": "+1555abc", "content": "letters"}).encode(),
        json.dumps({"number": "+15551234567"}).encode(),
    ],
)
def test_bad_sends_are_400(
    sendblue_emulator: SendblueEmulator, http: httpx.Client, body: bytes
) -> None:
    reply = http.post("/api/send-message", content=body)
    assert reply.status_code == 400
    assert reply.json()["status"] == "ERROR"
    assert sendblue_emulator.handles == []


def test_recipient_scripts_and_the_default_lifecycle(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    sendblue_emulator.script_recipient("+15550000001", [(0.0, "ERROR")])
    sendblue_emulator.default_send_steps = [(0.0, "SENT")]
    scripted = http.post("/api/send-message", json={"number": "+15550000001", "media_url": "x"})
    other = http.post("/api/send-message", json={"number": "+15550000002", "content": "x"})
    assert scripted.json()["status"] == "ERROR"
    assert other.json()["status"] == "SENT"


def test_faults_in_sendblue_words(sendblue_emulator: SendblueEmulator, http: httpx.Client) -> None:
    handle = _bare(sendblue_emulator.add_message())
    sendblue_emulator.inject(Fault.RATE_LIMIT)
    sendblue_emulator.inject(Fault.RATE_LIMIT_HTTP_DATE)
    limited = [status(http, handle), status(http, handle)]
    assert [r.status_code for r in limited] == [429, 429]
    assert [r.json()["status"] for r in limited] == ["ERROR", "ERROR"]
    assert limited[0].headers["retry-after"] == "1"
    assert limited[1].headers["retry-after"].endswith("GMT")

    sendblue_emulator.inject(Fault.UNKNOWN_STATUS)
    teleported = status(http, handle).json()
    assert (teleported["status"], teleported["message_handle"]) == ("TELEPORTED", handle)

    sendblue_emulator.inject(Fault.WRONG_SHAPE, times=2)
    assert isinstance(status(http, handle).json(), list)
    assert status(http, handle).json()["status"] == 3

    sendblue_emulator.inject(Fault.SERVER_ERROR_502)
    html = status(http, handle)
    assert (html.status_code, html.headers["content-type"]) == (502, "text/html")
    assert status(http, handle).json()["status"] == "DELIVERED"
    assert sendblue_emulator.stats.faults_injected == 6


def test_faults_can_target_one_handle(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    flaky = _bare(sendblue_emulator.add_message())
    steady = _bare(sendblue_emulator.add_message())
    sendblue_emulator.inject(
        Fault.SERVER_ERROR_503, times=None, match=lambda r: r.query.get("handle") == flaky
    )
    assert status(http, flaky).status_code == 503
    assert status(http, steady).status_code == 200
    assert status(http, flaky).status_code == 503


def test_the_official_sdk_reads_the_emulator(sendblue_emulator: SendblueEmulator) -> None:
    handle = _bare(
        sendblue_emulator.add_message(
            status=SendblueState("ERROR", error_code=10001, error_message="Message failed to send")
        )
    )
    sdk = sendblue_api.SendblueAPI(
        api_key="test-key",
        api_secret="test-secret",
        base_url=sendblue_emulator.base_url,
        max_retries=0,
    )
    with sdk:
        message = sdk.messages.get_status(handle=handle)
        assert message.status == "ERROR"
        assert message.error_code == 10001
        assert message.message_handle == handle
        assert message.date_updated is not None
        sent = sdk.messages.send(number="+15551234567", content="Hello")
        assert sent.status == "QUEUED"
        assert f"sendblue:{sent.message_handle}" in sendblue_emulator.handles
        with pytest.raises(sendblue_api.NotFoundError):
            sdk.messages.get_status(handle="nope")
    with (
        sendblue_api.SendblueAPI(
            api_key="test-key",
            api_secret="wrong",
            base_url=sendblue_emulator.base_url,
            max_retries=0,
        ) as wrong,
        pytest.raises(sendblue_api.AuthenticationError),
    ):
        wrong.messages.get_status(handle=handle)


def test_five_hundred_sequential_requests_share_one_kept_alive_connection(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    # What this checks is keep-alive and request accounting, not speed (speed is for benchmarks).
    handles = [_bare(sendblue_emulator.add_message(status="SENT")) for _ in range(5)]
    for i in range(500):
        reply = status(http, handles[i % 5])
        assert reply.status_code == 200
        assert reply.json()["message_handle"] == handles[i % 5]
    assert sendblue_emulator.stats.connections == 1
    assert sendblue_emulator.stats.requests == 500


# -- fidelity: what the official SDK documents --------------------------------------------------


def test_a_received_message_is_inbound(sendblue_emulator: SendblueEmulator) -> None:
    inbound = _bare(sendblue_emulator.add_message(status="RECEIVED"))
    outbound = _bare(sendblue_emulator.add_message(status="DELIVERED"))
    assert sendblue_emulator.payload(inbound)["is_outbound"] is False
    assert sendblue_emulator.payload(outbound)["is_outbound"] is True


def test_quota_refusals_are_scripted_per_recipient(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    sendblue_emulator.refuse_recipient("+15550000001", "LINE_HOURLY_LIMIT_REACHED", times=1)
    refused = http.post("/api/send-message", json={"number": "+15550000001", "content": "x"})
    assert refused.status_code == 400
    body = refused.json()
    assert (body["status"], body["error_code"], body["error_key"]) == (
        "ERROR",
        429,
        "LINE_HOURLY_LIMIT_REACHED",
    )
    assert status(http, body["message_handle"]).json()["error_key"] == "LINE_HOURLY_LIMIT_REACHED"
    other = http.post("/api/send-message", json={"number": "+15550000002", "content": "x"})
    assert other.status_code == 200
    again = http.post("/api/send-message", json={"number": "+15550000001", "content": "x"})
    assert again.status_code == 200  # times=1 is used up
    sendblue_emulator.refuse_recipient("+15550000003", "PRE_REPLY_LIMIT_REACHED")
    for _ in range(2):
        reply = http.post("/api/send-message", json={"number": "+15550000003", "content": "x"})
        assert reply.json()["error_key"] == "PRE_REPLY_LIMIT_REACHED"
    sendblue_emulator.clear_refusals()
    cleared = http.post("/api/send-message", json={"number": "+15550000003", "content": "x"})
    assert cleared.status_code == 200


APP_CARD = {
    "appName": "Orders",
    "extensionBundleId": "com.example.orders.ext",
    "teamId": "TEAM123",
    "url": "https://example.com/card",
    "layout": {"caption": "Your order"},
}


def test_sends_take_what_the_sdk_documents(
    sendblue_emulator: SendblueEmulator, http: httpx.Client
) -> None:
    parent = _bare(sendblue_emulator.add_message())
    card = http.post(
        "/api/send-message",
        json={
            "number": "+15551234567",
            "app_card": APP_CARD,
            "seat_id": "seat-emulator",
            "reply_to": {"message_handle": parent},
        },
    )
    assert card.status_code == 200, card.text
    sent = card.json()
    assert sent["app_card"] == APP_CARD
    assert sent["seat_id"] == "seat-emulator"
    assert sent["sender_email"] == "rep@example.com"
    assert sent["reply_to"] == {"message_handle": parent}
    form = http.post(
        "/api/send-message", data={"number": "+15551234567", "content": "form-encoded"}
    )
    assert form.status_code == 200, form.text
    assert form.json()["content"] == "form-encoded"
    unknown_seat = http.post(
        "/api/send-message", json={"number": "+15551234567", "content": "x", "seat_id": "nope"}
    )
    assert unknown_seat.status_code == 400


def _sdk_checks(emulator: SendblueEmulator, strict: bool) -> list[tuple[str, str]]:
    """(status to look up, handle) pairs; under strict validation only values in the SDK's
    Literal, since pydantic refuses the others by design."""
    literal = ["QUEUED", "SENT", "DELIVERED", "ERROR"]
    values = literal if strict else [*literal, "READ", "RECEIVED", "DECLINED", "TELEPORTED"]
    return [(value, _bare(emulator.add_message(status=value))) for value in values]


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_the_sync_sdk_parses_every_reply(sendblue_emulator: SendblueEmulator, strict: bool) -> None:
    sendblue_emulator.refuse_recipient("+15550000009", "LINE_DAILY_LIMIT_REACHED")
    parent = _bare(sendblue_emulator.add_message())
    with sendblue_api.SendblueAPI(
        api_key="test-key",
        api_secret="test-secret",
        base_url=sendblue_emulator.base_url,
        _strict_response_validation=strict,
    ) as sdk:
        for value, handle in _sdk_checks(sendblue_emulator, strict):
            message = sdk.messages.get_status(handle=handle)
            assert (message.status, message.message_handle) == (value, handle)
            assert message.date_created is not None
            assert message.is_outbound is (value != "RECEIVED")
        sent = sdk.messages.send(
            number="+15551234567",
            app_card={  # type: ignore[typeddict-item]
                "app_name": "Orders",
                "extension_bundle_id": "com.example.orders.ext",
                "team_id": "TEAM123",
                "url": "https://example.com/card",
                "layout": {"caption": "Your order"},
            },
            seat_id="seat-emulator",
            reply_to={"message_handle": parent},
        )
        assert sent.status == "QUEUED"
        assert sent.sender_email == "rep@example.com"
        assert sent.reply_to is not None
        assert sent.reply_to.message_handle == parent
        with pytest.raises(sendblue_api.BadRequestError) as refused:
            sdk.messages.send(number="+15550000009", content="over the cap")
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["error_key"] == "LINE_DAILY_LIMIT_REACHED"
        requests_before = sendblue_emulator.stats.requests
        with pytest.raises(sendblue_api.InternalServerError):
            sdk.messages.list()
        # x-should-retry: false: the SDK does not retry "not served" (it retries 5xx otherwise).
        assert sendblue_emulator.stats.requests == requests_before + 1
        with pytest.raises(sendblue_api.NotFoundError):
            sdk.messages.get_status(handle="nope")


@pytest.mark.anyio
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_the_async_sdk_parses_every_reply(
    sendblue_emulator: SendblueEmulator, strict: bool
) -> None:
    sendblue_emulator.refuse_recipient("+15550000009")
    async with sendblue_api.AsyncSendblueAPI(
        api_key="test-key",
        api_secret="test-secret",
        base_url=sendblue_emulator.base_url,
        max_retries=0,
        _strict_response_validation=strict,
    ) as sdk:
        for value, handle in _sdk_checks(sendblue_emulator, strict):
            message = await sdk.messages.get_status(handle=handle)
            assert (message.status, message.message_handle) == (value, handle)
        sent = await sdk.messages.send(number="+15551234567", content="Hello")
        assert sent.status == "QUEUED"
        with pytest.raises(sendblue_api.BadRequestError) as refused:
            await sdk.messages.send(number="+15550000009", content="over the cap")
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["error_key"] == "LINE_HOURLY_LIMIT_REACHED"
