"""Folding streamed pages into whole windows, handed out in order. Pure, no I/O.

Pages arrive as they are fetched, several windows at once. A window is whole
once every page its page 1 announced has arrived; windows are handed out in
chronological order, so that the days written to the database always form a
prefix of the range, whenever a sync is interrupted.
"""

from __future__ import annotations

from datetime import date

import attrs

from oxystats._errors import ResponseFormatError
from oxystats._merge import UsageMerger
from oxystats._models import FetchedPage, GroupBy, UsageRow
from oxystats._protocol import usage_request
from oxystats._sync_plan import DayRange, window_days

__all__: list[str] = []


@attrs.frozen
class WholeWindow:
    """Every row of one window, merged by key."""

    index: int
    """The window's position in the range, from 0."""
    days: DayRange
    """The whole UTC days it covers: the days its rows replace."""
    rows: list[UsageRow]
    """Its rows; ``grouped_by[0]`` is the day, within `days`."""


@attrs.define
class _OpenWindow:
    days: DayRange
    merger: UsageMerger
    pages: set[int] = attrs.field(factory=set)
    total_pages: int | None = None

    @property
    def whole(self) -> bool:
        return self.total_pages is not None and len(self.pages) >= self.total_pages


class WindowAssembler:
    """Takes the pages of a whole-day range, gives back its windows whole and in order.

    Args:
        product: The product the pages are of (for error messages).
        grouping: The grouping they were fetched with; DAY first.
    """

    def __init__(self, product: str, grouping: tuple[GroupBy, ...]) -> None:
        self._product = product
        self._grouping = grouping
        self._open: dict[int, _OpenWindow] = {}
        self._next = 0

    @property
    def handed_out(self) -> int:
        """How many windows `add` has handed out so far."""
        return self._next

    @property
    def waiting(self) -> int:
        """Windows with some pages in, not handed out yet."""
        return len(self._open)

    def add(self, fetched: FetchedPage) -> list[WholeWindow]:
        """Take one page; return the windows it made whole, with any whole ones after them.

        Raises:
            ResponseFormatError: A row's day is not a ``YYYY-MM-DD`` day of its window.
        """
        window = self._open.get(fetched.window_index)
        if window is None:
            window = _OpenWindow(window_days(fetched.window), UsageMerger(self._grouping))
            self._open[fetched.window_index] = window
        if fetched.number in window.pages:
            return []
        self._check_days(fetched, window.days)
        window.pages.add(fetched.number)
        if fetched.number == 1:
            # Page 1 is the count the fetching went by; later pages may claim other totals.
            window.total_pages = fetched.total_pages
        window.merger.add_rows(fetched.page, fetched.window_index, fetched.number)
        ready: list[WholeWindow] = []
        while (head := self._open.get(self._next)) is not None and head.whole:
            del self._open[self._next]
            ready.append(WholeWindow(self._next, head.days, head.merger.report().rows))
            self._next += 1
        return ready

    def _check_days(self, fetched: FetchedPage, days: DayRange) -> None:
        for position, row in enumerate(fetched.page.data):
            key = row.grouped_by[0]
            try:
                day = date.fromisoformat(key)
            except ValueError:
                day = None
            if day is None or len(key) != len("YYYY-MM-DD") or not days.first <= day <= days.last:
                request = usage_request(
                    self._product, fetched.window, self._grouping, None, fetched.number
                )
                raise ResponseFormatError(
                    f"the day key {key!r} is not a YYYY-MM-DD day from {days}",
                    request,
                    field=f"data[{position}].grouped_by[0]",
                )
