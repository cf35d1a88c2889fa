"""`Client`: a blocking facade over `AsyncClient`, for scripts and notebooks.

It runs an event loop in a thread of its own (anyio's blocking portal) and
calls `AsyncClient` there. The `AsyncClient` is created, used and closed in
that loop, so its connection pool and limiter never cross loops. Streaming
methods pull one page through the portal at a time, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Self, TypeVar

import anyio.from_thread
import httpx
import sniffio

from oxystats._client import AsyncClient, ClientStats
from oxystats._events import EventHook
from oxystats._limiter import Account
from oxystats._limits import Limit
from oxystats._models import FetchedPage, Instance, UsageReport, UsageRow
from oxystats._options import DEFAULT_MAX_WINDOWS
from oxystats._types import DateLike, Grouping, InstanceIds, ProductLike, Products

__all__ = ["Client"]

T = TypeVar("T")


async def _next(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None


class Client:
    """The blocking twin of `AsyncClient`: the same arguments, methods and results.

    It runs [`AsyncClient`][oxystats.AsyncClient] in an event loop of its own,
    in a background thread.

    Use it as a context manager, or call `close` when done:

    ```python
    with oxystats.Client() as client:  # reads OXYLABS_API_KEY
        report = client.usage("HB", date(2025, 1, 1), date(2025, 12, 31), ["DAY"])
    ```

    Do not call it from inside a running event loop's thread: there, use
    [`AsyncClient`][oxystats.AsyncClient].

    Args:
        api_key: As for [`AsyncClient`][oxystats.AsyncClient].
        base_url: As for [`AsyncClient`][oxystats.AsyncClient].
        timeout: As for [`AsyncClient`][oxystats.AsyncClient].
        max_retries: As for [`AsyncClient`][oxystats.AsyncClient].
        deadline: As for [`AsyncClient`][oxystats.AsyncClient].
        http_client: As for [`AsyncClient`][oxystats.AsyncClient]; it must not be
            used by another event loop.
        key_limit: As for [`AsyncClient`][oxystats.AsyncClient].
        account: As for [`AsyncClient`][oxystats.AsyncClient].
        event_hooks: As for [`AsyncClient`][oxystats.AsyncClient]; they are
            called in the client's own event loop thread.
        allow_insecure_http: As for [`AsyncClient`][oxystats.AsyncClient].
        max_windows: As for [`AsyncClient`][oxystats.AsyncClient].
        backend: The event loop run in the background thread: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 6,
        deadline: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        key_limit: Limit | None = None,
        account: Account | None = None,
        event_hooks: Sequence[EventHook] = (),
        allow_insecure_http: bool = False,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        backend: str = "asyncio",
    ) -> None:
        _refuse_running_event_loop()
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a string, not {type(backend).__name__}")
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
        self._runner = _Runner(backend)
        make_client = functools.partial(
            AsyncClient,
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            http_client=http_client,
            key_limit=key_limit,
            account=account,
            event_hooks=event_hooks,
            allow_insecure_http=allow_insecure_http,
            max_windows=max_windows,
        )
        try:
            # Made in the portal's event loop thread: the httpx pool belongs to that loop.
            self._client: AsyncClient = self._runner.portal.call(make_client)
        except BaseException:
            self._runner.stop()
            raise
        self._runner.client = self._client
        self._portal = self._runner.portal
        # A client that is never closed is closed when collected, or at interpreter exit
        # (before that, the loop's thread would keep waiting for it).
        self._finalizer = weakref.finalize(self, self._runner.stop)

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncClient(", "Client(", 1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and stop the background event loop and its thread (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._runner.closed

    def _check_open(self) -> None:
        if self._runner.closed:
            raise RuntimeError("this oxystats.Client is closed")
        _refuse_running_event_loop()

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._client.base_url

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, 429s and limiter waiting so far."""
        self._check_open()
        return self._portal.call(lambda: self._client.stats)

    def instances(self, products: Products = None) -> list[Instance]:
        """Every instance the key may see.

        See [`AsyncClient.instances`][oxystats.AsyncClient.instances].
        """
        self._check_open()
        return self._portal.call(self._client.instances, products)

    def usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
    ) -> UsageReport:
        """Usage over any range, grouped, merged and totalled.

        See [`AsyncClient.usage`][oxystats.AsyncClient.usage].
        """
        self._check_open()
        report: UsageReport = self._portal.call(
            self._client.usage, product, date_from, date_to, group_by, instances
        )
        return report

    def stream_usage_pages(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        done: Mapping[tuple[int, int], int] | None = None,
        buffer: int | None = None,
    ) -> AbstractContextManager[Iterator[FetchedPage]]:
        """The pages behind `usage`, fetched in the background while the block works.

        ```python
        with client.stream_usage_pages("HB", start, end, ["DAY"]) as pages:
            for fetched in pages:
                save(fetched)
        ```

        See [`AsyncClient.stream_usage_pages`][oxystats.AsyncClient.stream_usage_pages].
        """
        self._check_open()
        stream = self._client.stream_usage_pages(
            product, date_from, date_to, group_by, instances, done=done, buffer=buffer
        )
        return self._blocking_stream(stream)

    def stream_usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        buffer: int | None = None,
    ) -> AbstractContextManager[Iterator[UsageRow]]:
        """The (unmerged, per-window) rows of `usage`, fetched while the block works.

        See [`AsyncClient.stream_usage`][oxystats.AsyncClient.stream_usage].
        """
        self._check_open()
        stream = self._client.stream_usage(
            product, date_from, date_to, group_by, instances, buffer=buffer
        )
        return self._blocking_stream(stream)

    @contextlib.contextmanager
    def _blocking_stream(
        self, stream: AbstractAsyncContextManager[AsyncIterator[T]]
    ) -> Iterator[Iterator[T]]:
        # The stream lives in the portal's event loop; its items cross one at a time.
        with self._portal.wrap_async_context_manager(stream) as items:
            yield self._pull(items)

    def iter_usage_pages(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        done: Mapping[tuple[int, int], int] | None = None,
    ) -> Generator[FetchedPage, None, None]:
        """The pages behind `usage`, as fetched, one at a time.

        See [`AsyncClient.iter_usage_pages`][oxystats.AsyncClient.iter_usage_pages].
        """
        self._check_open()
        pages = self._client.iter_usage_pages(
            product, date_from, date_to, group_by, instances, done=done
        )
        return self._pull(pages)

    def iter_usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
    ) -> Generator[UsageRow, None, None]:
        """Stream the (unmerged, per-window) rows of `usage`.

        See [`AsyncClient.iter_usage`][oxystats.AsyncClient.iter_usage].
        """
        for fetched in self.iter_usage_pages(product, date_from, date_to, group_by, instances):
            yield from fetched.page.data

    def _pull(self, pages: AsyncIterator[T]) -> Generator[T, None, None]:
        # One item crosses the portal at a time.
        try:
            while True:
                more, item = self._portal.call(_next, pages)
                if not more:
                    return
                assert item is not None
                yield item
        finally:
            aclose = getattr(pages, "aclose", None)
            if aclose is not None and not self._runner.closed:
                self._portal.call(aclose)


def _refuse_running_event_loop() -> None:
    """Fail at once where blocking would freeze a running event loop for the whole call."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    raise RuntimeError(
        f"oxystats.Client blocks, and this thread is running a {library} event loop that it "
        "would freeze; in async code use oxystats.AsyncClient (await client.usage(...))"
    )


class _Runner:
    """The portal, its thread and the client in it; `stop` closes all three, once."""

    def __init__(self, backend: str) -> None:
        self._lock = threading.Lock()
        self.closed = False
        self.client: AsyncClient | None = None
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(backend)
        )
        self.portal = self._portal_cm.__enter__()

    def stop(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            if self.client is not None:
                self.portal.call(self.client.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)
