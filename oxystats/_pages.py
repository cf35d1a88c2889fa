"""Which pages to fetch, in what order, how many at once, and whether they agree.

A usage query becomes windows (`oxystats._windows`), and, when its instance
filter is too long for one URL, several filtered parts whose results add up
exactly (the parts' instance sets are disjoint). Every window of every part
has a page 1, which says how many more pages the window has. `PageFetcher`
schedules those pages over a fixed number of concurrent requests and checks
that the pages of each window agree (`oxystats._checks`); sending one is the
request pipeline's job, given to it as a function.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import attrs
from anyio.streams.memory import MemoryObjectSendStream

from oxystats._checks import MAX_PAGES_PER_WINDOW, PageFacts, WindowLedger, check_same_counts
from oxystats._errors import RequestInfo, ResponseFormatError
from oxystats._fanout import fan_out
from oxystats._merge import UsageMerger
from oxystats._models import FetchedPage, Instance, InstancesPage, Window
from oxystats._pipeline import CallProgress
from oxystats._protocol import (
    instances_request,
    parse_instances_page,
    parse_usage_page,
    usage_request,
)
from oxystats._query import UsageQuery

__all__: list[str] = []

GetJson = Callable[[RequestInfo, CallProgress], Awaitable[Any]]
"""Sends one request for a call and returns its decoded JSON body."""

Done = Mapping[tuple[int, int], int]
"""Pages already fetched: ``(window_index, page_number) -> total_pages`` of the window."""

_ROUND_PAGES_PER_SLOT = 4
"""`iter_usage_pages` fetches this many pages per in-flight slot before yielding them."""

_WIDEST_PAGE_NUMBER = 99_999
"""A page number at least as long as any a window may have, for measuring URLs."""


@attrs.frozen
class PageJob:
    """One page of one window of one part, to be fetched."""

    window_index: int
    window: Window
    number: int
    instances: tuple[str, ...] | None


def split_instances(query: UsageQuery, *, url_budget: int) -> list[tuple[str, ...] | None]:
    """The instance filters of the parts: each part's URLs fit in ``url_budget`` bytes.

    ``None`` (no filter) is one part. A filter too long for one URL is split
    into consecutive runs of ids; the parts' results add up exactly, since
    each instance's usage is in exactly one part.

    Raises:
        ValueError: One instance id alone does not fit.
    """
    if not query.instances:
        return [None]
    first = query.windows()[0]
    bare = usage_request(query.product, first, query.grouping, None, _WIDEST_PAGE_NUMBER)
    fixed = len(bare.path) + 1 + len(urlencode(bare.params))
    parts: list[tuple[str, ...] | None] = []
    current: list[str] = []
    length = fixed
    for uuid in query.instances:
        cost = 1 + len(urlencode([("instances[]", uuid)]))
        if fixed + cost > url_budget:
            shown = uuid if len(uuid) <= 40 else f"{uuid[:40]}..."
            raise ValueError(
                f"the instance id {shown!r} is too long for any request URL "
                f"({cost} bytes of a {url_budget}-byte budget)"
            )
        if length + cost > url_budget:
            parts.append(tuple(current))
            current, length = [], fixed
        current.append(uuid)
        length += cost
    parts.append(tuple(current))
    return parts


@attrs.frozen
class UsagePlan:
    """The pages of one usage query: its windows, in each of its parts.

    Windows are numbered across parts (part after part), so that
    ``(window_index, page)`` names one page of the whole call.
    """

    query: UsageQuery
    parts: list[tuple[str, ...] | None]
    windows: list[Window] = attrs.field()

    @windows.default
    def _windows(self) -> list[Window]:
        return self.query.windows()

    def first_pages(self) -> list[PageJob]:
        """Page 1 of every window of every part, part by part, chronologically."""
        width = len(self.windows)
        return [
            PageJob(part * width + index, window, 1, instances)
            for part, instances in enumerate(self.parts)
            for index, window in enumerate(self.windows)
        ]

    def request(self, job: PageJob) -> RequestInfo:
        """The request for ``job``."""
        query = self.query
        return usage_request(query.product, job.window, query.grouping, job.instances, job.number)


def _whole_number(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def check_done(done: object, plan: UsagePlan) -> dict[tuple[int, int], int]:
    """Pages an earlier run fetched, checked against ``plan``: no page is skipped by mistake.

    Raises:
        TypeError: Not a mapping of ``(window_index, page_number)`` to ``total_pages``.
        ValueError: A window or page this plan does not have, or totals that disagree.
    """
    if done is None:
        return {}
    if not isinstance(done, Mapping):
        raise TypeError(f"done must be a mapping, not {type(done).__name__}")
    windows = len(plan.parts) * len(plan.windows)  # numbered across parts, as first_pages() does
    checked: dict[tuple[int, int], int] = {}
    totals: dict[int, int] = {}
    for key, total in done.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"done's keys must be (window_index, page_number) pairs, not {key!r}")
        window = _whole_number(key[0], "a window index in done")
        page = _whole_number(key[1], "a page number in done")
        total = _whole_number(total, "a total_pages in done")
        if not 0 <= window < windows:
            raise ValueError(
                f"done names window {window}; this call has windows 0 to {windows - 1}"
            )
        if not 1 <= page <= total <= MAX_PAGES_PER_WINDOW:
            raise ValueError(
                f"done has page {page} of {total} for window {window}; a window has 1 to "
                f"{MAX_PAGES_PER_WINDOW:,} pages, and a page is one of them"
            )
        if totals.setdefault(window, total) != total:
            raise ValueError(f"done gives window {window} both {totals[window]} and {total} pages")
        checked[(window, page)] = total
    return checked


def later_pages(job: PageJob, total_pages: int, done: Done) -> list[PageJob]:
    """Pages 2 to ``total_pages`` of ``job``'s window, but those in ``done``."""
    return [
        PageJob(job.window_index, job.window, number, job.instances)
        for number in range(2, total_pages + 1)
        if (job.window_index, number) not in done
    ]


def pages_to_fetch(plan: UsagePlan, done: Done) -> list[PageJob]:
    """What is left to fetch of ``plan`` when ``done`` is already in.

    A window whose page 1 is done is known to have ``total_pages``: its
    missing pages are left. Any other window starts again from page 1.
    """
    jobs: list[PageJob] = []
    for first in plan.first_pages():
        known_total = done.get((first.window_index, 1))
        if known_total is None:
            jobs.append(first)
        else:
            jobs.extend(later_pages(first, known_total, done))
    return jobs


class WindowChecks:
    """Checks the pages of every window against each other, as they arrive.

    A window's ledger lives from its first page this run fetches to its last,
    so memory holds the keys of the windows in progress only.
    """

    def __init__(self, done: Done) -> None:
        self._open: dict[int, WindowLedger] = {}
        self._done_pages: dict[int, int] = {}
        self._done_totals: dict[int, int] = {}
        for (window_index, _), total in done.items():
            self._done_pages[window_index] = self._done_pages.get(window_index, 0) + 1
            self._done_totals[window_index] = total

    def accept(self, fetched: FetchedPage, facts: PageFacts, request: RequestInfo) -> None:
        """Take one fetched (and on its own, checked) page; raise if its window disagrees."""
        ledger = self._open.get(fetched.window_index)
        if ledger is None:
            pagination = fetched.page.pagination
            earlier = self._done_pages.get(fetched.window_index, 0)
            recorded = self._done_totals.get(fetched.window_index, pagination.total_pages)
            if pagination.total_pages != recorded:
                raise ResponseFormatError(
                    f"total_pages is {pagination.total_pages}, but {recorded} when the "
                    "earlier run fetched this window's other pages",
                    request,
                    field="meta.pagination.total_pages",
                )
            ledger = WindowLedger(
                pagination,
                fetched.page.totals,
                expected_pages=pagination.total_pages - earlier,
                complete=not earlier,
            )
            self._open[fetched.window_index] = ledger
        ledger.add(fetched.page, facts, request)
        if ledger.finished:
            del self._open[fetched.window_index]


class PageFetcher:
    """Fetches the pages of one call through ``get_json``, ``concurrency`` at a time."""

    def __init__(self, get_json: GetJson, progress: CallProgress, *, concurrency: int) -> None:
        self._get_json = get_json
        self.progress = progress
        self.concurrency = concurrency

    async def instances(self, products: tuple[str, ...] | None) -> list[Instance]:
        """Every instance, optionally of some products only, in page order."""
        pages: dict[int, InstancesPage] = {}
        seen: set[str] = set()

        async def fetch(number: int) -> InstancesPage:
            request = instances_request(products, number)
            page = parse_instances_page(
                await self._get_json(request, self.progress), request, number=number
            )
            first = pages.get(1)
            if first is not None:
                check_same_counts(first.pagination, page.pagination, request)
            for index, instance in enumerate(page.data):
                if instance.uuid in seen:
                    raise ResponseFormatError(
                        f"the instance {instance.uuid} is listed twice",
                        request,
                        field=f"data[{index}].uuid",
                    )
                seen.add(instance.uuid)
            self.progress.pages += 1
            return page

        def on_page(number: int, page: InstancesPage) -> Iterable[int]:
            pages[number] = page
            if number == 1:
                return range(2, page.pagination.total_pages + 1)
            return ()

        await fan_out([1], fetch, on_page, concurrency=self.concurrency)
        return [instance for number in sorted(pages) for instance in pages[number].data]

    async def usage_page(self, plan: UsagePlan, job: PageJob, checks: WindowChecks) -> FetchedPage:
        """One page of ``plan``, checked on its own and against its window."""
        request = plan.request(job)
        document = await self._get_json(request, self.progress)
        page, facts = parse_usage_page(
            document, request, plan.query.grouping, number=job.number, window=job.window
        )
        fetched = FetchedPage(job.window_index, job.window, job.number, page)
        checks.accept(fetched, facts, request)
        self.progress.pages += 1
        return fetched

    async def merge_usage(self, plan: UsagePlan, merger: UsageMerger) -> None:
        """Fetch every page of ``plan`` into ``merger``.

        The first window's page 1 goes alone (a bad key or a refused query
        then costs one request), then every other window's page 1, then the
        rest, ``concurrency`` at a time.
        """
        checks = WindowChecks({})

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(plan, job, checks)

        def on_page(job: PageJob, fetched: FetchedPage) -> Iterable[PageJob]:
            merger.add(fetched)
            if job.number != 1:
                return ()
            return later_pages(job, fetched.total_pages, {})

        await fan_out(
            plan.first_pages(), fetch, on_page, concurrency=self.concurrency, first_alone=True
        )

    async def stream_usage(
        self, plan: UsagePlan, done: Done, send: MemoryObjectSendStream[FetchedPage]
    ) -> None:
        """Send every page of ``plan`` not in ``done`` to ``send``, as each arrives.

        The first page goes alone; then ``concurrency`` requests at a time,
        earlier windows first. A full ``send`` holds up only the worker that
        waits on it: the others go on fetching until they too have a page to
        hand over, so memory stays bounded by the stream's buffer.
        """
        checks = WindowChecks(done)

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(plan, job, checks)

        def on_page(job: PageJob, fetched: FetchedPage) -> Iterable[PageJob]:
            return later_pages(job, fetched.total_pages, done) if job.number == 1 else ()

        async def deliver(job: PageJob, fetched: FetchedPage) -> None:
            await send.send(fetched)

        await fan_out(
            pages_to_fetch(plan, done),
            fetch,
            on_page,
            concurrency=self.concurrency,
            first_alone=True,
            order=lambda job: (job.window_index, job.number),
            deliver=deliver,
        )

    async def usage_rounds(
        self,
        plan: UsagePlan,
        done: Done,
        bounded: Callable[[], Any],
    ) -> AsyncGenerator[FetchedPage, None]:
        """The pages of ``plan`` not in ``done``, in rounds, each round in (window, page) order.

        Nothing is in flight while the consumer holds a page: each round is
        fetched inside ``bounded()`` (the call's deadline), never across a yield.
        """
        checks = WindowChecks(done)
        # Earlier windows first, so rows flow roughly in chronological order;
        # (window, page) is unique, so the heap never compares the jobs themselves.
        pending: list[tuple[int, int, PageJob]] = []

        def queue(jobs: Iterable[PageJob]) -> None:
            for job in jobs:
                heapq.heappush(pending, (job.window_index, job.number, job))

        queue(pages_to_fetch(plan, done))
        fetched: dict[PageJob, FetchedPage] = {}

        async def fetch(job: PageJob) -> FetchedPage:
            return await self.usage_page(plan, job, checks)

        def on_page(job: PageJob, page: FetchedPage) -> Iterable[PageJob]:
            fetched[job] = page
            return ()

        round_size = self.concurrency * _ROUND_PAGES_PER_SLOT
        first_round = True
        while pending:
            batch = [heapq.heappop(pending)[2] for _ in range(min(round_size, len(pending)))]
            with bounded():
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
