"""A loopback emulator of Sendblue's REST API: status lookups and sends, over real HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx

from msgstatus._providers.sendblue import DEFAULT_TIMEOUT, SendblueProvider
from msgstatus._retry import RetryPolicy
from msgstatus.testing._server import (
    Fault,
    Lifecycle,
    LoopbackServer,
    Request,
    Response,
    http_date,
)

__all__ = ["DEFAULT_STEPS", "SendblueEmulator", "SendblueState"]


@dataclass(frozen=True)
class SendblueState:
    """One state of a Sendblue message: its raw ``status`` and the error fields that go with it.

    ``SendblueState("ERROR", error_code=10001, error_message="Message failed to send")`` or
    ``SendblueState("DECLINED", error_key="OPTED_OUT")``. A plain string in a lifecycle is the same
    as a state with that status and no error fields.
    """

    status: str
    error_code: int | None = None
    error_key: str | None = None
    error_message: str | None = None


#: The lifecycle :meth:`SendblueEmulator.add_message` and sends give a message by default.
DEFAULT_STEPS: tuple[tuple[float, str | SendblueState], ...] = (
    (0.0, "QUEUED"),
    (0.5, "SENT"),
    (1.0, "DELIVERED"),
)

StepsArg = Sequence[tuple[float, str | SendblueState]]


@dataclass
class _Message:
    fields: dict[str, Any]
    created: datetime
    # Each step's status payload, serialized once when the message is added.
    lifecycle: Lifecycle[bytes]


def _iso(moment: datetime) -> str:
    # Sendblue's format: ISO 8601, milliseconds, "Z".
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass
class _Refusal:
    # A quota refusal scripted for one recipient (see SendblueEmulator.refuse_recipient).
    error_key: str
    error_code: int
    error_message: str
    remaining: int | None


#: Fields of a send request that the emulator copies into the message, as Sendblue does.
_ECHOED_SEND_FIELDS = (
    "content",
    "from_number",
    "media_url",
    "send_style",
    "seat_id",
    "reply_to",
    "app_card",
    "status_callback",
)


def _error_body(message: str) -> bytes:
    # Sendblue's error bodies look like its message payloads: status ERROR plus a message.
    return json.dumps({"status": "ERROR", "error_message": message, "message": message}).encode()


def _checked(steps: StepsArg) -> list[tuple[float, str | SendblueState]]:
    # Checked when given, so that a bad script fails in the test, not inside the server.
    Lifecycle(steps, clock=lambda: 0.0)
    return list(steps)


def _as_state(state: str | SendblueState) -> SendblueState:
    return state if isinstance(state, SendblueState) else SendblueState(state)


class SendblueEmulator(LoopbackServer):
    """A real HTTP server on ``127.0.0.1`` (random port) that speaks Sendblue's status API.

    ``GET /api/status?handle=…`` answers the messages you add (404 for others, 400 without a
    handle) and ``POST /api/send-message`` accepts new ones; both require the ``sb-api-key-id`` and
    ``sb-api-secret-key`` headers to match ``api_key`` and ``api_secret`` (401 otherwise).
    A message follows a scripted lifecycle on the emulator's ``clock`` (assign a function to it
    before adding messages to drive time by hand). Faults (:class:`Fault`) are rendered in
    Sendblue's wire format. Use it as a context manager (sync or async), or through the
    ``sendblue_emulator`` pytest fixture.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        api_secret: str = "test-secret",  # noqa: S107 - a test double's well-known default
        *,
        latency: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.api_secret = api_secret
        #: Account fields put into every payload.
        self.account_email = "emulator@example.com"
        self.from_number = "+15550100000"
        self._default_send_steps: StepsArg = DEFAULT_STEPS
        self._messages: dict[str, _Message] = {}
        self._scripts: dict[str, StepsArg] = {}
        self._messages_lock = threading.Lock()
        self._wrong_shapes = 0
        self._refusals: dict[str, _Refusal] = {}
        #: Seats a send may name in ``seat_id`` (seat id -> the email Sendblue fills in as
        #: ``sender_email``); a send naming another seat is refused with 400, as Sendblue does.
        self.seats: dict[str, str] = {"seat-emulator": "rep@example.com"}

    # -- what tests call ---------------------------------------------------------------------

    def add_message(
        self,
        handle: str | None = None,
        *,
        status: str | SendblueState | None = None,
        steps: StepsArg | None = None,
        error_code: int | None = None,
        error_key: str | None = None,
        error_message: str | None = None,
        **fields: Any,
    ) -> str:
        """Add a message and return its handle (a new UUID unless you pass one; an existing
        handle is replaced).

        Give either ``status`` (with optional error fields: a message that stays in one state) or
        ``steps``, ``[(seconds, status or SendblueState), …]`` from now; with neither it is
        ``DELIVERED``. ``fields`` add or override payload fields (``content``, ``number``, …).
        Raises ``ValueError`` for both ``status`` and ``steps``, or error fields with ``steps``.
        """
        if steps is not None:
            if status is not None or (error_code, error_key, error_message) != (None,) * 3:
                raise ValueError(
                    "give either steps (with SendblueState for error fields) or status, not both"
                )
        else:
            state = _as_state(status if status is not None else "DELIVERED")
            if (error_code, error_key, error_message) != (None,) * 3:
                state = SendblueState(state.status, error_code, error_key, error_message)
            steps = [(0.0, state)]
        handle = handle if handle is not None else str(uuid.uuid4())
        self._store(handle, steps, fields)
        return handle

    def set_status(self, handle: str, status: str | SendblueState) -> None:
        """Put a message into ``status`` now, ending its scripted lifecycle.

        Raises ``KeyError`` for a handle the emulator does not have.
        """
        with self._messages_lock:
            message = self._messages[handle]
        self._store(handle, [(0.0, status)], message.fields, created=message.created)

    def script_recipient(self, number: str, steps: StepsArg) -> None:
        """Messages sent to ``number`` from now on follow ``steps`` (see :meth:`add_message`).

        Raises ``ValueError`` for offsets that are negative or not ascending.
        """
        steps = _checked(steps)
        with self._messages_lock:
            self._scripts[number] = steps

    def refuse_recipient(
        self,
        number: str,
        error_key: str = "LINE_HOURLY_LIMIT_REACHED",
        *,
        error_code: int = 429,
        error_message: str | None = None,
        times: int | None = None,
    ) -> None:
        """Refuse sends to ``number`` for a quota, as Sendblue does: HTTP 400 with
        ``status: "ERROR"``, ``error_code`` (429) and ``error_key`` (``LINE_HOURLY_LIMIT_REACHED``,
        ``LINE_DAILY_LIMIT_REACHED``, ``PRE_REPLY_LIMIT_REACHED``, …); nothing is sent. The next
        ``times`` sends (``None``: every send until :meth:`clear_refusals`) are refused.

        Raises ``ValueError`` for ``times < 1``.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None)")
        text = error_message or f"The message was not sent: {error_key}"
        with self._messages_lock:
            self._refusals[number] = _Refusal(error_key, error_code, text, times)

    def clear_refusals(self, number: str | None = None) -> None:
        """End the refusals of ``number`` (default: of every recipient)."""
        with self._messages_lock:
            if number is None:
                self._refusals.clear()
            else:
                self._refusals.pop(number, None)

    def _take_refusal(self, number: str) -> _Refusal | None:
        with self._messages_lock:
            refusal = self._refusals.get(number)
            if refusal is not None and refusal.remaining is not None:
                refusal.remaining -= 1
                if refusal.remaining <= 0:
                    del self._refusals[number]
            return refusal

    @property
    def default_send_steps(self) -> StepsArg:
        """Lifecycle of a sent message whose number has no script of its own (default
        :data:`DEFAULT_STEPS`). Assigning bad offsets raises ``ValueError``."""
        return self._default_send_steps

    @default_send_steps.setter
    def default_send_steps(self, steps: StepsArg) -> None:
        self._default_send_steps = _checked(steps)

    def payload(self, handle: str) -> dict[str, Any]:
        """The status payload the emulator would answer for ``handle`` now. Raises KeyError."""
        with self._messages_lock:
            message = self._messages[handle]
        result: dict[str, Any] = json.loads(message.lifecycle.current())
        return result

    @property
    def handles(self) -> list[str]:
        """Handles of every message the emulator has, added or sent, oldest first."""
        with self._messages_lock:
            return list(self._messages)

    def provider(
        self,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> SendblueProvider:
        """A :class:`~msgstatus.SendblueProvider` pointed at this emulator with its credentials."""
        return SendblueProvider(
            self.api_key,
            self.api_secret,
            base_url=self.base_url,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            retry=retry,
            http_client=http_client,
        )

    # -- the API -----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.path == "/api/status":
            if request.method != "GET":
                return Response.json(405, _error_body("Method not allowed"))
            return self._status_lookup(request)
        if request.path == "/api/send-message":
            if request.method != "POST":
                return Response.json(405, _error_body("Method not allowed"))
            return self._send_message(request)
        return self._not_served(request)

    @staticmethod
    def _not_served(request: Request) -> Response:
        # Not a 404: a client (or a test) must not read "this endpoint is not emulated" as "no
        # such message". 501 with x-should-retry: false, which the official SDK obeys.
        message = (
            f"the Sendblue emulator does not serve {request.method} {request.path}: it serves "
            "GET /api/status and POST /api/send-message"
        )
        return Response.json(501, _error_body(message), [("x-should-retry", "false")])

    def _authorized(self, request: Request) -> bool:
        headers = request.headers
        return (
            headers.get("sb-api-key-id") == self.api_key
            and headers.get("sb-api-secret-key") == self.api_secret
        )

    def _status_lookup(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response.json(401, _error_body("Unauthorized: check your API key and secret"))
        handle = request.query.get("handle")
        if not handle:
            return Response.json(400, _error_body("handle is required"))
        with self._messages_lock:
            message = self._messages.get(handle)
        if message is None:
            return Response.json(404, _error_body("Message not found"))
        return Response.json(200, message.lifecycle.current())

    def _send_message(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response.json(401, _error_body("Unauthorized: check your API key and secret"))
        body = _send_body(request)
        if body is None:
            return Response.json(400, _error_body("the request body must be a JSON object"))
        number = body.get("number")
        if not isinstance(number, str) or not number.startswith("+") or not number[1:].isdigit():
            return Response.json(400, _error_body("number must be an E.164 phone number"))
        if not (body.get("content") or body.get("media_url") or body.get("app_card")):
            return Response.json(400, _error_body("content, media_url or app_card is required"))
        for name in ("app_card", "reply_to"):
            if body.get(name) is not None and not isinstance(body[name], dict):
                return Response.json(400, _error_body(f"{name} must be an object"))
        reply_to = body.get("reply_to")
        if reply_to is not None and not isinstance(reply_to.get("message_handle"), str):
            return Response.json(400, _error_body("reply_to.message_handle is required"))
        fields = {name: body[name] for name in _ECHOED_SEND_FIELDS if body.get(name) is not None}
        seat_id = body.get("seat_id")
        if seat_id is not None:
            sender_email = self.seats.get(seat_id) if isinstance(seat_id, str) else None
            if sender_email is None:
                return Response.json(400, _error_body(f"seat {seat_id!r} not found"))
            fields["sender_email"] = sender_email
        fields["number"] = number
        refusal = self._take_refusal(number)
        if refusal is not None:
            return self._refused_send(fields, refusal)
        with self._messages_lock:
            steps = self._scripts.get(number, self.default_send_steps)
        handle = str(uuid.uuid4())
        message = self._store(handle, steps, fields)
        return Response.json(200, message.lifecycle.steps[0][1])

    def _refused_send(self, fields: dict[str, Any], refusal: _Refusal) -> Response:
        # The refused message is recorded (a lookup answers the same ERROR with its error_key),
        # but it was not sent.
        state = SendblueState("ERROR", refusal.error_code, refusal.error_key, refusal.error_message)
        message = self._store(str(uuid.uuid4()), [(0.0, state)], fields)
        return Response.json(400, message.lifecycle.steps[0][1])

    # -- faults in Sendblue's words ------------------------------------------------------------

    def render_fault(self, fault: Fault, request: Request) -> Response:
        if fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_HTTP_DATE):
            retry_after = "1" if fault is Fault.RATE_LIMIT else http_date(1)
            body = _error_body("Too many requests, please slow down")
            return Response.json(429, body, [("Retry-After", retry_after)])
        if fault is Fault.UNKNOWN_STATUS:
            handle = request.query.get("handle") or str(uuid.uuid4())
            payload = self._payload_fields(handle, {}, datetime.now(timezone.utc))
            payload.update(status="TELEPORTED", date_updated=payload["date_created"])
            return Response.json(200, json.dumps(payload).encode())
        if fault is Fault.WRONG_SHAPE:
            # Alternates between the two shapes a broken API might send: not an object at all,
            # and an object whose status is not text.
            with self._lock:
                self._wrong_shapes += 1
                odd = self._wrong_shapes % 2 == 1
            if odd:
                return Response.json(200, b'["not", "an", "object"]')
            return Response.json(200, b'{"status": 3, "message_handle": "x"}')
        return super().render_fault(fault, request)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _store(
        self,
        handle: str,
        steps: StepsArg,
        fields: Mapping[str, Any],
        *,
        created: datetime | None = None,
    ) -> _Message:
        created = created if created is not None else datetime.now(timezone.utc)
        base = self._payload_fields(handle, fields, created)
        rendered: list[tuple[float, bytes]] = []
        for offset, raw_state in steps:
            state = _as_state(raw_state)
            payload = dict(base)
            payload.update(
                status=state.status,
                error_code=state.error_code,
                error_key=state.error_key,
                error_message=state.error_message,
                date_updated=_iso(created + timedelta(seconds=offset)),
            )
            if state.status.strip().upper() == "RECEIVED" and "is_outbound" not in fields:
                # RECEIVED is a message someone sent to the account's number.
                payload["is_outbound"] = False
            rendered.append((offset, json.dumps(payload).encode()))
        # Through a lambda, so that assigning emulator.clock later still drives this lifecycle.
        message = _Message(dict(fields), created, Lifecycle(rendered, lambda: self.clock()))
        with self._messages_lock:
            self._messages[handle] = message
        return message

    def _payload_fields(
        self, handle: str, fields: Mapping[str, Any], created: datetime
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "account_email": self.account_email,
            "content": "Hello from the Sendblue emulator",
            "date_created": _iso(created),
            "date_updated": _iso(created),
            "error_code": None,
            "error_key": None,
            "error_message": None,
            "from_number": self.from_number,
            "is_outbound": True,
            "media_url": None,
            "message_handle": handle,
            "message_type": "message",
            "number": "+15550199999",
            "send_style": None,
            "status": None,
        }
        payload.update(fields)
        return payload


def _send_body(request: Request) -> dict[str, Any] | None:
    """A send's fields: a JSON object, or a form-encoded body (as Sendblue's curl examples send)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
