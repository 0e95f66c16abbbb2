"""SyncStatusClient: the client's methods, blocking, for plain synchronous code, and the event
loop thread it runs them on."""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import Future
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import sniffio
from anyio.from_thread import BlockingPortal

from msgstatus._client import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_CONCURRENCY,
    Handle,
    Outcome,
    StatusClient,
    StatusStream,
    _check_handles,
)
from msgstatus._decision import ResendDecision
from msgstatus._ledger import DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, Ledger, SendOutcome
from msgstatus._providers.base import MessageStatusProvider, TypedHandle
from msgstatus._status import StatusResult
from msgstatus.errors import ClientClosedError, MsgStatusError

__all__ = ["SyncStatusClient"]

logger = logging.getLogger("msgstatus.client")

H = TypeVar("H", bound=Handle)


def _refuse_inside_event_loop() -> None:
    # A blocking call inside a running event loop would freeze every task of that loop until
    # the lookup ends (or deadlock it, if it is the client's own loop).
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    raise RuntimeError(
        f"SyncStatusClient blocks; it cannot be called from inside a running {library} event "
        "loop: use StatusClient (await client.get_status(...)) there"
    )


class SyncStatusClient:
    """:class:`StatusClient` for plain synchronous code (scripts, Django views): the same
    methods, blocking.

    The async client runs in an event loop on a background thread (an anyio blocking portal,
    ``backend`` ``"asyncio"`` or ``"trio"``), started on ``with`` or on first use and stopped by
    :meth:`close`, which also closes the providers. Safe to call from several threads at once. Do
    not call it from inside an event loop: use :class:`StatusClient` there. Raises as
    :class:`StatusClient` does; ``RuntimeError`` once closed; ``ValueError`` for another
    ``backend``.
    """

    def __init__(
        self,
        providers: Iterable[MessageStatusProvider],
        *,
        backend: str = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        cache_final: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ledger: Ledger | None = None,
    ) -> None:
        if backend not in ("asyncio", "trio"):
            # Refused now: the loop would fail only at first use, and close() with it.
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self._client = StatusClient(
            providers, cache_final=cache_final, cache_size=cache_size, ledger=ledger
        )
        self._backend = backend
        self._backend_options = dict(backend_options) if backend_options is not None else None
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._stop_loop: weakref.finalize[[bool], SyncStatusClient] | None = None
        # Generators iter_statuses handed out and not finished: close() ends them first, since
        # each holds a task in the loop (an abandoned one would keep the loop from stopping).
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()
        # The stream blocks those generators hold open in the loop: close() leaves the ones
        # whose generator it could not close (another thread was inside it), or their tasks
        # would keep the loop from stopping. Added and read under _lock, with _closed.
        self._held: weakref.WeakSet[_HeldStream] = weakref.WeakSet()
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
        _refuse_inside_event_loop()
        with self._lock:
            if self._closed:
                raise ClientClosedError("the SyncStatusClient is closed")
            if self._loop is None:
                self._loop = _LoopThread(self._backend, self._backend_options)
                # A client dropped without close() must not leave its thread behind; at
                # interpreter exit the daemon thread simply ends with the process.
                self._stop_loop = weakref.finalize(self, self._loop.stop, True)
                self._stop_loop.atexit = False
            return self._loop.portal

    def close(self) -> None:
        """Close the providers and stop the background event loop. Calling it again does nothing.

        Generators from :meth:`iter_statuses` still open are closed first (their lookups in
        flight are cancelled). Called from inside a running event loop it raises
        ``RuntimeError`` and changes nothing: the client stays usable and open.
        """
        _refuse_inside_event_loop()
        with self._lock:
            if self._closed:
                return
            streams = list(self._streams)
        for stream in streams:
            # Another thread may be inside it right now ("generator already executing"): its
            # own next step then finds the client closed.
            with contextlib.suppress(ValueError):
                stream.close()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, stop_loop = self._loop, self._stop_loop
            held_streams = list(self._held)
        if loop is None or stop_loop is None:
            # Never used: no loop runs yet, but the providers may hold clients the caller gave.
            anyio.run(self._client.aclose, backend=self._backend)
            return
        try:
            loop.portal.call(self._client.aclose)
        finally:
            # After aclose(): a stream left now tells its consumer the client closed (a
            # ClientClosedError), not that its handles ran out.
            for held in held_streams:
                with contextlib.suppress(Exception):
                    held.leave()
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
        handles: Iterable[H],
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
        handles: Iterable[H],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
    ) -> Generator[tuple[H, Outcome], None, None]:
        """Blocking :meth:`StatusClient.iter_statuses`: a generator of ``(handle, outcome)`` pairs
        in completion order, with the same bounded memory.

        Leaving the loop early and closing the generator (``break`` does, once it is garbage
        collected; ``contextlib.closing`` does at once) cancels the lookups in flight.
        """
        stream = self._client.iter_statuses(handles, concurrency=concurrency, refresh=refresh)
        generator = self._iterate(stream)
        self._streams.add(generator)
        return generator

    def _iterate(self, stream: StatusStream[H]) -> Generator[tuple[H, Outcome], None, None]:
        portal = self._get_portal()
        held = _HeldStream(portal, stream)
        with self._lock:
            closing = self._closed
            if not closing:
                self._held.add(held)
        try:
            if closing:
                # close() ran while this stream was being entered: it cannot see it.
                raise ClientClosedError("the SyncStatusClient is closed")
            while (item := self._next(portal, stream)) is not None:
                yield item
        finally:
            held.leave()

    def _next(self, portal: BlockingPortal, stream: StatusStream[H]) -> tuple[H, Outcome] | None:
        try:
            return portal.call(_next_or_none, stream)
        except ClientClosedError:
            raise
        except RuntimeError:
            if self._closed:
                # close() stopped the loop while this stream was between two steps.
                raise ClientClosedError(
                    "the SyncStatusClient was closed during the stream; the pairs yielded so far "
                    "are all it finished"
                ) from None
            raise

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
        handles: Iterable[H],
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

    def observe(self, result: StatusResult) -> StatusResult:
        """Blocking :meth:`StatusClient.observe`: feed a pushed result into the cache and the
        ledger."""
        return self._get_portal().call(self._client.observe, result)

    # -- the send ledger ------------------------------------------------------------------------

    def send_once(
        self,
        key: str,
        send: Callable[[str], str | TypedHandle | StatusResult],
        *,
        lease: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        reclaim_expired: bool = False,
        margin: float | None = None,
    ) -> SendOutcome:
        """Blocking :meth:`StatusClient.send_once`; ``send(idempotency_token)`` is a plain
        (blocking) function, run in a worker thread. A send still running at the lease's
        deadline is waited for and then counts as ambiguous."""

        async def run_send(token: str) -> str | TypedHandle | StatusResult:
            return await anyio.to_thread.run_sync(send, token)

        return self._get_portal().call(
            partial(
                self._client.send_once,
                key,
                run_send,
                lease=lease,
                max_attempts=max_attempts,
                reclaim_expired=reclaim_expired,
                margin=margin,
            )
        )

    def reconcile(self, *, limit: int = 100) -> list[tuple[str, StatusResult | MsgStatusError]]:
        """Blocking :meth:`StatusClient.reconcile`."""
        return self._get_portal().call(partial(self._client.reconcile, limit=limit))


class _HeldStream:
    """``async with stream`` held open by a task of the loop for a generator on another thread
    (what ``BlockingPortal.wrap_async_context_manager`` does). :meth:`leave` ends it from any
    thread by cancelling the task's future, which reaches the loop even after the portal has
    stopped taking calls, so close() can end a stream whose own thread is busy inside it."""

    def __init__(self, portal: BlockingPortal, stream: StatusStream[Any]) -> None:
        self._stream = stream
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self._loop_thread = 0
        self._task, _ = portal.start_task(self._hold)

    async def _hold(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._loop_thread = threading.get_ident()
        try:
            async with self._stream:
                task_status.started()
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._ended.set()

    def leave(self) -> None:
        """Leave the block (its lookups in flight are cancelled) and wait for that; raises
        what the stream's exit raised. Calling it again does nothing."""
        self._task.cancel()
        if threading.get_ident() == self._loop_thread:
            # The generator was dropped by code on the loop itself: the task ends after it.
            return
        # The task always ends: a loop cannot stop before its tasks do.
        self._ended.wait()
        error, self._error = self._error, None
        if error is not None:
            raise error


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


async def _next_or_none(stream: StatusStream[H]) -> tuple[H, Outcome] | None:
    # StopAsyncIteration must not cross the portal: a coroutine cannot raise it cleanly.
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None
