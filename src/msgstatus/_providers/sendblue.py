"""Sendblue (iMessage / SMS REST API).

Everything true only of Sendblue lives here: the handle rules, the request, the payload model, the
status table, finality and the mapping of HTTP errors onto the msgstatus error tree.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta, timezone
from functools import partial
from types import TracebackType
from typing import Annotated, Any, NoReturn

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
from msgstatus._provider import TypedHandle, is_loopback_host, native_handle, plain_payload
from msgstatus._retry import (
    MAX_RETRY_AFTER,
    RetryPolicy,
    call_with_retry,
    non_negative_number,
    retry_after_seconds,
)
from msgstatus._status import MessageStatus, StatusResult, StatusTable
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
    "SENDBLUE_STATUS_MAP",
    "SendblueProvider",
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


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Like the official SDK, ``retry-after-ms`` wins when both are present. A date in the past gives
    ``0.0``; a negative, non-finite or unparsable value gives None; the result is capped at a day.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = non_negative_number(millis)
        if seconds is not None:
            return min(seconds / 1000.0, MAX_RETRY_AFTER)
    return retry_after_seconds(headers.get("retry-after"), now=now)


def _check_base_url(base_url: str) -> str:
    """``base_url`` without trailing slashes; ValueError if it is not safe to send keys to."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"base_url is not a URL: {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an https:// URL with a host, not {base_url!r}")
    if url.userinfo:
        # Credentials in a URL end up in logs (httpx logs the request URL).
        raise ValueError("base_url must not contain a user name or password")
    if url.query or url.fragment:
        raise ValueError("base_url must not have a query string or fragment")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ValueError(
            "base_url must use https:// (plain http:// is accepted only for localhost, "
            f"127.0.0.0/8 and ::1, e.g. an emulator), not {base_url!r}"
        )
    return str(url).rstrip("/")


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


class SendblueProvider:
    """Looks up message statuses with Sendblue's REST API (``GET /api/status?handle=…``).

    One pooled ``httpx.AsyncClient`` serves every lookup; pass ``http_client`` to use your own (it
    is then yours to close). ``timeout`` is a number of seconds, the whole budget of one attempt,
    or an ``httpx.Timeout`` (its phases bound each step and their sum bounds the attempt); the
    default is 30 s to read and 5 s to connect. ``retry`` retries rate limits and unavailability.
    ``base_url`` must be ``https://`` unless its host is loopback (an emulator).

    Raises :class:`~msgstatus.AuthenticationError` for a missing or malformed key or secret and
    ``ValueError`` for an unsafe ``base_url``. Use it as ``async with`` or call :meth:`aclose`.
    """

    name: str = PROVIDER

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
        self.base_url = _check_base_url(base_url)
        # Parsed once: httpx would parse a string URL again on every request.
        self._status_url = httpx.URL(f"{self.base_url}/api/status")
        if isinstance(timeout, httpx.Timeout):
            self._timeout = timeout
            self._budget = _timeout_budget(timeout)
        else:
            if not (math.isfinite(timeout) and timeout > 0):
                raise ValueError("timeout must be a positive number of seconds")
            self._timeout = httpx.Timeout(timeout)
            self._budget = float(timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        self._headers = {
            "sb-api-key-id": api_key,
            "sb-api-secret-key": self.__secret,
            "accept": "application/json",
        }
        self._owns_client = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=_LIMITS,
                follow_redirects=False,
                headers={"user-agent": f"msgstatus/{__version__}"},
            )
        self._client = http_client
        self._table = StatusTable(PROVIDER, SENDBLUE_STATUS_MAP)
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
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def __aenter__(self) -> SendblueProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it; a client passed in stays open."""
        if self._owns_client:
            await self._client.aclose()

    # -- lookups ---------------------------------------------------------------------------

    async def get_status(self, handle: str | TypedHandle, /) -> StatusResult:
        """The status of one message, by its handle (``"sendblue:<handle>"`` or the bare handle).

        The handle is checked before any request (:class:`~msgstatus.InvalidHandleError`).
        Rate limits and unavailability are retried per the retry policy; what remains raises
        :class:`~msgstatus.RateLimitedError` or :class:`~msgstatus.ProviderUnavailableError`.
        401 raises :class:`~msgstatus.AuthenticationError`, 403
        :class:`~msgstatus.PermissionDeniedError`, 404 :class:`~msgstatus.MessageNotFoundError`,
        400/422 :class:`~msgstatus.InvalidHandleError`, a malformed 2xx body
        :class:`~msgstatus.ProviderResponseError`, any other status a plain
        :class:`~msgstatus.MsgStatusError`.
        """
        native = self._native_handle(handle)
        canonical = f"{PROVIDER}:{native}"
        return await call_with_retry(self._retry, partial(self._attempt, native, canonical))

    def result_from_payload(
        self, payload: Mapping[str, Any], *, handle: str | None = None
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
            native = self._native_handle(handle)
        else:
            found = scrubbed.get("message_handle")
            try:
                native = self._native_handle(found)
            except InvalidHandleError as exc:
                raise ProviderResponseError(
                    "the Sendblue payload has no usable message_handle", provider=PROVIDER
                ) from exc
        return self._normalize(scrubbed, native)

    def _native_handle(self, handle: object) -> str:
        if not isinstance(handle, str) and isinstance(handle, TypedHandle):
            if handle.provider != PROVIDER:
                raise InvalidHandleError(
                    f"a {handle.provider} handle cannot be looked up with Sendblue",
                    provider=PROVIDER,
                    handle=str(handle),
                )
            handle = str(handle)
        native = native_handle(handle, PROVIDER)
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
        return native

    async def _attempt(self, native: str, canonical: str) -> StatusResult:
        if self._client.is_closed:
            raise MsgStatusError(
                "the provider's HTTP client is closed", provider=PROVIDER, handle=canonical
            )
        request = self._client.build_request(
            "GET",
            self._status_url,
            params={"handle": native},
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
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ProviderUnavailableError(
                f"Sendblue did not answer within the timeout ({type(exc).__name__})",
                provider=PROVIDER,
                handle=canonical,
            ) from exc
        except httpx.DecodingError as exc:
            raise ProviderResponseError(
                "Sendblue's response body could not be decoded", provider=PROVIDER, handle=canonical
            ) from exc
        except httpx.HTTPError as exc:
            # TransportError (connect, read, write, protocol, proxy errors) and anything else
            # httpx raises while sending: the service could not be reached properly.
            raise ProviderUnavailableError(
                f"could not reach Sendblue ({type(exc).__name__})",
                provider=PROVIDER,
                handle=canonical,
            ) from exc
        except (httpx.InvalidURL, httpx.StreamError) as exc:
            raise MsgStatusError(
                f"could not send the request to Sendblue ({type(exc).__name__})",
                provider=PROVIDER,
                handle=canonical,
            ) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("GET /api/status %r -> HTTP %d", canonical, response.status_code)
        if not ok:
            raise self._status_error(response, canonical)
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
        return self._normalize(_scrub(payload, self.__secret), native)

    def _normalize(self, payload: dict[str, Any], native: str) -> StatusResult:
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
        status = self._table.lookup(message.status)
        detail = message.error_message
        refusal = self._refusal(message, status)
        not_before: datetime | None = None
        if refusal is not None:
            status = refusal.status
            detail = detail or refusal.meaning
            if refusal.window is not None:
                refused_at = message.date_updated or datetime.now(timezone.utc)
                not_before = refused_at + refusal.window
        elif message.error_key is not None:
            self._unknown_keys.lookup(message.error_key)
            status = MessageStatus.UNKNOWN
            detail = (
                f"declined by a rule this version does not know (error_key "
                f"{message.error_key[:80]!r})"
            )
        try:
            return StatusResult(
                provider=PROVIDER,
                handle=canonical,
                status=status,
                provider_status=message.status,
                is_final=status in SENDBLUE_FINAL_STATUSES,
                detail=detail,
                error_code=message.error_code,
                not_before=not_before,
                updated_at=message.date_updated,
                raw=payload,
            )
        except ValidationError as exc:
            raise ProviderResponseError(
                "Sendblue's payload could not be stored as a result",
                provider=PROVIDER,
                handle=canonical,
            ) from exc

    @staticmethod
    def _refusal(message: _MessageResponse, status: MessageStatus) -> Refusal | None:
        if message.error_key is not None:
            return SENDBLUE_ERROR_KEYS.get(message.error_key.upper())
        if status is MessageStatus.FAILED and message.error_code is not None:
            return SENDBLUE_ERROR_CODES.get(message.error_code)
        return None

    @staticmethod
    def _status_error(response: httpx.Response, handle: str) -> MsgStatusError:
        code = response.status_code
        if code == 401:
            return AuthenticationError(
                "Sendblue rejected the API key or secret (HTTP 401)",
                provider=PROVIDER,
                handle=handle,
            )
        if code == 403:
            return PermissionDeniedError(
                "Sendblue does not let these credentials read this message (HTTP 403)",
                provider=PROVIDER,
                handle=handle,
            )
        if code == 404:
            return MessageNotFoundError(
                "Sendblue has no message with this handle (HTTP 404)",
                provider=PROVIDER,
                handle=handle,
            )
        if code in (400, 422):
            return InvalidHandleError(
                f"Sendblue refused the handle (HTTP {code})", provider=PROVIDER, handle=handle
            )
        if code == 429:
            return RateLimitedError(
                "Sendblue is rate limiting requests (HTTP 429)",
                provider=PROVIDER,
                handle=handle,
                retry_after=parse_retry_after(response.headers),
            )
        if code in (408, 409) or code >= 500:
            # 409 is how Sendblue's API reports a lock timeout; its SDK retries it as we do.
            return ProviderUnavailableError(
                f"Sendblue answered HTTP {code}", provider=PROVIDER, handle=handle
            )
        return MsgStatusError(
            f"Sendblue answered an unexpected HTTP {code}", provider=PROVIDER, handle=handle
        )
