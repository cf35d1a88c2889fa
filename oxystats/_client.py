"""`AsyncClient`: the request pipeline and the window and page fan-out."""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import attrs
import httpx

from oxystats._errors import (
    APIConnectionError,
    APIError,
    RequestInfo,
    UnknownInstanceWarning,
)
from oxystats._fanout import fan_out
from oxystats._limits import Account, Limit, RequestLimiter
from oxystats._merge import UsageMerger
from oxystats._models import Instance, InstancesPage, UsagePage, UsageReport, UsageRow, Window
from oxystats._protocol import (
    decode_json,
    instances_request,
    parse_instances_page,
    parse_usage_page,
    raise_for_status,
    request_url,
    usage_request,
)
from oxystats._query import UsageQuery, check_products
from oxystats._retry import RetryEvent, RetryPolicy, call_with_retries, parse_retry_after

__all__ = ["DEFAULT_BASE_URL", "AsyncClient", "ClientStats", "FetchedPage"]

DEFAULT_BASE_URL = "https://api.oxylabs.io"
API_KEY_ENV = "OXYLABS_API_KEY"
BASE_URL_ENV = "OXYLABS_BASE_URL"

_DEFAULT_RETRY_PAUSE = 1.0
"""How long a 429 without ``Retry-After`` pauses the key's limiter, in seconds."""

_ROUND_PAGES_PER_SLOT = 4
"""`iter_usage` fetches this many pages per in-flight slot before yielding them."""


@attrs.frozen
class ClientStats:
    """What a client has done so far (a snapshot; read ``client.stats`` again for news).

    ``requests`` counts every request sent, retries included; ``retries``
    the requests that repeated an earlier one; ``rate_limited`` the 429
    responses; ``limiter_wait`` the seconds requests spent waiting for the
    rate limiter, summed over requests.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    limiter_wait: float = 0.0


@attrs.define
class _Counters:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


@attrs.frozen
class FetchedPage:
    """One page of one window, as `AsyncClient.iter_usage_pages` yields it.

    ``window_index`` counts windows from 0 in chronological order;
    ``number`` is the page number within the window (from 1).
    """

    window_index: int
    window: Window
    number: int
    page: UsagePage

    @property
    def total_pages(self) -> int:
        """How many pages the window has."""
        return self.page.pagination.total_pages


@attrs.frozen
class _PageJob:
    window_index: int
    window: Window
    number: int


def _check_base_url(base_url: object) -> str:
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    return base_url.rstrip("/")


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _check_api_key(api_key: object) -> str:
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ValueError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
    if not api_key.strip() or any(c.isspace() for c in api_key):
        raise ValueError("api_key must be a non-empty string without whitespace")
    return api_key


class AsyncClient:
    """The asyncio-first (and trio-ready) client for the Oxylabs Dashboard API.

    Use it as an async context manager, or call `aclose` when done::

        async with oxystats.AsyncClient() as client:
            report = await client.usage("HB", date(2025, 1, 1), date(2025, 12, 31), ["DAY"])

    Args:
        api_key: the Dashboard API key; ``None`` reads ``OXYLABS_API_KEY``.
        base_url: where the API lives; ``None`` reads ``OXYLABS_BASE_URL``,
            then falls back to ``https://api.oxylabs.io`` (point it at the
            emulator, or at a proxy, without touching code).
        timeout: seconds for each request (connect, read, write and pool).
        max_retries: retries after the first attempt, for 429, 5xx and
            transport failures.
        deadline: optional seconds for a whole call, retries included.
        http_client: an `httpx.AsyncClient` to send requests with; the
            client does not close one it was given.
        key_limit: this key's rate limit.
        account: the account-wide limit, shared by every client given the
            same `Account`; each client without one gets its own.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 6,
        deadline: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        key_limit: Limit | None = None,
        account: Account | None = None,
    ) -> None:
        self._api_key = _check_api_key(api_key)
        self._base_url = _check_base_url(base_url)
        self._timeout = _check_timeout(timeout)
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
        self._retry_policy = RetryPolicy(max_retries=max_retries, deadline=deadline)
        self._key_limit = key_limit
        self._account = account
        self._limiter = RequestLimiter(key_limit, account)
        self._concurrency = min(key_limit.in_flight, account.limit.in_flight)
        self._owns_http = http_client is None
        auth = {"Authorization": f"Bearer {self._api_key}"}
        # A pool of our own carries the key itself (merging headers on every
        # request is measurable in a backfill); an injected one gets it per request.
        self._request_headers: dict[str, str] | None = None if self._owns_http else auth
        self._http = http_client or httpx.AsyncClient(
            headers=auth,
            timeout=self._timeout,
            limits=httpx.Limits(
                max_connections=self._concurrency,
                max_keepalive_connections=self._concurrency,
            ),
        )
        self._counters = _Counters()

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
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._base_url

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, 429s and limiter waiting so far."""
        return ClientStats(
            requests=self._counters.requests,
            retries=self._counters.retries,
            rate_limited=self._counters.rate_limited,
            limiter_wait=self._limiter.stats.waited,
        )

    # -- the request pipeline: limiter -> httpx -> status -> retry ---------------

    def _on_retry(self, event: RetryEvent) -> None:
        self._counters.retries += 1

    async def _send_once(self, request: RequestInfo) -> bytes:
        # Built before the wait: once the limiter says go, every microsecond
        # until the request is out is lost throughput.
        http_request = self._http.build_request(
            "GET", request_url(self._base_url, request), headers=self._request_headers
        )
        async with self._limiter.slot() as timing:
            self._counters.requests += 1
            # Notes when the request really goes out (after any connect).
            http_request.extensions["trace"] = timing.trace
            response = await self._http.send(http_request)
            # Only a 429's Retry-After is used (RateLimitError carries it).
            retry_after = None
            if response.status_code == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._counters.rate_limited += 1
                # Hold back every task of this key, not just the one that was
                # refused, and before the slot is given back: released first, it
                # would go at once to a task waiting for it, inside the pause.
                pause = _DEFAULT_RETRY_PAUSE if retry_after is None else retry_after
                # A Retry-After beyond the policy's cap is raised, not waited
                # for, so it must not stall this key's later calls either.
                if pause <= self._retry_policy.max_retry_after:
                    self._limiter.pause(pause)
        raise_for_status(
            response.status_code,
            response.content,
            request,
            retry_after=retry_after,
            secrets=(self._api_key,),
        )
        return response.content

    async def _get_json(self, request: RequestInfo) -> Any:
        sent_before = self._counters.requests
        try:
            content = await call_with_retries(
                lambda: self._send_once(request),
                self._retry_policy,
                on_retry=self._on_retry,
                describe=request,
            )
        except APIError as exc:
            exc.attempts = self._counters.requests - sent_before
            raise
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                request,
                attempts=self._counters.requests - sent_before,
            ) from exc
        return decode_json(content, request)

    # -- instances -------------------------------------------------------------

    async def _instances_page(self, products: tuple[str, ...] | None, number: int) -> InstancesPage:
        request = instances_request(products, number)
        return parse_instances_page(await self._get_json(request), request)

    async def instances(self, products: Iterable[str] | str | None = None) -> list[Instance]:
        """Every instance the key may see, optionally of some products only, in page order."""
        checked = check_products(products)
        pages: dict[int, InstancesPage] = {}

        async def fetch(number: int) -> InstancesPage:
            return await self._instances_page(checked, number)

        def on_page(number: int, page: InstancesPage) -> Iterable[int]:
            pages[number] = page
            if number == 1:
                return range(2, page.pagination.total_pages + 1)
            return ()

        await fan_out([1], fetch, on_page, concurrency=self._concurrency)
        return [instance for number in sorted(pages) for instance in pages[number].data]

    # -- usage -----------------------------------------------------------------

    async def _unknown_instances(self, query: UsageQuery) -> tuple[str, ...]:
        if not query.instances:
            return ()
        known = {instance.uuid for instance in await self.instances()}
        unknown = tuple(uuid for uuid in query.instances if uuid not in known)
        if unknown:
            warnings.warn(
                UnknownInstanceWarning(
                    f"the API does not know {len(unknown)} of the requested instances and "
                    f"ignores them: {', '.join(unknown)}"
                ),
                stacklevel=3,
            )
        return unknown

    async def _usage_page(self, query: UsageQuery, job: _PageJob) -> UsagePage:
        request = usage_request(
            query.product, job.window, query.grouping, query.instances, job.number
        )
        return parse_usage_page(await self._get_json(request), request, query.grouping)

    async def usage(
        self,
        product: str,
        date_from: Any,
        date_to: Any,
        group_by: Any,
        instances: Iterable[str] | None = None,
    ) -> UsageReport:
        """Usage of one product over any range, grouped, merged and totalled.

        Args:
            product: ``"HB"``, ``"DC"``, a `Product`, or any other product string.
            date_from: start, inclusive: an aware `datetime`, or a `date`
                (from 00:00:00 UTC that day).
            date_to: end, inclusive: an aware `datetime`, or a `date`
                (until 23:59:59 UTC that day).
            group_by: one `GroupBy` (or its name), or several, in order.
            instances: only these instance ids; ``None`` means all. Ids the
                API does not know are ignored by it; the client warns with
                `UnknownInstanceWarning` and lists them in
                ``report.unknown_instances``.

        The range is split into windows of at most 31 days; every window's
        page 1 is fetched concurrently, then every remaining page. Rows with
        equal keys from different windows are summed; see `UsageReport` for
        the row order.
        """
        query = UsageQuery.build(product, date_from, date_to, group_by, instances)
        unknown = await self._unknown_instances(query)
        merger = UsageMerger(query.grouping)

        async def fetch(job: _PageJob) -> UsagePage:
            return await self._usage_page(query, job)

        def on_page(job: _PageJob, page: UsagePage) -> Iterable[_PageJob]:
            merger.add_rows(page, job.window_index, job.number)
            if job.number != 1:
                return ()
            merger.add_totals(page.totals)
            return (
                _PageJob(job.window_index, job.window, number)
                for number in range(2, page.pagination.total_pages + 1)
            )

        first_pages = [_PageJob(index, window, 1) for index, window in enumerate(query.windows())]
        await fan_out(first_pages, fetch, on_page, concurrency=self._concurrency, first_alone=True)
        return merger.report(unknown_instances=unknown)

    async def iter_usage_pages(
        self,
        product: str,
        date_from: Any,
        date_to: Any,
        group_by: Any,
        instances: Iterable[str] | None = None,
        *,
        done: Mapping[tuple[int, int], int] | None = None,
    ) -> AsyncGenerator[FetchedPage, None]:
        """The pages behind `usage`, unmerged, as they are fetched: for resumable backfills.

        ``done`` maps ``(window_index, page_number)`` of pages already
        fetched (by an earlier, interrupted run with the same arguments) to
        their window's ``total_pages``; those pages are not fetched again.

        Pages come in rounds of a few per in-flight slot; within a round, in
        (window, page) order. No request is in flight while the consumer
        holds a page, so memory stays bounded whatever the range.
        """
        query = UsageQuery.build(product, date_from, date_to, group_by, instances)
        done = dict(done or {})
        await self._unknown_instances(query)
        # Earlier windows first, so rows flow roughly in chronological order;
        # (window, page) is unique, so the heap never compares the jobs themselves.
        pending: list[tuple[int, int, _PageJob]] = []

        def queue(jobs: Iterable[_PageJob]) -> None:
            for job in jobs:
                heapq.heappush(pending, (job.window_index, job.number, job))

        def remaining(window_index: int, window: Window, total_pages: int) -> list[_PageJob]:
            return [
                _PageJob(window_index, window, number)
                for number in range(2, total_pages + 1)
                if (window_index, number) not in done
            ]

        for index, window in enumerate(query.windows()):
            known_total = done.get((index, 1))
            if known_total is None:
                queue([_PageJob(index, window, 1)])
            else:
                queue(remaining(index, window, known_total))

        fetched: dict[_PageJob, UsagePage] = {}

        async def fetch(job: _PageJob) -> UsagePage:
            return await self._usage_page(query, job)

        def on_page(job: _PageJob, page: UsagePage) -> Iterable[_PageJob]:
            fetched[job] = page
            return ()

        round_size = self._concurrency * _ROUND_PAGES_PER_SLOT
        first_round = True
        while pending:
            batch = [heapq.heappop(pending)[2] for _ in range(min(round_size, len(pending)))]
            await fan_out(
                batch, fetch, on_page, concurrency=self._concurrency, first_alone=first_round
            )
            first_round = False
            revealed: list[_PageJob] = []
            for job in batch:
                page = fetched.pop(job)
                if job.number == 1:
                    revealed.extend(
                        remaining(job.window_index, job.window, page.pagination.total_pages)
                    )
                yield FetchedPage(job.window_index, job.window, job.number, page)
            queue(revealed)

    async def iter_usage(
        self,
        product: str,
        date_from: Any,
        date_to: Any,
        group_by: Any,
        instances: Iterable[str] | None = None,
    ) -> AsyncIterator[UsageRow]:
        """Stream the rows of `usage` without holding them: memory is bounded by concurrency.

        Rows are per window and NOT merged: when a key's usage spans several
        windows (a TARGET-only or INSTANCE-only grouping over more than 31
        days, or a UTC day cut by a window edge), that key comes once per
        window. Sum them yourself, or call `usage`, which merges.
        """
        pages = self.iter_usage_pages(product, date_from, date_to, group_by, instances)
        async with contextlib.aclosing(pages):
            async for fetched in pages:
                for row in fetched.page.data:
                    yield row
