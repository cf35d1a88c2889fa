"""What a sync fetches, planned without a database: arguments, days, windows, pages."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import oxystats
from oxystats import FetchedPage, GroupBy, Pagination, UsagePage, UsageRow, UsageTotals, Window
from oxystats._sync_plan import (
    DayRange,
    ProductState,
    check_sync_arguments,
    complete_through,
    days_to_fetch,
    window_days,
)
from oxystats._sync_windows import WindowAssembler

NOW = datetime(2025, 3, 10, 12, 30, 15, 999_000, tzinfo=UTC)
TODAY = date(2025, 3, 10)
GOOD: dict[str, Any] = {
    "products": ["HB"],
    "group_by": ["DAY", "TARGET"],
    "since": date(2024, 1, 1),
    "lookback": timedelta(days=2),
    "table": "usage",
    "now": NOW,
}


def plan(state: ProductState | None, since: date | None = None, lookback: int = 2) -> DayRange:
    """The days an HB sync fetches today."""
    return days_to_fetch(
        state, product="HB", table="usage", since=since, lookback_days=lookback, today=TODAY
    )


# -- arguments -----------------------------------------------------------------------------


def test_good_arguments_are_normalised() -> None:
    """Grouping in column order, lookback in days, now in UTC to the second."""
    checked = check_sync_arguments(
        **{
            **GOOD,
            "group_by": ["target", "DAY"],
            "now": NOW.astimezone(timezone(timedelta(hours=-5))),
        }
    )
    assert checked.products == ("HB",)
    assert checked.grouping == (GroupBy.DAY, GroupBy.TARGET)
    assert checked.lookback_days == 2
    assert checked.now == NOW.replace(microsecond=0)
    assert checked.now.tzinfo is UTC
    assert checked.today == TODAY


def test_now_defaults_to_the_clock() -> None:
    """Without now, a sync is as of the current second, in UTC."""
    before = datetime.now(UTC).replace(microsecond=0)
    checked = check_sync_arguments(**{**GOOD, "now": None})
    assert before <= checked.now <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"products": None}, ValueError, "at least one product"),
        ({"products": []}, ValueError, "must not be empty"),
        ({"products": 3}, TypeError, "products"),
        ({"group_by": ["TARGET"]}, ValueError, "must include DAY"),
        ({"group_by": ["DAY", "HOUR"]}, ValueError, "unknown group_by"),
        ({"since": datetime(2024, 1, 1, tzinfo=UTC)}, TypeError, "whole UTC days"),
        ({"since": "2024-01-01"}, TypeError, "since must be a date"),
        ({"since": date(2025, 3, 11)}, ValueError, "after today"),
        ({"lookback": 2}, TypeError, "timedelta"),
        ({"lookback": timedelta(hours=36)}, ValueError, "whole number of days"),
        ({"lookback": timedelta(days=-1)}, ValueError, "0 or more"),
        ({"table": "Usage"}, ValueError, "lowercase"),
        ({"table": "1usage"}, ValueError, "not starting with a digit"),
        ({"table": "u" * 64}, ValueError, "1 to 63"),
        ({"table": "usage; drop table x"}, ValueError, "needs no quotes"),
        ({"table": "sync_runs"}, ValueError, "record their runs"),
        ({"table": None}, TypeError, "table must be a string"),
        ({"now": datetime(2025, 3, 10)}, ValueError, "timezone-aware"),
        ({"now": TODAY}, TypeError, "now must be"),
    ],
)
def test_bad_arguments(change: dict[str, Any], error: type[Exception], words: str) -> None:
    """Each bad argument is a ValueError or TypeError that says what is wrong."""
    with pytest.raises(error, match=words):
        check_sync_arguments(**{**GOOD, **change})


# -- days ----------------------------------------------------------------------------------


def test_first_sync_starts_at_since() -> None:
    """A product never synced is backfilled from since, up to today."""
    assert plan(None, since=date(2024, 1, 1)) == DayRange(date(2024, 1, 1), TODAY)


def test_first_sync_needs_since() -> None:
    """A product never synced, and no since: the error says how to start."""
    with pytest.raises(ValueError, match="table 'usage' has no HB usage yet: pass since"):
        plan(None)


def test_later_sync_fetches_the_lookback_and_what_is_new() -> None:
    """From the day after the last complete day, minus the lookback, up to today."""
    state = ProductState(date(2024, 1, 1), complete_through=date(2025, 2, 27))
    assert plan(state) == DayRange(date(2025, 2, 26), TODAY)
    assert plan(state, lookback=0) == DayRange(date(2025, 2, 28), TODAY)


def test_later_sync_ignores_since() -> None:
    """Once a product has rows, since no longer matters (a cron line may always pass it)."""
    state = ProductState(date(2024, 1, 1), complete_through=date(2025, 3, 9))
    assert plan(state, since=date(2025, 3, 1)) == plan(state) == DayRange(date(2025, 3, 8), TODAY)


def test_lookback_never_reaches_before_the_first_day() -> None:
    """The lookback stops at the first day any sync wrote."""
    state = ProductState(date(2025, 3, 9), complete_through=date(2025, 3, 9))
    assert plan(state, lookback=30) == DayRange(date(2025, 3, 9), TODAY)


def test_nothing_complete_yet_refetches_from_the_first_day() -> None:
    """A product whose only sync ran on its first day starts again from that day."""
    assert plan(ProductState(TODAY, None)) == DayRange(TODAY, TODAY)


def test_today_is_always_fetched() -> None:
    """Even with a state that claims later days (a clock set back), today is fetched."""
    state = ProductState(date(2024, 1, 1), complete_through=date(2025, 4, 1))
    assert plan(state) == DayRange(TODAY, TODAY)


def test_complete_through_is_the_last_day_that_had_ended() -> None:
    """Days before today are complete; a range of today only has none."""
    assert complete_through(DayRange(date(2025, 3, 1), TODAY), TODAY) == date(2025, 3, 9)
    assert complete_through(DayRange(date(2025, 2, 1), date(2025, 3, 3)), TODAY) == date(2025, 3, 3)
    assert complete_through(DayRange(TODAY, TODAY), TODAY) is None


# -- windows -------------------------------------------------------------------------------


@given(
    first=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    length=st.integers(min_value=1, max_value=1200),
)
def test_windows_of_whole_days_are_whole_days(first: date, length: int) -> None:
    """Every window of a whole-day range is whole days, in order, with no gap or overlap."""
    days = DayRange(first, first + timedelta(days=length - 1))
    windows = oxystats.UsageQuery.build("HB", days.first, days.last, ["DAY"]).windows()
    covered = [window_days(window) for window in windows]
    assert covered[0].first == days.first
    assert covered[-1].last == days.last
    for before, after in itertools.pairwise(covered):
        assert after.first == before.last + timedelta(days=1)
    assert all(1 <= part.days <= 31 for part in covered)


def test_a_window_that_cuts_a_day_is_refused() -> None:
    """A window not made of whole UTC days is a bug, caught before any request."""
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(RuntimeError, match="cuts a UTC day"):
        window_days(Window(start, start + timedelta(days=2)))


# -- pages into windows --------------------------------------------------------------------


def window_of(index: int) -> Window:
    """The index-th 31-day window from 2025-01-01."""
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=31 * index)
    return Window(start, start + timedelta(days=31, seconds=-1))


def page_of(index: int, number: int, total: int, *rows: tuple[str, str, int]) -> FetchedPage:
    """Page ``number`` of ``total`` of window ``index``, with (day, target, requests) rows."""
    data = tuple(UsageRow((day, target), requests, requests * 10) for day, target, requests in rows)
    page = UsagePage(
        data, UsageTotals(0, 0), Pagination(number, 100, len(data), total), ("DAY", "TARGET")
    )
    return FetchedPage(index, window_of(index), number, page)


def assembler() -> WindowAssembler:
    """An assembler of DAY x TARGET pages."""
    return WindowAssembler((GroupBy.DAY, GroupBy.TARGET))


def test_windows_come_whole_and_in_order() -> None:
    """A window is handed out once all its pages are in, and never before the one before it."""
    pages = assembler()
    assert pages.add(page_of(1, 1, 1, ("2025-02-01", "a", 5))) == []
    assert pages.add(page_of(0, 2, 2, ("2025-01-02", "a", 1))) == []
    ready = pages.add(page_of(0, 1, 2, ("2025-01-01", "a", 2)))
    assert [window.index for window in ready] == [0, 1]
    assert ready[0].days == DayRange(date(2025, 1, 1), date(2025, 1, 31))
    assert {row.grouped_by: row.requests for row in ready[0].rows} == {
        ("2025-01-01", "a"): 2,
        ("2025-01-02", "a"): 1,
    }
    assert pages.handed_out == 2
    assert pages.waiting == 0


def test_a_page_seen_twice_counts_once() -> None:
    """A repeated page neither completes a window early nor doubles its rows."""
    pages = assembler()
    assert pages.add(page_of(0, 1, 2, ("2025-01-01", "a", 2))) == []
    assert pages.add(page_of(0, 1, 2, ("2025-01-01", "a", 2))) == []
    (whole,) = pages.add(page_of(0, 2, 2, ("2025-01-03", "b", 4)))
    assert sum(row.requests for row in whole.rows) == 6


def test_page_one_decides_how_many_pages_a_window_has() -> None:
    """A later page that claims another total does not change what makes the window whole."""
    pages = assembler()
    assert pages.add(page_of(0, 2, 3, ("2025-01-02", "a", 1))) == []
    assert [w.index for w in pages.add(page_of(0, 1, 2, ("2025-01-01", "a", 1)))] == [0]
