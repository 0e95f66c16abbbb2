"""The provider protocol and the handle rules every provider shares."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from msgstatus._status import StatusResult
from msgstatus.errors import InvalidHandleError

__all__ = [
    "MAX_HANDLE_LENGTH",
    "MessageStatusProvider",
    "TypedHandle",
    "is_loopback_host",
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
