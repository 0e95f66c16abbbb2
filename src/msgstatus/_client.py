"""The client: routes handles to providers, batches, waits, caches and answers "may I resend?"."""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from concurrent.futures import Future
from functools import partial
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, cast

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict

from msgstatus._provider import MessageStatusProvider, TypedHandle, split_handle
from msgstatus._status import MessageStatus, StatusResult
from msgstatus.errors import (
    InvalidHandleError,
    MsgStatusError,
    RateLimitedError,
    StatusWaitTimeout,
    UnknownProviderError,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CONCURRENCY",
    "Handle",
    "Outcome",
    "ResendAction",
    "ResendDecision",
    "StatusClient",
    "StatusStream",
    "SyncStatusClient",
]

logger = logging.getLogger("msgstatus.client")

#: A handle string ``"<provider>:<native>"`` or a provider's typed handle.
Handle: TypeAlias = str | TypedHandle
#: What a batch gives for one handle: its result, or the error its lookup ended with.
Outcome: TypeAlias = StatusResult | MsgStatusError

#: Final results remembered by default (least recently used first out).
DEFAULT_CACHE_SIZE = 10_000
#: Lookups in flight at once in a batch, by default.
DEFAULT_CONCURRENCY = 32

# Each poll of wait_for_final waits this much longer than the previous one.
_BACKOFF_FACTOR = 1.5

_T = TypeVar("_T")
_C = TypeVar("_C", bound="StatusClient")


class ResendAction(str, enum.Enum):
    """The answer to "may I send this message again?"; see :class:`ResendDecision`.

    ``SKIP``: it went out, a resend would be a duplicate. ``WAIT``: still in flight, ask again
    later. ``RESEND``: delivery failed, a resend cannot duplicate it. ``BLOCKED``: a rule refused
    it, a resend as is will be refused again. ``UNKNOWN``: no safe answer (unknown status, no such
    message, or the lookup failed); the caller's policy decides.
    """

    SKIP = "SKIP"
    WAIT = "WAIT"
    RESEND = "RESEND"
    BLOCKED = "BLOCKED"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


class ResendDecision(BaseModel):
    """Whether a message may be sent again, why, and the lookup the decision rests on.

    ``action`` is a :class:`ResendAction`, ``reason`` one human sentence, and ``result`` the
    :class:`~msgstatus.StatusResult` (None when the lookup failed). A frozen value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: ResendAction
    reason: str
    result: StatusResult | None = None

    @classmethod
    def from_result(cls, result: StatusResult) -> ResendDecision:
        """The decision for one observed status, per the table in providers.md.

        Finality comes from the provider (``result.is_final``): it only matters for ``SENT``, which
        is a final success on some providers and still in flight on others.
        """
        status = result.status
        raw = f" (provider status {result.provider_status!r})" if result.provider_status else ""
        if status is MessageStatus.FAILED:
            action = ResendAction.RESEND
            reason = f"delivery failed{raw}: a resend cannot duplicate it"
        elif status is MessageStatus.DENIED:
            action = ResendAction.BLOCKED
            reason = f"a rule refused the message{raw}: resending it as is will be refused again"
        elif status in (MessageStatus.DELIVERED, MessageStatus.READ):
            action = ResendAction.SKIP
            reason = f"the message was {status.value.lower()}: a resend would send a duplicate"
        elif status is MessageStatus.SENT and result.is_final:
            action = ResendAction.SKIP
            reason = (
                f"the message was sent and {result.provider} reports nothing after that: "
                "a resend would send a duplicate"
            )
        elif status is MessageStatus.SENT:
            action = ResendAction.WAIT
            reason = (
                "the message was sent but may still be delivered or fail: "
                "a resend now may duplicate it; ask again later"
            )
        elif status is MessageStatus.PENDING:
            action = ResendAction.WAIT
            reason = "the message is not sent yet: a resend now may duplicate it; ask again later"
        else:
            action = ResendAction.UNKNOWN
            reason = (
                f"{result.provider} reported a status this version does not know{raw}: "
                "there is no safe answer"
                if result.provider_status
                else f"{result.provider} reported no status: there is no safe answer"
            )
        return cls(action=action, reason=reason, result=result)

    @classmethod
    def from_error(cls, error: MsgStatusError) -> ResendDecision:
        """``UNKNOWN`` with ``result=None``, for a lookup that ended with ``error``."""
        return cls(
            action=ResendAction.UNKNOWN,
            reason=f"no safe answer: the lookup failed with {type(error).__name__}: {error}",
            result=None,
        )

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> ResendDecision:
        """The decision for one slot of a batch: a result or the error its lookup ended with."""
        if isinstance(outcome, StatusResult):
            return cls.from_result(outcome)
        return cls.from_error(outcome)


def _check_concurrency(concurrency: int) -> int:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return concurrency


def _check_handles(handles: object) -> None:
    # A lone string is iterable too: its characters would each become a bad handle.
    if isinstance(handles, (str, bytes)):
        raise TypeError("handles must be an iterable of handles, not a single string")


def _merge(older: StatusResult, newer: StatusResult) -> StatusResult:
    if (older.provider, older.handle) != (newer.provider, newer.handle):
        return newer
    return older.merge(newer)


class _HandleSource:
    """The input of a batch, shared by its workers: hands out ``(index, handle)`` in input order.

    An error raised by the caller's iterable ends the input and is kept in ``error`` for the batch
    to raise once the lookups already in flight are done.
    """

    def __init__(self, handles: Iterable[Handle] | AsyncIterable[Handle]) -> None:
        _check_handles(handles)
        self._sync: Iterator[Handle] | None = None
        self._async: AsyncIterator[Handle] | None = None
        if isinstance(handles, AsyncIterable):
            self._async = aiter(handles)
        else:
            self._sync = iter(handles)
        # An async iterator must not be advanced by two workers at once.
        self._lock = anyio.Lock()
        self._index = 0
        self._done = False
        self.error: Exception | None = None

    async def next(self) -> tuple[int, Handle] | None:
        if self._done:
            return None
        try:
            if self._sync is not None:
                handle = next(self._sync)
            else:
                assert self._async is not None
                async with self._lock:
                    if self._done:
                        return None
                    handle = await anext(self._async)
        except (StopIteration, StopAsyncIteration):
            self._done = True
            return None
        except Exception as exc:
            self._done = True
            self.error = exc
            return None
        index = self._index
        self._index += 1
        return index, handle

    def raise_error(self) -> None:
        error, self.error = self.error, None
        if error is not None:
            raise error


class StatusClient:
    """Looks up message statuses across providers, routing each handle by its provider.

    ``providers`` are :class:`~msgstatus.MessageStatusProvider` objects with distinct names; the
    client owns them and closes them on :meth:`aclose` (use it as ``async with``). With
    ``cache_final`` (the default) final results are remembered per handle, at most ``cache_size``
    of them, least recently used out first, and served without a request; pending results are
    always asked again. Works on asyncio and trio.

    Raises ``ValueError`` for two providers with the same name or a negative ``cache_size``, and
    ``TypeError`` for an object that is not a provider.
    """

    def __init__(
        self,
        providers: Iterable[MessageStatusProvider],
        *,
        cache_final: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
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
        self._cache: OrderedDict[str, StatusResult] = OrderedDict()
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
        if first_error is not None:
            raise first_error

    def clear_cache(self) -> None:
        """Forget every remembered final result."""
        self._cache.clear()

    # -- one handle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the StatusClient is closed")

    def _route(self, handle: Handle) -> tuple[str, MessageStatusProvider]:
        """The cache key (canonical handle string) and the provider of ``handle``."""
        self._check_open()
        if isinstance(handle, str):
            name, _ = split_handle(handle)
            key = handle
        elif isinstance(handle, TypedHandle) and isinstance(handle.provider, str):
            name = handle.provider
            key = str(handle)
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
            return await provider.get_status(handle)
        except MsgStatusError:
            raise
        except Exception as exc:
            # A provider must raise only MsgStatusError; a buggy one must not break the caller's
            # error handling (or a whole batch), so translate here as well.
            logger.error(
                "provider %s raised %s for %r", provider.name, type(exc).__name__, key, exc_info=exc
            )
            raise MsgStatusError(
                f"unexpected {type(exc).__name__} from provider", provider=provider.name, handle=key
            ) from exc

    def _remember(self, key: str, fresh: StatusResult) -> StatusResult:
        cached = self._cache.get(key) if self._cache_final else None
        result = fresh if cached is None else _merge(cached, fresh)
        if self._cache_final and result.is_final:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    async def get_status(self, handle: Handle, *, refresh: bool = False) -> StatusResult:
        """The status of one message, from its provider or from the cache of final results.

        ``handle`` is ``"<provider>:<native>"`` or a provider's typed handle. ``refresh=True``
        asks the provider even for a cached final result; a fresh observation is merged with the
        cached one so that a status never moves backwards.

        Raises :class:`~msgstatus.InvalidHandleError` (malformed handle) and
        :class:`~msgstatus.UnknownProviderError` (no provider for the prefix) before any request,
        and whatever :class:`~msgstatus.MsgStatusError` the provider raises after its retries.
        """
        try:
            key, provider = self._route(handle)
        except MsgStatusError:
            # Keep the trio rule that every async call is a checkpoint, so a batch of bad handles
            # cannot hog the event loop.
            await anyio.lowlevel.checkpoint()
            raise
        if self._cache_final and not refresh:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                await anyio.lowlevel.checkpoint()
                return cached
        fresh = await self._fetch(provider, handle, key)
        return self._remember(key, fresh)

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
                    last_result = result if last_result is None else _merge(last_result, result)
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
        except (InvalidHandleError, UnknownProviderError):
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
        handles: Iterable[Handle] | AsyncIterable[Handle],
        concurrency: int,
        lookup: Callable[[Handle], Awaitable[_T]],
    ) -> list[_T]:
        # Checked here too: inside the workers it would come out wrapped in an ExceptionGroup.
        self._check_open()
        _check_concurrency(concurrency)
        source = _HandleSource(handles)
        size = len(handles) if isinstance(handles, Sized) else None
        # None marks a slot whose lookup is still in flight; every slot is filled at the end.
        slots: list[_T | None] = [None] * size if size is not None else []

        async def worker() -> None:
            while (item := await source.next()) is not None:
                index, handle = item
                if index >= len(slots):
                    slots.extend([None] * (index + 1 - len(slots)))
                slots[index] = await lookup(handle)

        workers = concurrency if size is None else min(concurrency, size)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        source.raise_error()
        return cast("list[_T]", slots)

    async def get_statuses(
        self,
        handles: Iterable[Handle] | AsyncIterable[Handle],
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
        handles: Iterable[Handle] | AsyncIterable[Handle],
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
        handles: Iterable[Handle] | AsyncIterable[Handle],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> StatusStream:
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


class StatusStream:
    """The results of :meth:`StatusClient.iter_statuses`: an async context manager whose value is
    an async iterator of ``(handle, result_or_error)`` pairs, in completion order.

    The ``async with`` block owns the worker tasks: an async generator cannot own a task group
    safely, because it may be suspended (or abandoned) outside the task that started it. Entering
    it twice, or iterating it without entering it, raises ``RuntimeError``.
    """

    def __init__(
        self,
        client: StatusClient,
        handles: Iterable[Handle] | AsyncIterable[Handle],
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
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[tuple[Handle, Outcome]] | None = None

    async def __aenter__(self) -> StatusStream:
        if self._entered:
            raise RuntimeError("a StatusStream can be entered only once")
        self._entered = True
        # A small buffer lets workers run ahead of a slow consumer, but only this far.
        send, receive = anyio.create_memory_object_stream[tuple[Handle, Outcome]](self._buffer_size)
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

    def __aiter__(self) -> StatusStream:
        return self

    async def __anext__(self) -> tuple[Handle, Outcome]:
        if self._receive is None:
            raise RuntimeError(
                "enter the stream first: async with client.iter_statuses(handles) as results: ..."
            )
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._source.raise_error()
            raise StopAsyncIteration from None

    async def _worker(self, send: MemoryObjectSendStream[tuple[Handle, Outcome]]) -> None:
        with send:
            while (item := await self._source.next()) is not None:
                _, handle = item
                outcome = await self._client._outcome(handle, self._refresh)
                try:
                    await send.send((handle, outcome))
                except anyio.BrokenResourceError:
                    return


class SyncStatusClient:
    """:class:`StatusClient` for plain synchronous code (scripts, Django views): the same
    methods, blocking.

    The async client runs in an event loop on a background thread (an anyio blocking portal,
    ``backend`` ``"asyncio"`` or ``"trio"``), started on ``with`` or on first use and stopped by
    :meth:`close`, which also closes the providers. Safe to call from several threads at once. Do
    not call it from inside an event loop: use :class:`StatusClient` there. Raises as
    :class:`StatusClient` does; ``RuntimeError`` once closed.
    """

    def __init__(
        self,
        providers: Iterable[MessageStatusProvider],
        *,
        backend: str = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        cache_final: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._client = StatusClient(providers, cache_final=cache_final, cache_size=cache_size)
        self._backend = backend
        self._backend_options = dict(backend_options) if backend_options is not None else None
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._stop_loop: weakref.finalize[[bool], SyncStatusClient] | None = None
        self._closed = False

    def __enter__(self) -> SyncStatusClient:
        self._get_portal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _get_portal(self) -> BlockingPortal:
        with self._lock:
            if self._closed:
                raise RuntimeError("the SyncStatusClient is closed")
            if self._loop is None:
                self._loop = _LoopThread(self._backend, self._backend_options)
                # A client dropped without close() must not leave its thread behind; at
                # interpreter exit the daemon thread simply ends with the process.
                self._stop_loop = weakref.finalize(self, self._loop.stop, True)
                self._stop_loop.atexit = False
            return self._loop.portal

    def close(self) -> None:
        """Close the providers and stop the background event loop. Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, stop_loop = self._loop, self._stop_loop
        if loop is None or stop_loop is None:
            # Never used: no loop runs yet, but the providers may hold clients the caller gave.
            anyio.run(self._client.aclose, backend=self._backend)
            return
        try:
            loop.portal.call(self._client.aclose)
        finally:
            stop_loop.detach()
            loop.stop(False)

    def clear_cache(self) -> None:
        """Forget every remembered final result."""
        self._get_portal().call(self._client.clear_cache)

    def get_status(self, handle: Handle, *, refresh: bool = False) -> StatusResult:
        """Blocking :meth:`StatusClient.get_status`."""
        return self._get_portal().call(partial(self._client.get_status, handle, refresh=refresh))

    def get_statuses(
        self,
        handles: Iterable[Handle],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> list[StatusResult | MsgStatusError]:
        """Blocking :meth:`StatusClient.get_statuses`: a list with one slot per handle, in order."""
        _check_handles(handles)
        return self._get_portal().call(
            partial(self._client.get_statuses, handles, concurrency=concurrency, refresh=refresh)
        )

    def iter_statuses(
        self,
        handles: Iterable[Handle],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> Generator[tuple[Handle, Outcome], None, None]:
        """Blocking :meth:`StatusClient.iter_statuses`: a generator of ``(handle, outcome)`` pairs
        in completion order, with the same bounded memory.

        Leaving the loop early and closing the generator (``break`` does, once it is garbage
        collected; ``contextlib.closing`` does at once) cancels the lookups in flight.
        """
        stream = self._client.iter_statuses(handles, concurrency=concurrency, refresh=refresh)
        return self._iterate(stream)

    def _iterate(self, stream: StatusStream) -> Generator[tuple[Handle, Outcome], None, None]:
        portal = self._get_portal()
        with portal.wrap_async_context_manager(stream):
            while (item := portal.call(_next_or_none, stream)) is not None:
                yield item

    def wait_for_final(
        self,
        handle: Handle,
        *,
        timeout: float,
        poll_interval: float = 1.0,
        max_interval: float = 30.0,
    ) -> StatusResult:
        """Blocking :meth:`StatusClient.wait_for_final`."""
        return self._get_portal().call(
            partial(
                self._client.wait_for_final,
                handle,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    def resend_decision(self, handle: Handle, *, refresh: bool = False) -> ResendDecision:
        """Blocking :meth:`StatusClient.resend_decision`."""
        return self._get_portal().call(
            partial(self._client.resend_decision, handle, refresh=refresh)
        )

    def resend_decisions(
        self,
        handles: Iterable[Handle],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> list[ResendDecision]:
        """Blocking :meth:`StatusClient.resend_decisions`."""
        _check_handles(handles)
        return self._get_portal().call(
            partial(
                self._client.resend_decisions, handles, concurrency=concurrency, refresh=refresh
            )
        )


class _LoopThread:
    """An event loop on a daemon thread, reached through a blocking portal.

    Like ``anyio.from_thread.start_blocking_portal`` but not a generator: an unclosed generator
    finalized at interpreter exit would call into the (by then frozen) daemon thread and hang.
    """

    def __init__(self, backend: str, backend_options: dict[str, Any] | None) -> None:
        ready: Future[BlockingPortal] = Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend=backend, backend_options=backend_options)
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                else:
                    logger.exception("the SyncStatusClient event loop failed")

        self.thread = threading.Thread(target=run, name="msgstatus-sync-client", daemon=True)
        self.thread.start()
        self.portal = ready.result()

    def stop(self, cancel_remaining: bool) -> None:
        if threading.current_thread() is self.thread:
            # Dropped by code running on the loop itself: it cannot wait for its own end.
            return
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, cancel_remaining)
        self.thread.join()


async def _next_or_none(stream: StatusStream) -> tuple[Handle, Outcome] | None:
    # StopAsyncIteration must not cross the portal: a coroutine cannot raise it cleanly.
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None
