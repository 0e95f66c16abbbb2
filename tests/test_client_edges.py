"""StatusClient and SyncStatusClient at their edges: what they refuse at construction or inside
an event loop, how closing reports a provider or ledger that fails to close, and a lookup whose
ledger write fails."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from msgstatus import (
    ChimeProvider,
    MessageStatus,
    SendblueProvider,
    SQLiteLedger,
    StatusClient,
    SyncStatusClient,
)
from msgstatus.testing import SendblueEmulator


class _SendblueFailingClose(SendblueProvider):
    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("sendblue close failed")


class _ChimeFailingClose(ChimeProvider):
    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("chime close failed")


class _LedgerFailingClose(SQLiteLedger):
    def _close_sync(self) -> None:
        super()._close_sync()
        raise OSError("ledger close failed")


def _sendblue(cls: type[SendblueProvider] = SendblueProvider) -> SendblueProvider:
    return cls("key", "secret", base_url="http://127.0.0.1:9")


def _chime() -> ChimeProvider:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEDGE", aws_secret_access_key="edge-secret", region_name="us-east-1"
    )
    return _ChimeFailingClose(session=session, endpoint_url="http://127.0.0.1:9")


def test_a_ledger_must_be_a_ledger() -> None:
    with pytest.raises(TypeError, match=r"^'sqlite:///x' is not a Ledger$"):
        StatusClient([], ledger="sqlite:///x")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_closing_closes_everything_and_raises_the_first_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = _LedgerFailingClose(tmp_path / "ledger.sqlite3")
    client = StatusClient([_sendblue(_SendblueFailingClose), _chime()], ledger=ledger)
    with (
        caplog.at_level(logging.ERROR, logger="msgstatus"),
        pytest.raises(RuntimeError, match="sendblue close failed"),
    ):
        await client.aclose()
    assert [record.getMessage() for record in caplog.records] == [
        "closing provider sendblue failed",
        "closing provider chime failed",
        "closing the ledger failed",
    ]
    assert ledger._connection is None
    await client.aclose()  # again: nothing more happens


@pytest.mark.anyio
async def test_a_ledger_that_fails_to_close_is_raised(tmp_path: Path) -> None:
    client = StatusClient([_sendblue()], ledger=_LedgerFailingClose(tmp_path / "l.sqlite3"))
    with pytest.raises(OSError, match="ledger close failed"):
        await client.aclose()


@pytest.mark.anyio
async def test_a_lookup_whose_ledger_write_fails_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger is locked by another process past its timeout: the lookup's result is still
    returned, and the failed write is a warning (reconcile observes it again later)."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path, timeout=0.1)
    with SendblueEmulator("key", "secret") as sendblue:
        handle = sendblue.add_message(status="DELIVERED")
        provider = SendblueProvider("key", "secret", base_url=sendblue.base_url)
        async with StatusClient([provider], ledger=ledger) as client:
            assert await ledger.entry("warm-up") is None  # the schema exists
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                with caplog.at_level(logging.WARNING, logger="msgstatus"):
                    result = await client.get_status(handle)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
    assert result.status is MessageStatus.DELIVERED
    assert f"could not record '{handle}' in the ledger" in caplog.text
    assert "database is locked" in caplog.text


# -- SyncStatusClient ---------------------------------------------------------------------------


@pytest.fixture
def sync_client() -> Iterator[SyncStatusClient]:
    client = SyncStatusClient([_sendblue()])
    yield client
    client.close()  # outside any event loop


@pytest.mark.anyio
async def test_the_sync_client_refuses_to_block_an_event_loop(
    sync_client: SyncStatusClient, anyio_backend: str
) -> None:
    with pytest.raises(RuntimeError, match=f"inside a running {anyio_backend} event loop"):
        sync_client.get_status("sendblue:h1")


def test_the_sync_client_refuses_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"backend must be 'asyncio' or 'trio', not 'curio'"):
        SyncStatusClient([], backend="curio")


def test_a_loop_that_cannot_start_fails_the_first_call_and_close_still_works() -> None:
    client = SyncStatusClient(
        [_sendblue()], backend="trio", backend_options={"no_such_option": True}
    )
    with pytest.raises(TypeError, match="no_such_option"):
        client.get_status("sendblue:h1")
    client.close()
    with pytest.raises(RuntimeError, match="the SyncStatusClient is closed"):
        client.get_status("sendblue:h1")


@pytest.mark.anyio
async def test_a_second_task_seeing_the_input_end_does_not_strand_the_waiting_one() -> None:
    """A plain iterable is read on a thread; one task waits on its wake-up socket. When the input
    ends and another task sees the end first, it must not close that socket under the waiting
    task (a descriptor closed under wait_readable never wakes it: the batch hung)."""
    import threading

    import anyio

    from msgstatus._client import _EXHAUSTED, _ReadAhead

    gate = threading.Event()

    def handles() -> Iterator[str]:
        gate.wait(10)
        return
        yield  # a generator that ends once the gate opens

    reader = _ReadAhead(handles())
    answers: list[object] = []

    async def first() -> None:
        answers.append(await reader.get())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()  # first() waits on the wake-up socket
            gate.set()
            # Without yielding to the loop (so first() cannot be woken yet), wait until the
            # thread has seen the end and gone, then ask for the next handle from this task.
            reader._thread.join(10)
            assert reader._ended
            answers.append(await reader.get())
    assert answers == [_EXHAUSTED, _EXHAUSTED]
