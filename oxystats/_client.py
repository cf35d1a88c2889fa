"""`AsyncClient`: the public face of the request pipeline and the page scheduling."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import attrs
import httpx

from oxystats._errors import DeadlineExceeded, OxystatsError, UnknownInstanceWarning, scrub
from oxystats._events import EventHook, Observers, configure_logging_from_env
from oxystats._limiter import Account, RequestLimiter
from oxystats._limits import Limit
from oxystats._merge import UsageMerger
from oxystats._models import FetchedPage, Instance, UsageReport, UsageRow
from oxystats._options import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_TIMEOUT,
    UNSET,
    Unset,
    check_api_key,
    check_base_url,
    check_deadline,
    check_event_hooks,
    check_max_windows,
    check_timeout,
)
from oxystats._pages import PageFetcher, UsagePlan, check_done, split_instances
from oxystats._pipeline import USER_AGENT, CallOptions, CallProgress, Connection, RequestPipeline
from oxystats._protocol import MAX_QUERY_URL_BYTES
from oxystats._query import UsageQuery, check_products
from oxystats._redaction import redact_library_logs
from oxystats._retry import RetryPolicy
from oxystats._shared import fingerprint
from oxystats._streams import PageStream, RowStream, open_page_stream
from oxystats._types import DateLike, Grouping, InstanceIds, ProductLike, Products

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["AsyncClient", "ClientStats"]


@attrs.frozen
class ClientStats:
    """What a client has done so far.

    A snapshot: read [`AsyncClient.stats`][oxystats.AsyncClient.stats] again for news.
    """

    requests: int = 0
    """Every request sent, retries included."""
    retries: int = 0
    """The requests that repeated an earlier one."""
    rate_limited: int = 0
    """The 429 responses."""
    limiter_wait: float = 0.0
    """Seconds requests spent waiting for the rate limiter, summed over requests."""
    safety_margin: float = 0.0
    """Seconds the limiter may count a request as starting after it was sent, now.

    The server counts a request when it arrives, so the client counts it up to
    this much later. The margin learns: it grows after a 429 the client's own
    limits allowed, and shrinks back after a long quiet; see
    [Rate limits](../limits.md#a-margin-that-learns).
    """


class AsyncClient:
    """The asyncio-first (and trio-ready) client for the Oxylabs Dashboard API.

    Use it as an async context manager, or call `aclose` when done:

    ```python
    async with oxystats.AsyncClient() as client:
        report = await client.usage("HB", date(2025, 1, 1), date(2025, 12, 31), ["DAY"])
    ```

    Args:
        api_key: The Dashboard API key; `None` reads ``OXYLABS_API_KEY``.
        base_url: Where the API lives; `None` reads ``OXYLABS_BASE_URL``,
            then falls back to ``https://api.oxylabs.io`` (point it at the
            emulator, or at a proxy, without touching code).
        timeout: Seconds for each attempt of a request. `None`: 30 s for the
            client's own pool; an injected ``http_client`` keeps its own timeouts.
        max_retries: Retries after the first attempt, for 429, 5xx and
            transport failures.
        deadline: Seconds for a whole call, retries included; `None` for no limit.
        http_client: An `httpx.AsyncClient` to send requests with; the
            client does not close one it was given.
        key_limit: This key's rate limit; default [`Limit()`][Limit], the documented one.
        account: The account-wide limit, shared by every client given the
            same [`Account`][oxystats.Account]; each client without one gets its own.
        event_hooks: Functions called with every
            [`ClientEvent`][oxystats.ClientEvent] (each attempt, retry and
            pause), for metrics; see [`EventHook`][oxystats.EventHook].
        allow_insecure_http: Allow a plain ``http://`` ``base_url`` to a host
            that is not this machine (the key would travel in clear text).
        max_windows: The most 31-day windows one call may plan; a longer
            range is a `ValueError` (2,000 windows are about 170 years).

    Raises:
        ValueError: An option has the right type but a wrong value (no key, a bad URL).
        TypeError: An option has the wrong type.
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
    ) -> None:
        api_key = check_api_key(api_key)
        if not isinstance(allow_insecure_http, bool):
            raise TypeError(
                f"allow_insecure_http must be a bool, not {type(allow_insecure_http).__name__}"
            )
        self._base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._max_windows = check_max_windows(max_windows)
        hooks = check_event_hooks(event_hooks)
        key_limit = Limit() if key_limit is None else key_limit
        if not isinstance(key_limit, Limit):
            raise TypeError(f"key_limit must be an oxystats.Limit, not {type(key_limit).__name__}")
        account = Account() if account is None else account
        if not isinstance(account, Account):
            raise TypeError(f"account must be an oxystats.Account, not {type(account).__name__}")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError(
                f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
            )
        self._owns_http = http_client is None
        options = self._call_options(timeout, RetryPolicy(max_retries=max_retries), deadline)
        configure_logging_from_env()
        self._key_limit = key_limit
        self._account = account
        self._concurrency = min(key_limit.in_flight, account.limit.in_flight)
        headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        http = http_client or httpx.AsyncClient(
            headers=headers,
            timeout=options.timeout,
            limits=httpx.Limits(
                max_connections=self._concurrency, max_keepalive_connections=self._concurrency
            ),
        )
        secrets = (api_key,)
        redact_library_logs(secrets)
        connection = Connection(
            http=http,
            base_url=self._base_url,
            # A pool of our own carries the headers itself (merging them on every
            # request is measurable in a backfill); an injected one gets them per request.
            headers=None if self._owns_http else headers,
            limiter=RequestLimiter(key_limit, account, key_fingerprint=fingerprint(api_key)),
            secrets=secrets,
            observers=Observers(hooks),
        )
        self._pipeline = RequestPipeline(connection, options)

    def _call_options(
        self, timeout: object, retry_policy: RetryPolicy, deadline: object
    ) -> CallOptions:
        # No timeout given: the client's own pool gets the default, for each
        # attempt as a whole; an injected pool keeps its own timeouts.
        if timeout is None:
            seconds = DEFAULT_TIMEOUT if self._owns_http else None
        else:
            seconds = check_timeout(timeout)
        return CallOptions(
            timeout=seconds, retry_policy=retry_policy, deadline=check_deadline(deadline)
        )

    def with_options(
        self,
        *,
        timeout: float | Unset | None = UNSET,
        max_retries: int | Unset = UNSET,
        deadline: float | Unset | None = UNSET,
    ) -> AsyncClient:
        """A view of this client that behaves differently, sharing its pool and limiter.

        For a web app with one shared client, where one route wants a short
        timeout or no retries: the view's requests go through the same
        connection pool and the same rate limiter (so the key's limit holds
        across views), and count in the same `stats`. Closing a view closes
        nothing; close the client it came from.

        Args:
            timeout: As for `AsyncClient`; not given: this client's.
            max_retries: As for `AsyncClient`; not given: this client's.
            deadline: As for `AsyncClient`; not given: this client's.

        Returns:
            The view.

        Raises:
            ValueError: An option has the right type but a wrong value.
            TypeError: An option has the wrong type.
        """
        current = self._pipeline.options
        policy = current.retry_policy
        if not isinstance(max_retries, Unset):
            policy = attrs.evolve(policy, max_retries=max_retries)
        options = self._call_options(
            current.timeout if isinstance(timeout, Unset) else timeout,
            policy,
            current.deadline if isinstance(deadline, Unset) else deadline,
        )
        view = copy.copy(self)
        view._owns_http = False
        view._pipeline = self._pipeline.with_options(options)
        return view

    def __repr__(self) -> str:
        return (
            f"AsyncClient(base_url={self._base_url!r}, api_key='[REDACTED]', "
            f"key_limit={self._key_limit!r}, account={self._account!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``.

        A view made by `with_options` closes nothing: close the client it came from.
        """
        if self._owns_http:
            await self._pipeline.connection.http.aclose()

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._base_url

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, 429s and limiter waiting so far, and the safety margin now."""
        connection = self._pipeline.connection
        counters = connection.counters
        limiter = connection.limiter.stats
        return ClientStats(
            requests=counters.requests,
            retries=counters.retries,
            rate_limited=counters.rate_limited,
            limiter_wait=limiter.waited,
            safety_margin=limiter.safety_margin,
        )

    @property
    def _limiter(self) -> RequestLimiter:
        return self._pipeline.connection.limiter

    @property
    def _retry_policy(self) -> RetryPolicy:
        return self._pipeline.options.retry_policy

    @_retry_policy.setter
    def _retry_policy(self, policy: RetryPolicy) -> None:
        self._pipeline = self._pipeline.with_options(
            attrs.evolve(self._pipeline.options, retry_policy=policy)
        )

    # -- calls -----------------------------------------------------------------

    def _start_call(self, progress: CallProgress | None = None) -> PageFetcher:
        """The page fetcher of one call, with its progress and its deadline, from now."""
        self._pipeline.connection.check_event_loop()
        progress = CallProgress() if progress is None else progress
        deadline = self._pipeline.options.deadline
        if deadline is not None:
            progress.deadline_at = anyio.current_time() + deadline
        return PageFetcher(self._pipeline.get_json, progress, concurrency=self._concurrency)

    @contextlib.contextmanager
    def _bounded(self, call: PageFetcher) -> Iterator[None]:
        """Cancel what runs inside when the call's deadline passes, and say so.

        Every error leaving the call is scrubbed of the key, whatever a server
        echoed into it.
        """
        progress = call.progress
        try:
            with anyio.CancelScope(deadline=progress.deadline_at) as scope:
                yield
        except OxystatsError as error:
            scrub(error, self._pipeline.connection.secrets)
            raise
        if scope.cancelled_caught:
            deadline = self._pipeline.options.deadline
            assert deadline is not None  # an infinite deadline cancels nothing
            raise DeadlineExceeded(deadline, requests=progress.requests, pages=progress.pages)

    def _plan(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds,
    ) -> UsagePlan:
        """The pages of a checked query, its instance filter split so that every URL fits."""
        query = UsageQuery.build(
            product, date_from, date_to, group_by, instances, max_windows=self._max_windows
        )
        budget = MAX_QUERY_URL_BYTES - len(self._base_url)
        return UsagePlan(query, split_instances(query, url_budget=budget))

    # -- instances -------------------------------------------------------------

    async def instances(self, products: Products = None) -> list[Instance]:
        """Every instance the key may see, optionally of some products only, in page order.

        Args:
            products: One product, several, or `None` for every product.

        Returns:
            The instances, every page of them, in the API's order.

        Raises:
            ValueError: An argument has the right type but a wrong value.
            TypeError: An argument has the wrong type.
            OxystatsError: The API or the network failed, or the deadline passed.
        """
        checked = check_products(products)
        call = self._start_call()
        with self._bounded(call):
            return await call.instances(checked)

    # -- usage -----------------------------------------------------------------

    async def _unknown_instances(
        self, query: UsageQuery, call: PageFetcher, *, stacklevel: int = 3
    ) -> tuple[str, ...]:
        if not query.instances:
            return ()
        known = {instance.uuid for instance in await call.instances(None)}
        unknown = tuple(uuid for uuid in query.instances if uuid not in known)
        if unknown:
            warnings.warn(
                UnknownInstanceWarning(
                    f"the API does not know {len(unknown)} of the requested instances and "
                    f"ignores them: {', '.join(unknown)}"
                ),
                stacklevel=stacklevel,
            )
        return unknown

    async def usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
    ) -> UsageReport:
        """Usage of one product over any range, grouped, merged and totalled.

        The range is split into windows of at most 31 days; every window's
        page 1 is fetched concurrently, then every remaining page. Every page
        is checked against the request and against the other pages of its
        window before it is used. Rows with equal keys from different windows
        are summed; see [`UsageReport`][oxystats.UsageReport] for the row order.

        Args:
            product: ``"HB"``, ``"DC"``, a [`Product`][oxystats.Product], or any
                other product string.
            date_from: Start, inclusive: an aware `datetime`, or a `date`
                (from 00:00:00 UTC that day).
            date_to: End, inclusive: an aware `datetime`, or a `date`
                (until 23:59:59 UTC that day).
            group_by: One [`GroupBy`][oxystats.GroupBy] (or its name), or several, in order.
            instances: Only these instance ids; `None` means all. Ids the
                API does not know are ignored by it; the client warns with
                [`UnknownInstanceWarning`][oxystats.UnknownInstanceWarning] and lists them in
                [`UsageReport.unknown_instances`][oxystats.UsageReport.unknown_instances].
                A list too long for one request URL is split into several
                filtered requests, whose results add up exactly.

        Returns:
            The merged report.

        Raises:
            ValueError: An argument has the right type but a wrong value.
            TypeError: An argument has the wrong type.
            OxystatsError: The API or the network failed, a page was wrong, or
                the deadline passed; see the subclasses.
        """
        plan = self._plan(product, date_from, date_to, group_by, instances)
        merger = UsageMerger(plan.query.grouping)
        call = self._start_call()
        with self._bounded(call):
            unknown = await self._unknown_instances(plan.query, call)
            await call.merge_usage(plan, merger)
        return merger.report(unknown_instances=unknown)

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
    ) -> AbstractAsyncContextManager[PageStream]:
        """The pages behind `usage`, unmerged, streamed while the body of the block works.

        ```python
        async with client.stream_usage_pages("HB", start, end, ["DAY"]) as pages:
            async for fetched in pages:
                save(fetched)  # fetching goes on meanwhile
        ```

        A task group feeds a bounded stream: fetching goes on while the body
        of the ``async with`` block works, at most ``buffer`` pages wait to be
        read (then fetching pauses), and leaving the block, early or by an
        exception, cancels what is in flight and leaves nothing running.
        Pages come as they arrive, earlier windows first; the first window's
        page 1 is fetched alone, so a bad key costs one request.

        Args:
            product: As for `usage`.
            date_from: As for `usage`.
            date_to: As for `usage`.
            group_by: As for `usage`.
            instances: As for `usage`.
            done: Maps ``(window_index, page_number)`` of pages already fetched
                (by an earlier, interrupted run with the same arguments) to
                their window's ``total_pages``; those pages are not fetched again.
            buffer: How many fetched pages may wait for the body; default
                twice the number of requests in flight.

        Returns:
            An async context manager giving a [`PageStream`][oxystats.PageStream].

        Raises:
            ValueError: An argument has the right type but a wrong value (at the call).
            TypeError: An argument has the wrong type (at the call).
            OxystatsError: From the stream, when fetching failed; see the subclasses.
        """
        plan = self._plan(product, date_from, date_to, group_by, instances)
        done = check_done(done, plan)
        buffer = self._check_buffer(buffer)

        progress = CallProgress()

        async def produce(send: MemoryObjectSendStream[FetchedPage]) -> None:
            call = self._start_call(progress)
            with self._bounded(call):
                await self._unknown_instances(plan.query, call, stacklevel=2)
                await call.stream_usage(plan, done, send)

        return open_page_stream(produce, buffer=buffer, progress=progress)

    @contextlib.asynccontextmanager
    async def _row_stream(
        self, pages: AbstractAsyncContextManager[PageStream]
    ) -> AsyncIterator[RowStream]:
        async with pages as stream:
            yield RowStream(stream)

    def stream_usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        buffer: int | None = None,
    ) -> AbstractAsyncContextManager[RowStream]:
        """The rows of `usage`, unmerged, streamed while the body of the block works.

        ```python
        async with client.stream_usage("HB", start, end, ["DAY", "TARGET"]) as rows:
            async for row in rows:
                write(row)  # fetching goes on meanwhile
        ```

        What `stream_usage_pages` streams, row by row. Rows are per window
        and NOT merged: when a key's usage spans several windows (a
        TARGET-only or INSTANCE-only grouping over more than 31 days, or a
        UTC day cut by a window edge), that key comes once per window. Sum
        them yourself, or call `usage`, which merges.

        Args:
            product: As for `usage`.
            date_from: As for `usage`.
            date_to: As for `usage`.
            group_by: As for `usage`.
            instances: As for `usage`.
            buffer: As for `stream_usage_pages`.

        Returns:
            An async context manager giving a [`RowStream`][oxystats.RowStream].

        Raises:
            ValueError: An argument has the right type but a wrong value (at the call).
            TypeError: An argument has the wrong type (at the call).
            OxystatsError: From the stream, when fetching failed; see the subclasses.
        """
        pages = self.stream_usage_pages(
            product, date_from, date_to, group_by, instances, buffer=buffer
        )
        return self._row_stream(pages)

    def _check_buffer(self, buffer: object) -> int:
        if buffer is None:
            return 2 * self._concurrency
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            raise TypeError(f"buffer must be an int, not {type(buffer).__name__}")
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer!r}")
        return buffer

    async def iter_usage_pages(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        done: Mapping[tuple[int, int], int] | None = None,
    ) -> AsyncGenerator[FetchedPage, None]:
        """The pages behind `usage`, unmerged, as they are fetched: for resumable backfills.

        Pages come in rounds of a few per in-flight slot; within a round, in
        (window, page) order. No request is in flight while the consumer
        holds a page, so memory stays bounded whatever the range.

        Args:
            product: As for `usage`.
            date_from: As for `usage`.
            date_to: As for `usage`.
            group_by: As for `usage`.
            instances: As for `usage`.
            done: Maps ``(window_index, page_number)`` of pages already fetched
                (by an earlier, interrupted run with the same arguments) to
                their window's ``total_pages``; those pages are not fetched again.

        Yields:
            Each page with its window and number.
        """
        plan = self._plan(product, date_from, date_to, group_by, instances)
        done = check_done(done, plan)
        call = self._start_call()
        with self._bounded(call):
            await self._unknown_instances(plan.query, call)
        rounds = call.usage_rounds(plan, done, lambda: self._bounded(call))
        async with contextlib.aclosing(rounds):
            async for fetched in rounds:
                yield fetched

    async def iter_usage(
        self,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
    ) -> AsyncIterator[UsageRow]:
        """Stream the rows of `usage` without holding them: memory is bounded by concurrency.

        Rows are per window and NOT merged: when a key's usage spans several
        windows (a TARGET-only or INSTANCE-only grouping over more than 31
        days, or a UTC day cut by a window edge), that key comes once per
        window. Sum them yourself, or call `usage`, which merges.

        Args:
            product: As for `usage`.
            date_from: As for `usage`.
            date_to: As for `usage`.
            group_by: As for `usage`.
            instances: As for `usage`.

        Yields:
            The rows of every page, page by page.
        """
        pages = self.iter_usage_pages(product, date_from, date_to, group_by, instances)
        async with contextlib.aclosing(pages):
            async for fetched in pages:
                for row in fetched.page.data:
                    yield row
