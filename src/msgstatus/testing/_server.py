"""A small HTTP/1.1 loopback server that the provider emulators build on.

It runs its own event loop in a background thread (through an anyio blocking portal), so an
emulator works the same from sync tests, asyncio tests and trio tests. It speaks just enough
HTTP/1.1 for httpx and botocore: keep-alive, ``Content-Length`` bodies, no chunked requests.
Faults are injected per request: queued ("the next 3 requests get a 429") or at random.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from typing import Generic, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "Fault",
    "Lifecycle",
    "LoopbackServer",
    "ManualClock",
    "Request",
    "Response",
    "ServerStats",
]

S = TypeVar("S")
# Context managers return the subclass itself: `with SendblueEmulator() as emulator:` is typed.
_Server = TypeVar("_Server", bound="LoopbackServer")

logger = logging.getLogger("msgstatus.testing")

_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 8 * 1024 * 1024
_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Fault(str, enum.Enum):
    """Faults an emulator can inject into a request, each rendered in its provider's wire format.

    ``RATE_LIMIT`` and ``RATE_LIMIT_HTTP_DATE`` answer 429 with ``Retry-After`` in seconds or as
    an HTTP date; ``SERVER_ERROR_5xx`` answer that status with an HTML body (as a load balancer
    would); ``STALL`` holds the request without answering (``stall_seconds``); ``DROP`` closes the
    connection without a response; ``TRUNCATED`` promises a longer body than it sends;
    ``NOT_JSON`` answers 200 with HTML; ``WRONG_SHAPE`` answers 200 with JSON that is not an object;
    ``UNKNOWN_STATUS`` answers a status value no table knows; ``HUGE_BODY`` answers a 10 MB body.
    """

    RATE_LIMIT = "rate_limit"
    RATE_LIMIT_HTTP_DATE = "rate_limit_http_date"
    SERVER_ERROR_500 = "server_error_500"
    SERVER_ERROR_502 = "server_error_502"
    SERVER_ERROR_503 = "server_error_503"
    SERVER_ERROR_504 = "server_error_504"
    STALL = "stall"
    DROP = "drop"
    TRUNCATED = "truncated"
    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"
    UNKNOWN_STATUS = "unknown_status"
    HUGE_BODY = "huge_body"

    @property
    def server_error_code(self) -> int | None:
        """The HTTP status of a ``SERVER_ERROR_5xx`` fault, else None."""
        if self.value.startswith("server_error_"):
            return int(self.value.rsplit("_", 1)[1])
        return None


@dataclass(frozen=True)
class Request:
    """One request as the server read it. ``path`` is percent-decoded; header names lower-case."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """What to send back. ``drop`` closes the connection without answering; ``truncate`` sends
    the head and only half of the body, promising all of it, then closes."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    truncate: bool = False

    @classmethod
    def json(cls, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> Response:
        return cls(status, body, [("Content-Type", "application/json"), *headers])

    @classmethod
    def html(cls, status: int, title: str) -> Response:
        page = (
            f"<html><head><title>{status} {title}</title></head>"
            f"<body><h1>{title}</h1></body></html>"
        )
        return cls(status, page.encode(), [("Content-Type", "text/html")])


def http_date(seconds_from_now: float) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate) ``seconds_from_now`` in the future."""
    return formatdate(time.time() + seconds_from_now, usegmt=True)


class ManualClock:
    """A clock that moves only when told: assign one to an emulator's ``clock`` (before adding
    messages) to step scripted lifecycles by hand instead of waiting for them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Lifecycle(Generic[S]):
    """A message's scripted states over time: ``[(0.0, a), (0.5, b), (1.0, c)]``.

    The state at a moment is the last step whose offset (seconds since the lifecycle started) has
    passed. ``clock`` is the emulator's clock, so tests can drive time by hand.
    """

    def __init__(self, steps: Sequence[tuple[float, S]], clock: Callable[[], float]) -> None:
        if not steps:
            raise ValueError("a lifecycle needs at least one step")
        offsets = [offset for offset, _ in steps]
        if offsets != sorted(offsets) or offsets[0] < 0:
            raise ValueError("lifecycle offsets must be >= 0 and ascending")
        self.steps = list(steps)
        self._clock = clock
        self.started_at = clock()

    def current(self) -> S:
        elapsed = self._clock() - self.started_at
        state = self.steps[0][1]
        for offset, step_state in self.steps:
            if offset > elapsed:
                break
            state = step_state
        return state


@dataclass
class ServerStats:
    """Counters of what the server saw; read them from any thread."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    faults_injected: int = 0
    connections: int = 0

    def reset(self) -> None:
        self.requests = self.faults_injected = self.connections = 0
        self.max_in_flight = self.in_flight


@dataclass
class _QueuedFault:
    fault: Fault
    remaining: int | None
    match: Callable[[Request], bool] | None


#: Environment variable: the default ``latency`` (seconds) of every emulator, to run a test suite
#: against slower servers (``MSGSTATUS_EMULATOR_LATENCY=0.15 pytest``).
LATENCY_ENV = "MSGSTATUS_EMULATOR_LATENCY"


def default_latency() -> float:
    """The latency an emulator gets when none is given: ``$MSGSTATUS_EMULATOR_LATENCY`` or 0.

    Raises ``ValueError`` for a value that is not a finite number of seconds >= 0.
    """
    text = os.environ.get(LATENCY_ENV, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{LATENCY_ENV} must be a number of seconds >= 0, not {text!r}")
    return value


class LoopbackServer:
    """Base of the emulators: a real HTTP server on ``127.0.0.1`` at a random free port.

    Subclasses implement :meth:`handle` (the API) and :meth:`render_fault` (how a fault looks in
    their wire format). Use it as a context manager (sync or async) or call :meth:`start` /
    :meth:`stop`. ``latency`` (seconds) is added to every request; it defaults to
    ``$MSGSTATUS_EMULATOR_LATENCY`` (0 when unset).
    """

    #: How long a ``STALL`` fault holds a request before answering it after all.
    stall_seconds: float = 30.0

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, latency: float | None = None
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self.latency = default_latency() if latency is None else latency
        self.stats = ServerStats()
        #: The last 10,000 requests, newest last.
        self.requests: deque[Request] = deque(maxlen=10_000)
        self.clock: Callable[[], float] = time.monotonic
        self._faults: list[_QueuedFault] = []
        self._random_rate = 0.0
        self._random_faults: list[Fault] = []
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._cancel: anyio.CancelScope | None = None

    # -- what subclasses provide -------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def render_fault(self, fault: Fault, request: Request) -> Response:
        """The generic rendering of a fault; emulators override the parts their API words
        differently (error bodies, the shape of a status payload)."""
        if fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_HTTP_DATE):
            retry_after = "1" if fault is Fault.RATE_LIMIT else http_date(1)
            return Response.json(429, b'{"error":"rate limited"}', [("Retry-After", retry_after)])
        code = fault.server_error_code
        if code is not None:
            return Response.html(code, _REASONS[code])
        if fault is Fault.DROP:
            return Response(drop=True)
        if fault is Fault.TRUNCATED:
            return Response(
                200,
                b'{"status": "DELIVERED", "padding": "' + b"x" * 64 + b'"}',
                [("Content-Type", "application/json")],
                truncate=True,
            )
        if fault is Fault.NOT_JSON:
            return Response.html(200, "Welcome")
        if fault is Fault.WRONG_SHAPE:
            return Response.json(200, b'["not", "an", "object"]')
        if fault is Fault.HUGE_BODY:
            return Response.json(200, b'{"padding": "' + b"x" * (10 * 1024 * 1024) + b'"}')
        raise NotImplementedError(f"{type(self).__name__} does not render {fault}")

    # -- fault injection ---------------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        times: int | None = 1,
        match: Callable[[Request], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (``None``: every request until
        :meth:`clear_faults`) that ``match`` accepts (default: all) with ``fault``."""
        with self._lock:
            self._faults.append(_QueuedFault(fault, times, match))

    def set_random_faults(
        self, rate: float, faults: Sequence[Fault] | None = None, *, seed: int = 0
    ) -> None:
        """Inject a fault chosen from ``faults`` (default: all) into each request with
        probability ``rate``, reproducibly for a given ``seed``."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._random_rate = rate
            self._random_faults = list(faults if faults is not None else Fault)
            self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random_rate = 0.0

    def _next_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for queued in self._faults:
                if queued.match is None or queued.match(request):
                    if queued.remaining is not None:
                        queued.remaining -= 1
                        if queued.remaining <= 0:
                            self._faults.remove(queued)
                    return queued.fault
            if self._random_rate and self._rng.random() < self._random_rate:
                return self._rng.choice(self._random_faults)
        return None

    # -- life of the server ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving in a background thread; returns once the port is bound."""
        if self._portal is not None:
            raise RuntimeError("the server is already running")
        self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        try:
            self._portal.start_task(self._serve)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            self._portal = self._portal_cm = None
            raise

    def stop(self) -> None:
        """Stop serving and close every connection; stalled requests are abandoned."""
        if self._portal is None or self._portal_cm is None:
            return
        if self._cancel is not None:
            self._portal.call(self._cancel.cancel)
        self._portal_cm.__exit__(None, None, None)
        self._portal = self._portal_cm = None
        self._cancel = None

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: _Server) -> _Server:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self._requested_port, reuse_port=False
        )
        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        self.port = int(sockname[1])
        with anyio.CancelScope() as scope:
            self._cancel = scope
            task_status.started()
            await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        self.stats.connections += 1
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            while True:
                try:
                    head = await reader.receive_until(b"\r\n\r\n", _MAX_HEAD_BYTES)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                except anyio.DelimiterNotFound:
                    await self._send(stream, Response.html(400, "Request head too large"))
                    return
                request = await self._read_request(head, reader)
                if request is None:
                    await self._send(stream, Response.html(400, "Malformed request"))
                    return
                keep_alive = request.headers.get("connection", "").lower() != "close"
                self.stats.requests += 1
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                try:
                    self.requests.append(request)
                    response = await self._respond(request)
                    if response.drop:
                        return
                    sent = await self._send(stream, response)
                finally:
                    self.stats.in_flight -= 1
                if not sent or response.truncate or not keep_alive:
                    return

    async def _read_request(self, head: bytes, reader: BufferedByteReceiveStream) -> Request | None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if not 0 <= length <= _MAX_BODY_BYTES:
                return None
            body = await reader.receive_exactly(length) if length else b""
        except (ValueError, anyio.IncompleteRead, anyio.EndOfStream):
            return None
        split = urlsplit(target)
        query = {key: values[0] for key, values in parse_qs(split.query).items()}
        return Request(method, target, unquote(split.path), query, headers, body)

    async def _respond(self, request: Request) -> Response:
        if self.latency > 0:
            await anyio.sleep(self.latency)
        fault = self._next_fault(request)
        if fault is None:
            try:
                return await self.handle(request)
            except Exception:
                # A bug in an emulator's handler must cost one request, not stop the server.
                logger.exception(
                    "%s failed on %s %s", type(self).__name__, request.method, request.path
                )
                return Response.html(500, _REASONS[500])
        self.stats.faults_injected += 1
        if fault is Fault.STALL:
            await anyio.sleep(self.stall_seconds)
            return Response.html(504, _REASONS[504])
        return self.render_fault(fault, request)

    async def _send(self, stream: anyio.abc.SocketStream, response: Response) -> bool:
        body = response.body
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}"]
        head.extend(f"{name}: {value}" for name, value in response.headers)
        head.append(f"Content-Length: {len(body)}")
        head.append(f"Date: {formatdate(usegmt=True)}")
        if response.truncate:
            body = body[: len(body) // 2]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            await stream.send(payload)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True
