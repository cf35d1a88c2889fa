"""Merging the pages of many windows into one report. Pure, no I/O."""

from __future__ import annotations

from oxystats._models import FetchedPage, GroupBy, UsagePage, UsageReport, UsageRow, UsageTotals
from oxystats._query import check_group_by
from oxystats._types import Grouping

__all__ = ["UsageMerger"]

# Where a row was seen, (window index, page number, row index), packed into one
# int that orders the same way: sorting a backfill's keys by tuples costs far
# more than the merge itself. Pages hold at most 100 rows; 2**20 leaves room.
_ROW_BITS = 20
_PAGE_BITS = 20


def _position(window_index: int, page_number: int, row_index: int) -> int:
    return (((window_index << _PAGE_BITS) | page_number) << _ROW_BITS) | row_index


class UsageMerger:
    """Folds fetched pages into one report, as `AsyncClient.usage` does.

    The result is a [`UsageReport`][oxystats.UsageReport], exactly as
    [`AsyncClient.usage`][oxystats.AsyncClient.usage] would have returned it.

    Rows with equal ``grouped_by`` from different windows are summed, and each
    window's totals are counted once. Pages may come in any order, yet the
    report does not depend on it: each key remembers the earliest position
    (window, page, row) it was seen at, and rows are ordered by that. Memory
    holds one entry per distinct key, never the pages themselves.

    Example:
        ```python
        merger = oxystats.UsageMerger(["DAY"])
        async with client.stream_usage_pages("HB", start, end, ["DAY"]) as pages:
            async for fetched in pages:
                merger.add(fetched)
        report = merger.report()
        ```

    Args:
        grouping: The grouping of the pages, as given to the call that fetched them.
    """

    def __init__(self, grouping: Grouping) -> None:
        self._grouping: tuple[GroupBy, ...] = check_group_by(grouping)
        # Per key, the page's own row (replaced by a summed one when another
        # window adds to it) and the earliest position it was seen at. Two flat
        # dicts, not an object per key: every object of ours would be one more
        # for the garbage collector to track, and a backfill's full collections
        # are what make its rows expensive.
        self._rows: dict[tuple[str, ...], UsageRow] = {}
        self._first_seen: dict[tuple[str, ...], int] = {}
        self._requests = 0
        self._traffic_bytes = 0

    def add(self, fetched: FetchedPage) -> None:
        """Fold one fetched page in: its rows, and its window's totals if it carries them."""
        self.add_rows(fetched.page, fetched.window_index, fetched.number)
        totals = fetched.window_totals
        if totals is not None:
            self.add_totals(totals)

    def add_rows(self, page: UsagePage, window_index: int, page_number: int) -> None:
        """Fold one page's rows in, at its position (window index, page number)."""
        rows, first_seen = self._rows, self._first_seen
        base = _position(window_index, page_number, 0)
        data = page.data
        arrived = {row.grouped_by: row for row in data}
        if len(arrived) == len(data) and rows.keys().isdisjoint(arrived):
            # The usual case, done in C: every key is new.
            rows.update(arrived)
            first_seen.update(zip(arrived, range(base, base + len(data)), strict=True))
            return
        for index, row in enumerate(data):
            key = row.grouped_by
            seen = rows.get(key)
            if seen is None:
                rows[key] = row
                first_seen[key] = base + index
            else:
                rows[key] = UsageRow(
                    key, seen.requests + row.requests, seen.traffic_bytes + row.traffic_bytes
                )
                first_seen[key] = min(first_seen[key], base + index)

    def add_totals(self, totals: UsageTotals) -> None:
        """Fold one window's totals in (once per window: they cover all its pages)."""
        self._requests += totals.requests
        self._traffic_bytes += totals.traffic_bytes

    def report(self, *, unknown_instances: tuple[str, ...] = ()) -> UsageReport:
        """The merged report so far, rows in order of first appearance."""
        rows = self._rows
        return UsageReport(
            [rows[key] for key in sorted(rows, key=self._first_seen.__getitem__)],
            UsageTotals(self._requests, self._traffic_bytes),
            self._grouping,
            unknown_instances,
        )
