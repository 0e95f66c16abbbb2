"""ASGI plumbing for push receivers, and the shared-secret check. Nothing here knows a provider:
what a payload means is the provider module's normalizer (``SendblueProvider.result_from_webhook``).

A receiver answers (providers.md, "Push"):

- 405: not a POST (nothing read);
- 401, empty body: the shared secret is missing or does not match (constant-time compare);
- 400: the body is not ``application/json``, is longer than the cap, is not UTF-8 JSON, is nested
  deeper than the cap, holds a lone surrogate, or the normalizer refuses it;
- 200 ``{"ok": true}``: the result was handed to ``on_result`` and it returned;
- 200 ``{"ok": true, "ignored": …}``: a valid payload that is no message status (another webhook
  type, an unknown status value): nothing handed over;
- 500: ``on_result`` raised: the sender retries, nothing is lost.

Malformed input never gets a 5xx, so that a provider that retries on 5xx does not retry garbage.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NoReturn, TypeAlias

from msgstatus._status import MessageStatus, StatusResult
from msgstatus.errors import MsgStatusError

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_DEPTH",
    "OnResult",
    "PushReceiver",
    "secrets_match",
]

logger = logging.getLogger("msgstatus.webhooks")

#: Largest body a receiver reads: a status payload is well under 2 KiB.
DEFAULT_MAX_BODY = 64 * 1024
#: Deepest JSON nesting a receiver accepts (a status payload is 1-2 levels deep).
DEFAULT_MAX_DEPTH = 16

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
#: What a receiver hands each result to: the ledger's ``observe``, a client's ``observe``, a queue.
OnResult: TypeAlias = Callable[[StatusResult], Awaitable[object]]


class _BadInput(Exception):
    pass


def secrets_match(given: str | bytes | None, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time (``hmac.compare_digest``
    on the UTF-8 bytes). A missing value never matches."""
    if given is None:
        return False
    given_bytes = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
    return hmac.compare_digest(given_bytes, expected.encode("utf-8"))


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _check_tree(value: object, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` and strings (keys too) with lone surrogates,
    walking iteratively so that no input can exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise _BadInput(f"the JSON is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _BadInput("the JSON holds a lone surrogate (\\ud800-\\udfff)") from exc


def _content_type_is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == wanted:
            return bytes(value)
    return None


async def _respond(send: Send, status: int, body: dict[str, object] | None) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-length", str(len(payload)).encode())]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class PushReceiver:
    """An ASGI application that turns pushed payloads into :class:`StatusResult` values and hands
    them to ``on_result``. ``normalize`` is the provider's payload normalizer: it returns the
    result, returns None for a valid payload that is no message status (answered 200, nothing
    handed over), and raises
    :class:`~msgstatus.MsgStatusError` (or ``ValueError``) for one it refuses.

    ``secret_header`` names the request header that carries the shared secret; with ``secret``
    None no secret is checked. Lifespan events are acknowledged, so it runs under any ASGI server
    and mounts under Starlette/FastAPI as a sub-application.
    """

    #: The provider whose payloads this receiver takes, for log lines.
    provider: str = "push"

    def __init__(
        self,
        on_result: OnResult,
        *,
        normalize: Callable[[Any], StatusResult | None],
        secret: str | None,
        secret_header: str,
        max_body: int = DEFAULT_MAX_BODY,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if not callable(on_result):
            raise TypeError("on_result must be an async callable taking a StatusResult")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string, or None to check none")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError("max_body must be a positive number of bytes")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError("max_depth must be a positive int")
        self._on_result = on_result
        self._normalize = normalize
        self.__secret = secret
        self._secret_header = secret_header.lower().encode("latin-1")
        self.max_body = max_body
        self.max_depth = max_depth

    def __repr__(self) -> str:
        checks = "a shared secret" if self.__secret is not None else "no secret"
        return f"{type(self).__name__}(checks {checks}, max_body={self.max_body})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            # Websockets and unknown scope types: nothing to serve.
            return
        if scope.get("method") != "POST":
            await _respond(send, 405, {"error": "only POST is accepted"})
            return
        if self.__secret is not None and not secrets_match(
            _header(scope, self._secret_header), self.__secret
        ):
            await _respond(send, 401, None)
            return
        try:
            if not _content_type_is_json(scope):
                raise _BadInput("the content type must be application/json")
            declared = _header(scope, b"content-length")
            if (
                declared is not None
                and declared.strip().isdigit()
                and int(declared) > self.max_body
            ):
                raise _BadInput(f"the body is larger than {self.max_body} bytes")
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away
            payload = self._decode(body)
            try:
                result = self._normalize(payload)
            except (MsgStatusError, ValueError) as exc:
                message = exc.message if isinstance(exc, MsgStatusError) else str(exc)
                raise _BadInput(message) from exc
        except _BadInput as exc:
            logger.info("%s push refused (400): %s", self.provider, exc)
            await _respond(send, 400, {"error": str(exc)})
            return
        if result is None:
            logger.info("%s push ignored: not a message status", self.provider)
            await _respond(send, 200, {"ok": True, "ignored": "not a message status"})
            return
        if result.status is MessageStatus.UNKNOWN:
            # No evidence either way: nothing to record, and a retry would not make it known.
            text = f"status {(result.provider_status or '')[:80]!r} is not one this version knows"
            logger.info("%s push ignored for %s: %s", self.provider, result.handle, text)
            await _respond(send, 200, {"ok": True, "ignored": text})
            return
        try:
            await self._on_result(result)
        except Exception:
            logger.exception(
                "on_result failed for %s; answered 500 so that it is retried", result.handle
            )
            await _respond(send, 500, {"error": "the result could not be recorded"})
            return
        await _respond(send, 200, {"ok": True})

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return None
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.max_body:
                raise _BadInput(f"the body is larger than {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _decode(self, body: bytes) -> object:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _BadInput("the body is not UTF-8") from exc
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except RecursionError as exc:
            raise _BadInput(f"the JSON is nested deeper than {self.max_depth} levels") from exc
        except ValueError as exc:
            raise _BadInput("the body is not JSON") from exc
        _check_tree(payload, self.max_depth)
        return payload

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message.get("type") == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
