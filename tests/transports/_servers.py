"""A raw HTTP/1.1 server on 127.0.0.1, in a thread, for transport tests: it answers, holds,
trickles or stalls, and counts what the client does to its connections."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

BODY = b'{"Status": {"Value": "SENT"}}'


class RawServer:
    """``mode(index)`` picks what connection number ``index`` (from 0) gets: ``"answer"``
    (200 with a Chime body, kept alive), ``"hold"`` (read the request, never answer, wait for the
    client to close), ``"trickle"`` (the head, then the body a byte every ``interval`` s),
    ``"accept-only"`` (never read, never answer), ``"canned"`` (the bytes of ``canned`` as the
    whole response, connection kept alive), ``"reset"`` (read the request, then reset the
    connection: a TCP RST, no byte of response)."""

    def __init__(
        self,
        mode: Callable[[int], str] | str = "answer",
        *,
        tls: ssl.SSLContext | None = None,
        interval: float = 0.05,
        trickle_bytes: int = 400,
        canned: bytes = b"",
    ) -> None:
        self.canned = canned
        self._mode = mode if callable(mode) else (lambda _i, m=mode: m)
        self._tls = tls
        self.interval = interval
        self.trickle_bytes = trickle_bytes
        self._lock = threading.Lock()
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.requests: list[bytes] = []
        self.closed_by_client = 0
        self.trickles_finished = 0
        self.events: list[str] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1024)
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        if self._tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stopped = True
        self._listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _event(self, text: str) -> None:
        with self._lock:
            self.events.append(text)

    def _serve(self, raw: socket.socket, index: int) -> None:
        mode = self._mode(index)
        try:
            conn = raw
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(raw, server_side=True)
                except (OSError, ssl.SSLError):
                    self._event(f"tls-failed-{index}")
                    return
            with conn:
                if mode == "accept-only":
                    while not self._stopped:
                        time.sleep(0.05)
                    return
                buffer = b""
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    with self._lock:
                        self.requests.append(head)
                        self.active += 1
                        self.max_active = max(self.max_active, self.active)
                    self._event(f"request-{index}")
                    try:
                        if not self._respond(conn, mode, index):
                            return
                    finally:
                        with self._lock:
                            self.active -= 1
        except OSError:
            pass

    def _respond(self, conn: socket.socket, mode: str, index: int) -> bool:
        if mode == "reset":
            # Linger 0: close() sends an RST instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if mode == "canned":
            try:
                conn.sendall(self.canned)
            except OSError:
                return False
            return True
        if mode == "answer":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
            )
            return True
        if mode == "hold":
            # Until the client closes (recv returns b"" or fails).
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            with self._lock:
                self.closed_by_client += 1
            self._event(f"closed-{index}")
            return False
        if mode == "trickle":
            body = BODY + b" " * self.trickle_bytes
            try:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)
                )
                for byte in body:
                    conn.sendall(bytes([byte]))
                    time.sleep(self.interval)
            except OSError:
                with self._lock:
                    self.closed_by_client += 1
                self._event(f"closed-{index}")
                return False
            with self._lock:
                self.trickles_finished += 1
            self._event(f"finished-{index}")
            return False
        raise AssertionError(mode)


async def until(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Wait (bounded) for ``condition`` on the server thread's counters; a hang guard, not a
    timing assertion."""
    with anyio.fail_after(limit):
        # Polling: the counters change in the server's threads, which cannot set an anyio Event.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)
    assert condition(), what


def tls_server_context(ca: Any) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for ``localhost`` issued by ``ca`` (a
    ``trustme.CA``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


async def cancel_in_rounds(
    server: RawServer, request: Callable[[str], Awaitable[object]], *, bound: int
) -> None:
    """Ten times: start 100 requests (``request(name)``, names ``r<round>m<i>``), wait until
    ``bound`` of them are at ``server``, cancel them all, and wait until every connection they
    had is closed."""
    for round_ in range(10):
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(request, f"r{round_}m{i}")
            await until(lambda: server.active == bound, f"{bound} requests at the server")
            tg.cancel_scope.cancel()
        await until(lambda: server.active == 0, "every cancelled request's connection closed")
