"""The progress bar of a backfill: rich, on stderr, over windows x pages.

The total is not known up front: each window has at least one page, and how
many more it has is learnt when its page 1 arrives. So the total starts at the
number of windows and grows as page 1s come in. Beside the bar: requests sent,
requests per second and retries, read live from the client's stats.

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

__all__ = ["PageProgress", "progress_enabled"]


def progress_enabled(quiet: bool, stream: IO[str] | None = None) -> bool:
    """Whether to draw: not ``quiet``, and the stream (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PageProgress:
    """Counts fetched pages against a growing total; draws them if enabled.

    Args:
        windows: how many windows the range has.
        done: pages fetched by an earlier run, ``(window, page) -> total_pages``.
        stats: returns the client's live `ClientStats`.
        enabled: draw the bar (see `progress_enabled`).
        description: the text left of the bar.
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
    ) -> None:
        self._windows = windows
        self._stats = stats
        self._enabled = enabled
        self._description = description
        self._stream = sys.stderr if stream is None else stream
        self._known: dict[int, int] = {}
        self._completed = 0
        for (window, _number), total in (done or {}).items():
            self._known[window] = total
            self._completed += 1
        self._progress: Any = None
        self._task: Any = None
        self._started = time.monotonic()

    @property
    def total(self) -> int:
        """Pages known so far: every known window's pages, plus one per window not yet seen."""
        return sum(self._known.values()) + (self._windows - len(self._known))

    @property
    def completed(self) -> int:
        """Pages fetched, by this run and by the earlier ones."""
        return self._completed

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        if not self._enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages"),
            _StatsColumn(self._stats, self._started),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=self._stream),
            transient=False,
            refresh_per_second=8,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self._description, total=self.total, completed=self._completed
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
        """Count one fetched page (and learn its window's page count)."""
        self._known[fetched.window_index] = fetched.total_pages
        self._completed += 1
        if self._progress is not None:
            self._progress.update(self._task, total=self.total, completed=self._completed)


class _StatsColumn:
    """Requests sent, requests per second and retries, read from the client each refresh."""

    def __new__(cls, stats: Callable[[], ClientStats], started: float) -> Any:
        from rich.progress import ProgressColumn, Task
        from rich.text import Text

        class StatsColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                try:
                    now = stats()
                except RuntimeError:  # pragma: no cover - a racing read; try next refresh
                    return Text("")
                elapsed = max(time.monotonic() - started, 1e-9)
                text = f"{now.requests} req {now.requests / elapsed:5.1f}/s {now.retries} retries"
                if now.rate_limited:
                    text += f" {now.rate_limited}x429"
                return Text(text, style="progress.data.speed")

        return StatsColumn()
