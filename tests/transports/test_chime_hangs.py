"""The Chime hangs of the hardening issue (#11) that came from worker threads: items 1 and 3.

With lookups in the event loop, a lookup that ends (deadline, cancellation) closes its connection
at once: no abandoned call keeps a concurrency slot, and no thread waits for a loop that will
never run again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import boto3
import pytest
from _servers import RawServer, until

from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    MessageStatus,
    ProviderUnavailableError,
    RetryPolicy,
)

BEARER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/u"
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.anyio
async def test_trickling_servers_do_not_hold_the_slots_of_later_lookups() -> None:
    """#11 item 1: ``max_concurrency=2``, two lookups to a server that trickles its body (each
    byte inside the read timeout) end at their deadline; their connections are closed then, so
    a third lookup gets a slot at once and the trickles are never read to the end."""
    server = RawServer(lambda index: "trickle" if index < 2 else "answer", trickle_bytes=400)
    session = boto3.session.Session(
        aws_access_key_id="AKIDHANG", aws_secret_access_key="hang-secret", region_name="us-east-1"
    )
    provider = ChimeProvider(
        session=session,
        endpoint_url=server.url,
        bearer=BEARER,
        max_concurrency=2,
        connect_timeout=0.5,
        read_timeout=0.5,
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        async with provider:
            failures: list[BaseException] = []

            async def look(message_id: str) -> None:
                try:
                    await provider.get_status(ChimeHandle(CHANNEL, message_id))
                except ProviderUnavailableError as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(look, "m1")
                tg.start_soon(look, "m2")
            assert len(failures) == 2
            result = await provider.get_status(ChimeHandle(CHANNEL, "m3"))
            assert result.status is MessageStatus.SENT
            # The server sees both trickling connections closed by the client (on the old thread
            # path botocore kept reading them to the end, ~20 s, holding both slots).
            await until(lambda: server.closed_by_client == 2, "both trickles closed", limit=10)
        assert server.trickles_finished == 0
    finally:
        server.close()


_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import boto3
    from msgstatus import ChimeHandle, ChimeProvider, RetryPolicy

    session = boto3.session.Session(
        aws_access_key_id="AKIDEXIT", aws_secret_access_key="exit-secret", region_name="us-east-1"
    )
    provider = ChimeProvider(
        session=session, endpoint_url=sys.argv[1], bearer=sys.argv[2], read_timeout=2,
        retry=RetryPolicy(max_attempts=1),
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(provider.get_status(ChimeHandle(sys.argv[3], "m1")))
    # Run the loop until the test says the request is at the server, then cancel the lookup,
    # let the cancellation be delivered, and never run the loop again.
    loop.run_until_complete(loop.run_in_executor(None, sys.stdin.readline))
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    print("cancelled", flush=True)
    """
)


def test_the_process_exits_after_a_cancelled_lookup_in_a_loop_never_run_again() -> None:
    """#11 item 3 (asyncio's ``run_until_complete`` style; trio has no such style): the old
    thread path left a worker thread waiting for the loop for ever after botocore returned, and
    the interpreter could not exit."""
    server = RawServer("hold")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-c", _EXIT_SCRIPT, server.url, BEARER, CHANNEL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        limit = time.monotonic() + 30
        while server.active < 1 and process.poll() is None and time.monotonic() < limit:
            time.sleep(0.01)
        assert server.active == 1, "the lookup did not reach the server"
        try:
            out, err = process.communicate(b"go\n", timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail("the process did not exit after the cancelled lookup")
        assert process.returncode == 0, err.decode()
        assert out.decode().split() == ["cancelled"]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        server.close()
