"""A Chime lookup has an overall deadline, not only botocore's per-read timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest

from msgstatus import ChimeHandle, ChimeProvider, ProviderUnavailableError, RetryPolicy

pytestmark = pytest.mark.anyio

BEARER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/u"
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"


@pytest.fixture
def trickling_server() -> Iterator[tuple[int, list[int]]]:
    """Answers 200 with a Chime body sent one byte every 0.06 s: each read is quick, the whole
    response takes ~4 s. Yields the port and the list of connections it has finished."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    finished: list[int] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            body = b'{"Status": {"Value": "SENT"}}' + b" " * 40
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            head += b"Content-Length: %d\r\n\r\n"
            try:
                conn.sendall(head % len(body))
                for byte in body:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.06)
            except OSError:
                pass
        finished.append(1)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], finished
    listener.close()


async def test_a_trickling_response_ends_in_a_typed_error_at_the_deadline(
    trickling_server: tuple[int, list[int]],
) -> None:
    port, finished = trickling_server
    session = boto3.session.Session(
        aws_access_key_id="AKID", aws_secret_access_key="secret", region_name="us-east-1"
    )
    provider = ChimeProvider(
        session=session,
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        bearer=BEARER,
        connect_timeout=0.2,
        read_timeout=0.2,
        max_concurrency=1,
        retry=RetryPolicy(max_attempts=1),
    )
    async with provider:
        # Each read takes 0.06 s, inside read_timeout: only the overall deadline (connect +
        # read + 1 s = 1.4 s) can end this lookup before the ~4 s the body takes. No wall-clock
        # bound: that the server has not finished sending when the error arrives is the proof
        # (a loaded machine only slows the server down further).
        with pytest.raises(ProviderUnavailableError, match=r"did not answer within 1\.4 s"):
            await provider.get_status(ChimeHandle(CHANNEL, "m1"))
        assert finished == []
        # The abandoned call still holds the only concurrency token: the next lookup waits for
        # it to end rather than open a second request (it then fails on the connection this
        # server closed, which is what makes the wait visible here).
        with pytest.raises(ProviderUnavailableError):
            await provider.get_status(ChimeHandle(CHANNEL, "m2"))
        assert finished, "the second lookup started before the first request had ended"
