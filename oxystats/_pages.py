"""Which pages to fetch, in what order, how many at once.

A usage query becomes windows (`oxystats._windows`); every window has a page
1, which says how many more pages the window has. `PageFetcher` schedules
those pages over a fixed number of concurrent requests; sending one is the
request pipeline's job, given to it as a function.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
from anyio.streams.memory import MemoryObjectSendStream

from oxystats._errors import RequestInfo
from oxystats._fanout import fan_out
from oxystats._merge import UsageMerger
from oxystats._models import FetchedPage, Instance, InstancesPage, Window
from oxystats._protocol import (
    instances_request,
    parse_instances_page,
    parse_usage_page,
    usage_request,
)
from oxystats._query import UsageQuery

__all__: list[str] = []

GetJson = Callable[[RequestInfo], Awaitable[Any]]
"""Sends one request and returns its decoded JSON body."""

Done = Mapping[tuple[int, int], int]
"""Pages already fetched: ``(window_index, page_number) -> total_pages`` of the window."""

_ROUND_PAGES_PER_SLOT = 4
"""`iter_usage_pages` fetches this many pages per in-flight slot before yielding them."""


@attrs.frozen
class PageJob:
    """One page of one window, to be fetched."""

    window_index: int
    window: Window
    number: int


def first_pages(query: UsageQuery) -> list[PageJob]:
    """Page 1 of every window of ``query``, in chronological order."""
    return [PageJob(index, window, 1) for index, window in enumerate(query.windows())]


def later_pages(job: PageJob, total_pages: int, done: Done) -> list[PageJob]:
    """Pages 2 to ``total_pages`` of ``job``'s window, but those in ``done``."""
    return [
        PageJob(job.window_index, job.window, number)
        for number in range(2, total_pages + 1)
        if (job.window_index, number) not in done
    ]


def pages_to_fetch(query: UsageQuery, done: Done) -> list[PageJob]:
    """What is left to fetch of ``query`` when ``done`` is already in.

    A window whose page 1 is done is known to have ``total_pages``: its
    missing pages are left. Any other window starts again from page 1.
    """
    jobs: list[PageJob] = []
    for first in first_pages(query):
        known_total = done.get((first.window_index, 1))
        if known_total is None:
            jobs.append(first)
        else:
            jobs.extend(later_pages(first, known_total, done))
    return jobs


class PageFetcher:
    """Fetches pages through ``get_json``, at most ``concurrency`` at a time."""

    def __init__(self, get_json: GetJson, *, concurrency: int) -> None:
        self._get_json = get_json
        self.concurrency = concurrency

    async def instances(self, products: tuple[str, ...] | None) -> list[Instance]:
        """Every instance, optionally of some products only, in page order."""
        pages: dict[int, InstancesPage] = {}

        async def fetch(number: int) -> InstancesPage:
            request = instances_request(products, number)
            return parse_instances_page(await self._get_json(request), request)

        def on_page(number: int, page: InstancesPage) -> Iterable[int]:
            pages[number] = page
            if number == 1:
                return range(2, page.pagination.total_pages + 1)
            return ()

        await fan_out([1], fetch, on_page, concurrency=self.concurrency)
        return [instance for number in sorted(pages) for instance in pages[number].data]

    async def usage_page(self, query: UsageQuery, job: PageJob) -> FetchedPage:
        """One page of ``query``."""
        request = usage_request(
            query.product, job.window, query.grouping, query.instances, job.number
        )
        page = parse_usage_page(await self._get_json(request), request, query.grouping)
        return FetchedPage(job.window_index, job.window, job.number, page)

    async def merge_usage(self, query: UsageQuery, merger: UsageMerger) -> None:
        """Fetch every page of ``query`` into ``merger``.

        The first window's page 1 goes alone (a bad key or a refused query
        then costs one request), then every other window's page 1, then the
        rest, ``concurrency`` at a time.
        """

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(query, job)

        def on_page(job: PageJob, fetched: FetchedPage) -> Iterable[PageJob]:
            merger.add(fetched)
            if job.number != 1:
                return ()
            return later_pages(job, fetched.total_pages, {})

        await fan_out(
            first_pages(query), fetch, on_page, concurrency=self.concurrency, first_alone=True
        )

    async def stream_usage(
        self, query: UsageQuery, done: Done, send: MemoryObjectSendStream[FetchedPage]
    ) -> None:
        """Send every page of ``query`` not in ``done`` to ``send``, as each arrives.

        The first page goes alone; then ``concurrency`` requests at a time,
        earlier windows first. A full ``send`` holds up only the worker that
        waits on it: the others go on fetching until they too have a page to
        hand over, so memory stays bounded by the stream's buffer.
        """

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(query, job)

        def on_page(job: PageJob, fetched: FetchedPage) -> Iterable[PageJob]:
            return later_pages(job, fetched.total_pages, done) if job.number == 1 else ()

        async def deliver(job: PageJob, fetched: FetchedPage) -> None:
            await send.send(fetched)

        await fan_out(
            pages_to_fetch(query, done),
            fetch,
            on_page,
            concurrency=self.concurrency,
            first_alone=True,
            order=lambda job: (job.window_index, job.number),
            deliver=deliver,
        )

    async def usage_rounds(
        self, query: UsageQuery, done: Done
    ) -> AsyncGenerator[FetchedPage, None]:
        """The pages of ``query`` not in ``done``, in rounds, each round in (window, page) order.

        Nothing is in flight while the consumer holds a page.
        """
        # Earlier windows first, so rows flow roughly in chronological order;
        # (window, page) is unique, so the heap never compares the jobs themselves.
        pending: list[tuple[int, int, PageJob]] = []

        def queue(jobs: Iterable[PageJob]) -> None:
            for job in jobs:
                heapq.heappush(pending, (job.window_index, job.number, job))

        queue(pages_to_fetch(query, done))
        fetched: dict[PageJob, FetchedPage] = {}

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(query, job)

        def on_page(job: PageJob, page: FetchedPage) -> Iterable[PageJob]:
            fetched[job] = page
            return ()

        round_size = self.concurrency * _ROUND_PAGES_PER_SLOT
        first_round = True
        while pending:
            batch = [heapq.heappop(pending)[2] for _ in range(min(round_size, len(pending)))]
            await fan_out(
                batch, fetch, on_page, concurrency=self.concurrency, first_alone=first_round
            )
            first_round = False
            revealed: list[PageJob] = []
            for job in batch:
                page = fetched.pop(job)
                if job.number == 1:
                    revealed.extend(later_pages(job, page.total_pages, done))
                yield page
            queue(revealed)
