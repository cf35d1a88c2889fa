"""What a sync fetches: its checked arguments, and the days of each product. Pure, no I/O.

A sync keeps a table of whole UTC days current. A product's first sync
fetches from ``since``; a later one fetches again from its last complete day
minus the lookback, up to today, so that a day's figures converge to the
API's final numbers. Every range is whole UTC days, so each of its 31-day
windows is whole days too, and a window's days can be replaced in one
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import attrs

from oxystats._models import GroupBy, Window
from oxystats._query import check_group_by, check_products

__all__: list[str] = []

DEFAULT_TABLE = "usage"
"""The usage table a sync keeps, unless told another."""

RUNS_TABLE = "sync_runs"
"""Where every sync records what it fetched; shared by every usage table of a database."""

DEFAULT_LOOKBACK = timedelta(days=2)
"""How many complete days a later sync fetches again: recent usage is still being counted."""

# Lowercase only: PostgreSQL folds unquoted names to lowercase, and a table
# queried by hand should need no quotes. 63 bytes is PostgreSQL's limit.
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DAY = timedelta(days=1)
_LAST_SECOND = time(23, 59, 59)


@attrs.frozen
class DayRange:
    """Whole UTC days, both ends inclusive."""

    first: date
    last: date

    @property
    def days(self) -> int:
        """How many days the range holds."""
        return (self.last - self.first).days + 1

    def __str__(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


@attrs.frozen
class SyncArguments:
    """The checked arguments of one sync."""

    products: tuple[str, ...]
    grouping: tuple[GroupBy, ...]
    """In the table's column order: DAY, then TARGET, then INSTANCE, as given."""
    since: date | None
    lookback_days: int
    table: str
    now: datetime
    """In UTC, to the second."""

    @property
    def today(self) -> date:
        """The UTC day of `now`: the one day a sync always fetches, and never complete."""
        return self.now.date()


@attrs.frozen
class ProductState:
    """What earlier syncs of one product left in a table."""

    first_day: date
    """The first day any sync of the product wrote."""
    complete_through: date | None
    """The last day written after it had ended (in UTC), or `None` if none was."""


def check_table(table: object) -> str:
    """A table name that needs no quotes in SQL: lowercase letters, digits, underscores."""
    if not isinstance(table, str):
        raise TypeError(f"table must be a string, not {type(table).__name__}")
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"table must be 1 to 63 lowercase letters, digits or underscores, not starting "
            f"with a digit (a name that needs no quotes in SQL), got {table!r}"
        )
    if table == RUNS_TABLE:
        raise ValueError(f"table {RUNS_TABLE!r} is where syncs record their runs; pick another")
    return table


def check_sync_grouping(group_by: object) -> tuple[GroupBy, ...]:
    """A grouping that includes DAY, in the table's column order."""
    grouping = check_group_by(group_by)
    if GroupBy.DAY not in grouping:
        raise ValueError(
            "group_by must include DAY: a sync keeps whole days current, "
            f"got {[g.value for g in grouping]}"
        )
    return tuple(group for group in GroupBy if group in grouping)


def check_since(since: object) -> date | None:
    """`None`, or a day (a `date`, not a `datetime`: a sync works in whole UTC days)."""
    if since is None:
        return None
    if isinstance(since, datetime):
        raise TypeError(
            f"since must be a date: a sync works in whole UTC days, got {since.isoformat()}"
        )
    if not isinstance(since, date):
        raise TypeError(f"since must be a date or None, not {type(since).__name__}")
    return since


def check_lookback(lookback: object) -> int:
    """A whole, non-negative number of days, as a `timedelta`; returned as days."""
    if not isinstance(lookback, timedelta):
        raise TypeError(
            f"lookback must be a datetime.timedelta such as timedelta(days=2), "
            f"not {type(lookback).__name__}"
        )
    if lookback < timedelta(0) or lookback % _DAY:
        raise ValueError(f"lookback must be a whole number of days, 0 or more, got {lookback!r}")
    return lookback.days


def check_now(now: object) -> datetime:
    """`now` in UTC to the second; `None` reads the clock."""
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a timezone-aware datetime or None, not {type(now).__name__}")
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got the naive {now.isoformat()}")
    return now.astimezone(UTC).replace(microsecond=0)


def check_sync_arguments(
    *,
    products: object,
    group_by: object,
    since: object,
    lookback: object,
    table: object,
    now: object,
) -> SyncArguments:
    """Check everything a sync is told before it opens a database or sends a request.

    Raises:
        ValueError: An argument has the right type but a wrong value.
        TypeError: An argument has the wrong type.
    """
    checked_products = check_products(products)
    if checked_products is None:
        raise ValueError("products must name at least one product, such as 'HB'")
    arguments = SyncArguments(
        products=checked_products,
        grouping=check_sync_grouping(group_by),
        since=check_since(since),
        lookback_days=check_lookback(lookback),
        table=check_table(table),
        now=check_now(now),
    )
    if arguments.since is not None and arguments.since > arguments.today:
        raise ValueError(
            f"since ({arguments.since.isoformat()}) is after today "
            f"({arguments.today.isoformat()} UTC): there is nothing to sync yet"
        )
    return arguments


def days_to_fetch(
    state: ProductState | None,
    *,
    product: str,
    table: str,
    since: date | None,
    lookback_days: int,
    today: date,
) -> DayRange:
    """The days a sync of ``product`` fetches and replaces: always up to today.

    First sync (no ``state``): from ``since``. Later ones: from the day after
    the last complete day, minus ``lookback_days``, but never before the first
    day any sync wrote. ``since`` is ignored once a product has a state, so a
    scheduled job can pass the same arguments every time.

    Raises:
        ValueError: ``product`` was never synced and ``since`` is `None`.
    """
    if state is None:
        if since is None:
            raise ValueError(
                f"table {table!r} has no {product} usage yet: pass since (--since) "
                "to say from which day to backfill"
            )
        return DayRange(min(since, today), today)
    if state.complete_through is None:
        first = state.first_day
    else:
        first = max(state.first_day, state.complete_through + _DAY - lookback_days * _DAY)
    return DayRange(min(first, today), today)


def window_days(window: Window) -> DayRange:
    """The whole UTC days of a window of a whole-day range.

    Raises:
        RuntimeError: The window cuts a day (a window of a whole-day range never does).
    """
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if start.time() != time.min or end.time() != _LAST_SECOND:
        raise RuntimeError(f"window {start.isoformat()} to {end.isoformat()} cuts a UTC day")
    return DayRange(start.date(), end.date())


def complete_through(days: DayRange, today: date) -> date | None:
    """The last of ``days`` that had ended by ``today`` (UTC), or `None` if none had."""
    last = min(days.last, today - _DAY)
    return last if last >= days.first else None


def grouping_label(grouping: Iterable[GroupBy]) -> str:
    """How `sync_runs` shows a grouping: ``"DAY,TARGET"``."""
    return ",".join(group.value for group in grouping)
