"""Date options: absolute days and instants, and days relative to a today that tests fix."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cli_helpers import FAST, csv_rows, invoke, run_process, truth
from click.testing import CliRunner

from oxystats.cli import cli
from oxystats.cli._dates import Clock
from oxystats.emulator import RunningEmulator

TODAY = date(2025, 3, 10)
FIXED = Clock(today=lambda: TODAY)


def usage_between(date_from: str, date_to: str) -> list[str]:
    """``usage`` arguments with the dates as typed."""
    return ["usage", "--product", "HB", "--from", date_from, "--to", date_to, *FAST]


@pytest.mark.parametrize(
    ("date_from", "date_to", "first", "last"),
    [
        ("-7d", "yesterday", date(2025, 3, 3), date(2025, 3, 9)),
        ("today", "today", TODAY, TODAY),
        ("Yesterday", "TODAY", date(2025, 3, 9), TODAY),
        ("-0d", "-0d", TODAY, TODAY),
        ("-40d", "-1d", date(2025, 1, 29), date(2025, 3, 9)),
        ("2025-03-01", "yesterday", date(2025, 3, 1), date(2025, 3, 9)),
    ],
)
def test_relative_days_are_whole_utc_days(
    oxystats_emulator: RunningEmulator, date_from: str, date_to: str, first: date, last: date
) -> None:
    """today, yesterday and -Nd are whole UTC days counted back from the clock's today."""
    result = invoke(oxystats_emulator, *usage_between(date_from, date_to), obj=FIXED)
    assert result.exit_code == 0, result.stderr
    rows = csv_rows(result.stdout, 1)
    assert rows == truth(oxystats_emulator, ["DAY"], first, last)
    assert min(rows)[0] == first.isoformat()
    assert max(rows)[0] == last.isoformat()


def test_relative_days_follow_the_clock() -> None:
    """Another today, other days: nothing is computed when the command is defined."""
    later = Clock(today=lambda: TODAY + timedelta(days=100))
    args = [*usage_between("-1d", "today"), "--dry-run"]
    first = CliRunner().invoke(cli, args, obj=FIXED, env={"OXYLABS_API_KEY": ""})
    second = CliRunner().invoke(cli, args, obj=later, env={"OXYLABS_API_KEY": ""})
    assert "2025-03-09 00:00:00 .. 2025-03-10 23:59:59 UTC" in first.stdout
    assert "2025-06-17 00:00:00 .. 2025-06-18 23:59:59 UTC" in second.stdout


def test_option_value_that_looks_like_an_option(oxystats_emulator: RunningEmulator) -> None:
    """--from -7d and --from=-7d both take -7d as the value."""
    spaced = invoke(oxystats_emulator, *usage_between("-7d", "-1d"), obj=FIXED)
    joined = invoke(
        oxystats_emulator, "usage", "--product", "HB", "--from=-7d", "--to=-1d", *FAST, obj=FIXED
    )
    assert spaced.exit_code == joined.exit_code == 0, spaced.stderr + joined.stderr
    assert spaced.stdout == joined.stdout


@pytest.mark.parametrize(
    ("date_from", "needle"),
    [
        ("tomorrow", "'tomorrow' is not a date: use YYYY-MM-DD, today, yesterday, -Nd"),
        ("7d", "'7d' is not a date"),
        ("+7d", "'+7d' is not a date"),
        ("-7", "'-7' is not a date"),
        ("-d", "'-d' is not a date"),
        ("-7w", "'-7w' is not a date"),
        ("-9999999d", "'-9999999d' is before the year 1"),
    ],
)
def test_bad_relative_days_are_usage_errors(
    oxystats_emulator: RunningEmulator, date_from: str, needle: str
) -> None:
    """A malformed relative day: one line naming the accepted forms, exit 2, nothing sent."""
    result = invoke(oxystats_emulator, *usage_between(date_from, "today"), obj=FIXED)
    assert result.exit_code == 2
    assert result.stderr.startswith("oxystats: error: Invalid value for '--from': ")
    assert result.stderr.count("\n") == 1
    assert needle in result.stderr
    assert oxystats_emulator.emulator.counters.total == 0


def test_relative_range_before_its_start_is_refused(oxystats_emulator: RunningEmulator) -> None:
    """--from yesterday --to -3d is a reversed range: exit 2, nothing sent."""
    result = invoke(oxystats_emulator, *usage_between("yesterday", "-3d"), obj=FIXED)
    assert result.exit_code == 2
    assert "before" in result.stderr
    assert oxystats_emulator.emulator.counters.total == 0


def test_without_a_clock_today_is_the_utc_date() -> None:
    """A real process resolves today from the system clock, in UTC."""
    before = datetime.now(UTC).date()
    done = run_process(
        *usage_between("today", "today"), "--dry-run", env={"TZ": "Pacific/Kiritimati"}
    )
    after = datetime.now(UTC).date()
    assert done.returncode == 0, done.stderr
    assert any(
        f"{day} 00:00:00 .. {day} 23:59:59 UTC (1 day)" in done.stdout for day in (before, after)
    ), done.stdout
