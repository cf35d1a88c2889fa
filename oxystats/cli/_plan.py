"""``oxystats usage --dry-run``: what a run would fetch, and the least time it can take.

Built from the public API only: `UsageQuery.windows` for the windows, and the
`Limit` values for the time. A window's page 1 tells how many pages the window
has, so before anything is sent only the first pages are known: one request
per window. The time is a lower bound for those: under a limit no more than
``burst`` requests start in any ``burst / rate`` seconds, so the last of ``n``
starts at least ``(n - 1) // burst`` windows after the first, and latency,
further pages and retries only add to that.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from oxystats import Limit, UsageQuery, Window
from oxystats.cli._destination import Destination

__all__ = ["duration", "minimum_seconds", "plan_lines"]

_LISTED = 10
"""Windows listed in full; past that, the first and the last few."""
_HEAD, _TAIL = 5, 3

_LABEL = 12
_WIDTH = 80


def minimum_seconds(requests: int, limits: Iterable[Limit]) -> float:
    """The least time from the first start to the last of ``requests`` under every limit."""
    if requests <= 1:
        return 0.0
    return max((requests - 1) // limit.burst * limit.window for limit in limits)


def plan_lines(
    query: UsageQuery,
    *,
    key_limit: Limit,
    account_limit: Limit,
    fmt: str,
    destination: Destination,
    checkpoint: Path | None,
) -> list[str]:
    """The plan of a usage run, as lines of at most 80 columns."""
    windows = query.windows()
    requests = len(windows)
    grouping = ", ".join(group.value for group in query.grouping)
    instances = "all" if query.instances is None else ", ".join(query.instances)
    span = f"{_utc(query.start)} .. {_utc(query.end)} UTC ({_days(query.start, query.end)})"
    binding = key_limit
    if minimum_seconds(requests, [account_limit]) > minimum_seconds(requests, [key_limit]):
        binding = account_limit
    pace = f"{binding.rate:g}/s, burst {binding.burst}"
    pace += " (--rate, --burst)" if binding is key_limit else " (the account-wide limit)"
    seconds = minimum_seconds(requests, [key_limit, account_limit])
    lines = [
        "Dry run: the plan of this command; nothing is sent.",
        *_rows("product", query.product),
        *_rows("group by", grouping),
        *_rows("instances", instances),
        *_rows("range", span),
        *_rows("windows", f"{_count(len(windows), 'window')} of at most 31 days:"),
        *_window_lines(windows),
        *_rows(
            "requests",
            f"{_count(requests, 'first page')}, one per window; how many more pages a "
            "window has is known only once its page 1 is in",
        ),
        *_rows(
            "time",
            f"at least {duration(seconds)} for {'it' if requests == 1 else 'them'} at {pace}; "
            "a lower bound: later pages, latency and retries only add to it",
        ),
        *_rows("output", f"{fmt} to {destination.describe()}"),
    ]
    if checkpoint is not None:
        state = "exists: the pages it holds are not fetched again" if checkpoint.exists() else "new"
        lines += _rows("checkpoint", f"{checkpoint} ({state})")
    return lines


def _rows(label: str, text: str) -> list[str]:
    """``label`` and ``text`` wrapped under it, within 80 columns."""
    wrapped = textwrap.wrap(text, _WIDTH - _LABEL, break_on_hyphens=False) or [""]
    return [f"{label if i == 0 else '':<{_LABEL}}{line}" for i, line in enumerate(wrapped)]


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _window_lines(windows: list[Window]) -> list[str]:
    width = len(str(len(windows)))

    def line(number: int) -> str:
        window = windows[number - 1]
        return (
            f"{'':<{_LABEL}}{number:>{width}}  {_utc(window.start)} .. {_utc(window.end)}  "
            f"{_days(window.start, window.end)}"
        )

    if len(windows) <= _LISTED:
        return [line(number) for number in range(1, len(windows) + 1)]
    hidden = len(windows) - _HEAD - _TAIL
    return [
        *(line(number) for number in range(1, _HEAD + 1)),
        f"{'':<{_LABEL}}{'':>{width}}  ... {_count(hidden, 'more window')} ...",
        *(line(number) for number in range(len(windows) - _TAIL + 1, len(windows) + 1)),
    ]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _days(start: datetime, end: datetime) -> str:
    """How long ``start .. end`` is: whole days (both ends inclusive), else a fraction.

    The fraction is ``end - start``, as the API measures its 31-day limit.
    """
    span = end - start + timedelta(seconds=1)
    if not span.seconds:
        return _count(span.days, "day")
    return f"{(end - start) / timedelta(days=1):.2f} days"


def duration(seconds: float) -> str:
    """``12.5 s``, ``3 min 20 s`` or ``2 h 5 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
