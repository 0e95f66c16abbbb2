"""Amazon Chime SDK Messaging (boto3 ``chime-sdk-messaging``).

Everything true only of Chime lives here: the typed handle and its string form, the request, the
status table, finality and the mapping of botocore's errors onto the msgstatus error tree.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import threading
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import EventLoopToken, RunVar, current_token

from msgstatus import errors
from msgstatus._providers import base
from msgstatus._providers.base import ErrorRule, TypedHandle
from msgstatus._retry import RetryPolicy, parse_retry_after
from msgstatus._status import MessageStatus, StatusResult
from msgstatus._transports._botocore import BotocoreExchange, unsupported_reason
from msgstatus._transports._pool import Pool

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_chime_sdk_messaging import ChimeSDKMessagingClient

__all__ = [
    "CHIME_ERROR_CODES",
    "CHIME_EVENT_TYPES",
    "CHIME_FINAL_STATUSES",
    "CHIME_STATUS_MAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_READ_TIMEOUT",
    "ChimeHandle",
    "ChimeProvider",
]

#: ``Status.Value`` of GetChannelMessageStatus and what it means here. Mirrored in providers.md
#: (a test compares the two). Any other value maps to UNKNOWN.
CHIME_STATUS_MAP: dict[str, MessageStatus] = {
    "PENDING": MessageStatus.PENDING,
    "SENT": MessageStatus.SENT,
    "FAILED": MessageStatus.FAILED,
    "DENIED": MessageStatus.DENIED,
}

#: Chime has nothing after ``SENT`` (no delivery or read receipts), so it is final like the two
#: failures. ``PENDING`` (a channel flow is still processing the message) and ``UNKNOWN`` are not.
CHIME_FINAL_STATUSES: frozenset[MessageStatus] = frozenset(
    {MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.DENIED}
)

logger = logging.getLogger("msgstatus.chime")

PROVIDER = "chime"

#: botocore ``ClientError`` codes, the error each becomes and what it means. Mirrored in
#: providers.md (a test compares the two). The first seven are the errors the service model lists
#: for GetChannelMessageStatus (plus NotFoundException, which it lists for GetChannelMessage); the
#: rest are AWS-wide codes a request can meet before it reaches Chime. Any other code is a plain
#: MsgStatusError naming it, except that an HTTP 429 is a rate limit and a 5xx is unavailability
#: whatever the code (a load balancer's HTML page gives codes like "502").
CHIME_ERROR_CODES: dict[str, ErrorRule] = {
    "BadRequestException": ErrorRule(
        errors.InvalidHandleError, "Chime refused the request as malformed"
    ),
    "UnauthorizedClientException": ErrorRule(
        errors.AuthenticationError, "Chime rejected the AWS credentials"
    ),
    "ForbiddenException": ErrorRule(
        errors.PermissionDeniedError,
        "Chime does not let this bearer read the message's status (only its sender may)",
    ),
    "NotFoundException": ErrorRule(
        errors.MessageNotFoundError, "Chime has no such message (a DENIED message is not stored)"
    ),
    "ThrottledClientException": ErrorRule(errors.RateLimitedError, "Chime is throttling requests"),
    "ServiceUnavailableException": ErrorRule(
        errors.ProviderUnavailableError, "Chime is unavailable"
    ),
    "ServiceFailureException": ErrorRule(
        errors.ProviderUnavailableError, "Chime failed to handle the request"
    ),
    "UnrecognizedClientException": ErrorRule(
        errors.AuthenticationError, "AWS does not recognize the access key"
    ),
    "InvalidSignatureException": ErrorRule(
        errors.AuthenticationError,
        "AWS rejected the request signature (wrong secret key or region?)",
    ),
    "IncompleteSignatureException": ErrorRule(
        errors.AuthenticationError, "AWS rejected the signature"
    ),
    "MissingAuthenticationTokenException": ErrorRule(
        errors.AuthenticationError, "AWS found no credentials in the request"
    ),
    "ExpiredTokenException": ErrorRule(
        errors.AuthenticationError, "the AWS session token has expired"
    ),
    "AccessDeniedException": ErrorRule(
        errors.PermissionDeniedError, "AWS denied these credentials access to Chime"
    ),
    "ThrottlingException": ErrorRule(errors.RateLimitedError, "AWS is throttling requests"),
    "TooManyRequestsException": ErrorRule(errors.RateLimitedError, "AWS is throttling requests"),
}

_UNKNOWN_CODE = ErrorRule(errors.MsgStatusError, "Chime answered an error")
_UNEXPECTED = ErrorRule(errors.MsgStatusError, "unexpected error from boto3")
_MALFORMED = ErrorRule(
    errors.ProviderResponseError, "Chime's response is not what the API promises"
)


@functools.cache
def chime_exception_rules() -> dict[type[BaseException], ErrorRule]:
    """What botocore (and urllib3 under it) raises besides ``ClientError``, and the error each
    becomes; the most specific class wins. Built on first use: botocore is imported lazily."""
    import botocore.exceptions as bce
    import botocore.parsers
    import urllib3.exceptions

    no_credentials = ErrorRule(
        errors.AuthenticationError,
        "no usable AWS credentials for Chime: configure the AWS credential chain "
        "(environment, profile, role)",
    )
    timeout = ErrorRule(errors.ProviderUnavailableError, "Chime did not answer within the timeout")
    # Refused, reset or dropped connections, a response cut short, TLS and proxy errors.
    unreachable = ErrorRule(errors.ProviderUnavailableError, "could not reach Chime")
    return {
        bce.NoCredentialsError: no_credentials,
        bce.PartialCredentialsError: no_credentials,
        bce.CredentialRetrievalError: no_credentials,
        bce.NoAuthTokenError: no_credentials,
        bce.TokenRetrievalError: no_credentials,
        bce.SSOError: no_credentials,
        bce.ReadTimeoutError: timeout,
        bce.ConnectTimeoutError: timeout,
        TimeoutError: timeout,
        bce.ConnectionError: unreachable,
        bce.HTTPClientError: unreachable,
        bce.IncompleteReadError: unreachable,
        urllib3.exceptions.HTTPError: unreachable,
        botocore.parsers.ResponseParserError: _MALFORMED,
        bce.BotoCoreError: ErrorRule(errors.MsgStatusError, "boto3 could not make the request"),
    }


#: Seconds to wait for a TCP connection to Chime (botocore's own default is 60).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for a response once connected: a status is a small read, and the retry policy
#: (not one long wait) is what rides out a slow moment. botocore's default is 60.
DEFAULT_READ_TIMEOUT = 30.0
#: Lookups in flight at once per provider, and the size of botocore's connection pool (its default).
DEFAULT_MAX_CONCURRENCY = 10

# The service model's limits (shapes ChimeArn, MessageId, SubChannelId).
_ARN_MIN, _ARN_MAX = 5, 1600
_ID_MAX = 128
_ARN_PATTERN = re.compile(
    r"arn:[a-z0-9\-.]{1,63}:[a-z0-9\-.]{0,63}:[a-z0-9\-.]{0,63}:[a-z0-9\-.]{0,63}:[^/].{0,1023}"
)
_ID_PATTERN = re.compile(r"[-_a-zA-Z0-9]{1,128}")
# Control, format (zero-width, bidi), surrogate, private-use, unassigned and separator characters:
# none has a place in an ARN that goes into a URL path or an HTTP header.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})

_PREFIX = f"{PROVIDER}:"

#: The default bearer (sender ARN) :meth:`ChimeProvider.from_env` reads.
ENV_BEARER = "MSGSTATUS_CHIME_BEARER"
# The channel ARN of a handle string: anything up to the first ';' not escaped by a backslash.
_CHANNEL_PART = re.compile(r"(?:[^\\;]|\\[\\;])*")
_UNESCAPE = re.compile(r"\\([\\;])")
_GRAMMAR = "'[chime:]<channel ARN>;message=<id>[;sub_channel=<id>][;bearer=<ARN>]'"
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")

# Service messages are quoted in errors, bounded.
_MAX_SERVICE_MESSAGE = 200


# -- the handle -------------------------------------------------------------------------------


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}...({len(str(value))} characters)"


def _invalid(message: str, handle: str | None = None) -> errors.InvalidHandleError:
    return errors.InvalidHandleError(message, provider=PROVIDER, handle=handle)


def _check_arn(value: object, field: str, *, ascii_only: bool = False) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{field} must be a string, not {type(value).__name__}")
    if not _ARN_MIN <= len(value) <= _ARN_MAX:
        raise _invalid(
            f"{field} must be {_ARN_MIN} to {_ARN_MAX} characters long, not {len(value)}: "
            f"{_shown(value)}"
        )
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise _invalid(f"{field} contains the character {char!r}: {_shown(value)}")
        if ascii_only and not char.isascii():
            # The bearer travels in the x-amz-chime-bearer header, which carries ASCII only.
            raise _invalid(f"{field} must be ASCII, it contains {char!r}: {_shown(value)}")
    if not _ARN_PATTERN.fullmatch(value):
        raise _invalid(
            f"{field} is not an ARN ('arn:partition:service:region:account:resource'): "
            f"{_shown(value)}"
        )
    # botocore percent-encodes the whole ARN into one path segment, but proxies and servers that
    # decode or normalize paths must never see a traversal in it: refuse dot segments and empty
    # segments (a trailing or doubled '/'), also written with backslashes or percent-escapes.
    for segment in re.split(r"[/\\]", value):
        if not segment or _ESCAPE.sub(_decode_escape, segment) in (".", ".."):
            raise _invalid(
                f"{field} has an empty, '.' or '..' path segment: {_shown(value)}",
            )
    return value


def _decode_escape(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def _check_id(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{field} must be a string, not {type(value).__name__}")
    if not _ID_PATTERN.fullmatch(value):
        raise _invalid(
            f"{field} must be 1 to {_ID_MAX} characters of letters, digits, '-' and '_': "
            f"{_shown(value)}"
        )
    return value


def _escape_channel(arn: str) -> str:
    return arn.replace("\\", "\\\\").replace(";", "\\;")


def _split_channel(native: str, handle: str) -> tuple[str, str | None]:
    """The channel ARN at the start of ``native``, unescaped, and the text after the ``;`` that
    ends it (None when nothing follows)."""
    match = _CHANNEL_PART.match(native)
    assert match is not None  # the pattern matches the empty string
    end = match.end()
    if end < len(native) and native[end] != ";":
        raise _invalid(
            "in the channel ARN, '\\' must be followed by '\\' or ';' "
            "(a backslash is written '\\\\', a semicolon '\\;')",
            handle,
        )
    channel = _UNESCAPE.sub(r"\1", match.group(0))
    return channel, native[end + 1 :] if end < len(native) else None


@dataclass(frozen=True, slots=True)
class ChimeHandle:
    """A message in Amazon Chime SDK Messaging: its channel, id, sub-channel and bearer.

    ``channel_arn`` and ``bearer`` (the ARN of the AppInstanceUser or bot that sent the message;
    only the sender may ask for its status) are ARNs as the service model defines them, with no
    white space, control or invisible characters and no empty, ``.`` or ``..`` path segment; the
    bearer must be ASCII. ``message_id`` and ``sub_channel_id`` are 1-128 letters, digits, ``-``
    and ``_``. ``str(handle)`` is the canonical ``chime:…`` string and :meth:`parse` reads it back
    into an equal handle. Raises :class:`~msgstatus.InvalidHandleError` for any invalid field.
    """

    channel_arn: str
    message_id: str
    sub_channel_id: str | None = None
    bearer: str | None = None

    def __post_init__(self) -> None:
        _check_arn(self.channel_arn, "channel_arn")
        _check_id(self.message_id, "message_id")
        if self.sub_channel_id is not None:
            _check_id(self.sub_channel_id, "sub_channel_id")
        if self.bearer is not None:
            _check_arn(self.bearer, "bearer", ascii_only=True)

    @property
    def provider(self) -> str:
        """Always ``"chime"``: the handle prefix :class:`ChimeProvider` claims."""
        return PROVIDER

    def __str__(self) -> str:
        # Only the channel ARN is escaped: ids cannot contain ';', and the bearer, which comes
        # last, takes the rest of the string as it is. That keeps the longest handle within the
        # client's limit (MAX_HANDLE_LENGTH).
        parts = [f"{_PREFIX}{_escape_channel(self.channel_arn)}", f"message={self.message_id}"]
        if self.sub_channel_id is not None:
            parts.append(f"sub_channel={self.sub_channel_id}")
        if self.bearer is not None:
            parts.append(f"bearer={self.bearer}")
        return ";".join(parts)

    def with_bearer(self, bearer: str | None) -> ChimeHandle:
        """The same message asked about by ``bearer``. Raises InvalidHandleError for a bad ARN."""
        return ChimeHandle(self.channel_arn, self.message_id, self.sub_channel_id, bearer)

    @classmethod
    def parse(cls, text: str) -> ChimeHandle:
        """Read a handle string: ``[chime:]<channel ARN>;message=<id>[;sub_channel=<id>]
        [;bearer=<ARN>]``, fields in this order, with ``\\`` and ``;`` in the channel ARN written
        ``\\\\`` and ``\\;``; the bearer is the rest of the string, as it is.

        Raises :class:`~msgstatus.InvalidHandleError` for text that is not such a handle.
        """
        text = base.validate_handle_text(text, provider=PROVIDER)
        native = text[len(_PREFIX) :] if text.startswith(_PREFIX) else text
        channel, rest = _split_channel(native, text)
        if rest is None or not rest.startswith("message="):
            raise _invalid(f"a Chime handle is {_GRAMMAR}; message= is missing", text)
        message_id, more, rest = rest[len("message=") :].partition(";")
        sub_channel_id = bearer = None
        if more and rest.startswith("sub_channel="):
            sub_channel_id, more, rest = rest[len("sub_channel=") :].partition(";")
        if more:
            if not rest.startswith("bearer="):
                raise _invalid(
                    f"{_shown(rest)} is not a field of a Chime handle {_GRAMMAR} "
                    "(write ';' inside the channel ARN as '\\;')",
                    text,
                )
            bearer = rest[len("bearer=") :]
        try:
            return cls(channel, message_id, sub_channel_id, bearer)
        except errors.InvalidHandleError as exc:
            raise _invalid(exc.message, text) from exc


def _message_handle(message: Mapping[str, Any], bearer: str | None) -> ChimeHandle:
    """The handle of a ChannelMessage (an event's payload, a SendChannelMessage response): its
    ``ChannelArn``, ``MessageId`` and ``SubChannelId``, asked about by ``bearer``. Raises
    InvalidHandleError when they do not make a handle."""
    sub_channel = message.get("SubChannelId")
    return ChimeHandle(
        message.get("ChannelArn"),  # type: ignore[arg-type]
        message.get("MessageId"),  # type: ignore[arg-type]
        sub_channel if sub_channel else None,
        bearer,
    )


# -- helpers ----------------------------------------------------------------------------------


def _service_message(error: Mapping[str, object]) -> str:
    message = error.get("Message")
    if not isinstance(message, str) or not message.strip():
        return ""
    text = " ".join(message.split())
    if len(text) > _MAX_SERVICE_MESSAGE:
        text = text[: _MAX_SERVICE_MESSAGE - 3] + "..."
    return f": {text}"


def _raised_while_parsing(exc: BaseException) -> bool:
    # botocore's parsers raise AttributeError/TypeError on bodies of the wrong shape (a Status
    # that is a string, a list for an object); those are malformed responses, not our bugs.
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "botocore.parsers":
            return True
        tb = tb.tb_next
    return False


def _check_body_length(response_dict: Mapping[str, Any], **_: object) -> None:
    declared = str(response_dict.get("headers", {}).get("content-length", ""))
    body = response_dict.get("body")
    if declared.isdigit() and isinstance(body, bytes) and len(body) < int(declared):
        # Imported here, on the rare short body: an import statement on every lookup costs
        # more than the rest of this check.
        from botocore.exceptions import IncompleteReadError

        raise IncompleteReadError(actual_bytes=len(body), expected_bytes=int(declared))


# -- the provider -----------------------------------------------------------------------------


class _Limiters:
    """The per-event-loop limits of one provider: ``requests`` bounds the botocore calls in
    flight; ``threads`` lets every one of them have a worker thread (anyio's default allows 40)."""

    def __init__(self, max_concurrency: int) -> None:
        self.requests = anyio.CapacityLimiter(max_concurrency)
        self.threads = anyio.CapacityLimiter(math.inf)


class _ThreadCall:
    """The fallback path, for clients the pool does not serve (a proxy, a client certificate,
    an object that is not a botocore client): one botocore call in a worker thread, which the
    caller may give up on (deadline, cancellation) without giving up its concurrency token: the
    token goes back only when the call has really ended, so ``max_concurrency`` bounds the
    requests in flight."""

    def __init__(self, function: Any, limiters: _Limiters) -> None:
        self._function = function
        self._limiters = limiters
        self._lock = threading.Lock()
        # "pending" -> "running" (thread) -> "done" (thread); or "abandoned" (caller): whoever
        # is last to know gives the token back, the caller on the usual path.
        self._state = "pending"

    async def run(self, deadline: float) -> Mapping[str, object]:
        requests = self._limiters.requests
        await requests.acquire_on_behalf_of(self)
        try:
            with anyio.fail_after(deadline):
                result: Mapping[str, object] = await anyio.to_thread.run_sync(
                    self._in_thread, abandon_on_cancel=True, limiter=self._limiters.threads
                )
        except BaseException:
            with self._lock:
                thread_still_busy = self._state == "running"
                self._state = "abandoned"
            if not thread_still_busy:
                requests.release_on_behalf_of(self)
            raise
        requests.release_on_behalf_of(self)
        return result

    def _in_thread(self) -> Mapping[str, object]:
        with self._lock:
            if self._state == "abandoned":
                raise anyio.get_cancelled_exc_class()()
            self._state = "running"
        try:
            result: Mapping[str, object] = self._function()
            return result
        finally:
            with self._lock:
                abandoned = self._state == "abandoned"
                self._state = "done"
            if abandoned:
                # RuntimeError: the event loop has ended, and its limiter with it.
                with contextlib.suppress(RuntimeError):
                    anyio.from_thread.run_sync(self._limiters.requests.release_on_behalf_of, self)


class ChimeProvider(base.BaseProvider):
    """Looks up message statuses with Chime SDK Messaging's GetChannelMessageStatus.

    Without ``client`` it builds one boto3 ``chime-sdk-messaging`` client from ``session`` (default:
    a new ``boto3.Session`` reading the standard AWS configuration: environment, profiles,
    ``AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING``; ``AWS_REGION`` as well as ``AWS_DEFAULT_REGION``),
    with ``region_name`` and ``endpoint_url`` if given,
    botocore's retries off (``retry`` is the only retry layer), ``max_concurrency`` pooled
    connections and the given timeouts; ``aclose`` closes it. A ``client`` you pass is used as it
    is and stays open. ``bearer`` is the default sender ARN for handles without one.

    The client builds, signs and parses each request in the event loop; the bytes go over
    msgstatus's own HTTP/1.1 keep-alive pool (one per event loop, at most ``max_concurrency``
    requests and connections, with the client's timeouts and TLS settings). A client configured
    with a proxy or a client certificate (or an object that is not a botocore client) is called
    in worker threads instead, at most ``max_concurrency`` at once.

    Raises ``ValueError`` when no region is configured, the AWS configuration cannot be read, the
    endpoint is plain ``http://`` to a host that is not loopback, or an argument is out of range,
    and :class:`~msgstatus.InvalidHandleError` for a bad ``bearer``. Use it as ``async with`` or
    call :meth:`aclose`; a lookup after that raises ``RuntimeError``.
    """

    name: str = PROVIDER
    display_name: ClassVar[str] = "Chime"
    status_map: ClassVar[Mapping[str, MessageStatus]] = CHIME_STATUS_MAP
    final_statuses: ClassVar[frozenset[MessageStatus]] = CHIME_FINAL_STATUSES

    @classmethod
    def from_env(
        cls,
        *,
        bearer: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> ChimeProvider:
        """A provider configured from the standard AWS chain (credentials, ``AWS_REGION`` /
        ``AWS_DEFAULT_REGION`` or the profile's region, ``AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING``)
        with ``MSGSTATUS_CHIME_BEARER`` as the default bearer unless ``bearer`` is given.

        Raises ``ValueError`` when no region is configured or the configuration is unsafe, and
        :class:`~msgstatus.InvalidHandleError` naming the variable for a bad bearer ARN.
        """
        if bearer is None:
            bearer = os.environ.get(ENV_BEARER) or None
            if bearer is not None:
                try:
                    _check_arn(bearer, ENV_BEARER, ascii_only=True)
                except errors.InvalidHandleError as exc:
                    raise _invalid(exc.message) from exc
        return cls(
            bearer=bearer,
            max_concurrency=max_concurrency,
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    def __init__(
        self,
        *,
        client: ChimeSDKMessagingClient | None = None,
        bearer: str | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ValueError("max_concurrency must be an int")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.bearer = None if bearer is None else _check_arn(bearer, "bearer", ascii_only=True)
        self.max_concurrency = max_concurrency
        configured = (session, region_name, endpoint_url, connect_timeout, read_timeout)
        if client is not None:
            if any(value is not None for value in configured):
                raise ValueError(
                    "pass either client or the settings to build one (session, region_name, "
                    "endpoint_url, connect_timeout, read_timeout), not both"
                )
            self._client = client
            owns_client = False
        else:
            self._client = self._build_client(
                session,
                region_name,
                endpoint_url,
                base.check_timeout(
                    DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
                    "connect_timeout",
                ),
                base.check_timeout(
                    DEFAULT_READ_TIMEOUT if read_timeout is None else read_timeout,
                    "read_timeout",
                ),
            )
            owns_client = True
        super().__init__(retry=retry, owns_client=owns_client)
        # anyio limiters belong to one event loop, and a provider may be built outside any loop
        # and used from several (asyncio, trio, a SyncStatusClient's thread): one per loop.
        self._limiter: RunVar[_Limiters] = RunVar(f"msgstatus.chime.{id(self)}")
        self._pools: RunVar[Pool] = RunVar(f"msgstatus.chime.pool.{id(self)}")
        # max_concurrency bounds the provider, but pools and limiters belong to one event loop:
        # lookups from a second loop while the first has some in flight are refused.
        self._loop_lock = threading.Lock()
        self._busy_loop: EventLoopToken | None = None
        self._busy_lookups = 0
        self._exchange: BotocoreExchange | None = None
        if unsupported_reason(self._client) is None:
            self._exchange = BotocoreExchange(self._client, "get_channel_message_status")
        # botocore's read timeout bounds each socket read, not the response: a server that
        # trickles bytes could hold a lookup for ever. One attempt gets connect + read + 1 s.
        config = getattr(getattr(self._client, "meta", None), "config", None)
        timeouts = [
            getattr(config, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            getattr(config, "read_timeout", DEFAULT_READ_TIMEOUT),
        ]
        self._deadline = sum(t for t in timeouts if isinstance(t, (int, float))) + 1.0

    def _build_client(
        self,
        session: boto3.session.Session | None,
        region_name: str | None,
        endpoint_url: str | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> ChimeSDKMessagingClient:
        import boto3
        import botocore.config
        import botocore.exceptions

        from msgstatus import __version__

        config = botocore.config.Config(
            # One retry layer: botocore's would multiply with RetryPolicy's attempts.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra=f"msgstatus/{__version__}",
        )
        try:
            if session is None:
                session = boto3.session.Session()
            if region_name is None and session.region_name is None:
                # botocore reads only AWS_DEFAULT_REGION; the other AWS SDKs and the docs use
                # AWS_REGION.
                region_name = os.environ.get("AWS_REGION") or None
            client = session.client(
                "chime-sdk-messaging",
                region_name=region_name,
                endpoint_url=endpoint_url,
                config=config,
            )
        except botocore.exceptions.NoRegionError as exc:
            raise ValueError(
                "no AWS region for Chime: pass region_name= or set AWS_REGION "
                "(or a region in your AWS profile)"
            ) from exc
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise ValueError(
                f"could not build the Chime client from the AWS configuration "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        try:
            # Also covers the AWS_ENDPOINT_URL* settings boto3 reads itself: signed requests
            # and bearer ARNs must not cross a network unencrypted.
            base.check_endpoint_url(client.meta.endpoint_url, setting="the Chime endpoint")
        except ValueError:
            client.close()
            raise
        # botocore reads bodies with urllib3's length check off: a body cut short would parse as
        # a malformed response instead of a dropped connection (which a retry may fix).
        client.meta.events.register(
            "before-parse.chime-sdk-messaging.GetChannelMessageStatus", _check_body_length
        )
        return client

    @property
    def client(self) -> ChimeSDKMessagingClient:
        """The boto3 ``chime-sdk-messaging`` client the provider calls (e.g. to send messages)."""
        return self._client

    def __repr__(self) -> str:
        # Total: a half-built provider (its constructor raised) still has a repr.
        meta = getattr(getattr(self, "_client", None), "meta", None)
        return (
            f"{type(self).__name__}(region_name={getattr(meta, 'region_name', None)!r}, "
            f"endpoint_url={getattr(meta, 'endpoint_url', None)!r}, "
            f"max_concurrency={getattr(self, 'max_concurrency', None)})"
        )

    async def aclose(self) -> None:
        """Close this event loop's connection pool, and the boto3 client if this provider built
        it (a client passed in stays open). Calling it again does nothing; a lookup afterwards
        raises an error."""
        if self._exchange is not None and not self.closed:
            self._exchange.close()
            try:
                pool = self._pools.get()
            except (LookupError, RuntimeError):
                pass
            else:
                await pool.aclose()
        await super().aclose()

    async def _close_client(self) -> None:
        self._client.close()

    # -- lookups ---------------------------------------------------------------------------

    def parse_handle(self, handle: str | TypedHandle, /) -> ChimeHandle:
        """``handle`` as a :class:`ChimeHandle`: a ChimeHandle as it is, a string parsed with
        :meth:`ChimeHandle.parse`. Raises :class:`~msgstatus.InvalidHandleError` otherwise."""
        if isinstance(handle, ChimeHandle):
            return handle
        text = self._typed_handle_text(handle)
        if isinstance(text, str):
            return ChimeHandle.parse(text)
        raise _invalid(f"a handle must be a string or a ChimeHandle, not {type(handle).__name__}")

    def _canonical(self, target: ChimeHandle) -> str:
        return str(target)

    def _check_lookup(self, target: ChimeHandle, canonical: str) -> None:
        if target.bearer is None and self.bearer is None:
            raise _invalid(
                "the handle names no bearer and the provider has no default: pass bearer= to "
                f"ChimeProvider (or set {ENV_BEARER} for ChimeProvider.from_env()) or put "
                "';bearer=<sender ARN>' in the handle",
                canonical,
            )

    def result_from_send_response(
        self, response: Mapping[str, Any], *, bearer: str | None = None
    ) -> StatusResult:
        """Deprecated alias of :meth:`result_from_payload` (removed in the next release)."""
        warnings.warn(
            "ChimeProvider.result_from_send_response() is deprecated; use result_from_payload()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.result_from_payload(response, bearer=bearer)

    def result_from_payload(
        self, response: Mapping[str, Any], /, *, bearer: str | None = None
    ) -> StatusResult:
        """Normalize a Chime payload you already hold, such as the response of
        ``send_channel_message``, without another call.

        The result's handle is built from the response's ``ChannelArn``, ``MessageId`` and
        ``SubChannelId``, plus ``bearer`` if you pass it (so that the handle string alone can be
        looked up later). A response without ``Status`` gives ``UNKNOWN``. Raises
        :class:`~msgstatus.ProviderResponseError` when the response has no valid channel ARN or
        message id, or a ``Status`` of the wrong shape; InvalidHandleError for a bad ``bearer``.
        Datetimes in the response (botocore parses timestamps) become ISO 8601 strings in ``raw``.
        """
        # Before any recursive conversion: a payload of any depth is refused, never recursed.
        base.check_nesting(response, provider=PROVIDER, display_name="Chime", handle=None)
        response = base.plain_payload(response)  # type: ignore[assignment]
        base.check_nesting(response, provider=PROVIDER, display_name="Chime", handle=None)
        if not isinstance(response, Mapping):
            raise errors.ProviderResponseError(
                f"a SendChannelMessage response is a dict, not {type(response).__name__}",
                provider=PROVIDER,
            )
        if bearer is not None:
            _check_arn(bearer, "bearer", ascii_only=True)
        try:
            typed = _message_handle(response, bearer)
        except errors.InvalidHandleError as exc:
            raise errors.ProviderResponseError(
                f"the SendChannelMessage response has no usable ChannelArn and MessageId "
                f"({exc.message})",
                provider=PROVIDER,
            ) from exc
        payload = {key: value for key, value in response.items() if key != "ResponseMetadata"}
        return self._normalize(payload, str(typed), status_required=False)

    # -- push: messaging websocket and Kinesis streaming events ------------------------------

    def result_from_event(
        self, event: Mapping[str, Any] | str | bytes, /, *, bearer: str | None
    ) -> StatusResult | None:
        """Normalize a pushed Chime event: a messaging-websocket envelope
        (``{"Headers": {"x-amz-chime-event-type": …}, "Payload": "<ChannelMessage JSON>"}``) or a
        Kinesis streaming record (``{"EventType": …, "Payload": …}``), as a dict or its JSON text.

        The ten ``*_CHANNEL_MESSAGE`` event types map per :data:`CHIME_EVENT_TYPES` (``CREATE`` /
        ``UPDATE`` = SENT, ``PENDING_`` = PENDING, ``FAILED_`` = FAILED, ``DENIED_`` = DENIED);
        ``REDACT`` / ``DELETE`` and every other event (memberships, channels, …) give None. The
        handle is built from the payload's ``ChannelArn``, ``MessageId``, ``SubChannelId`` and
        ``bearer`` (the sender whose websocket or processor saw the event), so it is the handle a
        poll of that message uses. A DENIED event is the only way to learn a denial: Chime stores
        no denied message, so a poll answers NotFound.

        Raises :class:`~msgstatus.ProviderResponseError` for an event that is not such an
        envelope, or a message event whose payload names no valid message;
        InvalidHandleError for a bad ``bearer``.
        """
        return _event_result(self, event, bearer)

    async def _attempt(self, target: ChimeHandle, canonical: str) -> StatusResult:
        bearer = target.bearer if target.bearer is not None else self.bearer
        assert bearer is not None  # _check_lookup refused the lookup otherwise
        params: dict[str, str] = {
            "ChannelArn": target.channel_arn,
            "MessageId": target.message_id,
            "ChimeBearer": bearer,
        }
        if target.sub_channel_id is not None:
            params["SubChannelId"] = target.sub_channel_id
        # Inline, not a @contextmanager: its generator protocol cost ~2% of a lookup.
        self._enter_loop(canonical)
        try:
            return await self._attempt_in_loop(params, canonical)
        finally:
            with self._loop_lock:
                self._busy_lookups -= 1

    def _enter_loop(self, canonical: str) -> None:
        """Count a lookup in flight in this event loop; refuse it while another loop has some."""
        token = current_token()
        with self._loop_lock:
            if self._busy_lookups and self._busy_loop != token:
                raise RuntimeError(
                    f"this ChimeProvider has lookups in flight in another event loop; its "
                    f"max_concurrency ({self.max_concurrency}) bounds one loop's pool, so use "
                    f"one provider per event loop [handle={canonical[:120]!r}]"
                )
            self._busy_loop = token
            self._busy_lookups += 1

    async def _attempt_in_loop(self, params: dict[str, str], canonical: str) -> StatusResult:
        try:
            response = await self._call(params)
        except TimeoutError as exc:
            raise errors.ProviderUnavailableError(
                f"Chime did not answer within {self._deadline:g} s",
                provider=PROVIDER,
                handle=canonical,
            ) from exc
        except Exception as exc:
            error = self._translate(exc, canonical)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("GetChannelMessageStatus %r -> %s", canonical, type(error).__name__)
            raise error from exc
        result = self._normalize(
            {key: value for key, value in response.items() if key != "ResponseMetadata"},
            canonical,
            status_required=True,
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("GetChannelMessageStatus %r -> %s", canonical, result.provider_status)
        return result

    async def _call(self, params: dict[str, str]) -> Mapping[str, object]:
        if self._exchange is not None:
            try:
                pool = self._pools.get()
            except LookupError:
                pool = self._exchange.new_pool(self.max_concurrency)
                self._pools.set(pool)
            return await self._exchange.call(pool, params, self._deadline)
        try:
            limiters = self._limiter.get()
        except LookupError:
            limiters = _Limiters(self.max_concurrency)
            self._limiter.set(limiters)
        call = _ThreadCall(partial(self._client.get_channel_message_status, **params), limiters)
        return await call.run(self._deadline)

    def _normalize(
        self, payload: dict[str, Any], canonical: str, *, status_required: bool
    ) -> StatusResult:
        base.check_nesting(payload, provider=PROVIDER, display_name="Chime", handle=canonical)
        status_object = payload.get("Status")
        if status_object is None and not status_required:
            value: object = None
            detail: object = None
        elif isinstance(status_object, Mapping):
            value = status_object.get("Value")
            detail = status_object.get("Detail")
        else:
            raise errors.ProviderResponseError(
                "Chime's response has no Status object"
                if status_object is None
                else f"Chime's Status is a {type(status_object).__name__}, not an object",
                provider=PROVIDER,
                handle=canonical,
            )
        if value is not None and not isinstance(value, str):
            raise errors.ProviderResponseError(
                f"Chime's Status.Value is a {type(value).__name__}, not text",
                provider=PROVIDER,
                handle=canonical,
            )
        return self._result(
            canonical,
            self._table.lookup(value),
            provider_status=value,
            detail=detail if isinstance(detail, str) and detail else None,
            raw=payload,
        )

    def _translate(self, exc: Exception, canonical: str) -> errors.MsgStatusError:
        import botocore.exceptions

        if isinstance(exc, botocore.exceptions.ClientError):
            return self._client_error(exc, canonical)
        detail = f" ({type(exc).__name__})"
        rule = base.most_specific(exc, chime_exception_rules())
        if rule is None and _raised_while_parsing(exc):
            rule = _MALFORMED
        return self._error(rule or _UNEXPECTED, canonical, detail=detail)

    def _client_error(self, exc: Any, canonical: str) -> errors.MsgStatusError:
        response: Mapping[str, Any] = exc.response if isinstance(exc.response, Mapping) else {}
        error: Mapping[str, object] = response.get("Error") or {}
        metadata: Mapping[str, Any] = response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "") or None
        http_status = metadata.get("HTTPStatusCode")
        status = http_status if isinstance(http_status, int) else None
        headers: Mapping[str, object] = metadata.get("HTTPHeaders") or {}
        rule = CHIME_ERROR_CODES.get(code or "") or base.rule_for_http_status(
            status, {}, provider="Chime"
        )
        return self._error(
            rule or _UNKNOWN_CODE,
            canonical,
            detail=_service_message(error),
            provider_code=code,
            http_status=status,
            retry_after=parse_retry_after(headers),
        )


# -- push events -----------------------------------------------------------------------------

#: Event types of the messaging websocket and of Kinesis streaming (``x-amz-chime-event-type`` /
#: ``EventType``) and the status each says of its message; None: not a status (REDACT, DELETE).
#: Mirrored in providers.md (a test compares the two). Any other event type gives None.
CHIME_EVENT_TYPES: dict[str, MessageStatus | None] = {
    "CREATE_CHANNEL_MESSAGE": MessageStatus.SENT,
    "UPDATE_CHANNEL_MESSAGE": MessageStatus.SENT,
    "PENDING_CREATE_CHANNEL_MESSAGE": MessageStatus.PENDING,
    "PENDING_UPDATE_CHANNEL_MESSAGE": MessageStatus.PENDING,
    "FAILED_CREATE_CHANNEL_MESSAGE": MessageStatus.FAILED,
    "FAILED_UPDATE_CHANNEL_MESSAGE": MessageStatus.FAILED,
    "DENIED_CREATE_CHANNEL_MESSAGE": MessageStatus.DENIED,
    "DENIED_UPDATE_CHANNEL_MESSAGE": MessageStatus.DENIED,
    "REDACT_CHANNEL_MESSAGE": None,
    "DELETE_CHANNEL_MESSAGE": None,
}

_EVENT_TYPE_HEADER = "x-amz-chime-event-type"
# An event body is a ChannelMessage (content up to 4 KB plus metadata): far below this.
_MAX_EVENT_CHARS = 1024 * 1024
_unknown_event_types: set[str] = set()


def _bad_event(message: str) -> errors.ProviderResponseError:
    return errors.ProviderResponseError(message, provider=PROVIDER)


def _load_json(value: str | bytes, what: str) -> object:
    if len(value) > _MAX_EVENT_CHARS:
        raise _bad_event(f"the {what} is larger than {_MAX_EVENT_CHARS} characters")
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise _bad_event(f"the {what} is not JSON") from exc


def _event_type(event: Mapping[str, Any]) -> object:
    headers = event.get("Headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise _bad_event("the event's Headers is not an object")
        # Header names are case-insensitive on the wire.
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == _EVENT_TYPE_HEADER:
                return value
        return None
    return event.get("EventType")


def _event_result(
    provider: ChimeProvider, event: Mapping[str, Any] | str | bytes, bearer: str | None
) -> StatusResult | None:
    if bearer is not None:
        _check_arn(bearer, "bearer", ascii_only=True)
    if isinstance(event, (str, bytes)):
        event = _load_json(event, "event")  # type: ignore[assignment]
    if not isinstance(event, Mapping):
        raise _bad_event(f"a Chime event is an object, not {type(event).__name__}")
    kind = _event_type(event)
    if not isinstance(kind, str):
        raise _bad_event("the event names no event type (x-amz-chime-event-type / EventType)")
    if kind not in CHIME_EVENT_TYPES:
        if kind.endswith("_CHANNEL_MESSAGE") and kind not in _unknown_event_types:
            if len(_unknown_event_types) < 256:
                _unknown_event_types.add(kind)
            logger.warning(
                "Chime sent a message event type this version does not know: %r", kind[:100]
            )
        return None
    status = CHIME_EVENT_TYPES[kind]
    if status is None:
        return None
    payload = event.get("Payload")
    if isinstance(payload, (str, bytes)):
        payload = _load_json(payload, "event's Payload")
    if not isinstance(payload, Mapping):
        raise _bad_event("the event's Payload is not a ChannelMessage object")
    try:
        typed = _message_handle(payload, bearer)
    except errors.InvalidHandleError as exc:
        raise _bad_event(
            f"the event's ChannelMessage has no usable ChannelArn and MessageId ({exc.message})"
        ) from exc
    status_object = payload.get("Status")
    detail = status_object.get("Detail") if isinstance(status_object, Mapping) else None
    reason = None
    headers = event.get("Headers")
    if isinstance(headers, Mapping):
        reason = headers.get("x-amz-chime-event-reason")
    if not (isinstance(detail, str) and detail) and isinstance(reason, str) and reason:
        detail = reason
    raw: dict[str, Any] = {"EventType": kind, "Payload": dict(payload)}
    return provider._result(
        str(typed),
        status,
        provider_status=kind,
        detail=detail[:_MAX_SERVICE_MESSAGE] if isinstance(detail, str) and detail else None,
        raw=raw,
    )
