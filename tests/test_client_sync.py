"""SyncStatusClient from plain ``def`` tests: no event loop of the caller's own."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from msgstatus import (
    InvalidHandleError,
    MessageNotFoundError,
    MessageStatus,
    ResendAction,
    StatusResult,
    StatusWaitTimeout,
    SyncStatusClient,
    UnknownProviderError,
)
from test_client import FakeHandle, FakeProvider, chime_like, sendblue_like

S = MessageStatus

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@BACKENDS
def test_get_status_blocks_and_routes(backend: str) -> None:
    chime, sendblue = chime_like(), sendblue_like()
    chime.script("m1", S.SENT)
    with SyncStatusClient([chime, sendblue], backend=backend) as client:
        result = client.get_status("chimelike:m1")
        typed = client.get_status(FakeHandle("sendbluelike", "m2"))
        with pytest.raises(UnknownProviderError):
            client.get_status("nope:m1")
        with pytest.raises(InvalidHandleError):
            client.get_status("m1")
        with pytest.raises(MessageNotFoundError):
            client.get_status("chimelike:missing-1")
    assert (result.status, result.is_final) == (S.SENT, True)
    assert typed.handle == "sendbluelike:m2"
    assert (chime.closed, sendblue.closed) == (1, 1)


@BACKENDS
def test_batches_return_lists_in_order(backend: str) -> None:
    handles = ["fake:a", "fake:missing-1", "nope:x", "fake:pending-1"]
    with SyncStatusClient([FakeProvider()], backend=backend) as client:
        results = client.get_statuses(handles, concurrency=2)
        decisions = client.resend_decisions(handles, concurrency=2)
    assert [type(r).__name__ for r in results] == [
        "StatusResult",
        "MessageNotFoundError",
        "UnknownProviderError",
        "StatusResult",
    ]
    assert [d.action for d in decisions] == [
        ResendAction.SKIP,
        ResendAction.UNKNOWN,
        ResendAction.UNKNOWN,
        ResendAction.WAIT,
    ]


@BACKENDS
def test_iter_statuses_is_a_generator(backend: str) -> None:
    provider = FakeProvider()
    with SyncStatusClient([provider], backend=backend) as client:
        pairs = list(client.iter_statuses(f"fake:m{i}" for i in range(200)))
    assert sorted(str(h) for h, _ in pairs) == sorted(f"fake:m{i}" for i in range(200))
    assert all(isinstance(outcome, StatusResult) for _, outcome in pairs)


def test_closing_the_generator_early_cancels_the_lookups() -> None:
    provider = FakeProvider(delay=0.01)
    with SyncStatusClient([provider]) as client:
        with closing(client.iter_statuses(f"fake:m{i}" for i in range(10_000))) as pairs:
            for count, _ in enumerate(pairs):
                if count == 10:
                    break
        assert provider.in_flight == 0
        assert provider.total_calls < 100
        # The client still works afterwards.
        assert client.get_status("fake:after").status is S.DELIVERED


@BACKENDS
def test_wait_for_final_and_its_timeout(backend: str) -> None:
    provider = sendblue_like()
    provider.script("m1", S.PENDING, S.SENT, S.DELIVERED)
    provider.script("stuck", S.PENDING)
    with SyncStatusClient([provider], backend=backend) as client:
        result = client.wait_for_final(
            "sendbluelike:m1", timeout=5, poll_interval=0.01, max_interval=0.02
        )
        with pytest.raises(StatusWaitTimeout) as info:
            client.wait_for_final("sendbluelike:stuck", timeout=0.1, poll_interval=0.01)
    assert result.status is S.DELIVERED
    assert info.value.last_result is not None
    assert info.value.last_result.status is S.PENDING


def test_resend_decision_and_cache() -> None:
    provider = FakeProvider()
    with SyncStatusClient([provider]) as client:
        assert client.resend_decision("fake:m1").action is ResendAction.SKIP
        assert client.get_status("fake:m1").status is S.DELIVERED
        assert provider.calls["m1"] == 1
        client.clear_cache()
        client.get_status("fake:m1")
        assert provider.calls["m1"] == 2
        with pytest.raises(UnknownProviderError):
            client.resend_decision("nope:m1")


def test_works_without_with_and_close_is_idempotent() -> None:
    provider = FakeProvider()
    client = SyncStatusClient([provider])
    assert client.get_status("fake:m1").status is S.DELIVERED
    client.close()
    client.close()
    assert provider.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        client.get_status("fake:m1")


def test_close_without_use_still_closes_the_providers() -> None:
    provider = FakeProvider()
    SyncStatusClient([provider]).close()
    assert provider.closed == 1


def test_many_threads_share_one_client() -> None:
    provider = FakeProvider(delay=0.001)
    with SyncStatusClient([provider]) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client.get_status, [f"fake:pending-{i}" for i in range(64)]))
    assert [r.handle for r in results] == [f"fake:pending-{i}" for i in range(64)]
    assert provider.total_calls == 64


def test_the_loop_runs_on_another_thread() -> None:
    seen: list[threading.Thread] = []

    class Recording(FakeProvider):
        async def get_status(self, handle: object, /) -> StatusResult:
            seen.append(threading.current_thread())
            return await super().get_status(handle)

    with SyncStatusClient([Recording()]) as client:
        client.get_status("fake:m1")
    assert seen
    assert seen[0] is not threading.current_thread()


def test_a_single_string_is_refused() -> None:
    with SyncStatusClient([FakeProvider()]) as client:
        with pytest.raises(TypeError, match="single string"):
            client.get_statuses("fake:abc")
        with pytest.raises(TypeError, match="single string"):
            client.resend_decisions("fake:abc")


def test_a_dropped_client_stops_its_thread() -> None:
    client = SyncStatusClient([FakeProvider()])
    client.get_status("fake:m1")
    thread = client._loop.thread if client._loop else None
    assert thread is not None
    assert thread.is_alive()
    del client
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_script_that_never_closes_the_client_still_exits() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_client import FakeProvider
        from msgstatus import SyncStatusClient
        client = SyncStatusClient([FakeProvider()])
        print(client.get_status("fake:m1").status)
        """
    )
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "DELIVERED"
