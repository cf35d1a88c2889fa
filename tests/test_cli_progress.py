"""The progress bar: one line that fits 80 columns, one step per page it is told about."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from cli_helpers import (
    END,
    START,
    FakeTerminal,
    run_on_terminal,
    run_process,
    screen_lines,
    usage_args,
)

from oxystats import ClientStats, FetchedPage, Pagination, UsagePage, UsageTotals, Window
from oxystats.cli._progress import PageProgress, progress_enabled
from oxystats.emulator import RunningEmulator


def _page(window: int, number: int, total: int) -> FetchedPage:
    """A fetched page with no rows."""
    when = datetime(2025, 1, 1, tzinfo=UTC)
    page = UsagePage((), UsageTotals(0, 0), Pagination(number, 100, 0, total), ("DAY",))
    return FetchedPage(window, Window(when, when), number, page)


def _last_frame(screen: FakeTerminal) -> str:
    """The bar as the terminal shows it once it stopped: the last line drawn."""
    lines = screen_lines(screen.getvalue())
    assert lines, "nothing was drawn"
    return lines[-1]


def test_progress_only_on_a_terminal() -> None:
    """The bar is drawn on a terminal unless --quiet; never on a pipe or a file."""
    assert progress_enabled(False, FakeTerminal())
    assert not progress_enabled(True, FakeTerminal())
    assert not progress_enabled(False, io.StringIO())


def test_progress_total_grows_as_pages_arrive() -> None:
    """The total starts at one page per window and grows by what each window's pages reveal."""
    screen = FakeTerminal()
    with PageProgress(
        windows=3, stats=ClientStats, enabled=True, done={(2, 1): 2}, stream=screen, width=80
    ) as progress:
        assert (progress.completed, progress.total) == (1, 4)
        progress.page(_page(0, 1, 5))
        assert (progress.completed, progress.total) == (2, 8)
        progress.page(_page(1, 1, 1))
        assert (progress.completed, progress.total) == (3, 8)
    assert " 3/8 pages " in _last_frame(screen)


def test_progress_advances_once_per_page_in_any_order() -> None:
    """Each page told counts once, whatever the order; a page told again is not counted twice."""
    screen = FakeTerminal()
    told = [(1, 3, 3), (0, 2, 2), (1, 1, 3), (0, 1, 2), (1, 3, 3), (2, 1, 1), (1, 2, 3)]
    with PageProgress(
        windows=3, stats=ClientStats, enabled=True, done={(0, 2): 2}, stream=screen, width=80
    ) as progress:
        seen = {(0, 2)}
        for window, number, total in told:
            progress.page(_page(window, number, total))
            seen.add((window, number))
            assert progress.completed == len(seen)
            assert progress.completed <= progress.total
    assert (progress.completed, progress.total) == (6, 6)
    assert " 6/6 pages " in _last_frame(screen)


@pytest.mark.parametrize(
    ("description", "windows", "stats"),
    [
        ("HB usage", 14, ClientStats(requests=14, retries=0)),
        ("HB usage", 500, ClientStats(requests=4_321, retries=17, rate_limited=3)),
        ("residential-proxies usage", 99_999, ClientStats(requests=10**9, retries=123_456)),
    ],
)
def test_progress_fits_80_columns_on_one_line(
    description: str, windows: int, stats: ClientStats
) -> None:
    """At 80 columns the bar is one line, whatever the counts and the product's name."""
    screen = FakeTerminal()
    with PageProgress(
        windows=windows,
        stats=lambda: stats,
        enabled=True,
        stream=screen,
        width=80,
        description=description,
    ) as progress:
        for window in range(min(windows, 50)):
            progress.page(_page(window, 1, 300))
    lines = screen_lines(screen.getvalue())
    assert lines
    for line in lines:
        assert len(line) <= 80, line
        assert " pages " in line, f"the line wrapped: {lines}"
    assert lines[-1].startswith(description[:8])
    assert f"{progress.completed}/{progress.total} pages" in lines[-1]
    if stats.retries:
        assert "retries" in lines[-1]


def test_no_progress_when_stderr_is_a_pipe(oxystats_emulator: RunningEmulator) -> None:
    """A real process with stderr on a pipe writes nothing to it on success."""
    done = run_process(*usage_args("--base-url", oxystats_emulator.url, "--format", "jsonl"))
    assert done.returncode == 0
    assert done.stderr == ""
    assert done.stdout.count("\n") == (END - START).days + 1


def test_progress_on_a_real_80_column_terminal(oxystats_emulator: RunningEmulator) -> None:
    """On an 80-column pseudo-terminal the bar never wraps; stdout stays clean CSV."""
    done, lines = run_on_terminal(
        *usage_args("--base-url", oxystats_emulator.url, "--format", "csv")
    )
    assert done.returncode == 0
    assert done.stdout.startswith(b"day,requests,traffic_bytes\n")
    bars = [line for line in lines if " pages " in line]
    assert bars, lines
    assert all(len(line) <= 80 for line in lines), lines
    assert " 2/2 pages " in bars[-1]  # two windows, one page each
    assert lines[-1].startswith("oxystats: ")  # the summary, after the bar
