"""The Sendblue emulator's status_callback pushes: real HTTP POSTs to a loopback receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from msgstatus import MessageStatus, SendblueProvider
from msgstatus.testing import ManualClock, SendblueEmulator
from msgstatus.testing._server import LoopbackServer, Request, Response


class Receiver(LoopbackServer):
    """A loopback HTTP server that records every request and answers ``answers`` in turn
    (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        super().__init__()
        self.answers = list(answers or [])
        self.seen: list[Request] = []
        self._seen_lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        with self._seen_lock:
            self.seen.append(request)
            status = self.answers.pop(0) if self.answers else 200
        return Response.json(status, b"{}")

    def statuses(self) -> list[str]:
        with self._seen_lock:
            return [json.loads(request.body)["status"] for request in self.seen]


def wait_until(predicate: Callable[[], bool], seconds: float = 20.0) -> None:
    # A bounded wait for work another thread does; the bound only stops a broken test.
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true")
        time.sleep(0.01)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def emulator() -> Iterator[SendblueEmulator]:
    with SendblueEmulator() as server:
        server.clock = ManualClock()
        yield server


def send(emulator: SendblueEmulator, callback: str | None, **extra: object) -> httpx.Response:
    body: dict[str, object] = {"number": "+15551234567", "content": "Hello", **extra}
    if callback is not None:
        body["status_callback"] = callback
    return httpx.post(
        f"{emulator.base_url}/api/send-message",
        json=body,
        headers={"sb-api-key-id": emulator.api_key, "sb-api-secret-key": emulator.api_secret},
    )


def test_each_transition_is_posted_in_order_as_the_clock_moves(
    emulator: SendblueEmulator, receiver: Receiver
) -> None:
    clock = emulator.clock
    assert isinstance(clock, ManualClock)
    response = send(emulator, f"{receiver.base_url}/status")
    assert response.status_code == 200
    handle = response.json()["message_handle"]
    wait_until(lambda: receiver.statuses() == ["QUEUED"])
    clock.advance(0.5)
    wait_until(lambda: receiver.statuses() == ["QUEUED", "SENT"])
    clock.advance(0.5)
    wait_until(lambda: receiver.statuses() == ["QUEUED", "SENT", "DELIVERED"])
    last = receiver.seen[-1]
    assert (last.method, last.path) == ("POST", "/status")
    assert last.headers["content-type"] == "application/json"
    assert "sb-signing-secret" not in last.headers
    body = json.loads(last.body)
    assert body["message_handle"] == handle
    assert {"accountEmail", "date_sent", "to_number", "was_downgraded", "plan"} <= set(body)
    # The body normalizes to the same handle a lookup gives.
    result = SendblueProvider.result_from_webhook(body)
    assert result is not None
    assert (result.handle, result.status) == (f"sendblue:{handle}", MessageStatus.DELIVERED)
    # The receiver saw the POST before the emulator read its answer: wait for the log entry.
    wait_until(lambda: len(emulator.callback_log) == 3)
    assert [(a.status, a.attempt, a.http_status) for a in emulator.callback_log] == [
        ("QUEUED", 1, 200),
        ("SENT", 1, 200),
        ("DELIVERED", 1, 200),
    ]
    assert not [r for r in emulator.requests if r.path == "/api/status"]


def test_the_signing_secret_is_sent_when_configured(
    emulator: SendblueEmulator, receiver: Receiver
) -> None:
    emulator.signing_secret = "shh-0123456789"
    emulator.default_send_steps = [(0.0, "DELIVERED")]
    send(emulator, receiver.base_url + "/")
    wait_until(lambda: len(receiver.seen) == 1)
    assert receiver.seen[0].headers["sb-signing-secret"] == "shh-0123456789"


def test_a_non_2xx_answer_is_retried(emulator: SendblueEmulator) -> None:
    emulator.default_send_steps = [(0.0, "DELIVERED")]
    emulator.callback_backoff = 0.01
    with Receiver(answers=[500, 404]) as flaky:
        send(emulator, flaky.base_url + "/")
        wait_until(lambda: len(emulator.callback_log) == 3)
        assert [(a.attempt, a.http_status) for a in emulator.callback_log] == [
            (1, 500),
            (2, 404),
            (3, 200),
        ]
        assert flaky.statuses() == ["DELIVERED"] * 3


def test_retries_are_bounded(emulator: SendblueEmulator) -> None:
    emulator.default_send_steps = [(0.0, "DELIVERED")]
    emulator.callback_backoff = 0.01
    emulator.callback_retries = 2
    with Receiver(answers=[503] * 10) as down:
        send(emulator, down.base_url + "/")
        wait_until(lambda: len(emulator.callback_log) == 3)
        time.sleep(0.2)  # not a timing assertion: gives a fourth try the chance to show up
        assert [a.attempt for a in emulator.callback_log] == [1, 2, 3]
        assert len(down.seen) == 3


def test_a_refused_connection_is_retried_and_recorded(emulator: SendblueEmulator) -> None:
    emulator.default_send_steps = [(0.0, "DELIVERED")]
    emulator.callback_backoff = 0.01
    emulator.callback_retries = 1
    with Receiver() as gone:
        url = gone.base_url + "/"
    send(emulator, url)
    wait_until(lambda: len(emulator.callback_log) == 2)
    assert all(a.http_status is None and a.error for a in emulator.callback_log)


def test_set_status_after_the_lifecycle_is_pushed(
    emulator: SendblueEmulator, receiver: Receiver
) -> None:
    emulator.default_send_steps = [(0.0, "SENT")]
    handle = send(emulator, receiver.base_url + "/").json()["message_handle"]
    wait_until(lambda: receiver.statuses() == ["SENT"])
    emulator.set_status(handle, "READ")
    wait_until(lambda: receiver.statuses() == ["SENT", "READ"])


@pytest.mark.parametrize(
    "callback",
    ["http://192.0.2.10/status", "https://example.com/cb", "ftp://127.0.0.1/x", "not a url", 7],
)
def test_only_loopback_callbacks_are_accepted(emulator: SendblueEmulator, callback: object) -> None:
    before = len(emulator.handles)
    response = send(emulator, None, status_callback=callback)
    assert response.status_code == 400
    assert len(emulator.handles) == before
    assert emulator.callback_log == []


def test_stop_ends_pending_deliveries() -> None:
    with Receiver(answers=[500] * 100) as down:
        emulator = SendblueEmulator()
        emulator.start()
        try:
            emulator.default_send_steps = [(0.0, "DELIVERED")]
            emulator.callback_backoff = 30.0
            send(emulator, down.base_url + "/")
            wait_until(lambda: len(emulator.callback_log) == 1)
        finally:
            emulator.stop()
        assert len(emulator.callback_log) == 1
