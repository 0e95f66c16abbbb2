"""A tiny HTTP/1.1 server on 127.0.0.1 for hostile-provider tests: each request gets the bytes a
test function returns (status line, headers and body, exactly as given), one request per
connection. It runs on its own threads so that a blocked event loop cannot stop it answering."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

__all__ = ["RawServer", "http_response"]


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
) -> bytes:
    """A complete response with ``Content-Length`` and ``Connection: close``."""
    head = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode("latin-1") + body


class RawServer:
    """``answer(target, query)`` gives the response bytes for a request's target (path) and its
    query parameters (first value of each). ``requests`` counts the requests read."""

    def __init__(self, answer: Callable[[str, dict[str, str]], bytes]) -> None:
        self._answer = answer
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.requests = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                request_line = data.split(b"\r\n", 1)[0].decode("latin-1")
                target = request_line.split(" ")[1]
                split = urlsplit(target)
                query = {key: values[0] for key, values in parse_qs(split.query).items()}
                with self._lock:
                    self.requests += 1
                conn.sendall(self._answer(split.path, query))
            except OSError:
                return
