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
from msgstatus.testing._chime import ERROR_CODE_ENUM, ERROR_STATUS


@pytest.fixture(scope="module")
def emulator() -> Iterator[ChimeEmulator]:
    with ChimeEmulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emulator: ChimeEmulator) -> Iterator[None]:
    emulator.reset()
    emulator.clock = time.monotonic
    emulator.denied_retention = 0.0
    emulator.store_transient = False
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
    # An unsigned request never reaches Chime: AWS's front door answers it.
    response = httpx.get(f"{emulator.base_url}{path}?scope=message-status")
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == (
        "MissingAuthenticationTokenException:"
        "http://internal.amazon.com/coral/com.amazon.coral.service/"
    )
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-RequestId"]
    assert response.json() == {"message": "Missing Authentication Token"}


def test_modelled_errors_carry_the_error_code_enum_in_the_body(
    emulator: ChimeEmulator, client: Any, channel: str, sender: str
) -> None:
    message_id = emulator.add_message(channel, sender=sender)
    with pytest.raises(ClientError) as caught:
        _status(client, channel, message_id, emulator.user_arn("mallory"))
    response = caught.value.response
    # The header keeps the exception name (botocore's Error.Code); the body's Code member is the
    # model's ErrorCode enum value, which botocore puts beside it.
    assert response["Error"]["Code"] == "ForbiddenException"
    assert response["Code"] == "Forbidden"
    enum = set(client.meta.service_model.shape_for("ErrorCode").enum)
    assert set(ERROR_CODE_ENUM.values()) <= enum
    for code in ERROR_STATUS:
        assert code in ERROR_CODE_ENUM


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
def test_garbled_authorization_is_refused_at_the_front_door(
    emulator: ChimeEmulator, authorization: str
) -> None:
    response = httpx.get(
        f"{emulator.base_url}/channels/x/messages/y?scope=message-status",
        headers={"Authorization": authorization, "X-Amz-Date": "20240101T000000Z"},
    )
    assert response.status_code == 403
    expected = (
        "InvalidSignatureException"
        if "Signature=" in authorization
        else ("IncompleteSignatureException")
    )
    assert response.headers["x-amzn-ErrorType"].split(":")[0] == expected
    assert set(response.json()) == {"message"}


@pytest.mark.parametrize(
    ("akid", "secret", "region", "code"),
    [
        ("AKIDEMULATOR", "wrong-secret", "us-east-1", "InvalidSignatureException"),
        ("AKIDSOMEONEELSE", "emulator-secret", "us-east-1", "UnrecognizedClientException"),
        ("AKIDEMULATOR", "emulator-secret", "eu-west-1", "InvalidSignatureException"),
    ],
    ids=["bad-signature", "unknown-key", "wrong-region"],
)
def test_credential_failures_through_boto3(
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
    client = session.client("chime-sdk-messaging", endpoint_url=emulator.base_url)
    try:
        assert _code(lambda: _status(client, channel, message_id, sender)) == (code, 403)
    finally:
        client.close()


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
    assert tampered_body.status_code == tampered_bearer.status_code == 403
    assert tampered_body.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")


def test_an_old_signature_is_refused(emulator: ChimeEmulator) -> None:
    request = _signed(emulator, "GET", "/channels/x/messages/y?scope=message-status", b"", {})
    old = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
    response = _send_raw(request, headers={"X-Amz-Date": old})
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")


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
    assert response.headers["x-amzn-ErrorType"].startswith("UnknownOperationException:")
    assert set(response.json()) == {"Message"}


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


# -- fidelity: what the model and the docs say ------------------------------------------------


def test_details_longer_than_the_model_allows_are_refused_in_scripts(
    emulator: ChimeEmulator, channel: str, sender: str
) -> None:
    emulator.add_message(channel, sender=sender, status="FAILED", detail="x" * 256)
    with pytest.raises(ValueError, match="at most 256"):
        emulator.add_message(channel, sender=sender, status="FAILED", detail="x" * 257)
    with pytest.raises(ValueError, match="at most 256"):
        emulator.set_channel_flow(channel, [(0, ChimeState("DENIED", "y" * 300))])


@pytest.mark.parametrize(
    "change",
    [{"Content": "other"}, {"Persistence": "NON_PERSISTENT"}, {"SubChannelId": "sub-1"}],
    ids=["content", "persistence", "sub-channel"],
)
def test_a_reused_token_with_other_content_is_a_conflict(
    client: Any, channel: str, sender: str, change: dict[str, str]
) -> None:
    first = _send(client, channel, sender, ClientRequestToken="token-conflict")
    again = _send(client, channel, sender, ClientRequestToken="token-conflict")
    assert again["MessageId"] == first["MessageId"]
    assert _code(
        lambda: _send(client, channel, sender, ClientRequestToken="token-conflict", **change)
    ) == ("ConflictException", 409)


@pytest.mark.parametrize(
    ("kind", "persistence", "content"),
    [("STANDARD", "NON_PERSISTENT", "hello"), ("CONTROL", "PERSISTENT", "ping")],
)
def test_transient_messages_are_not_stored_unless_configured(
    emulator: ChimeEmulator,
    client: Any,
    channel: str,
    sender: str,
    kind: str,
    persistence: str,
    content: str,
) -> None:
    sent = _send(client, channel, sender, Type=kind, Persistence=persistence, Content=content)
    assert sent["Status"] == {"Value": "SENT"}
    assert _code(lambda: _status(client, channel, sent["MessageId"], sender)) == (
        "NotFoundException",
        404,
    )
    emulator.store_transient = True
    kept = _send(client, channel, sender, Type=kind, Persistence=persistence, Content=content)
    assert _status(client, channel, kept["MessageId"], sender)["Status"] == {"Value": "SENT"}


def test_the_aws_cli_talks_to_the_emulator(
    emulator: ChimeEmulator, channel: str, sender: str, tmp_path: Any
) -> None:
    import os
    import subprocess
    import sys

    message_id = emulator.add_message(channel, sender=sender, status="PENDING")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")} | {
        "AWS_ACCESS_KEY_ID": emulator.access_key_id,
        "AWS_SECRET_ACCESS_KEY": emulator.secret_access_key,
        "AWS_DEFAULT_REGION": emulator.region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
    }

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "awscli",
                "chime-sdk-messaging",
                *args,
                "--endpoint-url",
                emulator.base_url,
                "--output",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    looked_up = aws(
        "get-channel-message-status",
        "--channel-arn",
        channel,
        "--message-id",
        message_id,
        "--chime-bearer",
        sender,
    )
    assert looked_up.returncode == 0, looked_up.stderr
    assert json.loads(looked_up.stdout) == {"Status": {"Value": "PENDING"}}
    sent = aws(
        "send-channel-message",
        "--channel-arn",
        channel,
        "--content",
        "hi from the CLI",
        "--type",
        "STANDARD",
        "--persistence",
        "PERSISTENT",
        "--chime-bearer",
        sender,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["Status"] == {"Value": "SENT"}
    forbidden = aws(
        "get-channel-message-status",
        "--channel-arn",
        channel,
        "--message-id",
        message_id,
        "--chime-bearer",
        emulator.user_arn("mallory"),
    )
    assert forbidden.returncode != 0
    assert "ForbiddenException" in forbidden.stderr
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    refused = aws(
        "get-channel-message-status",
        "--channel-arn",
        channel,
        "--message-id",
        message_id,
        "--chime-bearer",
        sender,
    )
    assert refused.returncode != 0
    assert "InvalidSignatureException" in refused.stderr
