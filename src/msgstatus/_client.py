"""The client: routes handles to providers, batches, waits and caches final results."""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar, cast

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from msgstatus._decision import Outcome, ResendDecision
from msgstatus._ledger import DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, Ledger
from msgstatus._ledger import _send as _ledger_send
from msgstatus._providers.base import MessageStatusProvider, TypedHandle, split_handle
from msgstatus._status import StatusResult
from msgstatus.errors import (
    ClientClosedError,
    HandleError,
    InvalidHandleError,
    LedgerUnavailableError,
    MsgStatusError,
    ProviderResponseError,
    RateLimitedError,
    StatusWaitTimeout,
    UnknownProviderError,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CONCURRENCY",
    "Handle",
    "Outcome",
    "StatusClient",
    "StatusStream",
]

logger = logging.getLogger("msgstatus.client")

#: A handle string ``"<provider>:<native>"`` or a provider's typed handle.
Handle: TypeAlias = str | TypedHandle

#: Final results remembered by default (least recently used first out).
DEFAULT_CACHE_SIZE = 10_000
#: Lookups in flight at once in a batch, by default.
DEFAULT_CONCURRENCY = 32

# Each poll of wait_for_final waits this much longer than the previous one.
_BACKOFF_FACTOR = 1.5

_T = TypeVar("_T")
_C = TypeVar("_C", bound="StatusClient")
#: The caller's own handle type in a batch: results come back paired with the very object given.
H = TypeVar("H", bound=Handle)

# The cache's key: (provider name, canonical handle string). The provider is part of the key so
# that no handle can be served another provider's result.
_CacheKey: TypeAlias = tuple[str, str]


def _check_concurrency(concurrency: int) -> int:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return concurrency


def _check_handles(handles: object) -> None:
    # A lone string is iterable too: its characters would each become a bad handle.
    if isinstance(handles, (str, bytes)):
        raise TypeError("handles must be an iterable of handles, not a single string")


def _merged(older: StatusResult | None, newer: StatusResult) -> StatusResult:
    """``newer`` merged into ``older`` by the evidence rule; a provider that answers a poll of one
    handle under another (a canonical form that changed) starts the merge afresh."""
    if older is None or (older.provider, older.handle) != (newer.provider, newer.handle):
        return newer
    return older.merge(newer)


#: Iterables read in the event loop itself: the built-in containers, whose iteration cannot
#: block (exact types only: a subclass may override ``__iter__``). Any other iterable (a
#: generator, a file, a database cursor) is advanced in a worker thread.
_INLINE_ITERABLES: frozenset[type] = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        dict,
        range,
        deque,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
    }
)

_EXHAUSTED = object()

#: How far the reading thread may run ahead of the lookups, in handles.
READ_AHEAD = 64


class _ReadAhead:
    """Advances a plain iterator on a daemon thread, at most :data:`READ_AHEAD` handles ahead of
    the event loop, which waits for the next handle without blocking (a socket pair carries the
    wake-up, so the thread never waits for the loop: a loop that stops running cannot hang it,
    nor the interpreter's exit). Only one task may call :meth:`get` at a time."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator
        self._buffer: deque[Any] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self._stopped = False
        self._waiting = False
        self._arrived: anyio.Event | None = None
        self._error: Exception | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name="msgstatus-handle-reader", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while len(self._buffer) >= READ_AHEAD and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                error: Exception | None = None
                try:
                    item = next(self._iterator, _EXHAUSTED)
                except Exception as exc:
                    item, error = _EXHAUSTED, exc
                with self._cond:
                    if item is _EXHAUSTED:
                        self._ended, self._error = True, error
                    else:
                        self._buffer.append(item)
                    wake, self._waiting = self._waiting, False
                if wake:
                    self._wake()
                if item is _EXHAUSTED:
                    return
        finally:
            self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
            self._wake_w.send(b"\0")

    def get_nowait(self) -> object | None:
        """The next handle if one is ready, else None (without waiting)."""
        with self._cond:
            if self._buffer:
                item: object = self._buffer.popleft()
                self._cond.notify()
                return item
        return None

    async def get(self) -> object:
        """The next handle, :data:`_EXHAUSTED` at the end; raises what the iterator raised.
        Any number of tasks may wait: one waits for the thread's wake-up, the others for it."""
        while True:
            with self._cond:
                if self._buffer:
                    item = self._buffer.popleft()
                    self._cond.notify()
                    return item
                if self._ended or self._stopped:
                    if self._arrived is None:
                        # Never while a lead task waits on the socket: closing a descriptor
                        # under wait_readable() leaves that task waiting forever.
                        self._close_reader()
                    if self._error is not None:
                        error, self._error = self._error, None
                        raise error
                    return _EXHAUSTED
                lead = self._arrived is None
                if lead:
                    self._waiting = True
                    self._arrived = anyio.Event()
                arrived = self._arrived
            assert arrived is not None
            if not lead:
                await arrived.wait()
                continue
            try:
                await anyio.wait_readable(self._wake_r)
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            finally:
                # Everyone waiting takes what arrived in the same turn of the loop.
                self._arrived = None
                arrived.set()
                if self._stopped:
                    self._close_reader()  # stop() left the socket to the task waiting on it

    def stop(self) -> None:
        """Read no further (the thread ends after the ``next()`` it may be inside)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            wake, self._waiting = self._waiting, False
        if wake:
            self._wake()
        if self._arrived is None:
            # Else a task waits on the socket: it closes it once woken (or cancelled).
            self._close_reader()

    def _close_reader(self) -> None:
        self._wake_r.close()


class _HandleSource(Generic[H]):
    """The input of a batch, shared by its workers: hands out ``(index, handle)`` in input order.

    A plain iterable that is not a built-in container is advanced in a worker thread, one item
    at a time, so that a slow or blocking one (``sys.stdin``, a generator that sleeps, a
    database cursor) never stalls the lookups in flight; async iterables are awaited. An error
    raised by the caller's iterable ends the input and is kept in ``error`` for the batch to
    raise once the lookups already in flight are done.
    """

    def __init__(self, handles: Iterable[H] | AsyncIterable[H]) -> None:
        _check_handles(handles)
        self._sync: Iterator[H] | None = None
        self._async: AsyncIterator[H] | None = None
        self._reader: _ReadAhead | None = None
        self._inline = False
        if isinstance(handles, AsyncIterable):
            self._async = aiter(handles)
        else:
            self._inline = type(handles) in _INLINE_ITERABLES
            self._sync = iter(handles)
        # An iterator must not be advanced by two workers at once.
        self._lock = anyio.Lock()
        self._index = 0
        self._done = False
        self._exhausted = False
        self.error: Exception | None = None

    @property
    def read(self) -> int:
        """How many handles were handed out."""
        return self._index

    @property
    def done(self) -> bool:
        """Whether the input has ended (exhausted, or failed)."""
        return self._exhausted

    def stop(self) -> None:
        """Hand out nothing more, and stop the reading thread if there is one. Called at the end
        of every batch (also when it is cancelled or the client was closed)."""
        self._done = True
        if self._reader is not None:
            self._reader.stop()

    async def next(self) -> tuple[int, H] | None:
        if self._done:
            return None
        try:
            if self._inline:
                assert self._sync is not None
                handle = next(self._sync)
            elif self._sync is not None:
                # Workers do not queue behind one another here: _ReadAhead lets them all wait.
                if self._reader is None:
                    self._reader = _ReadAhead(self._sync)
                item = await self._reader.get()
                if item is _EXHAUSTED:
                    raise StopIteration
                handle = cast("H", item)
            else:
                async with self._lock:
                    if self._done:
                        return None
                    assert self._async is not None
                    handle = await anext(self._async)
        except (StopIteration, StopAsyncIteration):
            self._done = self._exhausted = True
            return None
        except Exception as exc:
            self._done = self._exhausted = True
            self.error = exc
            return None
        index = self._index
        self._index += 1
        return index, handle

    def raise_error(self) -> None:
        error, self.error = self.error, None
        if error is not None:
            raise error


def _typed_name_and_text(handle: object) -> tuple[str, str] | None:
    """A typed handle's provider name and string, or None if ``handle`` is not a typed handle.
    Whatever the handle's own code raises (``provider``, ``__str__``) is InvalidHandleError."""
    try:
        if not isinstance(handle, TypedHandle):
            return None
        name = handle.provider
        if not isinstance(name, str):
            return None
        text = str(handle)
    except Exception as exc:
        raise InvalidHandleError(
            f"the {type(handle).__name__} handle could not be read: "
            f"{type(exc).__name__} from its own code"
        ) from exc
    return str.__str__(name), str.__str__(text)


class StatusClient:
    """Looks up message statuses across providers, routing each handle by its provider.

    ``providers`` are :class:`~msgstatus.MessageStatusProvider` objects with distinct names; the
    client owns them and closes them on :meth:`aclose` (use it as ``async with``). With
    ``cache_final`` (the default) final results are remembered per handle, at most ``cache_size``
    of them, least recently used out first, and served without a request; pending results are
    always asked again. Works on asyncio and trio.

    With a ``ledger`` (:class:`~msgstatus.Ledger`, see DESIGN.md "The send ledger") every lookup
    writes its result through to it, and :meth:`send_once` / :meth:`reconcile` are available;
    the client closes the ledger on :meth:`aclose` too.

    Raises ``ValueError`` for two providers with the same name or a negative ``cache_size``, and
    ``TypeError`` for an object that is not a provider.
    """

    def __init__(
        self,
        providers: Iterable[MessageStatusProvider],
        *,
        cache_final: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ledger: Ledger | None = None,
    ) -> None:
        if ledger is not None and not isinstance(ledger, Ledger):
            raise TypeError(f"{ledger!r} is not a Ledger")
        self._ledger = ledger
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        by_name: dict[str, MessageStatusProvider] = {}
        for provider in providers:
            if not isinstance(provider, MessageStatusProvider) or not isinstance(
                provider.name, str
            ):
                raise TypeError(f"{provider!r} is not a MessageStatusProvider")
            if provider.name in by_name:
                raise ValueError(f"two providers are named {provider.name!r}")
            by_name[provider.name] = provider
        self._providers = by_name
        self._cache_final = cache_final and cache_size > 0
        self._cache_size = cache_size
        self._cache: OrderedDict[_CacheKey, StatusResult] = OrderedDict()
        self._closed = False

    @property
    def providers(self) -> Mapping[str, MessageStatusProvider]:
        """The providers by name (a copy)."""
        return dict(self._providers)

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every provider, even if closing one fails (the first failure is raised after).

        Calling it again does nothing; using the client afterwards raises ``RuntimeError``.
        """
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
        first_error: Exception | None = None
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception as exc:
                logger.exception("closing provider %s failed", provider.name)
                if first_error is None:
                    first_error = exc
        if self._ledger is not None:
            try:
                await self._ledger.aclose()
            except Exception as exc:
                logger.exception("closing the ledger failed")
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    # -- the send ledger ------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger | None:
        """The ledger lookups write through to, or None."""
        return self._ledger

    def _need_ledger(self) -> Ledger:
        self._check_open()
        if self._ledger is None:
            raise RuntimeError("this StatusClient has no ledger: StatusClient(..., ledger=...)")
        return self._ledger

    async def _write_through(self, result: StatusResult) -> None:
        assert self._ledger is not None
        try:
            await self._ledger.observe(result)
        except LedgerUnavailableError as exc:
            # The lookup itself succeeded; reconcile() observes the attempt again later.
            logger.warning("could not record %r in the ledger: %s", result.handle, exc)

    # -- pushed observations ------------------------------------------------------------------

    async def observe(self, result: StatusResult) -> StatusResult:
        """Feed an observation the client did not poll for (a webhook, a websocket event, a send
        response) into the cache and the ledger, where it meets the polled ones under the same
        evidence rule: a status never moves backwards, a delivery is never unsaid, and a repeat
        changes nothing. Returns the merged result (what the cache now holds when it is final).

        A final pushed result is then served by :meth:`get_status` without a lookup. Raises
        :class:`~msgstatus.UnknownProviderError` for a provider the client does not route,
        ``TypeError`` for anything but a StatusResult, and the ledger's
        :class:`~msgstatus.LedgerUnavailableError` as it is (unlike a lookup's write-through, so
        that a webhook receiver answers 500 and the push is retried).
        """
        self._check_open()
        if not isinstance(result, StatusResult):
            raise TypeError(f"observe() takes a StatusResult, not {type(result).__name__}")
        if result.provider not in self._providers:
            known = ", ".join(sorted(self._providers)) or "none"
            raise UnknownProviderError(
                f"no provider named {result.provider!r} is registered (registered: {known})",
                provider=result.provider,
                handle=result.handle,
            )
        if self._ledger is not None:
            await self._ledger.observe(result)
        else:
            await anyio.lowlevel.checkpoint()
        return self._remember(result)

    def _canonical(self, handle: Handle) -> str:
        key, _ = self._route(handle)
        return key

    async def send_once(
        self,
        key: str,
        send: _ledger_send.SendFunction,
        *,
        lease: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        reclaim_expired: bool = False,
        margin: float | None = None,
    ) -> _ledger_send.SendOutcome:
        """Send the message named ``key`` at most once across the fleet that shares the ledger.

        Claims the key's next attempt; when granted, runs ``send(idempotency_token)`` (it sends
        and returns the handle, or the provider's send response as a
        :class:`~msgstatus.StatusResult`) inside the lease, and records it. Returns a
        :class:`~msgstatus.SendOutcome`: ``sent``, the decision, the handle. A refusal (SKIP,
        WAIT, BLOCKED, UNKNOWN) sends nothing. When ``send`` raises, the attempt is marked
        ambiguous and the error re-raised, unless it proves nothing was sent
        (:class:`~msgstatus.SendNotAttempted`, a refused connection): then the claim is given
        back first. ``reclaim_expired=True`` declares the sends idempotent for the same token
        (Chime's ``ClientRequestToken``; Sendblue has none). Raises
        :class:`~msgstatus.InvalidKeyError`, :class:`~msgstatus.LedgerUnavailableError`,
        :class:`~msgstatus.ClaimLostError`, and ``RuntimeError`` without a ledger.
        """
        return await _ledger_send.send_once(
            self._need_ledger(),
            key,
            send,
            lease=lease,
            max_attempts=max_attempts,
            reclaim_expired=reclaim_expired,
            margin=margin,
            check=self._canonical,
        )

    async def reconcile(
        self, *, limit: int = 100
    ) -> list[tuple[str, StatusResult | MsgStatusError]]:
        """Look up the ledger's in-flight attempts (at most ``limit``, least recently checked
        first) and record what each lookup gave; ``(handle, result or error)`` pairs. Run it
        until it returns an empty list to settle every key in flight."""
        return await _ledger_send.reconcile(self._need_ledger(), self, limit=limit, observe=False)

    def clear_cache(self) -> None:
        """Forget every remembered final result."""
        self._cache.clear()

    # -- one handle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the StatusClient is closed")

    def _route(self, handle: Handle) -> tuple[str, MessageStatusProvider]:
        """The handle's string (its canonical form) and its provider."""
        self._check_open()
        if isinstance(handle, str):
            key = str.__str__(handle)  # a str subclass's own methods play no part
            name, _ = split_handle(key)
        elif (typed := _typed_name_and_text(handle)) is not None:
            name, key = typed
            prefix, _ = split_handle(key)
            if prefix != name:
                # The cache and the router must agree on whose message this is.
                raise InvalidHandleError(
                    f"a typed handle of provider {name!r} must print as '{name}:…', "
                    f"not with the prefix {prefix!r}",
                    provider=name,
                    handle=key,
                )
        else:
            raise InvalidHandleError(
                "a handle must be a '<provider>:<handle>' string or a provider's typed handle, "
                f"not {type(handle).__name__}"
            )
        provider = self._providers.get(name)
        if provider is None:
            known = ", ".join(sorted(self._providers)) or "none"
            raise UnknownProviderError(
                f"no provider named {name!r} is registered (registered: {known})",
                provider=name,
                handle=key,
            )
        return key, provider

    async def _fetch(
        self, provider: MessageStatusProvider, handle: Handle, key: str
    ) -> StatusResult:
        try:
            result = await provider.get_status(handle)
        except MsgStatusError:
            raise
        except RuntimeError as exc:
            if not self._closed:
                raise self._unexpected(provider, key, exc) from exc
            # The client (and so the provider) was closed while this lookup ran.
            raise ClientClosedError(
                "the StatusClient was closed before this lookup finished",
                provider=provider.name,
                handle=key,
            ) from exc
        except Exception as exc:
            raise self._unexpected(provider, key, exc) from exc
        if not isinstance(result, StatusResult) or result.provider != provider.name:
            # A result filed under another provider would be cached and merged as someone
            # else's message.
            shown = result.provider if isinstance(result, StatusResult) else type(result).__name__
            raise ProviderResponseError(
                f"provider {provider.name!r} answered a result of {shown!r}",
                provider=provider.name,
                handle=key,
            )
        return result

    @staticmethod
    def _unexpected(provider: MessageStatusProvider, key: str, exc: Exception) -> MsgStatusError:
        # A provider must raise only MsgStatusError; a buggy one must not break the caller's
        # error handling (or a whole batch), so translate here as well.
        logger.error(
            "provider %s raised %s for %r", provider.name, type(exc).__name__, key, exc_info=exc
        )
        return MsgStatusError(
            f"unexpected {type(exc).__name__} from provider", provider=provider.name, handle=key
        )

    def _remember(self, fresh: StatusResult) -> StatusResult:
        """Merge ``fresh`` into the cached final result of its message (the evidence rule) and
        cache the merge if it is final."""
        if not self._cache_final:
            return fresh
        key = (fresh.provider, fresh.handle)
        cached = self._cache.get(key)
        result = fresh if cached is None else cached.merge(fresh)
        if result.is_final:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    async def get_status(self, handle: Handle, *, refresh: bool = False) -> StatusResult:
        """The status of one message, from its provider or from the cache of final results.

        ``handle`` is ``"<provider>:<native>"`` or a provider's typed handle. ``refresh=True``
        asks the provider even for a cached final result; a fresh observation is merged with the
        cached one by the evidence rule, so that a status never moves backwards and a delivery is
        never unsaid by a later failure. The cache is keyed by (provider, canonical handle).

        Raises :class:`~msgstatus.InvalidHandleError` (malformed handle) and
        :class:`~msgstatus.UnknownProviderError` (no provider for the prefix) before any request,
        and whatever :class:`~msgstatus.MsgStatusError` the provider raises after its retries.
        """
        if isinstance(handle, str):
            handle = str.__str__(handle)  # a str subclass's own methods play no part
        try:
            key, provider = self._route(handle)
        except MsgStatusError:
            # Keep the trio rule that every async call is a checkpoint, so a batch of bad handles
            # cannot hog the event loop.
            await anyio.lowlevel.checkpoint()
            raise
        if self._cache_final and not refresh:
            cached = self._cache.get((provider.name, key))
            if cached is not None:
                self._cache.move_to_end((provider.name, key))
                await anyio.lowlevel.checkpoint()
                return cached
        fresh = await self._fetch(provider, handle, key)
        if self._ledger is not None:
            await self._write_through(fresh)
        return self._remember(fresh)

    async def wait_for_final(
        self,
        handle: Handle,
        *,
        # The deadline belongs to the whole wait, not to a caller's scope: the API promises it.
        timeout: float,  # noqa: ASYNC109
        poll_interval: float = 1.0,
        max_interval: float = 30.0,
    ) -> StatusResult:
        """Poll until the message's status is final (``is_final``) and return that result.

        The first lookup is immediate; then the wait between polls starts at ``poll_interval``
        and grows by half each time up to ``max_interval`` (longer if the provider asked for it
        with ``Retry-After``). At ``timeout`` seconds the lookup in flight is cancelled and
        :class:`~msgstatus.StatusWaitTimeout` (also a ``TimeoutError``) is raised, carrying the
        last status seen as ``last_result`` (None if no lookup succeeded). Transient errors
        (``retryable``: rate limits, provider unavailable) are retried until then; every other
        :class:`~msgstatus.MsgStatusError` (bad handle, not found, authentication, permission, a
        malformed response) is raised at once. ``ValueError`` for a timeout or interval that is
        not a positive number.
        """
        for name, value in (
            ("timeout", timeout),
            ("poll_interval", poll_interval),
            ("max_interval", max_interval),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0")
        key, provider = self._route(handle)
        interval = min(poll_interval, max_interval)
        last_result: StatusResult | None = None
        last_error: MsgStatusError | None = None
        polls = 0
        with anyio.move_on_after(timeout):
            while True:
                wait = interval
                polls += 1
                try:
                    result = await self.get_status(handle)
                except MsgStatusError as exc:
                    if not exc.retryable:
                        raise
                    last_error = exc
                    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                        wait = max(wait, exc.retry_after)
                    logger.debug("waiting for %r: poll %d failed: %s", key, polls, exc)
                else:
                    last_error = None
                    last_result = _merged(last_result, result)
                    if last_result.is_final:
                        return last_result
                    logger.debug("waiting for %r: poll %d: %s", key, polls, last_result.status)
                await anyio.sleep(wait)
                interval = min(interval * _BACKOFF_FACTOR, max_interval)
        seen = f"last status {last_result.status}" if last_result else "no lookup succeeded"
        raise StatusWaitTimeout(
            f"no final status within {timeout:g} s ({polls} polls; {seen})",
            provider=provider.name,
            handle=key,
            last_result=last_result,
        ) from last_error

    async def resend_decision(self, handle: Handle, *, refresh: bool = False) -> ResendDecision:
        """Look the message up and say whether it may be sent again (see :class:`ResendAction`).

        Every fault of the lookup (no such message, authentication, the provider down after
        retries, a malformed response) gives ``UNKNOWN`` with ``result=None`` and a reason naming
        the error. A bad handle is the caller's bug, found before any request, and is raised:
        :class:`~msgstatus.InvalidHandleError`, :class:`~msgstatus.UnknownProviderError`.
        """
        try:
            result = await self.get_status(handle, refresh=refresh)
        except (HandleError, ClientClosedError):
            raise
        except MsgStatusError as exc:
            return ResendDecision.from_error(exc)
        return ResendDecision.from_result(result)

    # -- many handles -------------------------------------------------------------------------

    async def _outcome(self, handle: Handle, refresh: bool) -> Outcome:
        try:
            return await self.get_status(handle, refresh=refresh)
        except MsgStatusError as exc:
            return exc

    async def _decision(self, handle: Handle, refresh: bool) -> ResendDecision:
        return ResendDecision.from_outcome(await self._outcome(handle, refresh))

    async def _gather(
        self,
        handles: Iterable[H] | AsyncIterable[H],
        concurrency: int,
        lookup: Callable[[H], Awaitable[_T]],
    ) -> list[_T]:
        # Checked here too: inside the workers it would come out wrapped in an ExceptionGroup.
        self._check_open()
        _check_concurrency(concurrency)
        source = _HandleSource(handles)
        size = len(handles) if isinstance(handles, Sized) else None
        # None marks a slot whose lookup is still in flight; every slot is filled at the end.
        slots: list[_T | None] = [None] * size if size is not None else []

        async def worker() -> None:
            while not self._closed and (item := await source.next()) is not None:
                index, handle = item
                if index >= len(slots):
                    slots.extend([None] * (index + 1 - len(slots)))
                slots[index] = await lookup(handle)

        workers = concurrency if size is None else min(concurrency, size)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker)
        finally:
            source.stop()
        if self._closed and (not source.done or any(slot is None for slot in slots[: source.read])):
            source.stop()
            cut = ClientClosedError("the StatusClient was closed during the batch")
            results = [cut if slot is None else slot for slot in slots[: source.read]]
            raise ClientClosedError(
                f"the StatusClient was closed during the batch: {source.read} handles read, "
                f"{sum(slot is not None for slot in slots[: source.read])} lookups finished",
                results=results,
            )
        source.raise_error()
        return cast("list[_T]", slots)

    async def get_statuses(
        self,
        handles: Iterable[H] | AsyncIterable[H],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> list[StatusResult | MsgStatusError]:
        """Look up many messages, at most ``concurrency`` at once; one slot per handle, in order.

        Each slot holds the :class:`~msgstatus.StatusResult` or the
        :class:`~msgstatus.MsgStatusError` that handle's lookup ended with (a bad handle included):
        one handle's failure never fails the batch. ``handles`` may be any iterable or async
        iterable; it is consumed as the workers go, so memory holds the results and no more. For
        inputs too large to hold the results of, use :meth:`iter_statuses`.

        Raises ``ValueError`` if ``concurrency < 1``, ``TypeError`` for a single string, and
        whatever the ``handles`` iterable itself raises.
        """
        return await self._gather(handles, concurrency, partial(self._outcome, refresh=refresh))

    async def resend_decisions(
        self,
        handles: Iterable[H] | AsyncIterable[H],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> list[ResendDecision]:
        """:meth:`resend_decision` for many messages: one decision per handle, in input order.

        Unlike the single variant, a bad handle does not raise: its slot is ``UNKNOWN`` with
        ``result=None`` and a reason naming the error, like any failed lookup. Raises as
        :meth:`get_statuses` does for a bad ``concurrency`` or a failing ``handles`` iterable.
        """
        return await self._gather(handles, concurrency, partial(self._decision, refresh=refresh))

    def iter_statuses(
        self,
        handles: Iterable[H] | AsyncIterable[H],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> StatusStream[H]:
        """Stream ``(handle, result_or_error)`` pairs as lookups complete, for any input size.

        Use it as ``async with client.iter_statuses(handles) as results: async for handle,
        outcome in results: ...``. At most ``concurrency`` lookups are in flight and at most
        about as many finished pairs wait for the consumer, so memory stays flat however long
        the input is. Leaving the ``async with`` block early (``break``, an exception) cancels the
        lookups in flight. Raises ``ValueError`` if ``concurrency < 1`` and ``TypeError`` for a
        single string; an error raised by the ``handles`` iterable itself comes out of the
        ``async for`` once the lookups already in flight have been yielded.
        """
        self._check_open()
        return StatusStream(self, handles, concurrency=concurrency, refresh=refresh)


class StatusStream(Generic[H]):
    """The results of :meth:`StatusClient.iter_statuses`: an async context manager whose value is
    an async iterator of ``(handle, result_or_error)`` pairs, in completion order.

    The ``async with`` block owns the worker tasks: an async generator cannot own a task group
    safely, because it may be suspended (or abandoned) outside the task that started it. Entering
    it twice, or iterating it without entering it, raises ``RuntimeError``.
    """

    def __init__(
        self,
        client: StatusClient,
        handles: Iterable[H] | AsyncIterable[H],
        *,
        concurrency: int,
        refresh: bool,
    ) -> None:
        self._client = client
        self._source = _HandleSource(handles)
        self._workers = _check_concurrency(concurrency)
        if isinstance(handles, Sized):
            self._workers = max(1, min(self._workers, len(handles)))
        self._buffer_size = concurrency
        self._refresh = refresh
        self._entered = False
        self._cut = False
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[tuple[H, Outcome]] | None = None

    async def __aenter__(self) -> StatusStream[H]:
        if self._entered:
            raise RuntimeError("a StatusStream can be entered only once")
        self._entered = True
        # A small buffer lets workers run ahead of a slow consumer, but only this far.
        send, receive = anyio.create_memory_object_stream[tuple[H, Outcome]](self._buffer_size)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group, self._receive = task_group, receive
        with send:
            for _ in range(self._workers):
                task_group.start_soon(self._worker, send.clone())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task_group, receive = self._task_group, self._receive
        assert task_group is not None
        assert receive is not None
        task_group.cancel_scope.cancel()
        self._source.stop()
        try:
            if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                # Cancellation must go through the task group: its cancel scope needs it to
                # unwind correctly.
                return await task_group.__aexit__(exc_type, exc, tb)
            # Anything else is the caller's own (an error in the loop body, GeneratorExit from a
            # closed sync wrapper): hand it on as it is, not wrapped in an ExceptionGroup.
            await task_group.__aexit__(None, None, None)
            return False
        finally:
            receive.close()

    def __aiter__(self) -> StatusStream[H]:
        return self

    async def __anext__(self) -> tuple[H, Outcome]:
        if self._receive is None:
            raise RuntimeError(
                "enter the stream first: async with client.iter_statuses(handles) as results: ..."
            )
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._client._closed and (self._cut or not self._source.done):
                self._source.stop()
                raise ClientClosedError(
                    "the StatusClient was closed during the stream; the pairs yielded so far "
                    "are all it finished"
                ) from None
            self._source.raise_error()
            raise StopAsyncIteration from None

    async def _worker(self, send: MemoryObjectSendStream[tuple[H, Outcome]]) -> None:
        with send:
            while not self._client._closed and (item := await self._source.next()) is not None:
                _, handle = item
                outcome = await self._client._outcome(handle, self._refresh)
                if isinstance(outcome, ClientClosedError):
                    self._cut = True
                try:
                    await send.send((handle, outcome))
                except anyio.BrokenResourceError:
                    return
