from __future__ import annotations

import json

import anyio
import httpx
import pytest

from msgstatus.testing._server import (
    Fault,
    Lifecycle,
    LoopbackServer,
    ManualClock,
    Request,
    Response,
)


class Echo(LoopbackServer):
    async def handle(self, request: Request) -> Response:
        body = {"method": request.method, "path": request.path, "query": request.query}
        return Response.json(200, json.dumps(body).encode())


def test_serves_real_http_with_keep_alive() -> None:
    with Echo() as server, httpx.Client(base_url=server.base_url) as client:
        for i in range(20):
            reply = client.get("/a%20b/c", params={"handle": f"h{i}"})
            assert reply.status_code == 200
            assert reply.json() == {"method": "GET", "path": "/a b/c", "query": {"handle": f"h{i}"}}
        assert server.stats.requests == 20
        assert server.stats.connections == 1
        assert len(server.requests) == 20


def test_queued_fault_hits_only_the_next_matching_requests() -> None:
    with Echo() as server, httpx.Client(base_url=server.base_url) as client:
        server.inject(Fault.SERVER_ERROR_503, times=2, match=lambda r: r.path == "/x")
        assert client.get("/y").status_code == 200
        assert client.get("/x").status_code == 503
        assert "text/html" in client.get("/x").headers["content-type"]
        assert client.get("/x").status_code == 200
        assert server.stats.faults_injected == 2


def test_rate_limit_carries_retry_after_in_both_forms() -> None:
    with Echo() as server, httpx.Client(base_url=server.base_url) as client:
        server.inject(Fault.RATE_LIMIT)
        server.inject(Fault.RATE_LIMIT_HTTP_DATE)
        assert client.get("/").headers["retry-after"] == "1"
        assert client.get("/").headers["retry-after"].endswith("GMT")


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.TRUNCATED])
def test_broken_connections_raise_in_the_client(fault: Fault) -> None:
    with Echo() as server, httpx.Client(base_url=server.base_url) as client:
        server.inject(fault)
        with pytest.raises(httpx.TransportError):
            client.get("/")
        assert client.get("/").status_code == 200


def test_stall_holds_the_request_until_the_client_gives_up() -> None:
    with Echo() as server, httpx.Client(base_url=server.base_url, timeout=0.2) as client:
        server.inject(Fault.STALL)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/")


def test_random_faults_are_reproducible() -> None:
    def run() -> list[int]:
        with Echo() as server, httpx.Client(base_url=server.base_url) as client:
            server.set_random_faults(0.5, [Fault.SERVER_ERROR_500], seed=3)
            return [client.get("/").status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert 0 < first.count(500) < 30


@pytest.mark.anyio
async def test_async_context_manager_and_in_flight_counting() -> None:
    async with Echo(latency=0.5) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(client.get, "/")
        assert server.stats.requests == 8
        assert 1 < server.stats.max_in_flight <= 8
        # A request is counted out just after its reply is written, so this may lag the client.
        with anyio.fail_after(5):
            while server.stats.in_flight:  # noqa: ASYNC110 - a counter of the server thread
                await anyio.sleep(0.01)


def test_lifecycle_follows_its_clock() -> None:
    now = [100.0]
    life = Lifecycle([(0.0, "a"), (1.0, "b"), (2.5, "c")], clock=lambda: now[0])
    assert life.current() == "a"
    now[0] = 101.0
    assert life.current() == "b"
    now[0] = 150.0
    assert life.current() == "c"
    with pytest.raises(ValueError, match="ascending"):
        Lifecycle([(1.0, "a"), (0.5, "b")], clock=lambda: 0.0)


class Broken(LoopbackServer):
    async def handle(self, request: Request) -> Response:
        if request.path == "/bug":
            raise RuntimeError("emulator bug")
        return Response.json(200, b"{}")


def test_a_handler_bug_costs_one_request_not_the_server() -> None:
    with Broken() as server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        assert client.get("/bug").status_code == 500
        assert client.get("/ok").status_code == 200


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=5.0)
    life = Lifecycle([(0.0, "a"), (2.0, "b")], clock=clock)
    assert clock() == 5.0
    assert life.current() == "a"
    clock.advance(2.0)
    assert clock() == 7.0
    assert life.current() == "b"


def test_latency_defaults_to_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSGSTATUS_EMULATOR_LATENCY", raising=False)
    assert Echo().latency == 0.0
    monkeypatch.setenv("MSGSTATUS_EMULATOR_LATENCY", "0.15")
    assert Echo().latency == 0.15
    # An explicit latency wins over the switch, zero included.
    assert Echo(latency=0.0).latency == 0.0
    assert Echo(latency=0.3).latency == 0.3


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "fast"])
def test_a_bad_latency_switch_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MSGSTATUS_EMULATOR_LATENCY", value)
    with pytest.raises(ValueError, match="MSGSTATUS_EMULATOR_LATENCY"):
        Echo()
