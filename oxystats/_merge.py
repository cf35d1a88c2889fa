"""Merging the pages of many windows into one report. Pure, no I/O."""

from __future__ import annotations

from oxystats._models import GroupBy, UsagePage, UsageReport, UsageRow, UsageTotals

__all__ = ["UsageMerger"]

# Where a row was seen, (window index, page number, row index), packed into one
# int that orders the same way: sorting a backfill's keys by tuples costs far
# more than the merge itself. Pages hold at most 100 rows; 2**20 leaves room.
_ROW_BITS = 20
_PAGE_BITS = 20


def _position(window_index: int, page_number: int, row_index: int) -> int:
    return (((window_index << _PAGE_BITS) | page_number) << _ROW_BITS) | row_index


class _Tally:
    __slots__ = ("first", "requests", "row", "traffic_bytes")

    def __init__(self, row: UsageRow, first: int) -> None:
        # The page's own row, reused as is unless another window adds to it.
        self.row: UsageRow | None = row
        self.requests = row.requests
        self.traffic_bytes = row.traffic_bytes
        self.first = first

    def merged(self, key: tuple[str, ...]) -> UsageRow:
        return self.row or UsageRow(key, self.requests, self.traffic_bytes)


def _first_seen(item: tuple[tuple[str, ...], _Tally]) -> int:
    return item[1].first


class UsageMerger:
    """Sums rows with equal ``grouped_by`` across windows, in any arrival order.

    Pages arrive in whatever order the network delivers them, yet the report
    must not depend on it: each key remembers the earliest position (window,
    page, row) it was seen at, and rows are ordered by that. Memory holds one
    entry per distinct key, never the pages themselves.
    """

    def __init__(self, grouping: tuple[GroupBy, ...]) -> None:
        self._grouping = grouping
        self._tallies: dict[tuple[str, ...], _Tally] = {}
        self._requests = 0
        self._traffic_bytes = 0

    def add_rows(self, page: UsagePage, window_index: int, page_number: int) -> None:
        """Fold one page's rows in."""
        tallies = self._tallies
        base = _position(window_index, page_number, 0)
        for index, row in enumerate(page.data):
            position = base + index
            tally = tallies.get(row.grouped_by)
            if tally is None:
                tallies[row.grouped_by] = _Tally(row, position)
                continue
            tally.row = None
            tally.requests += row.requests
            tally.traffic_bytes += row.traffic_bytes
            if position < tally.first:
                tally.first = position

    def add_totals(self, totals: UsageTotals) -> None:
        """Fold one window's totals in (once per window: they cover all its pages)."""
        self._requests += totals.requests
        self._traffic_bytes += totals.traffic_bytes

    def report(self, *, unknown_instances: tuple[str, ...] = ()) -> UsageReport:
        """The merged report, rows in order of first appearance."""
        ordered = sorted(self._tallies.items(), key=_first_seen)
        return UsageReport(
            [tally.merged(key) for key, tally in ordered],
            UsageTotals(self._requests, self._traffic_bytes),
            self._grouping,
            unknown_instances,
        )
