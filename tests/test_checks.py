"""The page checks as pure functions: each lie a page can tell, and the field it is named by."""

from __future__ import annotations

import re
from datetime import date

import pytest

import oxystats
from oxystats import Pagination, UsagePage, UsageRow, UsageTotals
from oxystats._checks import (
    MAX_PAGES_PER_WINDOW,
    PageFacts,
    WindowLedger,
    check_pagination,
    check_usage_page,
    expected_pages,
)

DAYS = (date(2025, 1, 1), date(2025, 1, 31))
REQUEST = oxystats.RequestInfo("GET", "/stats/v1/usage", (("product", "HB"), ("page", "1")))
GROUPING = ("TARGET",)


def rows(*counts: int, start: int = 0) -> tuple[UsageRow, ...]:
    """Rows with keys t<start>, t<start+1>, ... and the given request counts."""
    return tuple(
        UsageRow((f"t{start + index}",), count, 10 * count) for index, count in enumerate(counts)
    )


def page(
    data: tuple[UsageRow, ...], *, number: int = 1, total_items: int | None = None
) -> UsagePage:
    """A page of ``data`` that is right about itself unless told otherwise."""
    items = len(data) if total_items is None else total_items
    totals = UsageTotals(sum(r.requests for r in data), sum(r.traffic_bytes for r in data))
    pagination = Pagination(number, 100, items, expected_pages(items, 100))
    return UsagePage(data, totals, pagination, GROUPING)


def fails(field: str) -> pytest.RaisesExc[oxystats.ResponseFormatError]:
    """Expect a ResponseFormatError naming ``field``."""
    return pytest.raises(oxystats.ResponseFormatError, match=f"at {re.escape(field)}:")


def test_a_right_page_passes() -> None:
    """A page that is what was asked and agrees with itself raises nothing."""
    check_usage_page(
        page(rows(1, 2, 3)), REQUEST, number=1, per_page=100, grouping=GROUPING, days=DAYS
    )


def test_expected_pages_is_at_least_one() -> None:
    """Even no items make one page; 101 items make two."""
    assert [expected_pages(n, 100) for n in (0, 1, 100, 101, 250)] == [1, 1, 1, 2, 3]


@pytest.mark.parametrize(
    ("pagination", "number", "field"),
    [
        (Pagination(1, 100, 250, 3), 2, "meta.pagination.page"),
        (Pagination(1, 50, 250, 5), 1, "meta.pagination.per_page"),
        (Pagination(1, 100, -1, 1), 1, "meta.pagination.total_items"),
        (Pagination(1, 100, 0, 1_000_000), 1, "meta.pagination.total_pages"),
        (Pagination(1, 100, 250, 2), 1, "meta.pagination.total_pages"),
        (
            Pagination(1, 100, 100 * (MAX_PAGES_PER_WINDOW + 1), MAX_PAGES_PER_WINDOW + 1),
            1,
            "meta.pagination.total_pages",
        ),
    ],
)
def test_pagination_lies(pagination: Pagination, number: int, field: str) -> None:
    """A wrong page, page size or page count is refused, naming the field."""
    with fails(field):
        check_pagination(pagination, REQUEST, number=number, per_page=100)


def test_row_count_must_match_the_page() -> None:
    """Too few rows on a page that is not the last, or too many on the last, are refused."""
    with fails("data"):
        check_usage_page(
            page(rows(1, 2), total_items=150),
            REQUEST,
            number=1,
            per_page=100,
            grouping=GROUPING,
            days=DAYS,
        )
    with fails("data"):
        check_usage_page(
            page(rows(1, 2, 3), total_items=2),
            REQUEST,
            number=1,
            per_page=100,
            grouping=GROUPING,
            days=DAYS,
        )


def test_negative_counts_and_duplicate_keys_are_refused() -> None:
    """A negative count, or a key twice on one page, is refused with the row named."""
    with fails("data[1].requests"):
        check_usage_page(
            page(rows(5, -2)), REQUEST, number=1, per_page=100, grouping=GROUPING, days=DAYS
        )
    twice = (UsageRow(("a",), 1, 1), UsageRow(("a",), 2, 2))
    with fails("data[1]"):
        check_usage_page(page(twice), REQUEST, number=1, per_page=100, grouping=GROUPING, days=DAYS)


def test_grouping_must_be_the_one_asked() -> None:
    """A page grouped otherwise than asked is refused."""
    with fails("meta.grouping"):
        check_usage_page(
            page(rows(1)), REQUEST, number=1, per_page=100, grouping=("DAY",), days=DAYS
        )


def facts(page: UsagePage) -> PageFacts:
    """What ``page`` adds to its window, taken as it is (no checks of its own)."""
    return PageFacts(
        frozenset(row.grouped_by for row in page.data),
        sum(row.requests for row in page.data),
        sum(row.traffic_bytes for row in page.data),
    )


def ledger_of(first: UsagePage, expected_pages: int = 2) -> WindowLedger:
    """A ledger that has seen ``first``."""
    ledger = WindowLedger(first.pagination, first.totals, expected_pages=expected_pages)
    ledger.add(first, facts(first), REQUEST)
    return ledger


def two_pages() -> tuple[UsagePage, UsagePage]:
    """Pages 1 and 2 of a window of 150 rows whose totals are right."""
    first_rows, second_rows = rows(*[1] * 100), rows(*[2] * 50, start=100)
    totals = UsageTotals(200, 2000)
    pagination = Pagination(1, 100, 150, 2)
    return (
        UsagePage(first_rows, totals, pagination, GROUPING),
        UsagePage(second_rows, totals, Pagination(2, 100, 150, 2), GROUPING),
    )


def test_a_window_that_agrees_passes_and_finishes() -> None:
    """Pages that agree, whose rows sum to the totals, pass; the ledger knows it is done."""
    first, second = two_pages()
    ledger = ledger_of(first)
    assert not ledger.finished
    ledger.add(second, facts(second), REQUEST)
    assert ledger.finished


def test_pages_of_a_window_must_agree() -> None:
    """A page count, item count or totals that change between pages are refused."""
    first, second = two_pages()
    grown = UsagePage(second.data, second.totals, Pagination(2, 100, 250, 3), GROUPING)
    with fails("meta.pagination.total_items"):
        ledger_of(first).add(grown, facts(grown), REQUEST)
    moved = UsagePage(second.data, UsageTotals(201, 2000), second.pagination, GROUPING)
    with fails("totals"):
        ledger_of(first).add(moved, facts(moved), REQUEST)


def test_a_key_twice_in_a_window_is_refused() -> None:
    """A key on page 2 that page 1 already had is refused (a page served twice)."""
    first, _ = two_pages()
    again = UsagePage(first.data[:50], first.totals, Pagination(2, 100, 150, 2), GROUPING)
    with fails("data[0]"):
        ledger_of(first).add(again, facts(again), REQUEST)


def test_rows_must_sum_to_the_totals() -> None:
    """Once every page is in, rows that do not sum to the totals are refused."""
    first, second = two_pages()
    short = UsagePage(rows(*[2] * 49, 1, start=100), second.totals, second.pagination, GROUPING)
    with fails("totals"):
        ledger_of(first).add(short, facts(short), REQUEST)


def test_a_partial_window_is_not_summed() -> None:
    """When an earlier run fetched some pages, the sum cannot be checked and is not."""
    _, second = two_pages()
    ledger = WindowLedger(second.pagination, second.totals, expected_pages=1, complete=False)
    ledger.add(second, facts(second), REQUEST)
    assert ledger.finished


@pytest.mark.parametrize("day", ["2024-12-31", "2025-02-01", "2025-1-05", "20250105", "soon"])
def test_a_day_outside_its_window_is_refused(day: str) -> None:
    """A DAY key that is not a YYYY-MM-DD UTC day of the window asked for is refused."""
    data = (UsageRow(("2025-01-01", "a"), 1, 1), UsageRow((day, "b"), 2, 2))
    dated = UsagePage(data, UsageTotals(3, 3), Pagination(1, 100, 2, 1), ("DAY", "TARGET"))
    with fails("data[1].grouped_by[0]"):
        check_usage_page(
            dated, REQUEST, number=1, per_page=100, grouping=("DAY", "TARGET"), days=DAYS
        )
