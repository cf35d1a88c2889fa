"""``oxystats usage``: usage over any range, merged or raw, resumable with a checkpoint."""

from __future__ import annotations

import contextlib
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import anyio
import click

from oxystats import FetchedPage, GroupBy, UsageMerger, UsageQuery, UsageTotals, usage_columns
from oxystats.cli._checkpoint import Checkpoint
from oxystats.cli._options import (
    DATE,
    GROUP_BY,
    ClientSettings,
    client_options,
    pick_format,
    warnings_as_lines,
)
from oxystats.cli._output import FORMATS, RecordWriter, atomic_output, make_writer, usage_records
from oxystats.cli._progress import PageProgress, progress_enabled

__all__ = ["usage"]


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


def fingerprint_arguments(query: UsageQuery, base_url: str) -> dict[str, Any]:
    """What decides which pages a run fetches: a checkpoint is bound to it."""
    return {
        "product": query.product,
        "date_from": query.start.isoformat(),
        "date_to": query.end.isoformat(),
        "group_by": [g.value for g in query.grouping],
        "instances": list(query.instances) if query.instances else None,
        "base_url": base_url.rstrip("/"),
    }


@click.command()
@click.option("--product", required=True, metavar="PRODUCT", help="HB, DC, or another product.")
@click.option(
    "--from", "date_from", type=DATE, required=True, help="Start, inclusive (UTC day or ISO 8601)."
)
@click.option("--to", "date_to", type=DATE, required=True, help="End, inclusive (UTC day or ISO).")
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
@click.option("-o", "--output", metavar="FILE", help="Write here instead of standard output.")
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
@client_options
def usage(
    product: str,
    date_from: date | datetime,
    date_to: date | datetime,
    group_by: tuple[str, ...],
    instance_ids: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    checkpoint: Path | None,
    no_merge: bool,
    settings: ClientSettings,
) -> None:
    """Usage of one product over any range, grouped by day, target and/or instance.

    Rows are merged like `AsyncClient.usage` (summed by key across the 31-day
    windows) unless --no-merge. Columns: the groupings in order, then
    requests and traffic_bytes.
    """
    query = UsageQuery.build(product, date_from, date_to, group_by, instance_ids or None)
    fmt = pick_format(fmt, output)
    client = settings.make_client()
    windows = query.windows()
    store = None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, fingerprint_arguments(query, client.base_url))
    show = progress_enabled(settings.quiet)
    with contextlib.ExitStack() as stack:
        if store is not None:
            stack.enter_context(store)
        stack.enter_context(warnings_as_lines())
        stream = stack.enter_context(atomic_output(output, binary=fmt == "parquet"))
        title = f"{query.product} usage, {query.start.isoformat()} to {query.end.isoformat()}"
        writer = make_writer(
            fmt, stream, usage_columns(query.grouping), grouping=query.grouping, title=title
        )
        sink = UsageSink(writer, query.grouping, merge=not no_merge)
        done = store.done() if store is not None else {}
        started = time.monotonic()

        async def fetch() -> tuple[int, int, int]:
            async with client:
                with PageProgress(
                    windows=len(windows),
                    stats=lambda: client.stats,
                    enabled=show,
                    done=done,
                    description=f"{query.product} usage",
                ) as progress:
                    pages = client.iter_usage_pages(
                        query.product,
                        query.start,
                        query.end,
                        query.grouping,
                        query.instances,
                        done=done,
                    )
                    async with contextlib.aclosing(pages):
                        async for fetched in pages:
                            if store is not None:
                                # Written out from the checkpoint at the end, in order.
                                store.add(fetched)
                            else:
                                sink.add(fetched)
                            progress.page(fetched)
                stats = client.stats
            return stats.requests, stats.retries, stats.rate_limited

        try:
            sent, retries, limited = anyio.run(fetch, backend=settings.backend)
        except KeyboardInterrupt:
            if store is not None:
                saved = len(store.done())
                click.echo(
                    f"oxystats: interrupted; {saved} page(s) saved in {store.path}: "
                    "run the same command again to resume",
                    err=True,
                )
                raise click.exceptions.Exit(130) from None
            raise
        if store is not None:
            for fetched in store.fetched_pages(query):
                sink.add(fetched)
        sink.finish()
    if show:
        click.echo(
            f"oxystats: {sink.rows:,} rows from {len(windows)} window(s); {sent} request(s) sent "
            f"({len(done)} page(s) from the checkpoint), {retries} retries, "
            f"{limited} x 429, in {time.monotonic() - started:.1f} s",
            err=True,
        )
