"""Tests of merging pages from many windows."""

from __future__ import annotations

import itertools

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
