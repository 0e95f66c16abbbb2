"""One botocore operation, sent over msgstatus's pool from inside the event loop.

The boto3 client stays the source of truth: its endpoint rules, credentials, serializer, SigV4
signer and response parser do all the work. The client's endpoint gets a wrapper around its own
HTTP send (``Endpoint._send``, which botocore calls only when no ``before-send`` handler answered:
botocore's Stubber, moto and such handlers still answer as always): inside an in-loop call it
takes the signed ``AWSPreparedRequest`` and ends the call there, so that botocore's blocking send
never runs; the request goes over a :class:`~._pool.Pool`, and the reply is parsed with
botocore's parser for the operation's output shape, raising botocore's ``ClientError`` for a
status >= 300, exactly as the client would. Ending the call at the send skips what botocore would
do with a reply it did not get (parse, retry check, ``after-call``), ~10% of its CPU per call.
Errors of the pool come out as the botocore exceptions urllib3 would have caused
(``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``,
``ConnectionClosedError``, ``SSLError``), so that a caller's error translation does not change.

Order inside an attempt: slot, connection, sign, write, with no checkpoint between signing and
writing (a signed request must not queue behind every ready task). Credentials that need a
refresh (``refresh_needed()``) are refreshed in a worker thread first, so that signing never does
I/O in the loop.
"""

from __future__ import annotations

import contextvars
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from msgstatus._transports._pool import (
    BodyTooLarge,
    ConnectFailed,
    Connection,
    ConnectTimedOut,
    Origin,
    Pool,
    PoolError,
    ReadTimedOut,
    TLSFailed,
)

__all__ = ["MAX_BODY", "BotocoreExchange", "unsupported_reason"]

#: The longest response body read (a status is a few hundred bytes); a longer one is a
#: ResponseParserError, and its connection is closed.
MAX_BODY = 1024 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Captured(BaseException):
    """Ends an in-loop call at botocore's send, carrying the signed request up to
    :meth:`BotocoreExchange._sign`. A BaseException, so that no ``except Exception`` on the way
    (botocore's send error handling, ``after-call-error``) takes it for a failure."""

    def __init__(self, request: Any) -> None:
        super().__init__("msgstatus captured the signed request")
        self.request = request


# Set only around one in-loop call of the operation, in the task making it: the wrapped send is
# botocore's own for every other call of the same client (other threads, other operations).
_CAPTURING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "msgstatus_botocore_capturing", default=False
)


class _CapturingSend:
    """Stands in for a botocore ``Endpoint._send``: raises _Captured inside an in-loop call, else
    is the original send. Shared by every exchange on the client, removed with the last one."""

    __slots__ = ("original", "users")

    def __init__(self, original: Callable[[Any], Any]) -> None:
        self.original = original
        self.users = 0

    def __call__(self, request: Any) -> Any:
        if _CAPTURING.get():
            raise _Captured(request)
        return self.original(request)


class _MemoUserAgent:
    """A client's ``User-Agent`` builder, memoized. botocore builds the header twice per call
    (in the request dict, then again on ``request-created``), sanitizing every component
    character by character: ~15% of a lookup's CPU. The string is a function of the builder's
    own settings and the call's feature ids, so the cache key is exactly those."""

    __slots__ = ("_build", "_cache", "_creator", "_get_context")

    def __init__(self, creator: Any, build: Callable[[], str], get_context: Any) -> None:
        self._creator = creator
        self._build = build
        self._get_context = get_context
        self._cache: dict[object, str] = {}

    def __call__(self) -> str:
        context = self._get_context()
        creator = self._creator
        key = (
            frozenset(context.features) if context is not None else frozenset(),
            frozenset(creator._client_features or ()),
            id(creator._client_config),
        )
        text = self._cache.get(key)
        if text is None:
            if len(self._cache) >= 64:
                self._cache.clear()
            text = self._cache[key] = self._build()
        return text


def memoize_user_agent(client: Any) -> bool:
    """Memoize ``client``'s User-Agent builder (same strings, built once); False when this
    botocore's builder is not the one msgstatus knows (then nothing changes)."""
    creator: Any = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if build is None or isinstance(build, _MemoUserAgent):
        return build is not None
    if not all(hasattr(creator, name) for name in ("_client_features", "_client_config")):
        return False
    try:
        from botocore.context import get_context
    except ImportError:  # pragma: no cover - botocore < 1.36
        return False
    creator.to_string = _MemoUserAgent(creator, build, get_context)
    return True


def unsupported_reason(client: object) -> str | None:
    """Why ``client`` cannot go over the pool (None when it can): not a botocore client, a proxy
    for its endpoint, or a client certificate. Those keep botocore's own (threaded) send."""
    meta = getattr(client, "meta", None)
    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    if meta is None or not hasattr(meta, "events") or session is None:
        return "not a botocore client"
    url = getattr(meta, "endpoint_url", "")
    if urlsplit(url).scheme not in _DEFAULT_PORTS:
        return "an endpoint that is neither http:// nor https://"
    proxies = getattr(session, "_proxy_config", None)
    if proxies is None or proxies.proxy_url_for(url):
        return "a proxy"
    if getattr(session, "_cert_file", None) is not None:
        return "a client certificate"
    if (
        not hasattr(session, "_verify")
        or not hasattr(endpoint, "_response_parser_factory")
        or not callable(getattr(endpoint, "_send", None))
    ):
        return "a botocore version whose HTTP session msgstatus does not know"
    return None


def _origin_and_host(url: str) -> tuple[Origin, str, str]:
    """The origin of ``url``, its Host header (as botocore's signer computes it: no default
    port) and the request target (path and query)."""
    split = urlsplit(url)
    scheme = split.scheme.lower()
    host = split.hostname or ""
    port = split.port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    if split.port is not None and split.port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{split.port}"
    target = split.path or "/"
    if split.query:
        target = f"{target}?{split.query}"
    return Origin(scheme, host, port), shown, target


def ssl_context_for(verify: object) -> ssl.SSLContext:
    """The TLS context botocore's urllib3 session would use for ``verify`` (True: botocore's CA
    bundle; a path: that file or directory; False: no verification)."""
    from botocore.httpsession import create_urllib3_context, get_cert_path

    context: ssl.SSLContext = create_urllib3_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    path: Any = get_cert_path(verify)  # type: ignore[arg-type]
    if os.path.isdir(path):
        context.load_verify_locations(capath=path)
    else:
        context.load_verify_locations(cafile=path)
    return context


class BotocoreExchange:
    """Calls ``operation`` (its Python method name, e.g. ``get_channel_message_status``) of a
    botocore ``client`` over a pool. Check :func:`unsupported_reason` first."""

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._method: Callable[..., Mapping[str, Any]] = getattr(client, operation)
        service_model = client.meta.service_model
        self._operation_name: str = client.meta.method_to_api_mapping[operation]
        self._operation_model = service_model.operation_model(self._operation_name)
        self._output_shape = self._operation_model.output_shape
        service_id = service_model.service_id.hyphenize()
        self._before_parse = f"before-parse.{service_id}.{self._operation_name}"
        endpoint = client._endpoint
        self._parser = endpoint._response_parser_factory.create_parser(
            service_model.resolved_protocol
        )
        config = client.meta.config
        self.connect_timeout = float(config.connect_timeout)
        self.read_timeout = float(config.read_timeout)
        self._verify = endpoint.http_session._verify
        self._ssl_context: ssl.SSLContext | None = None
        # The origin of the last request sent: known once a real request went out, so later
        # attempts take their connection before signing.
        self._origin: Origin | None = None
        self._prefixes: dict[str, tuple[Origin, str]] = {}
        send = endpoint._send
        if not isinstance(send, _CapturingSend):
            send = endpoint._send = _CapturingSend(send)
        send.users += 1
        self._send: _CapturingSend | None = send
        memoize_user_agent(client)
        from botocore.awsrequest import HeadersDict

        # Looked up once: an import statement in every parse costs a few microseconds.
        self._headers_dict = HeadersDict
        # Warm botocore's lazily loaded models (shapes, error shapes) now, not in the first call.
        if self._output_shape is not None:
            _ = self._output_shape.members
        for error_shape in self._operation_model.error_shapes:
            _ = error_shape.members

    def close(self) -> None:
        """Give the client its own send back once no exchange uses it (idempotent)."""
        send, self._send = self._send, None
        if send is None:
            return
        send.users -= 1
        endpoint = self._client._endpoint
        if send.users == 0 and endpoint._send is send:
            endpoint._send = send.original

    @property
    def endpoint_url(self) -> str:
        return str(self._client.meta.endpoint_url)

    def new_pool(self, max_connections: int) -> Pool:
        """A pool for this exchange's client (its connect timeout and TLS settings)."""
        if self._ssl_context is None:
            self._ssl_context = ssl_context_for(self._verify)
        return Pool(
            max_connections, connect_timeout=self.connect_timeout, ssl_context=self._ssl_context
        )

    async def _fresh_credentials(self) -> None:
        credentials: Any = getattr(
            getattr(self._client, "_request_signer", None), "_credentials", None
        )
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            await anyio.to_thread.run_sync(credentials.get_frozen_credentials)

    def _sign(self, params: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Any]:
        """Run the operation in the loop up to its send: (None, the signed request), or (the
        client's own answer, None) when something else answered it (botocore's Stubber, a
        ``before-call`` or ``before-send`` handler)."""
        token = _CAPTURING.set(True)
        try:
            return self._method(**params), None
        except _Captured as captured:
            return None, captured.request
        finally:
            _CAPTURING.reset(token)

    async def call(
        self, pool: Pool, params: Mapping[str, Any], deadline: float
    ) -> Mapping[str, Any]:
        """The operation's parsed response. Waits for a slot, then bounds everything else by
        ``deadline`` seconds (TimeoutError). Raises what the boto3 call would raise."""
        await self._fresh_credentials()
        async with pool.slot:
            # A bare CancelScope, not fail_after(): its wrapper doubles a scope's cost on asyncio.
            with anyio.CancelScope(deadline=anyio.current_time() + deadline):
                return await self._in_slot(pool, params)
            raise TimeoutError  # the scope swallowed its own cancellation: the deadline passed

    async def _in_slot(self, pool: Pool, params: Mapping[str, Any]) -> Mapping[str, Any]:
        conn: Connection | None = None
        try:
            if self._origin is not None:
                conn = await pool.connection(self._origin)
            try:
                answered, request = self._sign(params)
            except BaseException:
                if conn is not None:
                    await pool.release(conn)
                    conn = None
                raise
            if answered is not None:
                if conn is not None:
                    await pool.release(conn)
                    conn = None
                return answered
            origin, host, target = self._split(request.url)
            if conn is not None and conn.origin != origin:
                await pool.release(conn)
                conn = None
            self._origin = origin
            method = request.method.encode("ascii")
            headers = [(b"host", host.encode("ascii"))]
            for name, value in request.headers.items():
                if name.lower() == "host":
                    continue
                headers.append((_bytes(name), _bytes(value)))
            body = _bytes(request.body) if request.body else b""
            target_bytes = target.encode("ascii")
            if conn is None:
                conn = await pool.connection(origin)
            # No resend on a kept-alive connection the server closed meanwhile (connection()
            # drops those it can see): every request counts as one of RetryPolicy's attempts.
            response = await conn.request(
                method,
                target_bytes,
                headers,
                body,
                read_timeout=self.read_timeout,
                max_body=MAX_BODY,
            )
            await pool.release(conn)
            conn = None
        except PoolError as exc:
            if conn is not None:
                await pool.discard(conn)
            raise self._botocore_error(exc) from exc
        except BaseException:
            if conn is not None:
                await pool.discard(conn)
            raise
        return self._parse(response.status, response.headers, response.body)

    def _split(self, url: str) -> tuple[Origin, str, str]:
        """:func:`_origin_and_host` of ``url``, its origin part looked up once per endpoint: only
        the path differs between lookups (urlsplit of each whole URL was ~1% of a lookup)."""
        start = url.find("/", url.find("://") + 3)
        if start < 0 or "#" in url:
            return _origin_and_host(url)
        prefix = url[:start]
        known = self._prefixes.get(prefix)
        if known is None:
            if len(self._prefixes) >= 16:
                self._prefixes.clear()
            origin, host, _ = _origin_and_host(prefix + "/")
            known = self._prefixes[prefix] = (origin, host)
        target = url[start:]
        if target.find("?") == len(target) - 1:
            target = target[:-1]  # an empty query, which urlsplit drops
        return known[0], known[1], target

    def _parse(self, status: int, raw_headers: Any, body: bytes) -> Mapping[str, Any]:
        # Repeated fields joined with ", " as urllib3 does, in a plain dict first (names come
        # lower-cased): HeadersDict.get raises and catches a KeyError for every new name (the
        # merge on it took 4.4 us for a 4-field reply, this one 2.5 us).
        merged: dict[str, str] = {}
        for name, value in raw_headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            previous = merged.get(key)
            merged[key] = text if previous is None else f"{previous}, {text}"
        headers = self._headers_dict()
        for key, text in merged.items():
            headers[key] = text
        response_dict: dict[str, Any] = {
            "headers": headers,
            "status_code": status,
            "context": {"operation_name": self._operation_name},
            "body": body,
        }
        customized: dict[str, Any] = {}
        self._client.meta.events.emit(
            self._before_parse,
            operation_model=self._operation_model,
            response_dict=response_dict,
            customized_response_dict=customized,
        )
        parsed: dict[str, Any] = self._parser.parse(response_dict, self._output_shape)
        parsed.update(customized)
        if status >= 300:
            code = parsed.get("Error", {}).get("Code")
            error_shape = self._client.meta.service_model.shape_for_error_code(code)
            if error_shape is not None:
                parsed.update(self._parser.parse(response_dict, error_shape))
            raise self._client.exceptions.from_code(code)(parsed, self._operation_name)
        return parsed

    def _botocore_error(self, exc: PoolError) -> Exception:
        import botocore.exceptions as bce
        import botocore.parsers

        url = self.endpoint_url
        if isinstance(exc, ConnectTimedOut):
            return bce.ConnectTimeoutError(endpoint_url=url, error=str(exc))
        if isinstance(exc, TLSFailed):
            return bce.SSLError(endpoint_url=url, error=exc)
        if isinstance(exc, ConnectFailed):
            return bce.EndpointConnectionError(endpoint_url=url, error=str(exc))
        if isinstance(exc, ReadTimedOut):
            return bce.ReadTimeoutError(endpoint_url=url, error=str(exc))
        if isinstance(exc, BodyTooLarge):
            return botocore.parsers.ResponseParserError(str(exc))
        return bce.ConnectionClosedError(endpoint_url=url, error=str(exc))


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1")
    raise TypeError(f"a request part of type {type(value).__name__} cannot be sent")
