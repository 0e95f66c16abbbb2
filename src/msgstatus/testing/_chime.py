"""A loopback emulator of Amazon Chime SDK Messaging: message statuses and sends, over real HTTP.

botocore talks to it through ``endpoint_url`` exactly as it talks to AWS: REST-JSON, SigV4-signed
requests (the signature is recomputed and checked), errors as ``x-amzn-ErrorType`` plus a JSON body
so that botocore raises the real ``ClientError`` codes.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, unquote, urlsplit

from msgstatus._providers.chime import (
    DEFAULT_MAX_CONCURRENCY,
    ChimeProvider,
    _check_arn,
    _check_id,
)
from msgstatus._retry import RetryPolicy
from msgstatus.errors import InvalidHandleError
from msgstatus.testing._server import (
    Fault,
    Lifecycle,
    LoopbackServer,
    Request,
    Response,
    http_date,
)

if TYPE_CHECKING:
    import boto3
    import botocore.config
    from mypy_boto3_chime_sdk_messaging import ChimeSDKMessagingClient

__all__ = ["ERROR_STATUS", "ChimeEmulator", "ChimeEventFeed", "ChimeState"]

logger = logging.getLogger("msgstatus.testing.chime")

_ERROR_TYPE_URI = "http://internal.amazon.com/coral/com.amazonaws.chime/"
# Errors of AWS's front door (signature and credential checks) carry the generic Coral namespace.
_FRONT_DOOR_URI = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_ACCOUNT = "111122223333"
_AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# AWS refuses requests signed more than 15 minutes away from its own clock.
_MAX_CLOCK_SKEW = 15 * 60
# Limits of SendChannelMessage (service documentation): STANDARD content plus metadata up to 4 KB,
# CONTROL content up to 30 bytes and no metadata.
_MAX_STANDARD_BYTES = 4096
_MAX_CONTROL_BYTES = 30
_MAX_METADATA = 1024
_TOKEN = re.compile(r"[-_a-zA-Z0-9]{2,64}")
# The model's StatusDetail shape: 0-256 characters.
_MAX_DETAIL = 256

#: HTTP status of each error the service model lists for the two operations (plus
#: NotFoundException, which it lists for GetChannelMessage).
ERROR_STATUS: dict[str, int] = {
    "BadRequestException": 400,
    "UnauthorizedClientException": 401,
    "ForbiddenException": 403,
    "NotFoundException": 404,
    "ConflictException": 409,
    "ThrottledClientException": 429,
    "ServiceFailureException": 500,
    "ServiceUnavailableException": 503,
}

#: The ``Code`` member (the model's ``ErrorCode`` enum) that each modelled error's body carries;
#: the exception name itself travels in the ``x-amzn-ErrorType`` header, which botocore reads first.
ERROR_CODE_ENUM: dict[str, str] = {
    "BadRequestException": "BadRequest",
    "UnauthorizedClientException": "Unauthorized",
    "ForbiddenException": "Forbidden",
    "NotFoundException": "NotFound",
    "ConflictException": "Conflict",
    "ThrottledClientException": "Throttled",
    "ServiceFailureException": "ServiceFailure",
    "ServiceUnavailableException": "ServiceUnavailable",
    "ResourceLimitExceededException": "ResourceLimitExceeded",
}

#: Errors AWS's front door answers before a request reaches Chime (all HTTP 403): no signature,
#: a malformed ``Authorization`` header, an access key AWS does not know, a wrong signature (or
#: region, or an expired one). Their bodies carry only a ``message``.
FRONT_DOOR_ERRORS: frozenset[str] = frozenset(
    {
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    }
)


@dataclass(frozen=True)
class ChimeState:
    """One state of a Chime message: ``Status.Value`` and, optionally, ``Status.Detail``.

    ``ChimeState("FAILED", "the processor timed out")``; a plain string in a lifecycle is a state
    without detail. Any value is accepted (``"TELEPORTED"`` tests unknown values); after
    ``"DENIED"`` the message is deleted, as Chime does not store denied messages.
    """

    value: str
    detail: str | None = None


#: A lifecycle: ``[(seconds from now, state), …]``, offsets ascending from 0.
Steps: TypeAlias = Sequence[tuple[float, "str | ChimeState"]]
#: A channel flow: the lifecycle of every message sent to the channel, or a function from the
#: message's ``Content`` to that lifecycle.
Flow: TypeAlias = "Steps | Callable[[str], Steps]"


@dataclass
class _QueuedError:
    status: int
    code: str
    message: str
    remaining: int | None
    match: Callable[[Request], bool] | None


@dataclass
class _Message:
    channel_arn: str
    message_id: str
    sender: str
    sub_channel_id: str | None
    content: str
    lifecycle: Lifecycle[ChimeState]
    # Offset of the DENIED step, if the lifecycle has one: the message is deleted after it.
    denied_at: float | None


class _RequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _as_state(state: str | ChimeState) -> ChimeState:
    return state if isinstance(state, ChimeState) else ChimeState(state)


def _checked_steps(steps: Steps) -> tuple[list[tuple[float, ChimeState]], float | None]:
    # Checked when given, so that a bad script fails in the test, not inside the server.
    Lifecycle(steps, clock=lambda: 0.0)
    checked = [(float(offset), _as_state(state)) for offset, state in steps]
    denied_at = None
    for index, (offset, state) in enumerate(checked):
        if not isinstance(state.value, str):
            raise ValueError(f"a state's value must be a string, not {state.value!r}")
        if state.detail is not None and (
            not isinstance(state.detail, str) or len(state.detail) > _MAX_DETAIL
        ):
            raise ValueError(
                f"a state's detail is a string of at most {_MAX_DETAIL} characters (the model's "
                "StatusDetail)"
            )
        if state.value == "DENIED":
            if index != len(checked) - 1:
                raise ValueError("DENIED must be the last step: Chime deletes denied messages")
            denied_at = offset
    return checked, denied_at


def _error(status: int, code: str, message: str) -> Response:
    if code in FRONT_DOOR_ERRORS:
        body = json.dumps({"message": message}).encode()
        uri = _FRONT_DOOR_URI
    else:
        fields = {"Message": message}
        enum_value = ERROR_CODE_ENUM.get(code)
        if enum_value is not None:
            fields = {"Code": enum_value, "Message": message}
        body = json.dumps(fields).encode()
        uri = _ERROR_TYPE_URI
    return Response.json(
        status,
        body,
        [("x-amzn-ErrorType", f"{code}:{uri}"), ("x-amzn-RequestId", _request_id())],
    )


def _ok(status: int, payload: dict[str, Any]) -> Response:
    return Response.json(
        status, json.dumps(payload).encode(), [("x-amzn-RequestId", _request_id())]
    )


def _request_id() -> str:
    return str(uuid.uuid4())


def _status_object(state: ChimeState) -> dict[str, str]:
    status = {"Value": state.value}
    if state.detail is not None:
        status["Detail"] = state.detail
    return status


def _bad_request(message: str) -> _RequestError:
    return _RequestError(400, "BadRequestException", message)


def _front_door(code: str, message: str) -> _RequestError:
    # As AWS answers a request that fails its signature checks: 403, before Chime sees it.
    return _RequestError(403, code, message)


def _bad_signature(message: str) -> _RequestError:
    return _front_door("InvalidSignatureException", message)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class _ChimeFeeds:
    """The event feeds' bookkeeping, kept apart from the API emulation: every stored message is
    recorded (denied ones too, which the API forgets) so that a feed can replay its states."""

    _state_lock: threading.Lock
    clock: Callable[[], float]

    def _feed_init(self) -> None:
        self._feed_log: dict[tuple[str, str], _FeedRecord] = {}
        self._feed_counter = 0
        self._feeds_open = True

    def _record_for_feeds(self, message: _Message) -> None:
        with self._state_lock:
            self._feed_counter += 1
            key = (message.channel_arn, message.message_id)
            self._feed_log.pop(key, None)
            self._feed_log[key] = _FeedRecord(message, time.time(), self._feed_counter)

    def _feed_generation(self) -> int:
        with self._state_lock:
            return self._feed_counter

    def _feed_records(self, sender: str, since: int) -> list[tuple[tuple[str, str], _FeedRecord]]:
        with self._state_lock:
            return [
                (key, record)
                for key, record in self._feed_log.items()
                if record.message.sender == sender and record.generation > since
            ]

    def event_feed(self, sender: str, *, interval: float = 0.01) -> ChimeEventFeed:
        """A :class:`ChimeEventFeed` of the events ``sender``'s messaging websocket would get
        from now on: the exact envelopes (``Headers`` + ``Payload`` JSON text) for
        ``ChimeProvider.result_from_event``. Raises ``ValueError`` for an invalid sender ARN."""
        try:
            _check_arn(sender, "sender", ascii_only=True)
        except InvalidHandleError as exc:
            raise ValueError(exc.message) from exc
        return ChimeEventFeed(self, sender, interval)

    def start(self) -> None:
        super().start()  # type: ignore[misc]
        self._feeds_open = True

    def stop(self) -> None:
        self._feeds_open = False
        super().stop()  # type: ignore[misc]


class ChimeEmulator(_ChimeFeeds, LoopbackServer):
    """A real HTTP server on ``127.0.0.1`` (random port) that speaks Chime SDK Messaging's
    GetChannelMessageStatus and SendChannelMessage, for botocore at ``endpoint_url=base_url``.

    Every request must carry a valid SigV4 ``Authorization`` header for ``access_key_id`` /
    ``secret_access_key`` in ``region`` (else 401 ``UnauthorizedClientException``). A status lookup
    must name the message's sender in ``x-amz-chime-bearer`` (else 403 ``ForbiddenException``) and
    its sub-channel, if it has one. Messages follow scripted lifecycles on the emulator's ``clock``;
    a ``DENIED`` message is served for ``denied_retention`` seconds and then deleted (404
    ``NotFoundException``). Faults (:class:`Fault`) are rendered in Chime's wire format. Use it as a
    context manager (sync or async), or through the ``chime_emulator`` pytest fixture.
    """

    def __init__(
        self,
        *,
        access_key_id: str = "AKIDEMULATOR",
        secret_access_key: str = "emulator-secret",  # noqa: S107 - a test double's default
        region: str = "us-east-1",
        latency: float | None = None,
        denied_retention: float = 0.0,
        store_transient: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        #: Seconds a DENIED message is still served before it is deleted (Chime keeps none).
        self.denied_retention = denied_retention
        #: Whether NON_PERSISTENT and CONTROL messages can be looked up after the send. Chime's
        #: documentation says neither is stored, so by default they are not (a lookup answers
        #: NotFoundException); what the live service answers has not been verified.
        self.store_transient = store_transient
        #: Exceptions raised inside the emulator (a channel-flow function that failed, say); each
        #: one was answered with a 500 ServiceFailureException.
        self.errors: list[BaseException] = []
        self._messages: dict[tuple[str, str], _Message] = {}
        self._flows: dict[str, Flow] = {}
        self._sent: dict[tuple[str, str, str], tuple[tuple[object, ...], dict[str, Any]]] = {}
        self._state_lock = threading.Lock()
        self._wrong_shapes = 0
        self._errors: list[_QueuedError] = []
        self._session: boto3.session.Session | None = None
        self._feed_init()

    # -- ARNs for tests ----------------------------------------------------------------------

    @property
    def app_instance_arn(self) -> str:
        """``arn:aws:chime:<region>:111122223333:app-instance/emulator``: the AppInstance the
        helper ARNs live in (any valid ARN works as a channel or user, though)."""
        return f"arn:aws:chime:{self.region}:{_ACCOUNT}:app-instance/emulator"

    def channel_arn(self, name: str = "general") -> str:
        """A channel ARN in the emulator's AppInstance (any valid ARN works as a channel)."""
        return f"{self.app_instance_arn}/channel/{name}"

    def user_arn(self, name: str = "sender") -> str:
        """An AppInstanceUser ARN, for bearers and senders (any valid ARN works)."""
        return f"{self.app_instance_arn}/user/{name}"

    # -- what tests call ---------------------------------------------------------------------

    def add_message(
        self,
        channel_arn: str,
        *,
        sender: str,
        message_id: str | None = None,
        sub_channel_id: str | None = None,
        status: str | ChimeState | None = None,
        steps: Steps | None = None,
        detail: str | None = None,
        content: str = "Hello from the Chime emulator",
    ) -> str:
        """Add a message sent by ``sender`` and return its id (a new one unless you pass one;
        an existing message with that id is replaced).

        Give ``status`` (with optional ``detail``: a message that stays in one state) or ``steps``,
        ``[(seconds, value or ChimeState), …]`` from now; with neither it is ``SENT``. Raises
        ``ValueError`` for both, bad offsets, a step after ``DENIED``, or an invalid ARN or id.
        """
        if steps is not None:
            if status is not None or detail is not None:
                raise ValueError("give either steps (with ChimeState for details) or status")
        else:
            state = _as_state(status if status is not None else "SENT")
            if detail is not None:
                state = ChimeState(state.value, detail)
            steps = [(0.0, state)]
        checked = _checked_steps(steps)
        try:
            _check_arn(channel_arn, "channel_arn")
            _check_arn(sender, "sender", ascii_only=True)
            message_id = message_id if message_id is not None else uuid.uuid4().hex
            _check_id(message_id, "message_id")
            if sub_channel_id is not None:
                _check_id(sub_channel_id, "sub_channel_id")
        except InvalidHandleError as exc:
            raise ValueError(exc.message) from exc
        self._store(channel_arn, message_id, sender, sub_channel_id, content, checked)
        return message_id

    def set_status(self, channel_arn: str, message_id: str, status: str | ChimeState) -> None:
        """Put a message into ``status`` now, ending its scripted lifecycle. Raises ``KeyError``
        for a message the emulator does not have."""
        with self._state_lock:
            message = self._messages[(channel_arn, message_id)]
        self._store(
            channel_arn,
            message_id,
            message.sender,
            message.sub_channel_id,
            message.content,
            _checked_steps([(0.0, status)]),
        )

    def set_channel_flow(self, channel_arn: str, flow: Flow | None) -> None:
        """Messages sent to ``channel_arn`` from now on follow ``flow``: a lifecycle, or a function
        from the message's ``Content`` to one (``None`` removes the flow). Without a flow a sent
        message is ``SENT`` at once. Raises ``ValueError`` for a bad lifecycle.
        """
        if flow is not None and not callable(flow):
            _checked_steps(flow)
        with self._state_lock:
            if flow is None:
                self._flows.pop(channel_arn, None)
            else:
                self._flows[channel_arn] = flow

    def status_payload(self, channel_arn: str, message_id: str) -> dict[str, Any] | None:
        """The body a lookup of this message would get now, or None if the emulator has no such
        message (never added, or denied and deleted)."""
        message = self._current(channel_arn, message_id)
        if message is None:
            return None
        return {"Status": _status_object(message.lifecycle.current())}

    def sender_of(self, channel_arn: str, message_id: str) -> str | None:
        """The sender (the only bearer allowed to look the message up), or None."""
        with self._state_lock:
            message = self._messages.get((channel_arn, message_id))
        return None if message is None else message.sender

    @property
    def messages(self) -> list[tuple[str, str]]:
        """``(channel ARN, message id)`` of every message the emulator stores, oldest first."""
        with self._state_lock:
            return list(self._messages)

    def inject_error(
        self,
        code: str,
        *,
        status: int | None = None,
        message: str | None = None,
        times: int | None = 1,
        match: Callable[[Request], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` signed requests (``None``: all, until :meth:`reset`) that
        ``match`` accepts with the service error ``code``, in Chime's wire format.

        ``status`` defaults to the model's status for the code (see ``ERROR_STATUS``); other codes
        need one. The signature is checked first, as AWS does. Raises ``ValueError`` for an
        unknown code without ``status``.
        """
        if status is None:
            if code not in ERROR_STATUS:
                raise ValueError(f"{code} is not an error of the model: pass status=")
            status = ERROR_STATUS[code]
        text = message if message is not None else f"{code} injected by the emulator."
        with self._lock:
            self._errors.append(_QueuedError(status, code, text, times, match))

    def _next_error(self, request: Request) -> _QueuedError | None:
        with self._lock:
            for queued in self._errors:
                if queued.match is None or queued.match(request):
                    if queued.remaining is not None:
                        queued.remaining -= 1
                        if queued.remaining <= 0:
                            self._errors.remove(queued)
                    return queued
        return None

    def reset(self) -> None:
        """Forget every message, flow, idempotency token, fault, injected error, recorded request
        and error, and reset the counters. The server keeps running on the same port; settings
        (``clock``, ``latency``, ``denied_retention``) stay as they are."""
        with self._state_lock:
            self._messages.clear()
            self._flows.clear()
            self._sent.clear()
        self.clear_faults()
        with self._lock:
            self._errors.clear()
        self.requests.clear()
        self.errors.clear()
        self.stats.reset()

    # -- ready-made clients ------------------------------------------------------------------

    def session(self) -> boto3.session.Session:
        """A boto3 Session with the emulator's credentials and region (built once, then reused:
        building one loads botocore's data files)."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                region_name=self.region,
            )
        return self._session

    def client(self, config: botocore.config.Config | None = None) -> ChimeSDKMessagingClient:
        """A boto3 ``chime-sdk-messaging`` client pointed at this emulator, with its credentials
        and botocore's retries off; ``config`` is merged over that. Close it when done."""
        import botocore.config

        base = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})
        return self.session().client(
            "chime-sdk-messaging",
            endpoint_url=self.base_url,
            config=base if config is None else base.merge(config),
        )

    def provider(
        self,
        *,
        bearer: str | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> ChimeProvider:
        """A :class:`~msgstatus.ChimeProvider` pointed at this emulator with its credentials."""
        return ChimeProvider(
            session=self.session(),
            region_name=self.region,
            endpoint_url=self.base_url,
            bearer=bearer,
            retry=retry,
            max_concurrency=max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # -- the API -----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except _RequestError as exc:
            return _error(exc.status, exc.code, exc.message)
        except Exception as exc:
            # A failing flow function must not stop the server; the test sees it in .errors.
            logger.exception("the Chime emulator failed on %s %s", request.method, request.path)
            self.errors.append(exc)
            return _error(500, "ServiceFailureException", "The service encountered an error.")

    def _route(self, request: Request) -> Response:
        # The raw path: Request.path is percent-decoded, which would split an encoded ARN at its
        # '%2F's.
        split = urlsplit(request.target)
        self._check_signature(request, split.path, split.query)
        injected = self._next_error(request)
        if injected is not None:
            raise _RequestError(injected.status, injected.code, injected.message)
        segments = split.path.split("/")
        # ['', 'channels', <channel ARN>, 'messages'(, <message id>)]
        if (
            len(segments) in (4, 5)
            and segments[:2] == ["", "channels"]
            and segments[3] == "messages"
        ):
            channel_arn = self._path_arn(segments[2])
            if len(segments) == 4 and request.method == "POST":
                return self._send_message(request, channel_arn)
            if (
                len(segments) == 5
                and request.method == "GET"
                and request.query.get("scope") == "message-status"
            ):
                return self._message_status(request, channel_arn, segments[4])
        raise _RequestError(
            404, "UnknownOperationException", f"No operation for {request.method} {split.path}"
        )

    @staticmethod
    def _path_arn(segment: str) -> str:
        try:
            channel_arn = unquote(segment, errors="strict")
        except UnicodeDecodeError as exc:
            raise _bad_request("The channel ARN is not UTF-8.") from exc
        try:
            return _check_arn(channel_arn, "ChannelArn")
        except InvalidHandleError as exc:
            raise _bad_request(exc.message) from exc

    @staticmethod
    def _bearer(request: Request) -> str:
        bearer = request.headers.get("x-amz-chime-bearer")
        if not bearer:
            raise _bad_request("The x-amz-chime-bearer header (ChimeBearer) is required.")
        try:
            return _check_arn(bearer, "ChimeBearer", ascii_only=True)
        except InvalidHandleError as exc:
            raise _bad_request(exc.message) from exc

    def _message_status(self, request: Request, channel_arn: str, raw_id: str) -> Response:
        bearer = self._bearer(request)
        message_id = unquote(raw_id)
        sub_channel_id = request.query.get("sub-channel-id")
        try:
            _check_id(message_id, "MessageId")
            if sub_channel_id is not None:
                _check_id(sub_channel_id, "SubChannelId")
        except InvalidHandleError as exc:
            raise _bad_request(exc.message) from exc
        message = self._current(channel_arn, message_id)
        if message is None or message.sub_channel_id != sub_channel_id:
            raise _RequestError(
                404, "NotFoundException", f"The message {message_id} was not found."
            )
        if bearer != message.sender:
            raise _RequestError(
                403,
                "ForbiddenException",
                "Only the sender of a message can get its status.",
            )
        return _ok(200, {"Status": _status_object(message.lifecycle.current())})

    def _send_message(self, request: Request, channel_arn: str) -> Response:
        bearer = self._bearer(request)
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise _bad_request("The request body is not JSON.") from exc
        if not isinstance(body, dict):
            raise _bad_request("The request body must be a JSON object.")
        content = body.get("Content")
        kind = body.get("Type")
        persistence = body.get("Persistence")
        token = body.get("ClientRequestToken")
        metadata = body.get("Metadata")
        sub_channel_id = body.get("SubChannelId")
        if not isinstance(content, str) or not content:
            raise _bad_request("Content is required.")
        if kind not in ("STANDARD", "CONTROL"):
            raise _bad_request("Type must be STANDARD or CONTROL.")
        if persistence not in ("PERSISTENT", "NON_PERSISTENT"):
            raise _bad_request("Persistence must be PERSISTENT or NON_PERSISTENT.")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise _bad_request("ClientRequestToken must be 2-64 of [-_a-zA-Z0-9].")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 1024):
            raise _bad_request(f"Metadata must be a string of at most {_MAX_METADATA} characters.")
        size = len(content.encode()) + len((metadata or "").encode())
        if kind == "CONTROL" and (metadata is not None or size > _MAX_CONTROL_BYTES):
            raise _bad_request(
                f"A CONTROL message is at most {_MAX_CONTROL_BYTES} bytes, without metadata."
            )
        if kind == "STANDARD" and size > _MAX_STANDARD_BYTES:
            raise _bad_request("A STANDARD message with its metadata is at most 4 KB.")
        if sub_channel_id is not None:
            try:
                _check_id(sub_channel_id, "SubChannelId")
            except InvalidHandleError as exc:
                raise _bad_request(exc.message) from exc
        # What the idempotency token stands for: the same token with other content is a conflict.
        fingerprint = (content, kind, persistence, metadata, sub_channel_id)
        with self._state_lock:
            known = self._sent.get((channel_arn, bearer, token))
            flow = self._flows.get(channel_arn)
        if known is not None:
            known_fingerprint, known_response = known
            if known_fingerprint != fingerprint:
                raise _RequestError(
                    409,
                    "ConflictException",
                    "The ClientRequestToken was already used for a different request "
                    "(content, type, persistence, metadata or sub-channel).",
                )
            # The idempotency token: the same request again is the same message.
            return _ok(201, known_response)
        steps = flow(content) if callable(flow) else flow
        checked = _checked_steps(steps if steps is not None else [(0.0, "SENT")])
        message_id = uuid.uuid4().hex
        message = self._new_message(
            channel_arn, message_id, bearer, sub_channel_id, content, checked
        )
        stored = self.store_transient or (kind == "STANDARD" and persistence == "PERSISTENT")
        if stored:
            self._keep(message)
        response: dict[str, Any] = {
            "ChannelArn": channel_arn,
            "MessageId": message_id,
            "Status": _status_object(message.lifecycle.current()),
        }
        if sub_channel_id is not None:
            response["SubChannelId"] = sub_channel_id
        with self._state_lock:
            self._sent[(channel_arn, bearer, token)] = (fingerprint, response)
        # A flow that denies at once: the message is gone before the response is out.
        self._current(channel_arn, message_id)
        return _ok(201, response)

    # -- SigV4 -------------------------------------------------------------------------------

    def _check_signature(self, request: Request, raw_path: str, raw_query: str) -> None:
        """Recompute the request's SigV4 signature as AWS does; raise AWS's front-door 403 errors
        (``MissingAuthenticationTokenException``, ``IncompleteSignatureException``,
        ``UnrecognizedClientException``, ``InvalidSignatureException``) when it fails."""
        headers = request.headers
        authorization = headers.get("authorization")
        if not authorization:
            raise _front_door("MissingAuthenticationTokenException", "Missing Authentication Token")
        match = _AUTH_HEADER.fullmatch(authorization.strip())
        if match is None:
            raise _front_door(
                "IncompleteSignatureException",
                "The Authorization header is not a complete AWS4-HMAC-SHA256 signature "
                "(Credential, SignedHeaders and Signature are required).",
            )
        if not hmac.compare_digest(match["akid"], self.access_key_id):
            raise _front_door(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if match["region"] != self.region or match["service"] != "chime":
            raise _bad_signature(
                f"Credential should be scoped to a valid region and service: "
                f"'{self.region}' and 'chime', not '{match['region']}' and '{match['service']}'."
            )
        amz_date = headers.get("x-amz-date", "")
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError as exc:
            raise _front_door(
                "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
            ) from exc
        if not amz_date.startswith(match["date"]):
            raise _bad_signature("The credential scope's date is not the request's date.")
        if abs(time.time() - signed_at) > _MAX_CLOCK_SKEW:
            raise _bad_signature("Signature expired: the request is more than 15 minutes old.")
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed or signed != sorted(set(signed)):
            raise _bad_signature("SignedHeaders must be sorted and include host and x-amz-date.")
        canonical_headers = []
        for name in signed:
            if name not in headers:
                raise _bad_signature(f"The signed header {name} is missing.")
            canonical_headers.append(f"{name}:{' '.join(headers[name].split())}\n")
        payload_hash = hashlib.sha256(request.body).hexdigest()
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared != payload_hash:
            if declared != _UNSIGNED_PAYLOAD:
                raise _bad_signature("x-amz-content-sha256 does not match the request body.")
            payload_hash = declared
        pairs = []
        for pair in raw_query.split("&") if raw_query else []:
            key, _, value = pair.partition("=")
            pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
        canonical_request = "\n".join(
            [
                request.method,
                # SigV4 (outside S3) encodes the already-encoded path once more.
                quote(raw_path or "/", safe="/~"),
                "&".join(f"{key}={value}" for key, value in sorted(pairs)),
                "".join(canonical_headers),
                match["signed"],
                payload_hash,
            ]
        )
        scope = f"{match['date']}/{self.region}/chime/aws4_request"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        signing_key = _hmac(f"AWS4{self.secret_access_key}".encode(), match["date"])
        for part in (self.region, "chime", "aws4_request"):
            signing_key = _hmac(signing_key, part)
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            raise _bad_signature(
                "The request signature we calculated does not match the signature you provided."
            )

    # -- faults in Chime's words -------------------------------------------------------------

    def render_fault(self, fault: Fault, request: Request) -> Response:
        """Faults as Chime would send them: 429 ``ThrottledClientException`` (with a
        ``Retry-After`` the service itself does not usually send), 500 ``ServiceFailureException``,
        503 ``ServiceUnavailableException``, 502/504 as a load balancer's HTML page; an unknown
        ``Status.Value`` (``TELEPORTED``); a ``Status`` that is a string or a list."""
        if fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_HTTP_DATE):
            response = _error(429, "ThrottledClientException", "The client is being throttled.")
            retry_after = "1" if fault is Fault.RATE_LIMIT else http_date(1)
            response.headers.append(("Retry-After", retry_after))
            return response
        if fault is Fault.SERVER_ERROR_500:
            return _error(500, "ServiceFailureException", "The service encountered an error.")
        if fault is Fault.SERVER_ERROR_503:
            return _error(503, "ServiceUnavailableException", "The service is unavailable.")
        if fault is Fault.UNKNOWN_STATUS:
            status = {"Value": "TELEPORTED"}
            if request.method == "POST":
                segments = urlsplit(request.target).path.split("/")
                channel = unquote(segments[2]) if len(segments) > 2 else ""
                return _ok(
                    201, {"ChannelArn": channel, "MessageId": uuid.uuid4().hex, "Status": status}
                )
            return _ok(200, {"Status": status})
        if fault is Fault.WRONG_SHAPE:
            with self._lock:
                self._wrong_shapes += 1
                odd = self._wrong_shapes % 2 == 1
            return _ok(200, {"Status": "SENT"} if odd else {"Status": ["SENT"]})
        if fault is Fault.TRUNCATED:
            body = json.dumps({"Status": {"Value": "SENT", "Detail": "x" * 64}}).encode()
            return Response(200, body, [("Content-Type", "application/json")], truncate=True)
        return super().render_fault(fault, request)

    # -- bookkeeping -------------------------------------------------------------------------

    def _store(
        self,
        channel_arn: str,
        message_id: str,
        sender: str,
        sub_channel_id: str | None,
        content: str,
        checked: tuple[list[tuple[float, ChimeState]], float | None],
    ) -> _Message:
        message = self._new_message(
            channel_arn, message_id, sender, sub_channel_id, content, checked
        )
        self._keep(message)
        return message

    def _new_message(
        self,
        channel_arn: str,
        message_id: str,
        sender: str,
        sub_channel_id: str | None,
        content: str,
        checked: tuple[list[tuple[float, ChimeState]], float | None],
    ) -> _Message:
        steps, denied_at = checked
        # Through a lambda, so that assigning emulator.clock later still drives this lifecycle.
        lifecycle = Lifecycle(steps, lambda: self.clock())
        message = _Message(
            channel_arn, message_id, sender, sub_channel_id, content, lifecycle, denied_at
        )
        # Every message a sender's websocket hears of, kept or not (non-persistent, denied).
        self._record_for_feeds(message)
        return message

    def _keep(self, message: _Message) -> None:
        key = (message.channel_arn, message.message_id)
        with self._state_lock:
            self._messages.pop(key, None)
            self._messages[key] = message

    def _current(self, channel_arn: str, message_id: str) -> _Message | None:
        """The stored message, after deleting it if it was denied long enough ago."""
        with self._state_lock:
            message = self._messages.get((channel_arn, message_id))
            if message is None or message.denied_at is None:
                return message
            elapsed = self.clock() - message.lifecycle.started_at
            if elapsed >= message.denied_at + self.denied_retention:
                del self._messages[(channel_arn, message_id)]
                return None
            return message


# -- push: a sender's event feed ------------------------------------------------------------------

#: The websocket event type of a message's state right after it was created.
_CREATE_EVENT_TYPES: dict[str, str] = {
    "PENDING": "PENDING_CREATE_CHANNEL_MESSAGE",
    "SENT": "CREATE_CHANNEL_MESSAGE",
    "FAILED": "FAILED_CREATE_CHANNEL_MESSAGE",
    "DENIED": "DENIED_CREATE_CHANNEL_MESSAGE",
}


def _timestamp(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _envelope(message: _Message, state: ChimeState, created: float) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ChannelArn": message.channel_arn,
        "MessageId": message.message_id,
        "Content": message.content,
        "Type": "STANDARD",
        "CreatedTimestamp": _timestamp(created),
        "LastUpdatedTimestamp": _timestamp(time.time()),
        "Sender": {"Arn": message.sender, "Name": message.sender.rsplit("/", 1)[-1]},
        "Persistence": "PERSISTENT",
        "Status": _status_object(state),
    }
    if message.sub_channel_id is not None:
        payload["SubChannelId"] = message.sub_channel_id
    return {
        "Headers": {
            "x-amz-chime-event-type": _CREATE_EVENT_TYPES[state.value],
            "x-amz-chime-message-type": "STANDARD",
        },
        "Payload": json.dumps(payload),
    }


@dataclass
class _FeedRecord:
    message: _Message
    created: float
    generation: int


class ChimeEventFeed:
    """The events a sender's messaging websocket would deliver about its own messages, from the
    moment the feed was opened: one envelope per state a message reaches on the emulator's clock
    (``PENDING_CREATE_CHANNEL_MESSAGE``, ``CREATE_CHANNEL_MESSAGE``, ``FAILED_…``,
    ``DENIED_CREATE_CHANNEL_MESSAGE`` for a message the channel flow denied, which no lookup can
    see). Iterate it with ``async for`` (it waits, polling every ``interval`` seconds, and ends
    when the feed or the emulator is closed), or take what is there now with :meth:`pending`.
    Values a websocket has no event for (``TELEPORTED``) are skipped.
    """

    def __init__(self, emulator: _ChimeFeeds, sender: str, interval: float) -> None:
        self.sender = sender
        self._emulator = emulator
        self._interval = interval
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self._queue: list[dict[str, Any]] = []
        self._since = emulator._feed_generation()
        self.closed = False

    def pending(self) -> list[dict[str, Any]]:
        """The envelopes that are due now and were not handed out yet, oldest first."""
        self._collect()
        ready, self._queue = self._queue, []
        return ready

    def _collect(self) -> None:
        for key, record in self._emulator._feed_records(self.sender, self._since):
            generation, emitted = self._seen.get(key, (record.generation, 0))
            if generation != record.generation:
                emitted = 0
            lifecycle = record.message.lifecycle
            elapsed = self._emulator.clock() - lifecycle.started_at
            reached = [state for offset, state in lifecycle.steps if offset <= elapsed]
            for state in reached[emitted:]:
                if state.value in _CREATE_EVENT_TYPES:
                    self._queue.append(_envelope(record.message, state, record.created))
            self._seen[key] = (record.generation, max(emitted, len(reached)))

    def __aiter__(self) -> ChimeEventFeed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        import anyio

        while True:
            if not self._queue:
                self._collect()
            if self._queue:
                return self._queue.pop(0)
            if self.closed or not self._emulator._feeds_open:
                raise StopAsyncIteration
            await anyio.sleep(self._interval)

    async def aclose(self) -> None:
        """End the feed: an ``async for`` over it stops."""
        self.closed = True
