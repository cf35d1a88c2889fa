"""The progress bar of a backfill: rich, on stderr, one line over windows x pages.

The total is not known up front: each window has at least one page, and how
many more it has is learnt when one of its pages arrives. So the total starts
at the number of windows and grows as pages come in. The bar counts every
page it is told about once, whatever order pages come in (a page it already
counted, from the checkpoint or told twice, is not counted again). Beside the
bar: pages, requests per second and retries (read live from the client's
stats), and the time left.

The line fits the terminal's width down to 80 columns without wrapping: the
description is cut to a few characters, the bar takes what the other columns
leave, and any column still too long is cut with an ellipsis, never wrapped.

The bar is drawn only when stderr is a terminal and ``--quiet`` is not given;
otherwise every method is a no-op.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any, Self

from oxystats import ClientStats, FetchedPage
from oxystats.cli._destination import isatty

__all__ = ["PageProgress", "progress_enabled"]

DESCRIPTION_WIDTH = 12
"""Columns for the text left of the bar; a longer one is cut with an ellipsis."""


def progress_enabled(quiet: bool, stream: IO[str] | None = None) -> bool:
    """Whether to draw: not ``quiet``, and the stream (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    return not quiet and isatty(stream)


class PageProgress:
    """Counts fetched pages against a growing total; draws them if enabled.

    Args:
        windows: how many windows the range has.
        stats: returns the client's live `ClientStats`.
        enabled: draw the bar (see `progress_enabled`).
        done: pages fetched by an earlier run, ``(window, page) -> total_pages``.
        description: the text left of the bar.
        stream: where to draw (default: stderr).
        width: the columns to fit (default: the terminal's).
    """

    def __init__(
        self,
        *,
        windows: int,
        stats: Callable[[], ClientStats],
        enabled: bool,
        done: Mapping[tuple[int, int], int] | None = None,
        description: str = "fetching",
        stream: IO[str] | None = None,
        width: int | None = None,
    ) -> None:
        self._windows = windows
        self._stats = stats
        self._enabled = enabled
        self._description = description
        self._stream = sys.stderr if stream is None else stream
        self._width = width
        self._known: dict[int, int] = {}
        self._counted: set[tuple[int, int]] = set()
        for (window, number), total in (done or {}).items():
            self._learn(window, number, total)
        self._progress: Any = None
        self._task: Any = None
        self._started = time.monotonic()

    @property
    def total(self) -> int:
        """Pages known so far: every known window's pages, plus one per window not yet seen."""
        known = sum(self._known.values()) + max(0, self._windows - len(self._known))
        return max(known, self.completed)

    @property
    def completed(self) -> int:
        """Distinct pages fetched, by this run and by the earlier ones."""
        return len(self._counted)

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        if not self._enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        def text(template: str, **column: Any) -> TextColumn:
            return TextColumn(template, table_column=Column(no_wrap=True, **column))

        self._progress = Progress(
            text("{task.description}", max_width=DESCRIPTION_WIDTH, overflow="ellipsis"),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
            text("{task.completed}/{task.total} pages", overflow="ellipsis"),
            _stats_column(self._stats, self._started),
            text("eta"),
            TimeRemainingColumn(table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=Console(file=self._stream, width=self._width),
            expand=True,
            transient=False,
            refresh_per_second=8,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self._description, total=self.total, completed=self.completed
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def page(self, fetched: FetchedPage) -> None:
        """Count one fetched page (once) and learn its window's page count."""
        self._learn(fetched.window_index, fetched.number, fetched.total_pages)
        if self._progress is not None:
            self._progress.update(self._task, total=self.total, completed=self.completed)

    def _learn(self, window: int, number: int, total_pages: int) -> None:
        self._known[window] = max(1, total_pages)
        self._counted.add((window, number))


def _stats_column(stats: Callable[[], ClientStats], started: float) -> Any:
    """Requests per second and retries, read from the client at each refresh.

    Rich is imported here, not at the top: it is needed only when a bar is drawn.
    """
    from rich.progress import ProgressColumn, Task
    from rich.table import Column
    from rich.text import Text

    class StatsColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            try:
                now = stats()
            except RuntimeError:  # pragma: no cover - a racing read; try next refresh
                return Text("")
            elapsed = max(time.monotonic() - started, 1e-9)
            text = f"{now.requests / elapsed:5.1f} req/s"
            if now.retries:
                text += f" {now.retries} {'retry' if now.retries == 1 else 'retries'}"
            return Text(text, style="progress.data.speed")

    return StatsColumn(table_column=Column(no_wrap=True, overflow="ellipsis"))
