"""``oxystats usage``: usage over any range, merged or raw, resumable with a checkpoint.

Everything that can be wrong with the arguments is checked before the first
request (and before any file is created): the dates, the query, ``--output``
and ``--checkpoint``, the Parquet library. ``--dry-run`` stops there and
prints the plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import attrs
import click

from oxystats import (
    Account,
    AsyncClient,
    FetchedPage,
    GroupBy,
    Limit,
    UsageMerger,
    UsageQuery,
    UsageTotals,
    usage_columns,
)
from oxystats.cli._checkpoint import Checkpoint
from oxystats.cli._dates import DATE
from oxystats.cli._destination import Destination, refuse_checkpoint_as_output
from oxystats.cli._fingerprint import open_checkpoint
from oxystats.cli._group import is_interrupt
from oxystats.cli._logging import cli_logger, command_logging, json_logs, say
from oxystats.cli._options import (
    GROUP_BY,
    ClientSettings,
    client_options,
    force_option,
    output_option,
    pick_format,
    warnings_as_lines,
)
from oxystats.cli._output import (
    FORMATS,
    RecordWriter,
    open_writer,
    require_pyarrow,
    usage_records,
)
from oxystats.cli._plan import duration, minimum_seconds, plan_lines
from oxystats.cli._progress import PageProgress, progress_enabled

__all__ = ["usage"]

LONG_RUN_SECONDS = 10.0
"""A run whose first pages alone take at least this long says when it starts and ends."""

_DATE_HELP = "YYYY-MM-DD, today, yesterday or -Nd (whole UTC days), or ISO 8601 with an offset."


class UsageSink:
    """Pages in, rows out: merged (summed by key, like `AsyncClient.usage`) or raw.

    Raw rows come out in (window, page, row) order whatever order pages arrive
    in: a page that arrives early waits for the ones before it.
    """

    def __init__(self, writer: RecordWriter, grouping: tuple[GroupBy, ...], merge: bool) -> None:
        self._writer = writer
        self._grouping = grouping
        self._merger = UsageMerger(grouping) if merge else None
        self._waiting: dict[tuple[int, int], FetchedPage] = {}
        self._next = (0, 1)
        self._requests = 0
        self._traffic = 0
        self.rows = 0

    def add(self, fetched: FetchedPage) -> None:
        """Take one page: fold it in, or write it out once the pages before it are out."""
        totals = fetched.window_totals
        if totals is not None:
            self._requests += totals.requests
            self._traffic += totals.traffic_bytes
        if self._merger is not None:
            self._merger.add(fetched)
            return
        self._waiting[(fetched.window_index, fetched.number)] = fetched
        while self._next in self._waiting:
            ready = self._waiting.pop(self._next)
            self._writer.write(usage_records(ready.page.data))
            self.rows += len(ready.page.data)
            window, current = self._next
            more = current < ready.total_pages
            self._next = (window, current + 1) if more else (window + 1, 1)

    def finish(self) -> UsageTotals:
        """Write what is left and the totals; return the totals."""
        totals = UsageTotals(self._requests, self._traffic)
        if self._merger is not None:
            report = self._merger.report()
            self._writer.write(usage_records(report.rows))
            self.rows = len(report.rows)
        elif self._waiting:  # pragma: no cover - only if the server skipped a page
            for key in sorted(self._waiting):
                self._writer.write(usage_records(self._waiting.pop(key).page.data))
        footer = ["total"] + [""] * (len(self._grouping) - 1)
        self._writer.close([*footer, totals.requests, totals.traffic_bytes])
        return totals


@click.command()
@click.option("--product", required=True, metavar="PRODUCT", help="HB, DC, or another product.")
@click.option(
    "--from", "date_from", type=DATE, required=True, help=f"Start, inclusive: {_DATE_HELP}"
)
@click.option("--to", "date_to", type=DATE, required=True, help=f"End, inclusive: {_DATE_HELP}")
@click.option(
    "--group-by",
    "group_by",
    type=GROUP_BY,
    multiple=True,
    default=("DAY",),
    show_default=True,
    help="DAY, TARGET or INSTANCE; repeat for several, in order.",
)
@click.option(
    "--instance", "instance_ids", multiple=True, metavar="UUID", help="Only these (repeatable)."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format.")
@output_option
@force_option
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file that makes the run resumable: rerun the same command to continue.",
)
@click.option(
    "--no-merge",
    is_flag=True,
    help="Raw per-window rows (a key may repeat across 31-day windows), streamed as they come.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (range, windows, first requests, least time) and send nothing.",
)
@client_options
def usage(
    product: str,
    date_from: date | datetime,
    date_to: date | datetime,
    group_by: tuple[str, ...],
    instance_ids: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    force: bool,
    checkpoint: Path | None,
    no_merge: bool,
    dry_run: bool,
    settings: ClientSettings,
) -> None:
    """Usage of one product over any range, grouped by day, target and/or instance.

    Rows are merged like `AsyncClient.usage` (summed by key across the 31-day
    windows) unless --no-merge. Columns: the groupings in order, then
    requests and traffic_bytes.
    """
    query = UsageQuery.build(product, date_from, date_to, group_by, instance_ids or None)
    fmt = pick_format(fmt, output)
    if checkpoint is not None:
        refuse_checkpoint_as_output(output, checkpoint)
    destination = Destination.check(output, force=force, binary=fmt == "parquet")
    if fmt == "parquet":
        require_pyarrow()
    if dry_run:
        lines = plan_lines(
            query,
            key_limit=settings.limit,
            account_limit=Account().limit,
            fmt=fmt,
            destination=destination,
            checkpoint=checkpoint,
        )
        click.echo("\n".join(lines))
        return
    progress = progress_enabled(settings.quiet or json_logs())
    with command_logging(quiet=settings.quiet, progress_bar=progress):
        run = UsageRun(
            client=settings.make_client(),
            query=query,
            fmt=fmt,
            destination=destination,
            merge=not no_merge,
            progress=progress,
            minimum_seconds=minimum_seconds(
                len(query.windows()), [settings.limit, Account().limit]
            ),
        )
        run.start(settings.limit)
        if checkpoint is None:
            run.fetch_and_write(None, settings.backend)
        else:
            run.fetch_and_write_with(checkpoint, settings.backend)


@attrs.frozen
class UsageRun:
    """One checked usage run: fetch every page, then write the rows out."""

    client: AsyncClient
    query: UsageQuery
    fmt: str
    destination: Destination
    merge: bool
    progress: bool
    minimum_seconds: float
    """The least time the run's first pages take at the limits: a long run says it starts."""

    @property
    def _lines_level(self) -> int:
        # A long run says when it starts and ends without -v; a short one, with -vv.
        return logging.INFO if self.minimum_seconds >= LONG_RUN_SECONDS else logging.DEBUG

    def start(self, limit: Limit) -> None:
        """Say what the run is about to fetch, and the least time it takes."""
        query = self.query
        windows = len(query.windows())
        cli_logger.log(
            self._lines_level,
            "%s usage %s .. %s UTC: %s, so at least %s and %s at %g/s, burst %d",
            query.product,
            query.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            query.end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            f"{windows:,} window{'s' if windows != 1 else ''}",
            f"{windows:,} request{'s' if windows != 1 else ''}",
            duration(self.minimum_seconds),
            limit.rate,
            limit.burst,
            extra={
                "product": query.product,
                "date_from": query.start.isoformat(),
                "date_to": query.end.isoformat(),
                "windows": windows,
                "minimum_seconds": self.minimum_seconds,
            },
        )

    def fetch_and_write_with(self, checkpoint: Path, backend: str) -> None:
        """`fetch_and_write`, resumable: pages go to ``checkpoint`` as they arrive."""
        with open_checkpoint(checkpoint, self.query, self.client.base_url) as store:
            try:
                self.fetch_and_write(store, backend)
            except (KeyboardInterrupt, BaseExceptionGroup) as exc:
                if not is_interrupt(exc):
                    raise
                say(
                    "warning",
                    f"interrupted; {len(store.done())} page(s) saved in {store.path}: "
                    "run the same command again to resume",
                    tagged=False,
                )
                raise click.exceptions.Exit(130) from None

    def fetch_and_write(self, store: Checkpoint | None, backend: str) -> None:
        """Fetch what ``store`` lacks (everything without one), write the output, summarise.

        With a checkpoint, pages are stored as they arrive and the output is
        written from the checkpoint at the end, in (window, page, row) order;
        without one, they go straight to the output. Any failure or interrupt
        leaves a file output as it was.
        """
        query = self.query
        started = time.monotonic()
        done = store.done() if store is not None else {}
        title = f"{query.product} usage, {query.start.isoformat()} to {query.end.isoformat()}"
        columns = usage_columns(query.grouping)
        with (
            warnings_as_lines(),
            open_writer(
                self.destination, self.fmt, columns, grouping=query.grouping, title=title
            ) as writer,
        ):
            sink = UsageSink(writer, query.grouping, merge=self.merge)
            # With a checkpoint, pages go there first, and out from there in order at the end.
            add = sink.add if store is None else store.add
            sent, retries, limited = anyio.run(self._fetch, add, done, backend=backend)
            if store is not None:
                for fetched in store.fetched_pages(query):
                    sink.add(fetched)
            sink.finish()
        resumed = f", {len(done):,} pages from the checkpoint" if done else ""
        summary = (
            f"{sink.rows:,} rows; {sent:,} requests, {retries:,} retries, "
            f"{limited:,} x 429{resumed}; {time.monotonic() - started:.1f} s"
        )
        if self.progress:
            # One line of at most 80 columns on a terminal, like the bar above it.
            click.echo(f"oxystats: {summary}", err=True)
        else:
            cli_logger.log(
                self._lines_level,
                "%s",
                summary,
                extra={
                    "rows": sink.rows,
                    "requests": sent,
                    "retries": retries,
                    "rate_limited": limited,
                    "from_checkpoint": len(done),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    async def _fetch(
        self, add: Callable[[FetchedPage], None], done: Mapping[tuple[int, int], int]
    ) -> tuple[int, int, int]:
        query, client = self.query, self.client
        async with client:
            with PageProgress(
                windows=len(query.windows()),
                stats=lambda: client.stats,
                enabled=self.progress,
                done=done,
                description=f"{query.product} usage",
            ) as progress:
                # Fetching goes on while a page is written out or checkpointed.
                async with client.stream_usage_pages(
                    query.product,
                    query.start,
                    query.end,
                    query.grouping,
                    query.instances,
                    done=done,
                ) as pages:
                    async for fetched in pages:
                        # In a thread: a checkpoint waiting on its lock, or a full
                        # pipe, must not freeze the event loop and its timeouts.
                        await anyio.to_thread.run_sync(add, fetched)
                        progress.page(fetched)
            stats = client.stats
        return stats.requests, stats.retries, stats.rate_limited
