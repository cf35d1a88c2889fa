"""``oxystats demo``: a year of usage from an in-process emulator, summarised.

Needs the ``cli`` extra (rich, and the emulator's starlette and uvicorn).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import anyio
import click

from oxystats import AsyncClient, GroupBy, Limit, UsageMerger, UsageQuery
from oxystats.cli._group import debug_option
from oxystats.cli._progress import PageProgress, progress_enabled

__all__ = ["demo"]

_DEMO_START = date(2025, 1, 1)
_DEMO_LATENCY = 0.04
_DEMO_JITTER = 0.01


@click.command()
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=365,
    show_default=True,
    help="How many days from 2025-01-01 to fetch (shorter is quicker).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--backend", type=click.Choice(["asyncio", "trio"]), default="asyncio", hidden=True)
@debug_option
def demo(days: int, quiet: bool, backend: str) -> None:
    """A one-year backfill (HB, by day and target) against a local emulator: no key, no network.

    The emulator enforces the documented limits (10 requests per second per
    key) with 40 ms of latency; the client uses its defaults. The summary
    compares the wall time with the physical bound: N requests at 10 per
    second cannot take less than (N - burst) / 10 s plus one round trip.
    """
    run_demo(days=days, quiet=quiet, backend=backend)


def run_demo(*, days: int, quiet: bool, backend: str) -> None:
    """Backfill ``days`` days from 2025-01-01 through a default client and print a summary."""
    try:
        from oxystats.emulator import (
            DEFAULT_KEY,
            EmulatorConfig,
            Faults,
            RateLimits,
            serve_in_thread,
        )
    except ImportError as exc:
        raise ImportError(
            f"oxystats demo needs the emulator: pip install 'oxystats[cli]' ({exc})"
        ) from exc
    from rich.console import Console
    from rich.table import Table

    start = _DEMO_START
    end = start + timedelta(days=days - 1)
    grouping = (GroupBy.DAY, GroupBy.TARGET)
    config = EmulatorConfig(
        limits=RateLimits.documented(),
        faults=Faults(latency=_DEMO_LATENCY, latency_jitter=_DEMO_JITTER),
    )
    query = UsageQuery.build("HB", start, end, grouping)
    out = Console(soft_wrap=True)
    out.print(
        f"[bold]oxystats demo[/]: HB usage by day and target, {start} to {end}, "
        "from a local emulator (no key, no network)"
    )
    out.print(
        f"The emulator enforces 10 requests/s per key and adds {_DEMO_LATENCY * 1000:.0f} ms "
        "of latency; the client runs with its defaults (10/s, burst 10, 10 in flight)."
    )
    with serve_in_thread(config) as running:
        default_limit = Limit()

        async def run() -> tuple[Any, Any, float]:
            merger = UsageMerger(grouping)
            async with AsyncClient(DEFAULT_KEY, base_url=running.url) as client:
                began = time.perf_counter()
                with PageProgress(
                    windows=len(query.windows()),
                    stats=lambda: client.stats,
                    enabled=progress_enabled(quiet),
                    description="backfill",
                ) as progress:
                    async with client.stream_usage_pages("HB", start, end, grouping) as pages:
                        async for fetched in pages:
                            merger.add(fetched)
                            progress.page(fetched)
                wall = time.perf_counter() - began
                return merger.report(), client.stats, wall

        report, stats, wall = anyio.run(run, backend=backend)
        truth = running.emulator.ground_truth("HB", query.start, query.end, ["DAY", "TARGET"])
        server_429 = running.emulator.counters.by_status.get(429, 0)

    by_target: dict[str, list[int]] = {}
    for row in report.rows:
        tally = by_target.setdefault(row.grouped_by[1], [0, 0])
        tally[0] += row.requests
        tally[1] += row.traffic_bytes
    top = sorted(by_target.items(), key=lambda item: (-item[1][1], item[0]))[:5]
    table = Table(title="Top 5 targets by traffic")
    table.add_column("target")
    table.add_column("requests", justify="right")
    table.add_column("traffic", justify="right")
    table.add_column("share", justify="right")
    total_traffic = report.totals.traffic_bytes or 1
    for target, (requests, traffic) in top:
        table.add_row(
            target, f"{requests:,}", _human_bytes(traffic), f"{100 * traffic / total_traffic:.1f}%"
        )
    out.print(table)
    matches = {r.grouped_by: (r.requests, r.traffic_bytes) for r in report.rows} == truth.rows
    bound = max(0, stats.requests - default_limit.burst) / default_limit.rate + _DEMO_LATENCY
    out.print(
        f"Totals: {report.totals.requests:,} requests, "
        f"{_human_bytes(report.totals.traffic_bytes)} of traffic, in {len(report.rows):,} rows "
        f"({len(by_target)} targets); matches the emulator's ground truth: "
        f"{'yes' if matches else 'NO'}"
    )
    windows = len(query.windows())
    out.print(
        f"Requests sent: {stats.requests} over {windows} window{'s' if windows > 1 else ''} "
        f"of up to 31 days; {stats.retries} retries; 429s: {server_429} from the server"
    )
    if stats.requests > default_limit.burst:
        formula = (
            f"({stats.requests} - {default_limit.burst} burst) / {default_limit.rate:g} per s"
            f" + one {_DEMO_LATENCY * 1000:.0f} ms round trip"
        )
    else:
        formula = f"one {_DEMO_LATENCY * 1000:.0f} ms round trip (all within the first burst)"
    # Against a sliding window, request k + burst starts a whole window after
    # request k, so no client can beat this (it is above the fluid bound).
    window = default_limit.burst / default_limit.rate
    best = (max(0, stats.requests - 1) // default_limit.burst) * window + _DEMO_LATENCY
    out.print(
        f"Wall time: {wall:.2f} s; physical bound {formula} = {bound:.2f} s; "
        f"ratio {wall / bound:.3f} (the best any client can do against a sliding window "
        f"is {best / bound:.3f})"
    )


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover
