"""Splitting a date range into windows the API accepts. Pure functions, no I/O.

The API takes ``date_from`` and ``date_to``, both inclusive, to the second,
and refuses ``date_to - date_from`` over 31 days. A longer range becomes
consecutive windows ``[start, start + 31 days]``, the next one starting one
second after the previous one ends: no gap, no overlap, as few as possible.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

import attrs

from oxystats._models import Window

__all__: list[str] = []

MAX_SPAN = timedelta(days=31)
"""The longest ``date_to - date_from`` one request may ask for."""

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


def _as_datetime(value: object, name: str, *, end: bool) -> datetime:
    # datetime is a subclass of date, so test it first.
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{name} is a naive datetime ({value.isoformat()}); pass a timezone-aware "
                "datetime (for example datetime(..., tzinfo=datetime.UTC)) or a date"
            )
        return value
    if isinstance(value, date):
        # A date means the whole UTC day.
        return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    raise TypeError(f"{name} must be a datetime or a date, not {type(value).__name__}")


def _ceil_to_second(value: datetime) -> datetime:
    if value.microsecond:
        return value.replace(microsecond=0) + _SECOND
    return value


def normalize_range(date_from: object, date_to: object) -> tuple[datetime, datetime]:
    """Check a caller's range and return it in whole seconds, ends inclusive.

    ``date`` values cover whole UTC days. Aware datetimes keep their offset.
    Fractions of a second are rounded inward (the start up, the end down),
    since the API speaks in whole seconds and both ends are inclusive.
    """
    start = _ceil_to_second(_as_datetime(date_from, "date_from", end=False))
    end = _as_datetime(date_to, "date_to", end=True).replace(microsecond=0)
    # Aware datetimes sharing one tzinfo compare by wall clock; compare instants.
    if end.astimezone(UTC) < start.astimezone(UTC):
        raise ValueError(
            f"date_to ({end.isoformat()}) is before date_from ({start.isoformat()}); "
            "the range must run forwards (both ends are inclusive)"
        )
    return start, end


def _count(first: datetime, last: datetime, span: timedelta) -> int:
    """How many windows of ``span`` (each ending a second before the next) cover the range."""
    return math.ceil((last - first + _SECOND) / (span + _SECOND))


def _even_windows(
    first: datetime, last: datetime, span: timedelta
) -> list[tuple[datetime, datetime]]:
    step = span + _SECOND
    count = _count(first, last, span)
    return [
        (first + index * step, min(first + index * step + span, last)) for index in range(count)
    ]


def window_count(start: datetime, end: datetime, *, max_span: timedelta = MAX_SPAN) -> int:
    """How many windows `split_range` makes of ``[start, end]``, without making them."""
    return max(1, _count(start.astimezone(UTC), end.astimezone(UTC), max_span))


def split_range(start: datetime, end: datetime, *, max_span: timedelta = MAX_SPAN) -> list[Window]:
    """Split ``[start, end]`` (inclusive, whole seconds) into the fewest windows.

    Each window starts one second after the previous one ends, and all but
    the last are equally long. A range that starts at midnight (in its own
    offset) gets windows of whole days, each ending at 23:59:59, whenever
    that takes no extra window: then no day is cut by a window edge, so a
    ``DAY`` row comes from one window only. Otherwise every window but the
    last spans the full ``max_span``. Windows keep ``start``'s UTC offset, so
    requests show the caller's own clock.
    """
    # Arithmetic on aware datetimes that share a tzinfo is wall-clock
    # arithmetic (a DST change would stretch a window past 31 days), so
    # compute in UTC and only present the results in the caller's zone.
    tz = start.tzinfo
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    if last < first:
        raise ValueError("end is before start")
    if max_span < timedelta(0):
        raise ValueError("max_span must not be negative")
    windows = _even_windows(first, last, max_span)
    whole_days = (max_span // _DAY) * _DAY
    if whole_days and start.time() == time.min:
        aligned = _even_windows(first, last, whole_days - _SECOND)
        if len(aligned) == len(windows):
            windows = aligned
    result = [Window(a.astimezone(tz), b.astimezone(tz)) for a, b in windows]
    # The ends are the caller's own: a time that does not exist on the local
    # clock (skipped by a DST change) is the same instant as its round trip
    # through UTC, but another wall-clock time, and aware datetimes of one
    # zone compare by wall clock.
    result[0] = attrs.evolve(result[0], start=start)
    result[-1] = attrs.evolve(result[-1], end=end)
    return result
