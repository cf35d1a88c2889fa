"""Tests of the pure date-range splitter."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oxystats._windows import MAX_SPAN, normalize_range, split_range

SECOND = timedelta(seconds=1)
OFFSETS = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=2)),
        timezone(-timedelta(hours=7, minutes=30)),
        ZoneInfo("Europe/Vilnius"),
    ]
)


def span(start: datetime, end: datetime) -> timedelta:
    """Real time between two instants (same-tzinfo subtraction is wall-clock time)."""
    return end.astimezone(UTC) - start.astimezone(UTC)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """Aware ranges of whole seconds, from one second to a few years."""
    tz = draw(OFFSETS)
    start = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(tz)
        )
    ).replace(microsecond=0)
    if draw(st.booleans()):
        # Ranges of whole days from midnight: the case where windows align to days.
        start = start.replace(hour=0, minute=0, second=0)
        days = draw(st.integers(min_value=1, max_value=4 * 365))
        length = days * 86400 - 1 + draw(st.sampled_from([0, 0, 1, 2, 30]))
    else:
        length = draw(st.integers(min_value=0, max_value=4 * 365 * 86400))
    end = (start.astimezone(UTC) + timedelta(seconds=length)).astimezone(tz)
    return start, end


@given(ranges())
def test_windows_cover_the_range_exactly(bounds: tuple[datetime, datetime]) -> None:
    """Windows start at the start, end at the end, and touch with no gap or overlap."""
    start, end = bounds
    windows = split_range(start, end)
    assert windows[0].start == start
    assert windows[-1].end == end
    for before, after in itertools.pairwise(windows):
        assert span(before.end, after.start) == SECOND


@given(ranges())
def test_windows_are_at_most_31_days_and_as_few_as_possible(
    bounds: tuple[datetime, datetime],
) -> None:
    """Each window spans at most 31 days, and one fewer window could not cover the range."""
    start, end = bounds
    windows = split_range(start, end)
    for window in windows:
        assert timedelta(0) <= span(window.start, window.end) <= MAX_SPAN
    seconds_covered = span(start, end) + SECOND
    assert (len(windows) - 1) * (MAX_SPAN + SECOND) < seconds_covered
    assert all(window.start.tzinfo is start.tzinfo for window in windows)


@pytest.mark.parametrize(
    ("length", "count"),
    [
        (timedelta(0), 1),
        (timedelta(days=1) - SECOND, 1),
        (MAX_SPAN, 1),
        (MAX_SPAN + SECOND, 2),
        (2 * MAX_SPAN + SECOND, 2),
        (2 * MAX_SPAN + 2 * SECOND, 3),
        (timedelta(days=400), 13),
    ],
)
def test_window_count_at_the_edges(length: timedelta, count: int) -> None:
    """Exactly 31 days is one window; one second more is two."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert len(split_range(start, start + length)) == count


def test_whole_days_are_not_cut_when_it_costs_nothing() -> None:
    """A range of whole days gets windows ending at 23:59:59, as many as the minimum."""
    start, end = normalize_range(date(2025, 1, 1), date(2025, 12, 31))
    windows = split_range(start, end)
    assert len(windows) == 12
    assert all(w.end.time() == time(23, 59, 59) for w in windows)
    assert windows[1].start == datetime(2025, 2, 1, tzinfo=UTC)


def test_alignment_never_costs_a_window() -> None:
    """62 days and 1 s from midnight fit two full-span windows, so those are used."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    windows = split_range(start, start + 2 * MAX_SPAN + SECOND)
    assert len(windows) == 2
    assert windows[0].end == start + MAX_SPAN


def test_dst_change_does_not_stretch_a_window() -> None:
    """Windows are 31 days of real time even across a daylight-saving change."""
    tz = ZoneInfo("Europe/Vilnius")
    start = datetime(2025, 3, 10, tzinfo=tz)
    windows = split_range(start, datetime(2025, 6, 1, tzinfo=tz))
    for window in windows:
        assert span(window.start, window.end) <= MAX_SPAN


def test_dates_mean_whole_utc_days() -> None:
    """A date starts at 00:00:00 UTC and ends at 23:59:59 UTC."""
    start, end = normalize_range(date(2025, 1, 1), date(2025, 1, 31))
    assert start == datetime(2025, 1, 1, tzinfo=UTC)
    assert end == datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)


def test_fractional_seconds_round_inwards() -> None:
    """A start rounds up and an end rounds down to whole seconds."""
    start, end = normalize_range(
        datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2025, 1, 2, 0, 0, 0, 999999, tzinfo=UTC),
    )
    assert start == datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert end == datetime(2025, 1, 2, tzinfo=UTC)


def test_naive_datetime_is_refused() -> None:
    """A naive datetime raises ValueError instead of guessing a zone."""
    with pytest.raises(ValueError, match="naive"):
        normalize_range(datetime(2025, 1, 1), date(2025, 1, 2))


def test_reversed_range_is_refused() -> None:
    """date_to before date_from raises ValueError, comparing instants, not wall clocks."""
    plus_two = timezone(timedelta(hours=2))
    with pytest.raises(ValueError, match="before"):
        normalize_range(
            datetime(2025, 1, 1, 12, tzinfo=UTC), datetime(2025, 1, 1, 13, tzinfo=plus_two)
        )


def test_wrong_types_are_refused() -> None:
    """Strings and numbers raise TypeError."""
    with pytest.raises(TypeError, match="date_from"):
        normalize_range("2025-01-01", date(2025, 1, 2))
    with pytest.raises(TypeError, match="date_to"):
        normalize_range(date(2025, 1, 1), 20250102)


def test_a_start_skipped_by_daylight_saving_is_kept() -> None:
    """A local start that does not exist (03:00 on the spring-forward night) stays the start."""
    vilnius = ZoneInfo("Europe/Vilnius")
    start = datetime(2013, 3, 31, 3, 0, 0, tzinfo=vilnius)
    end = (start.astimezone(UTC) + timedelta(days=40)).astimezone(vilnius)
    windows = split_range(start, end)
    assert windows[0].start == start
    assert windows[-1].end == end
    assert span(windows[0].end, windows[1].start) == SECOND
