"""Checking that every page answers the question asked and agrees with its window. Pure.

A page can be well-formed JSON of the documented shape and still be wrong: a
proxy that drops ``page`` serves page 1 three times; a window whose page count
changes between page 1 and page 2 is cut short; a negative count or a key
counted twice is summed into a report that feeds billing. Each check below
raises `ResponseFormatError` naming the field, the request (never the key) and
what was expected, before anything is built from the page.
"""

from __future__ import annotations

import operator
from datetime import date

import attrs

from oxystats._errors import RequestInfo, ResponseFormatError
from oxystats._models import InstancesPage, Pagination, UsagePage, UsageRow, UsageTotals

__all__: list[str] = []

MAX_PAGES_PER_WINDOW = 10_000
"""The most pages one window may have: a million rows.

A 31-day window grouped by day, target and instance has one row per
(day, target, instance): 10,000 pages hold 32,000 of them for each day, far
beyond any real account. A larger ``total_pages`` is a lying or broken
server, and planning its pages would tie up the client for nothing.
"""


def expected_pages(total_items: int, per_page: int) -> int:
    """How many pages ``total_items`` take: at least 1, even with no items."""
    return max(1, -(-total_items // per_page))


def _fail(message: str, request: RequestInfo, field: str) -> ResponseFormatError:
    return ResponseFormatError(message, request, field=field)


def check_pagination(
    pagination: Pagination, request: RequestInfo, *, number: int, per_page: int
) -> None:
    """The page is the one asked for, of the size asked for, and its counts agree."""
    field = "meta.pagination"
    if pagination.page != number:
        raise _fail(
            f"page {pagination.page} came back for page {number} (the server or a proxy "
            "ignored the page asked for)",
            request,
            f"{field}.page",
        )
    if pagination.per_page != per_page:
        raise _fail(
            f"per_page is {pagination.per_page}, asked for {per_page}", request, f"{field}.per_page"
        )
    if pagination.total_items < 0:
        raise _fail(
            f"total_items is {pagination.total_items}, a count cannot be negative",
            request,
            f"{field}.total_items",
        )
    expected = expected_pages(pagination.total_items, pagination.per_page)
    if pagination.total_pages != expected:
        raise _fail(
            f"total_pages is {pagination.total_pages}, but {pagination.total_items} items at "
            f"{pagination.per_page} per page make {expected}",
            request,
            f"{field}.total_pages",
        )
    if pagination.total_pages > MAX_PAGES_PER_WINDOW:
        raise _fail(
            f"total_pages is {pagination.total_pages}, more than the {MAX_PAGES_PER_WINDOW:,} "
            "pages one window can sensibly have",
            request,
            f"{field}.total_pages",
        )


def check_same_counts(earlier: Pagination, page: Pagination, request: RequestInfo) -> None:
    """A later page of a result agrees with an earlier one on its item and page counts."""
    for name in ("total_items", "total_pages"):
        seen, now = getattr(earlier, name), getattr(page, name)
        if now != seen:
            raise _fail(
                f"{name} is {now} on page {page.page}, but {seen} on an earlier page of the "
                "same result",
                request,
                f"meta.pagination.{name}",
            )


def _check_row_count(rows: int, pagination: Pagination, request: RequestInfo) -> None:
    if pagination.page < pagination.total_pages:
        expected = pagination.per_page
    else:
        expected = pagination.total_items - (pagination.total_pages - 1) * pagination.per_page
    if rows != expected:
        raise _fail(
            f"{rows} rows on page {pagination.page} of {pagination.total_pages} "
            f"({pagination.total_items} items, {pagination.per_page} per page): "
            f"expected {expected}",
            request,
            "data",
        )


def _check_counts(requests: int, traffic_bytes: int, request: RequestInfo, field: str) -> None:
    if requests < 0:
        raise _fail(
            f"requests is {requests}, a count cannot be negative", request, f"{field}.requests"
        )
    if traffic_bytes < 0:
        raise _fail(
            f"traffic_bytes is {traffic_bytes}, a count cannot be negative",
            request,
            f"{field}.traffic_bytes",
        )


@attrs.frozen
class PageFacts:
    """What a checked page adds to its window: its keys and its sums."""

    keys: frozenset[tuple[str, ...]]
    requests: int
    traffic_bytes: int


# Column views of a page's rows, taken in C: a backfill checks every row of
# every page, and a Python loop over 100 rows costs as much as the request.
_KEYS = operator.attrgetter("grouped_by")
_REQUESTS = operator.attrgetter("requests")
_TRAFFIC = operator.attrgetter("traffic_bytes")


def _first_negative(values: list[int], request: RequestInfo, name: str) -> None:
    if values and min(values) < 0:
        index = next(i for i, value in enumerate(values) if value < 0)
        raise _fail(
            f"{name} is {values[index]}, a count cannot be negative",
            request,
            f"data[{index}].{name}",
        )


def _check_days(
    data: tuple[UsageRow, ...],
    keys: frozenset[tuple[str, ...]],
    position: int,
    days: tuple[date, date],
    request: RequestInfo,
) -> None:
    """Every DAY key is a ``YYYY-MM-DD`` UTC day of the window asked for."""
    first, last = days
    for day in {key[position] for key in keys}:  # a page spans a few days at most
        try:
            valid = len(day) == len("YYYY-MM-DD") and first <= date.fromisoformat(day) <= last
        except ValueError:
            valid = False
        if not valid:
            index = next(i for i, row in enumerate(data) if row.grouped_by[position] == day)
            raise _fail(
                f"the day {day!r} is not a YYYY-MM-DD day from {first} to {last}, the UTC "
                "days of the window asked for",
                request,
                f"data[{index}].grouped_by[{position}]",
            )


def check_usage_page(
    page: UsagePage,
    request: RequestInfo,
    *,
    number: int,
    per_page: int,
    grouping: tuple[str, ...],
    days: tuple[date, date],
) -> PageFacts:
    """Everything one usage page can be checked for on its own; what it adds to its window.

    ``days`` are the first and last UTC days of the window asked for.
    """
    if page.grouping != grouping:
        raise _fail(
            f"grouping is {list(page.grouping)}, asked for {list(grouping)}",
            request,
            "meta.grouping",
        )
    check_pagination(page.pagination, request, number=number, per_page=per_page)
    data = page.data
    _check_row_count(len(data), page.pagination, request)
    _check_counts(page.totals.requests, page.totals.traffic_bytes, request, "totals")
    requests = list(map(_REQUESTS, data))
    traffic = list(map(_TRAFFIC, data))
    _first_negative(requests, request, "requests")
    _first_negative(traffic, request, "traffic_bytes")
    keys = frozenset(map(_KEYS, data))
    if len(keys) != len(data):
        seen: set[tuple[str, ...]] = set()
        for index, row in enumerate(data):
            if row.grouped_by in seen:
                raise _fail(
                    f"the key {list(row.grouped_by)} comes twice on one page",
                    request,
                    f"data[{index}]",
                )
            seen.add(row.grouped_by)
    if "DAY" in grouping:
        _check_days(data, keys, grouping.index("DAY"), days, request)
    return PageFacts(keys, sum(requests), sum(traffic))


def check_instances_page(
    page: InstancesPage, request: RequestInfo, *, number: int, per_page: int
) -> None:
    """Everything one page of instances can be checked for on its own."""
    check_pagination(page.pagination, request, number=number, per_page=per_page)
    _check_row_count(len(page.data), page.pagination, request)


@attrs.define
class WindowLedger:
    """What the pages of one window said so far, to check them against each other.

    Every page of a window must agree on ``total_items``, ``total_pages`` and
    ``totals``; no key may come twice in the window; and once every page is
    in, the rows must sum to the totals (the vendor defines ``totals`` as the
    aggregate over the selected period). When some pages were fetched by an
    earlier run (``complete=False``), the sum cannot be checked and is not.
    """

    pagination: Pagination
    totals: UsageTotals
    expected_pages: int
    """How many of the window's pages this run fetches."""
    complete: bool = True
    """Whether this run fetches every page of the window (none came from an earlier run)."""
    pages_seen: int = 0
    requests: int = 0
    traffic_bytes: int = 0
    keys: set[tuple[str, ...]] = attrs.field(factory=set)

    def add(self, page: UsagePage, facts: PageFacts, request: RequestInfo) -> None:
        """Take one more page of the window; raise if it disagrees with the others."""
        pagination = page.pagination
        check_same_counts(self.pagination, pagination, request)
        if page.totals != self.totals:
            raise _fail(
                f"totals are {_totals(page.totals)} on page {pagination.page}, but "
                f"{_totals(self.totals)} on an earlier page of the same window",
                request,
                "totals",
            )
        keys = self.keys
        if not keys.isdisjoint(facts.keys):
            index, row = next((i, r) for i, r in enumerate(page.data) if r.grouped_by in keys)
            raise _fail(
                f"the key {list(row.grouped_by)} comes again on page {pagination.page}, "
                "after an earlier page of the same window",
                request,
                f"data[{index}]",
            )
        keys.update(facts.keys)
        self.requests += facts.requests
        self.traffic_bytes += facts.traffic_bytes
        self.pages_seen += 1
        if self.complete and self.pages_seen == self.expected_pages:
            self._check_sums(request)

    @property
    def finished(self) -> bool:
        """Whether every page this run fetches of the window is in."""
        return self.pages_seen >= self.expected_pages

    def _check_sums(self, request: RequestInfo) -> None:
        summed = UsageTotals(self.requests, self.traffic_bytes)
        if summed != self.totals:
            raise _fail(
                f"the rows of all {self.pages_seen} page(s) of the window sum to "
                f"{_totals(summed)}, but its totals say {_totals(self.totals)}",
                request,
                "totals",
            )


def _totals(totals: UsageTotals) -> str:
    return f"requests={totals.requests:,}, traffic_bytes={totals.traffic_bytes:,}"
