"""The Sendblue webhook receiver, in process (httpx.ASGITransport): every documented answer, and
nothing handed over for bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from msgstatus import (
    MessageStatus,
    SendblueProvider,
    SendblueWebhook,
    SendClaim,
    SQLiteLedger,
    StatusClient,
    StatusResult,
)
from msgstatus._webhooks import DEFAULT_MAX_BODY, secrets_match
from msgstatus.errors import LedgerUnavailableError
from msgstatus.testing import SendblueEmulator

pytestmark = pytest.mark.anyio

SECRET = "whsec-test-0123456789"
HANDLE = "2a5b8c0e-1111-4222-8333-944445555666"


def body(status: str = "DELIVERED", **fields: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "accountEmail": "someone@example.com",
        "content": "Hello",
        "is_outbound": True,
        "status": status,
        "error_code": None,
        "error_message": None,
        "message_handle": HANDLE,
        "date_sent": "2020-09-10T06:15:05.962Z",
        "date_updated": "2020-09-10T06:15:14.115Z",
        "from_number": "+15122164639",
        "number": "+19998887777",
        "to_number": "+19998887777",
        "was_downgraded": False,
        "plan": "blue",
    }
    payload.update(fields)
    return payload


class Recorder:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.results: list[StatusResult] = []
        self.fail = fail

    async def __call__(self, result: StatusResult) -> None:
        if self.fail is not None:
            raise self.fail
        self.results.append(result)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def http(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    app = SendblueWebhook(recorder, secret=SECRET)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


def signed(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"sb-signing-secret": SECRET, "content-type": "application/json"}
    headers.update(extra or {})
    return headers


async def test_a_status_callback_is_normalized_and_handed_over(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await http.post("/", json=body(), headers=signed())
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    [result] = recorder.results
    assert (result.provider, result.handle, result.status) == (
        "sendblue",
        f"sendblue:{HANDLE}",
        MessageStatus.DELIVERED,
    )
    assert result.is_final
    assert result.raw == body()


async def test_the_handle_equals_the_handle_a_poll_gives(recorder: Recorder) -> None:
    with SendblueEmulator() as emulator:
        handle = emulator.add_message(status="SENT")
        async with emulator.provider() as provider:
            polled = await provider.get_status(handle)
        payload = emulator.payload(handle)
    app = SendblueWebhook(recorder, secret=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://receiver"
    ) as client:
        response = await client.post("/", json=payload)
    assert response.status_code == 200
    assert recorder.results[0].handle == polled.handle
    assert recorder.results[0].status is polled.status


async def test_charset_parameter_is_accepted(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.post(
        "/",
        content=json.dumps(body()).encode(),
        headers=signed({"content-type": "application/json; charset=utf-8"}),
    )
    assert response.status_code == 200
    assert len(recorder.results) == 1


# -- bad input: the documented answer, and nothing handed over ---------------------------------


async def test_wrong_secret_gets_401_without_detail(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await http.post("/", json=body(), headers=signed({"sb-signing-secret": "nope"}))
    assert response.status_code == 401
    assert response.content == b""
    assert recorder.results == []


async def test_missing_secret_gets_401(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.post("/", json=body(), headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert response.content == b""
    assert recorder.results == []


async def test_a_prefix_of_the_secret_is_not_the_secret(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await http.post("/", json=body(), headers=signed({"sb-signing-secret": SECRET[:-1]}))
    assert response.status_code == 401
    assert recorder.results == []


async def test_one_mebibyte_body_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    huge = json.dumps(body(content="x" * (1024 * 1024))).encode()
    response = await http.post("/", content=huge, headers=signed())
    assert response.status_code == 400
    assert "larger than" in response.json()["error"]
    assert recorder.results == []


async def test_a_body_over_the_cap_without_content_length_gets_400(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(DEFAULT_MAX_BODY // 1024 + 2):
            yield b" " * 1024

    response = await http.post("/", content=chunks(), headers=signed())
    assert "content-length" not in response.request.headers
    assert response.status_code == 400
    assert recorder.results == []


async def test_deep_json_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    nested: object = "DELIVERED"
    for _ in range(40):
        nested = {"x": nested}
    response = await http.post("/", json=body(extra=nested), headers=signed())
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]
    assert recorder.results == []


async def test_json_too_deep_for_the_parser_gets_400(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    # Deeper than Python's recursion limit, still under the body cap.
    response = await http.post("/", content=b"[" * 60_000, headers=signed())
    assert response.status_code == 400
    assert recorder.results == []


async def test_non_json_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.post("/", content=b"status=DELIVERED", headers=signed())
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not JSON"}
    assert recorder.results == []


async def test_nan_is_not_json(http: httpx.AsyncClient, recorder: Recorder) -> None:
    text = json.dumps(body()).replace('"plan": "blue"', '"plan": NaN')
    response = await http.post("/", content=text.encode(), headers=signed())
    assert response.status_code == 400
    assert recorder.results == []


async def test_invalid_utf8_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    raw = json.dumps(body()).encode().replace(b"Hello", b"Hel\xfflo")
    response = await http.post("/", content=raw, headers=signed())
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not UTF-8"}
    assert recorder.results == []


async def test_wrong_content_type_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.post(
        "/",
        content=json.dumps(body()).encode(),
        headers=signed({"content-type": "application/x-www-form-urlencoded"}),
    )
    assert response.status_code == 400
    assert "content type" in response.json()["error"]
    assert recorder.results == []


async def test_missing_content_type_gets_400(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.post(
        "/", content=json.dumps(body()).encode(), headers={"sb-signing-secret": SECRET}
    )
    assert response.status_code == 400
    assert recorder.results == []


async def test_unknown_status_gets_200_and_is_not_handed_over(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await http.post("/", json=body("TELEPORTED"), headers=signed())
    assert response.status_code == 200
    assert "TELEPORTED" in response.json()["ignored"]
    assert recorder.results == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"status": "DELIVERED", "message_handle": "\\ud800abc"}',
        b'{"status": "DELIVERED", "message_handle": "abc", "content": "\\udfff"}',
        b'{"status": "DELIVERED", "message_handle": "abc", "\\ud83d": 1}',
    ],
    ids=["in-handle", "in-a-field", "in-a-key"],
)
async def test_lone_surrogates_get_400(
    http: httpx.AsyncClient, recorder: Recorder, raw: bytes
) -> None:
    response = await http.post("/", content=raw, headers=signed())
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]
    assert recorder.results == []


@pytest.mark.parametrize(
    "payload",
    [
        ["not", "an", "object"],
        {"status": "DELIVERED"},
        {"status": "DELIVERED", "message_handle": "a b"},
        {"status": "DELIVERED", "message_handle": 7},
        {"status": 3, "message_handle": HANDLE},
    ],
    ids=["array", "no-handle", "space-in-handle", "number-handle", "status-not-text"],
)
async def test_payloads_the_normalizer_refuses_get_400(
    http: httpx.AsyncClient, recorder: Recorder, payload: object
) -> None:
    response = await http.post("/", json=payload, headers=signed())
    assert response.status_code == 400
    assert recorder.results == []


async def test_another_webhook_type_gets_200_and_is_not_handed_over(
    http: httpx.AsyncClient, recorder: Recorder
) -> None:
    typing = {"number": "+19998887777", "is_typing": True, "timestamp": "2024-01-01T00:00:00Z"}
    response = await http.post("/", json=typing, headers=signed())
    assert response.status_code == 200
    assert "ignored" in response.json()
    assert recorder.results == []


async def test_get_gets_405(http: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await http.get("/", headers=signed())
    assert response.status_code == 405
    assert recorder.results == []


async def test_a_failing_on_result_gets_500_so_that_it_is_retried() -> None:
    failing = Recorder(fail=LedgerUnavailableError("the database is down"))
    app = SendblueWebhook(failing, secret=SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://receiver"
    ) as client:
        response = await client.post("/", json=body(), headers=signed())
    assert response.status_code == 500
    assert "database" not in response.text


# -- the merge: repeats and out-of-order pushes -----------------------------------------------


async def test_repeated_and_out_of_order_pushes_never_move_backwards(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    async with ledger:
        claim = await ledger.claim("order-1")
        assert isinstance(claim, SendClaim)
        await claim.sent(f"sendblue:{HANDLE}")
        app = SendblueWebhook(ledger.observe, secret=SECRET)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://receiver"
        ) as client:
            for status in ("DELIVERED", "SENT", "QUEUED", "DELIVERED", "ERROR", "SENT"):
                response = await client.post(
                    "/",
                    json=body(status, error_code=10001 if status == "ERROR" else None),
                    headers=signed(),
                )
                assert response.status_code == 200
        entry = await ledger.entry("order-1")
        assert entry is not None
        observation = entry.attempts[0].observation
        assert observation is not None
        assert observation.status is MessageStatus.DELIVERED
        assert observation.detail is not None
        assert observation.detail.startswith("conflict")
        assert entry.decision.action.value == "SKIP"


async def test_client_observe_serves_a_pushed_delivery_without_a_lookup() -> None:
    with SendblueEmulator() as emulator:
        handle = emulator.add_message(status="SENT")
        async with StatusClient([emulator.provider()]) as client:
            app = SendblueWebhook(client.observe, secret=None)
            payload = dict(emulator.payload(handle), status="DELIVERED")
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://receiver"
            ) as http:
                assert (await http.post("/", json=payload)).status_code == 200
            before = emulator.stats.requests
            result = await client.get_status(handle)
            assert result.status is MessageStatus.DELIVERED
            assert emulator.stats.requests == before
            # A later poll answering less (SENT) does not move the cached delivery back.
            refreshed = await client.get_status(handle, refresh=True)
            assert refreshed.status is MessageStatus.DELIVERED


async def test_client_observe_refuses_an_unrouted_provider() -> None:
    from msgstatus import UnknownProviderError

    async with StatusClient([]) as client:
        with pytest.raises(UnknownProviderError):
            await client.observe(
                StatusResult(provider="sendblue", handle="sendblue:x", status=MessageStatus.SENT)
            )
        with pytest.raises(TypeError):
            await client.observe({"status": "SENT"})  # type: ignore[arg-type]


# -- configuration ------------------------------------------------------------------------------


def test_secrets_match_is_exact() -> None:
    assert secrets_match(SECRET, SECRET)
    assert secrets_match(SECRET.encode(), SECRET)
    assert not secrets_match(None, SECRET)
    assert not secrets_match("", SECRET)
    assert not secrets_match(SECRET + "x", SECRET)


def test_the_secret_is_not_in_the_repr() -> None:
    app = SendblueWebhook(Recorder(), secret=SECRET)
    assert SECRET not in repr(app)


@pytest.mark.parametrize(
    "options",
    [{"secret": ""}, {"secret": None, "max_body": 0}, {"secret": None, "max_depth": 0}],
)
def test_bad_configuration_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"secret|max_body|max_depth"):
        SendblueWebhook(Recorder(), **options)  # type: ignore[arg-type]


async def test_mounted_in_a_starlette_app(recorder: Recorder) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def health(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    receiver = SendblueWebhook(recorder, secret=SECRET)
    app = Starlette(
        routes=[
            Route("/health", health),
            # An exact path: Route takes an ASGI app as its endpoint.
            Route("/webhooks/sendblue", receiver, methods=["POST"]),
            # Or mounted (Starlette redirects the path without its slash: give Sendblue the
            # URL with it).
            Mount("/mounted", app=receiver),
        ]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as client:
        assert (await client.get("/health")).text == "ok"
        response = await client.post("/webhooks/sendblue", json=body(), headers=signed())
        assert response.status_code == 200
        mounted = await client.post("/mounted/", json=body("READ"), headers=signed())
        assert mounted.status_code == 200
        refused = await client.post("/mounted/", json=body(), headers={})
        assert refused.status_code == 401
    assert [r.status for r in recorder.results] == [MessageStatus.DELIVERED, MessageStatus.READ]


def test_a_webhook_that_is_no_message_status_normalizes_to_none() -> None:
    typing = {"number": "+19998887777", "is_typing": True}
    assert SendblueProvider.result_from_webhook(typing) is None
    body = {"message_handle": "m-1", "status": "DELIVERED"}
    result = SendblueProvider.result_from_webhook(body)
    assert result is not None
    assert result.handle == "sendblue:m-1"


def test_an_on_result_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="on_result must be an async callable"):
        SendblueWebhook("ledger.observe", secret=SECRET)  # type: ignore[arg-type]


# -- the ASGI protocol beyond one request: lifespan, other scopes, a client that goes away ------


class ASGIPeer:
    """The server's side of one ASGI call: hands the app ``incoming`` messages one by one (then
    fails, so that a read past them is seen) and records what the app sends."""

    def __init__(self, *incoming: dict[str, object]) -> None:
        self.incoming = list(incoming)
        self.received = 0
        self.sent: list[dict[str, object]] = []

    async def receive(self) -> dict[str, object]:
        if not self.incoming:
            raise AssertionError("the app read past the messages it was given")
        self.received += 1
        return self.incoming.pop(0)

    async def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)


async def test_lifespan_startup_and_shutdown_are_acknowledged(recorder: Recorder) -> None:
    app = SendblueWebhook(recorder, secret=SECRET)
    peer = ASGIPeer(
        {"type": "lifespan.startup"},
        {"type": "lifespan.something-newer"},  # a message type of a later ASGI: ignored
        {"type": "lifespan.shutdown"},
    )
    with anyio.fail_after(10):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send)
    assert peer.sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert peer.incoming == []  # it returned after the shutdown, having read everything


async def test_a_websocket_scope_is_not_served(recorder: Recorder) -> None:
    app = SendblueWebhook(recorder, secret=SECRET)
    peer = ASGIPeer()
    await app({"type": "websocket", "path": "/", "headers": []}, peer.receive, peer.send)
    # Nothing read, nothing sent: the server closes the websocket (uvicorn answers 403).
    assert (peer.received, peer.sent) == (0, [])
    assert recorder.results == []


async def test_a_client_that_disconnects_mid_body_gets_no_answer(recorder: Recorder) -> None:
    app = SendblueWebhook(recorder, secret=SECRET)
    first_half = json.dumps(body()).encode()[:40]
    peer = ASGIPeer(
        {"type": "http.request", "body": first_half, "more_body": True},
        {"type": "http.disconnect"},
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"sb-signing-secret", SECRET.encode()),
            (b"content-type", b"application/json"),
        ],
    }
    await app(scope, peer.receive, peer.send)
    assert peer.incoming == []
    assert peer.sent == []  # no one to answer
    assert recorder.results == []
