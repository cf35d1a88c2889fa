"""Tests of merging pages from many windows."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from oxystats import GroupBy, Pagination, UsagePage, UsageRow, UsageTotals
from oxystats._merge import UsageMerger


def page(*rows: tuple[str, int]) -> UsagePage:
    """A one-grouping page with the given (target, requests) rows."""
    return UsagePage(
        tuple(UsageRow((key,), requests, requests * 10) for key, requests in rows),
        UsageTotals(sum(r for _, r in rows), sum(r for _, r in rows) * 10),
        Pagination(1, 100, len(rows), 1),
        ("TARGET",),
    )


def test_equal_keys_are_summed_across_windows() -> None:
    """A key seen in two windows becomes one row with the sums."""
    merger = UsageMerger((GroupBy.TARGET,))
    for index, p in enumerate([page(("a", 1), ("b", 2)), page(("b", 3), ("c", 4))]):
        merger.add_rows(p, index, 1)
        merger.add_totals(p.totals)
    report = merger.report()
    assert report.rows == [
        UsageRow(("a",), 1, 10),
        UsageRow(("b",), 5, 50),
        UsageRow(("c",), 4, 40),
    ]
    assert report.totals == UsageTotals(10, 100)
    assert report.grouping == (GroupBy.TARGET,)


def test_order_does_not_depend_on_arrival() -> None:
    """Pages folded in any order give the same report."""
    pages = [
        (0, 1, page(("x", 1), ("y", 1))),
        (0, 2, page(("z", 1))),
        (1, 1, page(("y", 2), ("w", 1))),
    ]
    reports = []
    for order in itertools.permutations(pages):
        merger = UsageMerger((GroupBy.TARGET,))
        for window, number, p in order:
            merger.add_rows(p, window, number)
        reports.append(merger.report())
    assert all(report == reports[0] for report in reports)
    assert [row.grouped_by[0] for row in reports[0].rows] == ["x", "y", "z", "w"]


def test_a_key_twice_in_one_page_is_summed() -> None:
    """Equal keys within one page are summed too, at the first one's place."""
    merger = UsageMerger((GroupBy.TARGET,))
    merger.add_rows(page(("a", 1), ("b", 2), ("a", 3)), 0, 1)
    assert merger.report().rows == [UsageRow(("a",), 4, 40), UsageRow(("b",), 2, 20)]


_keys = st.sampled_from("abcdefgh")
_pages = st.lists(st.lists(st.tuples(_keys, st.integers(0, 1000)), max_size=6), max_size=6)


@given(windows=st.lists(_pages, min_size=1, max_size=4), rng=st.randoms(use_true_random=False))
def test_merge_matches_a_plain_sum_in_position_order(
    windows: list[list[list[tuple[str, int]]]], rng: random.Random
) -> None:
    """Any pages, folded in any order, give the sums ordered by first position."""
    placed = [
        (window, number, page(*rows))
        for window, pages in enumerate(windows)
        for number, rows in enumerate(pages, start=1)
    ]
    expected: dict[str, int] = {}
    for _, _, p in placed:  # already in (window, page, row) order
        for row in p.data:
            expected[row.grouped_by[0]] = expected.get(row.grouped_by[0], 0) + row.requests
    rng.shuffle(placed)
    merger = UsageMerger((GroupBy.TARGET,))
    for window, number, p in placed:
        merger.add_rows(p, window, number)
    assert merger.report().rows == [
        UsageRow((key,), requests, requests * 10) for key, requests in expected.items()
    ]
