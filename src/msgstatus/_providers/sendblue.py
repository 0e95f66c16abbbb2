"""Sendblue (iMessage / SMS REST API).

Everything true only of Sendblue lives here: the handle rules, the request, the payload model, the
status table, finality and the mapping of HTTP errors onto the msgstatus error tree.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, NoReturn
from urllib.parse import quote_plus

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
    Secret,
    TypedHandle,
    check_endpoint_url,
    check_nesting,
    check_timeout,
    describe_cause,
    most_specific,
    native_handle,
    plain_payload,
    rule_for_http_status,
)
from msgstatus._retry import RetryPolicy, parse_retry_after
from msgstatus._status import MessageStatus, StatusResult, StatusTable, bounded_raw
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


def _credential_problem(value: object, what: str) -> str | None:
    """What is wrong with a credential, in words that name it and never show it; None if it is
    usable. The caller raises, in a frame that holds the value only as a :class:`Secret`."""
    if not isinstance(value, str) or not value:
        return f"the Sendblue {what} is missing"
    if not value.isascii() or not value.isprintable() or value != value.strip():
        return (
            f"the Sendblue {what} has characters an HTTP header cannot carry "
            "(white space at an end, control or non-ASCII characters)"
        )
    return None


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


def _lookup_url_maker(base: httpx.URL) -> Callable[[str], httpx.URL]:
    """A function giving ``base`` with the query ``handle=<target>``: the URL httpx builds from
    ``params={"handle": target}``, without parsing it all again (httpx's URL parser is a third
    of what its client layer costs per lookup). The short way sets the query on a copy of the
    parsed base; it is taken only if it gives exactly httpx's URL for a probe, else (another
    httpx, a base URL with a query of its own) every URL is built by httpx."""

    def parsed(target: str) -> httpx.URL:
        return httpx.URL(base, params={"handle": target})

    reference = getattr(base, "_uri_reference", None)
    replace = getattr(reference, "_replace", None)
    if replace is None:  # pragma: no cover - an httpx whose URL msgstatus does not know
        return parsed

    def short(target: str) -> httpx.URL:
        url = httpx.URL.__new__(httpx.URL)
        # What httpx's params= gives (urllib's urlencode, quote_plus with nothing safe).
        url._uri_reference = replace(query="handle=" + quote_plus(target, safe=""))
        return url

    probe = "msgstatus probe/+?&=%\u00e9#"
    try:
        mine, theirs = short(probe), parsed(probe)
        same = str(mine) == str(theirs) and mine.raw_path == theirs.raw_path
    except Exception:  # pragma: no cover - the same: another httpx
        same = False
    return short if same else parsed


def _may_hold(body: bytes, secret: str) -> bool:
    """Whether JSON parsed from ``body`` may have ``secret`` in a string (a key or a value). With
    no backslash (no escape) and no NUL byte (json.loads reads UTF-8 then, not UTF-16 or 32),
    every string of the payload is a piece of the body as it is, so a body without the secret's
    UTF-8 bytes holds no string equal to it or containing it."""
    return b"\\" in body or b"\x00" in body or secret.encode("utf-8", "surrogatepass") in body


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python's json module accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


def _timeout_budget(timeout: httpx.Timeout) -> float | None:
    phases = (timeout.pool, timeout.connect, timeout.write, timeout.read)
    if any(phase is None for phase in phases):
        return None
    return float(sum(phase for phase in phases if phase is not None))


#: Content encodings msgstatus decodes itself (and asks for), with zlib's window setting.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: At most this many encodings stacked on one body (``gzip, gzip`` is two).
_MAX_ENCODINGS = 2
# Each decoding step yields at most this many bytes, so memory stays near the cap whatever the
# compression ratio (a 548-byte ``gzip, gzip`` body inflates to 200 MiB).
_DECODE_STEP = 64 * 1024
# A compressed body may be a little larger than what it decodes to.
_RAW_SLACK = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class _BodyError(Exception):
    """The body cannot be decoded; the message says why (shown in the ProviderResponseError)."""


class _CappedDecoder:
    """Undoes a stack of content encodings while streaming, keeping at most ``limit`` decoded
    bytes: every zlib step is bounded (``max_length``), so a bomb stops at the cap instead of
    inflating in one call."""

    def __init__(self, encodings: list[str], limit: int) -> None:
        # Encodings are listed in the order they were applied: undo the last one first.
        self._layers = [zlib.decompressobj(_ENCODINGS[name]) for name in reversed(encodings)]
        self._limit = limit
        self._size = 0
        self._chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self._push(0, data)

    def finish(self) -> bytes:
        for level, layer in enumerate(self._layers):
            if not layer.eof:
                raise _BodyError("the compressed body ends early")
            self._push(level + 1, layer.flush())
        return b"".join(self._chunks)

    def _push(self, level: int, data: bytes) -> None:
        if level == len(self._layers):
            self._size += len(data)
            if self._size > self._limit:
                raise _BodyTooLarge
            if data:
                self._chunks.append(data)
            return
        layer = self._layers[level]
        while True:
            if layer.eof:
                return  # bytes after the end of the stream are ignored, as httpx does
            try:
                out = layer.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                raise _BodyError(f"the compressed body is corrupt ({exc})") from None
            data = layer.unconsumed_tail
            if not out:
                return
            self._push(level + 1, out)


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body with its content encodings undone, or None as soon as it is known to be longer
    than ``limit`` decoded bytes. Raises _BodyError for an encoding it does not decode."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _RAW_SLACK:
        return None
    encodings = [
        name.strip().lower()
        for name in response.headers.get("content-encoding", "").split(",")
        if name.strip() and name.strip().lower() != "identity"
    ]
    for name in encodings:
        if name not in _ENCODINGS:
            raise _BodyError(f"the body has a content encoding msgstatus does not read: {name!r}")
    if len(encodings) > _MAX_ENCODINGS:
        raise _BodyError(f"the body has {len(encodings)} content encodings stacked")
    if response.is_stream_consumed:
        # Someone already read the body (an event hook of a client the caller gave, a mock
        # transport): httpx has it decoded in memory, so only the cap is left to check.
        try:
            content = response.content
        except httpx.ResponseNotRead as exc:
            raise _BodyError("the body was streamed by someone else and not kept") from exc
        return content if len(content) <= limit else None
    decoder = _CappedDecoder(encodings, limit)
    received = 0
    try:
        # Raw bytes, decoded here step by step: httpx would inflate each chunk in one call.
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > limit + _RAW_SLACK:
                return None
            decoder.feed(chunk)
        return decoder.finish()
    except _BodyTooLarge:
        return None


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

        key_problem = _credential_problem(api_key, "API key")
        secret_problem = _credential_problem(api_secret, "API secret")
        # From here on the secret exists only as a Secret: a traceback with its locals (or
        # vars(provider)) shows "[redacted]".
        self._secret = Secret(api_secret if secret_problem is None else "")
        del api_secret
        if key_problem is not None or secret_problem is not None:
            raise AuthenticationError(key_problem or secret_problem or "", provider=PROVIDER)
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
        # The secret header is added per request (_attempt), never kept in a plain dict.
        self._headers = {
            "sb-api-key-id": api_key,
            "accept": "application/json",
            # Only what _read_capped decodes, step by step under its cap.
            "accept-encoding": "gzip, deflate",
        }
        if http_client is None:
            from msgstatus._transports._httpx import PoolTransport

            http_client = httpx.AsyncClient(
                timeout=self._timeout,
                # msgstatus's keep-alive pool (TLS verified with certifi's CA bundle, as httpx's
                # own transport does); _LIMITS' 100 connections bound it.
                transport=PoolTransport(max_connections=_LIMITS.max_connections or 100),
                follow_redirects=False,
                headers={"user-agent": f"msgstatus/{__version__}"},
            )
        self._client = http_client
        # The provider's own client has no auth, event hooks, cookies or redirects to apply:
        # its lookups go straight to its transport (found as httpx's send would find it, so that
        # respx and mounts still apply) with the client's headers, skipping ~30% of a lookup's
        # CPU in httpx's client layer. A client you pass goes through its send() as it is.
        self._direct_headers: list[tuple[str, str]] | None = None
        if self._owns_client:
            self._direct_headers = [
                *(
                    (name, value)
                    for name, value in http_client.headers.items()
                    if name.lower() not in self._headers
                ),
                *self._headers.items(),
            ]
            self._extensions = {"timeout": self._timeout.as_dict()}
            self._lookup_url = _lookup_url_maker(self._status_url)
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
        for variable in (_ENV_KEY, _ENV_SECRET):
            if not os.environ.get(variable):
                raise AuthenticationError(
                    f"the environment variable {variable} is not set (or is empty)",
                    provider=PROVIDER,
                )
        # Read where it is used: no local variable of this frame holds the secret.
        return cls(
            os.environ[_ENV_KEY],
            os.environ[_ENV_SECRET],
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
        # Before any recursive conversion: a payload of any depth is refused, never recursed.
        check_nesting(payload, provider=PROVIDER, display_name="Sendblue", handle=None)
        payload = plain_payload(payload)  # type: ignore[assignment]
        if not isinstance(payload, Mapping):
            raise ProviderResponseError(
                f"a Sendblue payload is a JSON object, not {type(payload).__name__}",
                provider=PROVIDER,
            )
        check_nesting(payload, provider=PROVIDER, display_name="Sendblue", handle=None)
        if handle is not None:
            native = self.parse_handle(handle)
        else:
            named = _scrub(payload.get("message_handle"), self._secret.reveal())
            try:
                native = self.parse_handle(named)
            except InvalidHandleError as exc:
                raise ProviderResponseError(
                    "the Sendblue payload has no usable message_handle", provider=PROVIDER
                ) from exc
        return self._normalize(payload, native)

    # -- lookups ---------------------------------------------------------------------------

    async def _attempt(self, target: str, canonical: str) -> StatusResult:
        if self._client.is_closed:
            raise MsgStatusError(
                "the provider's HTTP client is closed", provider=PROVIDER, handle=canonical
            )
        failure: MsgStatusError | None = None
        try:
            # A bare CancelScope, not fail_after(): its wrapper doubles a scope's cost on asyncio.
            with anyio.CancelScope(
                deadline=anyio.current_time() + self._budget
                if self._budget is not None
                else math.inf
            ) as scope:
                response = await self._send(target)
                try:
                    ok = response.is_success
                    body = await _read_capped(
                        response, MAX_RESPONSE_BYTES if ok else _MAX_ERROR_BODY_BYTES
                    )
                finally:
                    await response.aclose()
            if scope.cancelled_caught:
                raise TimeoutError
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            rule = most_specific(exc, SENDBLUE_TRANSPORT_ERRORS)
            assert rule is not None  # every class caught here has a row
            failure = self._error(rule, canonical, detail=f" ({type(exc).__name__})")
            # httpx's exceptions hold the request, whose headers carry the secret: chain a copy
            # with the same type and message, raised outside this block (no __context__).
            cause = describe_cause(exc)
        except _BodyError as exc:
            failure = ProviderResponseError(
                f"Sendblue's response body could not be read: {exc}",
                provider=PROVIDER,
                handle=canonical,
            )
            cause = None
        if failure is not None:
            raise failure from cause
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
            # A JSONDecodeError holds the whole body (which may echo the secret): chain a copy.
            failure = ProviderResponseError(
                f"Sendblue answered HTTP {response.status_code} with a body that is not JSON",
                provider=PROVIDER,
                handle=canonical,
            )
            cause = describe_cause(exc)
        if failure is not None:
            raise failure from cause
        if not isinstance(payload, dict):
            raise ProviderResponseError(
                f"Sendblue answered a JSON {type(payload).__name__}, not an object",
                provider=PROVIDER,
                handle=canonical,
            )
        check_nesting(payload, provider=PROVIDER, display_name="Sendblue", handle=canonical)
        return self._normalize(payload, target, body=body)

    async def _send(self, target: str) -> httpx.Response:
        secret = ("sb-api-secret-key", self._secret.reveal())
        if self._direct_headers is not None:
            request = httpx.Request(
                "GET",
                self._lookup_url(target),
                headers=[*self._direct_headers, secret],
                extensions=self._extensions,
            )
            transport = self._client._transport_for_url(request.url)
            return await transport.handle_async_request(request)
        request = self._client.build_request(
            "GET",
            self._status_url,
            params={"handle": target},
            headers={**self._headers, secret[0]: secret[1]},
            timeout=self._timeout,
        )
        # Redirects are never followed: they would carry the key headers to another host.
        return await self._client.send(request, stream=True, follow_redirects=False)

    def _normalize(
        self, payload: Mapping[str, Any], native: str, *, body: bytes | None = None
    ) -> StatusResult:
        secret = self._secret.reveal()
        # Nothing to scrub when the body's bytes cannot hold the secret.
        scrub = body is None or _may_hold(body, secret)
        return _normalize_payload(
            payload,
            native,
            self._table,
            self._unknown_keys,
            self._result,
            secret=secret if scrub else None,
        )

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
    payload: Mapping[str, Any],
    native: str,
    table: StatusTable,
    unknown_keys: StatusTable,
    result: Callable[..., StatusResult],
    *,
    secret: str | None = None,
) -> StatusResult:
    canonical = f"{PROVIDER}:{native}"
    # Only what is read or kept is copied (and scrubbed of an echoed secret): the model's fields
    # and what StatusResult.raw keeps (bounded), never a 1 MB body in full.
    fields = {name: payload[name] for name in _MessageResponse.model_fields if name in payload}
    raw = bounded_raw(payload)
    if secret is not None:
        fields = {name: _scrub(value, secret) for name, value in fields.items()}
        raw = _scrub(raw, secret)
    try:
        message = _MessageResponse.model_validate(fields)
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
        raw=raw,
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
