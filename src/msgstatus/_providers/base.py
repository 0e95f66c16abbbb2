"""What every provider shares: the :class:`MessageStatusProvider` protocol (the public contract),
the handle rules, and :class:`BaseProvider`, which owns the flow of a lookup so that a provider
module holds only what is true of that provider.

``BaseProvider.get_status`` is the template: closed check → ``parse_handle`` (hook) → canonical
handle (hook) → ``_check_lookup`` (hook) → the retry loop around ``_attempt`` (hook). Lifecycle,
the closed state, retries, result construction, the loopback rule, timeouts and the error-table
mechanism live here once. A user's provider need not subclass it: the protocol is the contract.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from pydantic import JsonValue, ValidationError

from msgstatus._retry import RetryPolicy, call_with_retry
from msgstatus._status import MessageStatus, StatusResult, StatusTable
from msgstatus.errors import (
    InvalidHandleError,
    MsgStatusError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
)

__all__ = [
    "MAX_HANDLE_LENGTH",
    "BaseProvider",
    "ErrorRule",
    "MessageStatusProvider",
    "TypedHandle",
    "check_endpoint_url",
    "check_timeout",
    "is_loopback_host",
    "most_specific",
    "split_handle",
    "validate_handle_text",
]

#: Longest handle string accepted, prefix included. A Chime handle with a channel ARN and a bearer
#: ARN at their maximum (1600 characters each) plus two 128-character ids fits with room to spare.
MAX_HANDLE_LENGTH = 4096

_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")

# Line and paragraph separators end lines for some parsers just as \r\n does.
_BREAKING_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


@runtime_checkable
class TypedHandle(Protocol):
    """A provider's own handle type (e.g. ``ChimeHandle``): it knows its provider.

    ``str(handle)`` is the canonical ``"<provider>:<native>"`` string.
    """

    @property
    def provider(self) -> str: ...


@runtime_checkable
class MessageStatusProvider(Protocol):
    """What the client needs of a provider adapter.

    ``name`` is the handle prefix the provider claims. ``get_status`` takes the native handle
    (without the prefix), the full ``"<name>:<native>"`` string, or the provider's typed handle, and
    raises only :class:`~msgstatus.MsgStatusError` subclasses. ``aclose`` releases what the
    provider opened.
    """

    name: str

    async def get_status(self, handle: str | TypedHandle, /) -> StatusResult: ...

    async def aclose(self) -> None: ...


def validate_handle_text(
    handle: object, *, provider: str | None = None, max_length: int = MAX_HANDLE_LENGTH
) -> str:
    """Return ``handle`` if it is acceptable text for a handle, else raise InvalidHandleError.

    A handle is a non-empty ``str`` of at most ``max_length`` characters, with no white space at
    either end and no control characters (``\\r``, ``\\n``, tab, NUL, line separators) anywhere.
    Non-ASCII letters are accepted here; a provider may be stricter.
    """
    if not isinstance(handle, str):
        raise InvalidHandleError(
            f"a handle must be a string, not {type(handle).__name__}", provider=provider
        )
    if not handle:
        raise InvalidHandleError("the handle is empty", provider=provider, handle=handle)
    if len(handle) > max_length:
        raise InvalidHandleError(
            f"the handle is {len(handle)} characters long; the limit is {max_length}",
            provider=provider,
            handle=handle,
        )
    if handle != handle.strip():
        raise InvalidHandleError(
            "the handle has white space at its start or end", provider=provider, handle=handle
        )
    for char in handle:
        if unicodedata.category(char) in _BREAKING_CATEGORIES:
            raise InvalidHandleError(
                f"the handle contains the control character {char!r}",
                provider=provider,
                handle=handle,
            )
    return handle


def split_handle(handle: object) -> tuple[str, str]:
    """Split ``"<provider>:<native>"`` into its provider name and native handle.

    The whole string is validated first. Raises InvalidHandleError when there is no prefix, the
    prefix is not a provider name (lower-case letters, digits, ``-``, ``_``) or the native part is
    empty.
    """
    text = validate_handle_text(handle)
    provider, sep, native = text.partition(":")
    if not sep:
        raise InvalidHandleError(
            "the handle has no provider prefix; write it as '<provider>:<handle>'", handle=text
        )
    if not _PROVIDER_NAME.fullmatch(provider):
        raise InvalidHandleError(
            f"{provider!r} is not a provider name; write the handle as '<provider>:<handle>'",
            handle=text,
        )
    if not native:
        raise InvalidHandleError("the handle is empty after its prefix", handle=text)
    return provider, native


def native_handle(handle: object, provider: str) -> str:
    """The native part of ``handle`` for ``provider``: accepts ``"<provider>:x"`` or plain ``x``.

    Used by providers whose native handles never contain a colon-separated provider prefix of
    their own name.
    """
    text = validate_handle_text(handle, provider=provider)
    prefix = f"{provider}:"
    if text.startswith(prefix):
        text = text[len(prefix) :]
        if not text:
            raise InvalidHandleError(
                "the handle is empty after its prefix", provider=provider, handle=prefix
            )
    return text


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, IPv6 without brackets) is this machine:
    ``localhost``, 127.0.0.0/8 or ::1 (also IPv4-mapped). Providers accept plain ``http://``
    only to such hosts (an emulator); anything else must be ``https://``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def plain_payload(payload: object) -> object:
    """A payload as JSON-safe data: a pydantic model (an official SDK's response type) becomes
    its dict under the wire names, datetimes and dates become ISO 8601 strings, nested mappings
    and sequences are converted too. Anything else comes back as it is, for the caller to refuse.
    """
    import datetime as dt

    from pydantic import BaseModel

    if isinstance(payload, BaseModel):
        # Python mode, then the same conversion as a mapping's: one date format for both paths.
        return plain_payload(payload.model_dump(by_alias=True))
    if isinstance(payload, Mapping):
        return {key: plain_payload(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [plain_payload(value) for value in payload]
    if isinstance(payload, (dt.datetime, dt.date, dt.time)):
        return payload.isoformat()
    return payload


def check_endpoint_url(url: object, *, setting: str) -> str:
    """``url`` without trailing slashes, if it is safe to send credentials to; else ValueError
    naming ``setting`` (``base_url``, ``endpoint_url``).

    It must be ``https://`` (plain ``http://`` only to loopback: an emulator) with a host, and
    nothing that parsers read differently: no user name or password (``user@host``), no
    backslash, no white space or control characters. ``urlsplit`` and the HTTP client that
    connects would otherwise disagree on the host, and a check passed for ``127.0.0.1`` could
    send a signed request in plain text elsewhere.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"{setting} must be a URL string, not {type(url).__name__}")
    if "\\" in url or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(
            f"{setting} must not contain backslashes, white space or control characters"
        )
    split = urlsplit(url)
    if "@" in split.netloc:
        # Credentials in a URL end up in logs, and 'a\@b' style authorities are read as
        # different hosts by different parsers.
        raise ValueError(f"{setting} must not contain a user name or password ('…@host')")
    try:
        host = split.hostname
        split.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{setting} has an invalid host or port: {url!r}") from exc
    scheme = split.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"{setting} must be an https:// URL with a host, not {url!r}")
    if split.query or split.fragment:
        raise ValueError(f"{setting} must not have a query string or fragment")
    if scheme == "http" and not is_loopback_host(host):
        shown = f"http://{host}" + (f":{split.port}" if split.port else "")
        raise ValueError(
            f"{setting} must use https:// (plain http:// is accepted only for localhost, "
            f"127.0.0.0/8 and ::1, e.g. an emulator), not {shown!r}"
        )
    return url.rstrip("/")


def check_timeout(value: object, name: str) -> float:
    """``value`` as seconds if it is a finite number > 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds")
    return float(value)


# -- error translation --------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRule:
    """One row of a provider's error table: the error to raise and what it means, in words."""

    error: type[MsgStatusError]
    meaning: str


_E = TypeVar("_E")


def most_specific(exc: BaseException, table: Mapping[type[BaseException], _E]) -> _E | None:
    """The entry of ``table`` for the most specific class of ``exc`` (its own class first, then
    its bases in method resolution order), or None."""
    for klass in type(exc).__mro__:
        entry = table.get(klass)
        if entry is not None:
            return entry
    return None


def rule_for_http_status(
    status: int | None, table: Mapping[int, ErrorRule], *, provider: str
) -> ErrorRule | None:
    """The rule for an HTTP ``status``: the table's row, else 429 is a rate limit and 5xx is
    unavailability (a load balancer's page carries no provider code), else None."""
    if status is None:
        return None
    rule = table.get(status)
    if rule is not None:
        return rule
    if status == 429:
        return ErrorRule(RateLimitedError, f"{provider} is rate limiting requests")
    if status >= 500:
        return ErrorRule(ProviderUnavailableError, f"{provider} is unavailable")
    return None


# -- the base ------------------------------------------------------------------------------

_P = TypeVar("_P", bound="BaseProvider")


class BaseProvider:
    """The shared flow of a provider; subclasses fill the hooks.

    Class attributes: ``name`` (the handle prefix), ``display_name`` (for messages),
    ``status_map`` (raw status → :class:`MessageStatus`) and ``final_statuses``. Hooks:
    :meth:`parse_handle` (→ the provider's own handle value, which the other hooks take as
    ``target``; a subclass narrows its type), :meth:`_canonical`,
    :meth:`_check_lookup`, :meth:`_attempt`, :meth:`_close_client` and :meth:`from_env`. Each
    hook the subclass does not fill raises ``NotImplementedError`` naming the class. By
    convention a provider also has ``result_from_payload(payload, /, **options)``, which
    normalizes a payload you already hold (a send response, a webhook body) as a lookup would;
    its options differ by provider, so it is not declared here.
    """

    name: str
    display_name: ClassVar[str]
    status_map: ClassVar[Mapping[str, MessageStatus]]
    final_statuses: ClassVar[frozenset[MessageStatus]]

    def __init__(self, *, retry: RetryPolicy | None, owns_client: bool) -> None:
        self._retry = retry if retry is not None else RetryPolicy()
        self._owns_client = owns_client
        self._closed = False
        self._table = StatusTable(self.name, self.status_map)

    # -- hooks ---------------------------------------------------------------------------

    @classmethod
    def from_env(cls: type[_P]) -> _P:
        """A provider configured from the environment (each provider documents its variables)."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_env()")

    def parse_handle(self, handle: str | TypedHandle, /) -> Any:
        """``handle`` as this provider's own handle value; InvalidHandleError if it is not one."""
        raise NotImplementedError(f"{type(self).__name__} does not implement parse_handle()")

    def _canonical(self, target: Any) -> str:
        raise NotImplementedError(f"{type(self).__name__} does not implement _canonical()")

    def _check_lookup(self, target: Any, canonical: str) -> None:
        """Refuse a lookup that cannot be made (before any request); nothing by default."""

    async def _attempt(self, target: Any, canonical: str) -> StatusResult:
        raise NotImplementedError(f"{type(self).__name__} does not implement _attempt()")

    async def _close_client(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _close_client()")

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self: _P) -> _P:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this provider created (a client passed in stays open). Calling it
        again does nothing; a lookup afterwards raises ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._close_client()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {type(self).__name__} is closed")

    # -- the flow ------------------------------------------------------------------------

    async def get_status(self, handle: str | TypedHandle, /) -> StatusResult:
        """The status of one message. The handle is checked before any request
        (:class:`~msgstatus.InvalidHandleError`); rate limits and unavailability are retried per
        the retry policy; every fault raises a :class:`~msgstatus.MsgStatusError` (see the
        provider's error table). ``RuntimeError`` once the provider is closed."""
        self._check_open()
        target = self.parse_handle(handle)
        canonical = self._canonical(target)
        self._check_lookup(target, canonical)
        return await call_with_retry(
            self._retry, partial(self._attempt_while_open, target, canonical)
        )

    async def _attempt_while_open(self, target: Any, canonical: str) -> StatusResult:
        # A retry that starts after aclose() must not use a closed client.
        self._check_open()
        return await self._attempt(target, canonical)

    def _typed_handle_text(self, handle: object) -> object:
        """A typed handle as its string, refusing another provider's; anything else as it is."""
        if not isinstance(handle, str) and isinstance(handle, TypedHandle):
            provider = handle.provider
            if provider != self.name:
                raise InvalidHandleError(
                    f"a {provider} handle cannot be looked up with {self.display_name}",
                    provider=self.name,
                    handle=str(handle),
                )
            return str(handle)
        return handle

    @classmethod
    def _result(
        cls,
        canonical: str,
        status: MessageStatus,
        *,
        provider_status: str | None,
        raw: dict[str, JsonValue],
        detail: str | None = None,
        error_code: str | None = None,
        not_before: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> StatusResult:
        """The :class:`StatusResult` of one observation, final per ``final_statuses``."""
        try:
            return StatusResult(
                provider=cls.name,
                handle=canonical,
                status=status,
                provider_status=provider_status,
                is_final=status in cls.final_statuses,
                detail=detail,
                error_code=error_code,
                not_before=not_before,
                updated_at=updated_at,
                raw=raw,
            )
        except ValidationError as exc:
            raise ProviderResponseError(
                f"{cls.display_name}'s payload could not be stored as a result",
                provider=cls.name,
                handle=canonical,
            ) from exc

    def _error(
        self,
        rule: ErrorRule,
        canonical: str | None,
        *,
        detail: str = "",
        provider_code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> MsgStatusError:
        """The error of ``rule`` for this provider and handle, with its code and HTTP status."""
        where = ", ".join(
            part
            for part in (provider_code, f"HTTP {http_status}" if http_status is not None else None)
            if part
        )
        message = f"{rule.meaning} ({where}){detail}" if where else f"{rule.meaning}{detail}"
        error = rule.error(
            message,
            provider=self.name,
            handle=canonical,
            provider_code=provider_code,
            http_status=http_status,
        )
        if isinstance(error, RateLimitedError):
            error.retry_after = retry_after
        return error
