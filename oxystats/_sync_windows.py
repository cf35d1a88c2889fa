"""Folding streamed pages into whole windows, handed out in order. Pure, no I/O.

Pages arrive as they are fetched, several windows at once. A window is whole
once every page its page 1 announced has arrived; windows are handed out in
chronological order, so that the days written to the database always form a
prefix of the range, whenever a sync is interrupted.
"""

from __future__ import annotations

import attrs

from oxystats._merge import UsageMerger
from oxystats._models import FetchedPage, GroupBy, UsageRow
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
        grouping: The grouping they were fetched with; DAY first.
    """

    def __init__(self, grouping: tuple[GroupBy, ...]) -> None:
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

        Pages come checked (their days included) by the client that fetched them.
        """
        window = self._open.get(fetched.window_index)
        if window is None:
            window = _OpenWindow(window_days(fetched.window), UsageMerger(self._grouping))
            self._open[fetched.window_index] = window
        if fetched.number in window.pages:
            return []
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
