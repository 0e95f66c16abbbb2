"""Sendblue (iMessage / SMS REST API).

Everything true only of Sendblue lives here: the handle rules, the request, the payload model, the
status table, finality and the mapping of HTTP errors onto the msgstatus error tree.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, NoReturn

import anyio
import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from msgstatus._decision import Refusal, RefusalKind
from msgstatus._providers.base import (
    BaseProvider,
    ErrorRule,
    TypedHandle,
    check_endpoint_url,
    check_timeout,
    most_specific,
    native_handle,
    plain_payload,
    rule_for_http_status,
)
from msgstatus._retry import RetryPolicy, parse_retry_after
from msgstatus._status import MessageStatus, StatusResult, StatusTable
from msgstatus._webhooks import DEFAULT_MAX_BODY, DEFAULT_MAX_DEPTH, OnResult, PushReceiver
from msgstatus.errors import (
    AuthenticationError,
    InvalidHandleError,
    MessageNotFoundError,
    MsgStatusError,
    PermissionDeniedError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "MAX_NATIVE_HANDLE_LENGTH",
    "MAX_RESPONSE_BYTES",
    "SENDBLUE_ERROR_CODES",
    "SENDBLUE_ERROR_KEYS",
    "SENDBLUE_FINAL_STATUSES",
    "SENDBLUE_HTTP_ERRORS",
    "SENDBLUE_STATUS_MAP",
    "SENDBLUE_TRANSPORT_ERRORS",
    "SIGNING_SECRET_HEADER",
    "SendblueProvider",
    "SendblueWebhook",
]

logger = logging.getLogger("msgstatus.sendblue")

PROVIDER = "sendblue"

#: Sendblue's raw ``status`` values and what they mean here. Mirrored in providers.md (a test
#: compares the two). Any other value maps to UNKNOWN; a non-null ``error_key`` decides the status
#: whatever the status says (see SENDBLUE_ERROR_KEYS).
SENDBLUE_STATUS_MAP: dict[str, MessageStatus] = {
    "QUEUED": MessageStatus.PENDING,
    "REGISTERED": MessageStatus.PENDING,
    "PENDING": MessageStatus.PENDING,
    "ACCEPTED": MessageStatus.PENDING,
    "SENT": MessageStatus.SENT,
    "SUCCESS": MessageStatus.SENT,
    "DELIVERED": MessageStatus.DELIVERED,
    "RECEIVED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "ERROR": MessageStatus.FAILED,
    "DECLINED": MessageStatus.DENIED,
}

#: Statuses after which Sendblue reports nothing that changes delivery. ``SENT`` is not among them
#: (it can still become ``DELIVERED`` or ``ERROR``); ``READ`` may follow ``DELIVERED`` as an
#: engagement update, which does not make ``DELIVERED`` any less final for resend decisions.
SENDBLUE_FINAL_STATUSES: frozenset[MessageStatus] = frozenset(
    {MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED, MessageStatus.DENIED}
)

#: Sendblue's documented ``error_key`` values (the stable id of the rule that declined a message)
#: and what each means for a resend. Mirrored in providers.md (a test compares the two). A key
#: not listed here gives UNKNOWN (never RESEND nor BLOCKED) and is logged once.
SENDBLUE_ERROR_KEYS: dict[str, Refusal] = {
    "LINE_HOURLY_LIMIT_REACHED": Refusal(
        RefusalKind.QUOTA_WINDOW,
        "the sending line reached its hourly new-contact cap; the message was not sent",
        timedelta(hours=1),
    ),
    "LINE_DAILY_LIMIT_REACHED": Refusal(
        RefusalKind.QUOTA_WINDOW,
        "the sending line reached its daily new-contact cap; the message was not sent",
        timedelta(days=1),
    ),
    "PRE_REPLY_LIMIT_REACHED": Refusal(
        RefusalKind.QUOTA_WINDOW,
        "too many messages before the contact replied; the message was not sent "
        "(the limit lifts when the contact replies)",
    ),
    "OPTED_OUT": Refusal(RefusalKind.PERMANENT, "the recipient opted out of messages"),
}

#: ``error_code`` values that mean a refusal when no ``error_key`` names the rule (an ``ERROR``
#: status with them). Mirrored in providers.md. Other codes leave the status as it is.
SENDBLUE_ERROR_CODES: dict[str, Refusal] = {
    # The SDK documents a cap refusal as HTTP 400, status ERROR, error_code 429 plus a key; the
    # code alone still says "a cap, not a delivery failure", with no known window.
    "429": Refusal(
        RefusalKind.QUOTA_WINDOW, "a sending cap was reached (error_code 429); not sent"
    ),
}

#: HTTP statuses of Sendblue's answers and the error each becomes. Mirrored in providers.md (a
#: test compares the two). 429 and 5xx are retried; any other status not listed here (3xx, 402,
#: 405, 410, ...) is a plain MsgStatusError naming it.
SENDBLUE_HTTP_ERRORS: dict[int, ErrorRule] = {
    400: ErrorRule(InvalidHandleError, "Sendblue refused the handle"),
    401: ErrorRule(AuthenticationError, "Sendblue rejected the API key or secret"),
    403: ErrorRule(
        PermissionDeniedError, "Sendblue does not let these credentials read this message"
    ),
    404: ErrorRule(MessageNotFoundError, "Sendblue has no message with this handle"),
    # 408 and 409 (how Sendblue's API reports a lock timeout) are retried, as its SDK does.
    408: ErrorRule(ProviderUnavailableError, "Sendblue timed out the request"),
    409: ErrorRule(ProviderUnavailableError, "Sendblue reported a conflict (a lock timeout)"),
    422: ErrorRule(InvalidHandleError, "Sendblue refused the handle"),
    429: ErrorRule(RateLimitedError, "Sendblue is rate limiting requests"),
}

#: What httpx raises while sending and the error each becomes; the most specific class wins.
SENDBLUE_TRANSPORT_ERRORS: dict[type[BaseException], ErrorRule] = {
    TimeoutError: ErrorRule(ProviderUnavailableError, "Sendblue did not answer within the timeout"),
    httpx.TimeoutException: ErrorRule(
        ProviderUnavailableError, "Sendblue did not answer within the timeout"
    ),
    httpx.DecodingError: ErrorRule(
        ProviderResponseError, "Sendblue's response body could not be decoded"
    ),
    # TransportError (connect, read, write, protocol, proxy errors) and anything else httpx
    # raises while sending: the service could not be reached properly.
    httpx.HTTPError: ErrorRule(ProviderUnavailableError, "could not reach Sendblue"),
    httpx.InvalidURL: ErrorRule(MsgStatusError, "could not send the request to Sendblue"),
    httpx.StreamError: ErrorRule(MsgStatusError, "could not send the request to Sendblue"),
}

_UNEXPECTED_STATUS = ErrorRule(MsgStatusError, "Sendblue answered an unexpected status")

DEFAULT_BASE_URL = "https://api.sendblue.co"

#: Half the official SDK's 60 s read timeout: a status lookup is a small read, and the retry policy
#: (not one long wait) is what rides out a slow moment. Connect timeout as in the SDK.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

#: Real handles are UUID-like (36 characters); the limit only keeps junk out of URLs and logs.
MAX_NATIVE_HANDLE_LENGTH = 256

#: A status payload is a few hundred bytes; anything past this is not one, and is not read.
MAX_RESPONSE_BYTES = 1024 * 1024

# Error bodies are read (and dropped) only so that the connection can go back to the pool.
_MAX_ERROR_BODY_BYTES = 64 * 1024

# A Retry-After beyond a day is a misconfigured server, not advice worth passing on.

# Limits of the official SDK.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

_ENV_KEY = "SENDBLUE_API_KEY"
_ENV_SECRET = "SENDBLUE_API_SECRET"  # noqa: S105 - the variable's name, not a secret
_ENV_BASE_URL = "SENDBLUE_BASE_URL"

_REDACTED = "[redacted]"


# -- the payload ------------------------------------------------------------------------------


def _text_or_none(value: object) -> object:
    return value if isinstance(value, str) else None


def _error_code_text(value: object) -> object:
    # Sendblue documents an int; a numeric string (a webhook relay, a future payload) is taken as
    # it is rather than failing the lookup.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip() or None
    return None


def _error_key_text(value: object) -> object:
    # "Non-null means a rule declined it": a blank string names no rule, so it counts as null;
    # any other non-null value does name something, whatever its JSON type.
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    return str(value)


def _lenient_datetime(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    try:
        parsed = handler(value)
    except ValidationError:
        return None
    if isinstance(parsed, datetime) and parsed.tzinfo is None:
        # Sendblue writes UTC timestamps ("...Z"); one without an offset is UTC too.
        return parsed.replace(tzinfo=timezone.utc)
    return parsed


class _MessageResponse(BaseModel):
    """The fields of Sendblue's ``MessageResponse`` (and status-callback body) that msgstatus reads.

    Every field is optional and extra fields are ignored (the whole payload is kept as
    ``StatusResult.raw``). Only ``status`` must have the right type: a status that is not text means
    the payload is not what the API promises. The other fields degrade to None when malformed.
    """

    model_config = ConfigDict(extra="ignore")

    message_handle: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    status: str | None = None
    error_key: Annotated[str | None, BeforeValidator(_error_key_text)] = None
    error_code: Annotated[str | None, BeforeValidator(_error_code_text)] = None
    error_message: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    date_updated: Annotated[datetime | None, WrapValidator(_lenient_datetime)] = None


# -- helpers ----------------------------------------------------------------------------------


def _check_credential(value: object, what: str) -> str:
    # Messages name the credential, never show it.
    if not isinstance(value, str) or not value:
        raise AuthenticationError(f"the Sendblue {what} is missing", provider=PROVIDER)
    if not value.isascii() or not value.isprintable() or value != value.strip():
        raise AuthenticationError(
            f"the Sendblue {what} has characters an HTTP header cannot carry "
            "(white space at an end, control or non-ASCII characters)",
            provider=PROVIDER,
        )
    return value


# Shorter secrets (test doubles' "s") would match inside ordinary words and mangle the payload:
# they are redacted only where a whole string equals them.
_MIN_SCRUB_SUBSTRING = 8


def _scrub(value: Any, secret: str) -> Any:
    """``value`` with the secret redacted from every string in it (dict keys included)."""
    if isinstance(value, str):
        if value == secret:
            return _REDACTED
        if len(secret) >= _MIN_SCRUB_SUBSTRING and secret in value:
            return value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        return {_scrub(key, secret): _scrub(item, secret) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secret) for item in value]
    return value


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python's json module accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


def _timeout_budget(timeout: httpx.Timeout) -> float | None:
    phases = (timeout.pool, timeout.connect, timeout.write, timeout.read)
    if any(phase is None for phase in phases):
        return None
    return float(sum(phase for phase in phases if phase is not None))


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The (decoded) body, or None as soon as it is known to be longer than ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # Counting decoded bytes also stops a small gzip body that inflates to gigabytes.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- the provider -----------------------------------------------------------------------------


class SendblueProvider(BaseProvider):
    """Looks up message statuses with Sendblue's REST API (``GET /api/status?handle=…``).

    One pooled ``httpx.AsyncClient`` serves every lookup; pass ``http_client`` to use your own (it
    is then yours to close). ``timeout`` is a number of seconds, the whole budget of one attempt,
    or an ``httpx.Timeout`` (its phases bound each step and their sum bounds the attempt); the
    default is 30 s to read and 5 s to connect. ``retry`` retries rate limits and unavailability.
    ``base_url`` must be ``https://`` unless its host is loopback (an emulator).

    Raises :class:`~msgstatus.AuthenticationError` for a missing or malformed key or secret and
    ``ValueError`` for an unsafe ``base_url``. Use it as ``async with`` or call :meth:`aclose`;
    a lookup after that raises ``RuntimeError``, whoever owns the HTTP client.
    """

    name: str = PROVIDER
    display_name: ClassVar[str] = "Sendblue"
    status_map: ClassVar[Mapping[str, MessageStatus]] = SENDBLUE_STATUS_MAP
    final_statuses: ClassVar[frozenset[MessageStatus]] = SENDBLUE_FINAL_STATUSES

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        from msgstatus import __version__

        api_key = _check_credential(api_key, "API key")
        self.__secret = _check_credential(api_secret, "API secret")
        self.base_url = check_endpoint_url(base_url, setting="base_url")
        try:
            # Parsed once: httpx would parse a string URL again on every request.
            self._status_url = httpx.URL(f"{self.base_url}/api/status")
        except httpx.InvalidURL as exc:
            raise ValueError(f"base_url is not a URL httpx can use: {base_url!r}") from exc
        if isinstance(timeout, httpx.Timeout):
            self._timeout = timeout
            self._budget = _timeout_budget(timeout)
        else:
            self._budget = check_timeout(timeout, "timeout")
            self._timeout = httpx.Timeout(self._budget)
        super().__init__(retry=retry, owns_client=http_client is None)
        self._headers = {
            "sb-api-key-id": api_key,
            "sb-api-secret-key": self.__secret,
            "accept": "application/json",
        }
        if http_client is None:
            http_client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=_LIMITS,
                follow_redirects=False,
                headers={"user-agent": f"msgstatus/{__version__}"},
            )
        self._client = http_client
        self._unknown_keys = StatusTable(PROVIDER, {}, what="error_key")

    @classmethod
    def from_env(
        cls,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> SendblueProvider:
        """A provider configured from ``SENDBLUE_API_KEY``, ``SENDBLUE_API_SECRET`` and (optional)
        ``SENDBLUE_BASE_URL``.

        Raises :class:`~msgstatus.AuthenticationError` naming the variable that is missing or
        empty, and ``ValueError`` for an unsafe base URL.
        """
        values = {}
        for variable in (_ENV_KEY, _ENV_SECRET):
            value = os.environ.get(variable, "")
            if not value:
                raise AuthenticationError(
                    f"the environment variable {variable} is not set (or is empty)",
                    provider=PROVIDER,
                )
            values[variable] = value
        return cls(
            values[_ENV_KEY],
            values[_ENV_SECRET],
            base_url=os.environ.get(_ENV_BASE_URL) or DEFAULT_BASE_URL,
            timeout=timeout,
            retry=retry,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        # Total: a half-built provider (its constructor raised) still has a repr.
        return f"{type(self).__name__}(base_url={getattr(self, 'base_url', None)!r})"

    async def _close_client(self) -> None:
        await self._client.aclose()

    # -- handles and payloads --------------------------------------------------------------

    def parse_handle(self, handle: str | TypedHandle, /) -> str:
        """The native Sendblue handle of ``"sendblue:<handle>"``, a bare handle or a typed
        handle of this provider. Raises :class:`~msgstatus.InvalidHandleError` otherwise."""
        native = native_handle(self._typed_handle_text(handle), PROVIDER)
        _check_native(native)
        return native

    def _canonical(self, target: str) -> str:
        return f"{PROVIDER}:{target}"

    def result_from_payload(
        self, payload: Mapping[str, Any], /, *, handle: str | None = None
    ) -> StatusResult:
        """Normalize a Sendblue message payload you already hold: a send response or the body of
        a status callback (webhook), the same way :meth:`get_status` does.

        The payload must name its message (``message_handle``); with ``handle`` given, it must
        name that one. Raises :class:`~msgstatus.ProviderResponseError` when the payload is not an
        object, names no message or another message, or has a ``status`` that is not text;
        :class:`~msgstatus.InvalidHandleError` for a bad ``handle`` argument. The payload may be
        the official SDK's response object (a pydantic model) or any mapping; datetimes in it
        become ISO 8601 strings in ``raw``.
        """
        payload = plain_payload(payload)  # type: ignore[assignment]
        if not isinstance(payload, Mapping):
            raise ProviderResponseError(
                f"a Sendblue payload is a JSON object, not {type(payload).__name__}",
                provider=PROVIDER,
            )
        scrubbed: dict[str, Any] = _scrub(dict(payload), self.__secret)
        if handle is not None:
            native = self.parse_handle(handle)
        else:
            try:
                native = self.parse_handle(scrubbed.get("message_handle"))  # type: ignore[arg-type]
            except InvalidHandleError as exc:
                raise ProviderResponseError(
                    "the Sendblue payload has no usable message_handle", provider=PROVIDER
                ) from exc
        return self._normalize(scrubbed, native)

    # -- lookups ---------------------------------------------------------------------------

    async def _attempt(self, target: str, canonical: str) -> StatusResult:
        if self._client.is_closed:
            raise MsgStatusError(
                "the provider's HTTP client is closed", provider=PROVIDER, handle=canonical
            )
        request = self._client.build_request(
            "GET",
            self._status_url,
            params={"handle": target},
            headers=self._headers,
            timeout=self._timeout,
        )
        deadline: AbstractContextManager[object] = (
            anyio.fail_after(self._budget) if self._budget is not None else nullcontext()
        )
        try:
            with deadline:
                # Redirects are never followed: they would carry the key headers to another host.
                response = await self._client.send(request, stream=True, follow_redirects=False)
                try:
                    ok = response.is_success
                    body = await _read_capped(
                        response, MAX_RESPONSE_BYTES if ok else _MAX_ERROR_BODY_BYTES
                    )
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            rule = most_specific(exc, SENDBLUE_TRANSPORT_ERRORS)
            assert rule is not None  # every class caught here has a row
            raise self._error(rule, canonical, detail=f" ({type(exc).__name__})") from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("GET /api/status %r -> HTTP %d", canonical, response.status_code)
        if not ok:
            code = response.status_code
            rule = rule_for_http_status(code, SENDBLUE_HTTP_ERRORS, provider="Sendblue")
            raise self._error(
                rule or _UNEXPECTED_STATUS,
                canonical,
                http_status=code,
                retry_after=parse_retry_after(response.headers) if code == 429 else None,
            )
        if body is None:
            raise ProviderResponseError(
                f"Sendblue's response is larger than {MAX_RESPONSE_BYTES} bytes; not read",
                provider=PROVIDER,
                handle=canonical,
            )
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ProviderResponseError(
                f"Sendblue answered HTTP {response.status_code} with a body that is not JSON",
                provider=PROVIDER,
                handle=canonical,
            ) from exc
        if not isinstance(payload, dict):
            raise ProviderResponseError(
                f"Sendblue answered a JSON {type(payload).__name__}, not an object",
                provider=PROVIDER,
                handle=canonical,
            )
        return self._normalize(_scrub(payload, self.__secret), target)

    def _normalize(self, payload: dict[str, Any], native: str) -> StatusResult:
        return _normalize_payload(payload, native, self._table, self._unknown_keys, self._result)

    @staticmethod
    def _refusal(message: _MessageResponse, status: MessageStatus) -> Refusal | None:
        if message.error_key is not None:
            return SENDBLUE_ERROR_KEYS.get(message.error_key.upper())
        if status is MessageStatus.FAILED and message.error_code is not None:
            return SENDBLUE_ERROR_CODES.get(message.error_code)
        return None

    # -- push: status callbacks and outbound webhooks --------------------------------------

    @classmethod
    def result_from_webhook(cls, payload: Mapping[str, Any], /) -> StatusResult | None:
        """Normalize the body of a ``status_callback`` POST or an ``outbound`` account webhook
        exactly as a lookup of that message would be (same table, same handle string), without
        credentials. The handle comes from ``message_handle``.

        Raises :class:`~msgstatus.ProviderResponseError` for a body that is not an object, whose
        ``message_handle`` is not a usable handle or whose ``status`` is not text; a body with no
        ``message_handle`` and no ``status`` at all (another webhook type: typing indicators,
        call logs, line events) gives None: there is no message status in it.
        """
        if not isinstance(payload, Mapping):
            raise ProviderResponseError(
                f"a Sendblue webhook body is a JSON object, not {type(payload).__name__}",
                provider=PROVIDER,
            )
        body = dict(payload)
        if "message_handle" not in body and "status" not in body:
            return None
        try:
            native = native_handle(body.get("message_handle"), PROVIDER)
            _check_native(native)
        except InvalidHandleError as exc:
            raise ProviderResponseError(
                "the Sendblue webhook has no usable message_handle", provider=PROVIDER
            ) from exc
        return _normalize_payload(body, native, _PUSH_TABLE, _PUSH_UNKNOWN_KEYS, cls._result)


def _check_native(native: str) -> None:
    if len(native) > MAX_NATIVE_HANDLE_LENGTH:
        raise InvalidHandleError(
            f"a Sendblue handle is at most {MAX_NATIVE_HANDLE_LENGTH} characters long, "
            f"not {len(native)}",
            provider=PROVIDER,
            handle=native,
        )
    for char in native:
        # Sendblue handles are UUID-like: white space or invisible formatting characters
        # (zero-width, bidi overrides) inside one mean a copy-paste accident or a spoof.
        if char.isspace() or not char.isprintable():
            raise InvalidHandleError(
                f"a Sendblue handle cannot contain {char!r}", provider=PROVIDER, handle=native
            )


# The tables pushed payloads are read with (the same mapping as lookups; its own warn-once set).
_PUSH_TABLE = StatusTable(PROVIDER, SENDBLUE_STATUS_MAP)
_PUSH_UNKNOWN_KEYS = StatusTable(PROVIDER, {}, what="error_key")


def _normalize_payload(
    payload: dict[str, Any],
    native: str,
    table: StatusTable,
    unknown_keys: StatusTable,
    result: Callable[..., StatusResult],
) -> StatusResult:
    canonical = f"{PROVIDER}:{native}"
    try:
        message = _MessageResponse.model_validate(payload)
    except ValidationError as exc:
        raise ProviderResponseError(
            "Sendblue's payload has a 'status' that is not text",
            provider=PROVIDER,
            handle=canonical,
        ) from exc
    # A 2xx body is a status only if it is about this message: an error envelope
    # ({"status": "ERROR", "message": "Message not found"}) names none, and a mixed-up
    # response names another. Either would be read as FAILED, inviting a duplicate.
    if message.message_handle is None:
        raise ProviderResponseError(
            "Sendblue's payload names no message (no message_handle): not a message status",
            provider=PROVIDER,
            handle=canonical,
        )
    if message.message_handle != native:
        raise ProviderResponseError(
            f"Sendblue's payload is about another message "
            f"(message_handle {message.message_handle[:80]!r})",
            provider=PROVIDER,
            handle=canonical,
        )
    status = table.lookup(message.status)
    detail = message.error_message
    refusal = SendblueProvider._refusal(message, status)
    not_before: datetime | None = None
    if refusal is not None:
        status = refusal.status
        detail = detail or refusal.meaning
        if refusal.window is not None:
            refused_at = message.date_updated or datetime.now(timezone.utc)
            not_before = refused_at + refusal.window
    elif message.error_key is not None:
        unknown_keys.lookup(message.error_key)
        status = MessageStatus.UNKNOWN
        detail = (
            f"declined by a rule this version does not know (error_key {message.error_key[:80]!r})"
        )
    return result(
        canonical,
        status,
        provider_status=message.status,
        detail=detail,
        error_code=message.error_code,
        not_before=not_before,
        updated_at=message.date_updated,
        raw=payload,
    )


class SendblueWebhook(PushReceiver):
    """An ASGI application that receives Sendblue's ``status_callback`` POSTs and ``outbound``
    account webhooks and hands each normalized :class:`~msgstatus.StatusResult` to
    ``on_result`` (an async callable: ``ledger.observe``, ``client.observe``, a queue's put).

    ``secret`` is compared in constant time with the ``sb-signing-secret`` header (401 with no
    detail when it differs or is missing); pass ``secret=None`` to check none (Sendblue documents
    the header for account webhooks; whether ``status_callback`` POSTs carry it is unverified).
    Bodies over ``max_body`` bytes (64 KiB), nested deeper than ``max_depth``, not JSON, not
    ``application/json``, with lone surrogates, or refused by
    :meth:`SendblueProvider.result_from_webhook` get 400 (never 5xx, so garbage is not retried);
    an unknown status value or a webhook that is no message status gets 200 and is not handed
    over; 200 once ``on_result`` returned; 500 when it raised, so that Sendblue retries. Repeats
    are harmless: the merge is idempotent. Mount it in Starlette/FastAPI with
    ``app.mount("/sendblue", SendblueWebhook(...))`` or serve it with ``msgstatus listen``.

    Raises ``ValueError`` for an empty secret or a bad limit, ``TypeError`` for an ``on_result``
    that is not callable.
    """

    provider = PROVIDER

    def __init__(
        self,
        on_result: OnResult,
        *,
        secret: str | None,
        max_body: int = DEFAULT_MAX_BODY,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        super().__init__(
            on_result,
            normalize=SendblueProvider.result_from_webhook,
            secret=secret,
            secret_header=SIGNING_SECRET_HEADER,
            max_body=max_body,
            max_depth=max_depth,
        )


#: The header Sendblue puts its webhook secret in (the secret itself, not an HMAC).
SIGNING_SECRET_HEADER = "sb-signing-secret"  # noqa: S105 - a header's name
