"""ChimeEmulator's wire format, as boto3 and a raw HTTP client see it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import pytest
from botocore.exceptions import ClientError

from msgstatus.testing import ChimeEmulator, ChimeState, Fault, ManualClock
from msgstatus.testing._chime import ERROR_STATUS


@pytest.fixture(scope="module")
def emulator() -> Iterator[ChimeEmulator]:
    with ChimeEmulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emulator: ChimeEmulator) -> Iterator[None]:
    emulator.reset()
    emulator.clock = time.monotonic
    emulator.denied_retention = 0.0
    yield
    assert emulator.errors == []


@pytest.fixture(scope="module")
def client(emulator: ChimeEmulator) -> Iterator[Any]:
    client = emulator.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(emulator: ChimeEmulator) -> str:
    return emulator.channel_arn()


@pytest.fixture(scope="module")
def sender(emulator: ChimeEmulator) -> str:
    return emulator.user_arn()


def _status(client: Any, channel: str, message_id: str, bearer: str, **extra: Any) -> Any:
    return client.get_channel_message_status(
        ChannelArn=channel, MessageId=message_id, ChimeBearer=bearer, **extra
    )


def _code(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- errors exactly as the service words them -------------------------------------------------


def test_error_wire_format(emulator: ChimeEmulator, channel: str, sender: str) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    path = f"/channels/{channel.replace(':', '%3A').replace('/', '%2F')}/messages/{message_id}"
    response = httpx.get(f"{emulator.base_url}{path}?scope=message-status")
    assert response.status_code == 401
    assert response.headers["x-amzn-ErrorType"] == (
        "UnauthorizedClientException:http://internal.amazon.com/coral/com.amazonaws.chime/"
    )
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-RequestId"]
    body = response.json()
    assert set(body) == {"Code", "Message"}
    assert body["Code"] == "UnauthorizedClientException"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEMULATOR/20240101/us-east-1/chime/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDEMULATOR/20240101/us-east-1/chime/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    ],
    ids=["not-sigv4", "no-signature", "wrong-signature"],
)
def test_garbled_authorization_is_unauthorized(emulator: ChimeEmulator, authorization: str) -> None:
    response = httpx.get(
        f"{emulator.base_url}/channels/x/messages/y?scope=message-status",
        headers={"Authorization": authorization, "X-Amz-Date": "20240101T000000Z"},
    )
    assert response.status_code == 401
    assert response.json()["Code"] == "UnauthorizedClientException"


def _signed(
    emulator: ChimeEmulator, method: str, path: str, body: bytes, headers: dict[str, str]
) -> botocore.awsrequest.AWSRequest:
    request = botocore.awsrequest.AWSRequest(
        method=method, url=f"{emulator.base_url}{path}", data=body, headers=headers
    )
    credentials = botocore.credentials.Credentials("AKIDEMULATOR", "emulator-secret")
    botocore.auth.SigV4Auth(credentials, "chime", "us-east-1").add_auth(request)
    return request


def _send_raw(request: botocore.awsrequest.AWSRequest, **changes: Any) -> httpx.Response:
    headers = dict(request.headers.items())
    headers.update(changes.pop("headers", {}))
    body = changes.pop("body", request.body)
    return httpx.request(request.method, request.url, headers=headers, content=body)


def test_the_signature_covers_headers_and_body(
    emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    path = f"/channels/{channel.replace(':', '%3A').replace('/', '%2F')}/messages"
    body = json.dumps(
        {
            "Content": "hi",
            "Type": "STANDARD",
            "Persistence": "PERSISTENT",
            "ClientRequestToken": "tok-1",
        }
    ).encode()
    request = _signed(emulator, "POST", path, body, {"x-amz-chime-bearer": sender})
    assert _send_raw(request).status_code == 201
    tampered_body = _send_raw(request, body=body.replace(b"hi", b"yo"))
    tampered_bearer = _send_raw(request, headers={"x-amz-chime-bearer": sender + "x"})
    assert tampered_body.status_code == tampered_bearer.status_code == 401


def test_an_old_signature_is_refused(emulator: ChimeEmulator) -> None:
    request = _signed(emulator, "GET", "/channels/x/messages/y?scope=message-status", b"", {})
    old = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
    response = _send_raw(request, headers={"X-Amz-Date": old})
    assert response.status_code == 401


def test_session_tokens_are_signed_and_accepted(
    emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    session = boto3.session.Session(
        aws_access_key_id=emulator.access_key_id,
        aws_secret_access_key=emulator.secret_access_key,
        aws_session_token="a-session-token",
        region_name=emulator.region,
    )
    client = session.client("chime-sdk-messaging", endpoint_url=emulator.base_url)
    assert _status(client, channel, message_id, sender)["Status"] == {"Value": "SENT"}
    assert emulator.requests[-1].headers["x-amz-security-token"] == "a-session-token"
    client.close()


def test_unknown_operations(emulator: ChimeEmulator, client: Any, channel: str) -> None:
    request = _signed(emulator, "GET", "/channels", b"", {})
    response = _send_raw(request)
    assert response.status_code == 404
    assert response.json()["Code"] == "UnknownOperationException"


def test_status_errors_through_boto3(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    other = emulator.user_arn("mallory")
    assert _code(lambda: _status(client, channel, message_id, other)) == (
        "ForbiddenException",
        403,
    )
    assert _code(lambda: _status(client, channel, "missing", sender)) == ("NotFoundException", 404)
    # botocore checks lengths and types, not patterns: the emulator refuses the rest.
    assert _code(lambda: _status(client, "not-an-arn", message_id, sender)) == (
        "BadRequestException",
        400,
    )
    assert _code(lambda: _status(client, channel, "a.b", sender)) == ("BadRequestException", 400)
    assert _code(lambda: _status(client, channel, message_id, "bob-the-user")) == (
        "BadRequestException",
        400,
    )
    assert _code(lambda: _status(client, channel, message_id, sender, SubChannelId="a b")) == (
        "BadRequestException",
        400,
    )


@pytest.mark.parametrize(("code", "status"), sorted(ERROR_STATUS.items()))
def test_injected_errors(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str, code: str, status: int
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject_error(code, message="injected")
    with pytest.raises(ClientError) as caught:
        _status(client, channel, message_id, sender)
    error = caught.value.response
    assert error["Error"] == {"Code": code, "Message": "injected"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    # Only once.
    assert _status(client, channel, message_id, sender)["Status"] == {"Value": "SENT"}


def test_inject_error_with_a_match_and_a_custom_code(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str
) -> None:
    first = emulator.add_message(channel, sender=sender)
    second = emulator.add_message(channel, sender=sender)
    emulator.inject_error(
        "AccessDeniedException", status=403, times=None, match=lambda r: first in r.target
    )
    assert _code(lambda: _status(client, channel, first, sender)) == ("AccessDeniedException", 403)
    assert _code(lambda: _status(client, channel, first, sender)) == ("AccessDeniedException", 403)
    assert _status(client, channel, second, sender)["Status"]["Value"] == "SENT"
    with pytest.raises(ValueError, match="status="):
        emulator.inject_error("MadeUpException")


# -- faults in Chime's words ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        (Fault.RATE_LIMIT, "ThrottledClientException", 429),
        (Fault.RATE_LIMIT_HTTP_DATE, "ThrottledClientException", 429),
        (Fault.SERVER_ERROR_500, "ServiceFailureException", 500),
        (Fault.SERVER_ERROR_503, "ServiceUnavailableException", 503),
        # A load balancer's HTML page: botocore can only name the status.
        (Fault.SERVER_ERROR_502, "502", 502),
        (Fault.SERVER_ERROR_504, "504", 504),
    ],
)
def test_error_faults(
    emulator: ChimeEmulator,
    client: Any,
    channel: str,
    sender: str,
    fault: Fault,
    code: str,
    status: int,
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(fault)
    with pytest.raises(ClientError) as caught:
        _status(client, channel, message_id, sender)
    response = caught.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        status,
    )
    if status == 429:
        assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]


def test_shape_faults(emulator: ChimeEmulator, client: Any, channel: str, sender: str) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    emulator.inject(Fault.UNKNOWN_STATUS)
    assert _status(client, channel, message_id, sender)["Status"] == {"Value": "TELEPORTED"}
    emulator.inject(Fault.WRONG_SHAPE, times=2)
    for _ in range(2):
        with pytest.raises(AttributeError):  # botocore's parser trips over it
            _status(client, channel, message_id, sender)
    emulator.inject(Fault.UNKNOWN_STATUS)
    sent = client.send_channel_message(
        ChannelArn=channel,
        Content="x",
        Type="STANDARD",
        Persistence="PERSISTENT",
        ChimeBearer=sender,
    )
    assert sent["Status"] == {"Value": "TELEPORTED"}
    assert sent["ChannelArn"] == channel


# -- sends, flows, lifecycles -----------------------------------------------------------------


def _send(client: Any, channel: str, sender: str, **overrides: Any) -> Any:
    params = {
        "ChannelArn": channel,
        "Content": "hello",
        "Type": "STANDARD",
        "Persistence": "PERSISTENT",
        "ChimeBearer": sender,
        **overrides,
    }
    return client.send_channel_message(**params)


def test_send_validation(client: Any, channel: str, sender: str) -> None:
    assert _code(lambda: _send(client, channel, sender, Type="LOUD")) == (
        "BadRequestException",
        400,
    )
    assert _code(lambda: _send(client, channel, sender, Type="CONTROL", Content="x" * 31)) == (
        "BadRequestException",
        400,
    )
    assert _code(lambda: _send(client, channel, sender, Content="x" * 4097)) == (
        "BadRequestException",
        400,
    )
    assert _send(client, channel, sender, Type="CONTROL", Content="x" * 30)["Status"] == {
        "Value": "SENT"
    }


def test_flows_and_retention(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str
) -> None:
    clock = ManualClock()
    emulator.clock = clock
    emulator.denied_retention = 2.0
    emulator.set_channel_flow(channel, [(0.0, "PENDING"), (1.0, ChimeState("DENIED", "nope"))])
    sent = _send(client, channel, sender)
    message_id = sent["MessageId"]
    assert sent["Status"] == {"Value": "PENDING"}
    assert emulator.status_payload(channel, message_id) == {"Status": {"Value": "PENDING"}}
    assert emulator.sender_of(channel, message_id) == sender
    clock.now += 1.0
    assert _status(client, channel, message_id, sender)["Status"] == {
        "Value": "DENIED",
        "Detail": "nope",
    }
    clock.now += 2.0
    assert emulator.status_payload(channel, message_id) is None
    assert _code(lambda: _status(client, channel, message_id, sender)) == (
        "NotFoundException",
        404,
    )
    emulator.set_channel_flow(channel, None)
    assert _send(client, channel, sender)["Status"] == {"Value": "SENT"}


def test_a_failing_flow_is_a_service_failure(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str
) -> None:
    def flow(content: str) -> list[tuple[float, str]]:
        raise RuntimeError("flow bug")

    emulator.set_channel_flow(channel, flow)
    assert _code(lambda: _send(client, channel, sender)) == ("ServiceFailureException", 500)
    assert [str(error) for error in emulator.errors] == ["flow bug"]
    emulator.errors.clear()


def test_set_status_and_messages(emulator: ChimeEmulator, client: Any, channel: str) -> None:
    sender = emulator.user_arn("carol")
    message_id = emulator.add_message(
        channel, sender=sender, message_id="fixed-id", steps=[(0.0, "PENDING")]
    )
    assert message_id == "fixed-id"
    emulator.set_status(channel, message_id, ChimeState("FAILED", "gave up"))
    assert _status(client, channel, message_id, sender)["Status"] == {
        "Value": "FAILED",
        "Detail": "gave up",
    }
    assert emulator.messages == [(channel, "fixed-id")]
    with pytest.raises(KeyError):
        emulator.set_status(channel, "other", "SENT")
    emulator.reset()
    assert emulator.messages == []
    assert emulator.stats.requests == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": [(0.0, "DENIED"), (1.0, "SENT")]},
        {"steps": [(1.0, "SENT"), (0.0, "PENDING")]},
        {"steps": []},
        {"status": "SENT", "steps": [(0.0, "SENT")]},
        {"steps": [(0.0, "SENT")], "detail": "x"},
        {"message_id": "a/b"},
        {"sub_channel_id": ""},
    ],
)
def test_bad_scripts_fail_in_the_test(
    emulator: ChimeEmulator, channel: str, sender: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by case
        emulator.add_message(channel, sender=sender, **kwargs)


def test_bad_arns_and_flows_fail_in_the_test(emulator: ChimeEmulator, channel: str) -> None:
    with pytest.raises(ValueError, match="channel_arn"):
        emulator.add_message("general", sender=emulator.user_arn())
    with pytest.raises(ValueError, match="sender"):
        emulator.add_message(channel, sender="alice")
    with pytest.raises(ValueError, match="DENIED"):
        emulator.set_channel_flow(channel, [(0.0, "DENIED"), (1.0, "SENT")])


@pytest.mark.anyio
async def test_async_context_manager_and_plugin_fixture(chime_emulator: ChimeEmulator) -> None:
    assert chime_emulator.port
    async with ChimeEmulator() as emulator:
        assert emulator.base_url.startswith("http://127.0.0.1:")
