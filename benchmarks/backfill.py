"""A 400-day DAY x TARGET backfill against the emulator: rows, requests, windows, exactness.

Run from the repository root::

    python -m benchmarks.backfill

The emulator runs in a thread of this process with its default dataset and no
limits; the client's limit is raised so that the run takes seconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

import oxystats
from oxystats.testing import DEFAULT_KEY, emulator_server

FIRST = date(2024, 1, 1)
LAST = FIRST + timedelta(days=399)
GROUPING = ["DAY", "TARGET"]


async def backfill(running_url: str) -> tuple[oxystats.UsageReport, oxystats.ClientStats, float]:
    """One usage() call over 400 days; the report, the client's counters and the wall time."""
    started = time.perf_counter()
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=running_url, key_limit=oxystats.Limit(1000.0, 100, 10)
    ) as client:
        report = await client.usage("HB", FIRST, LAST, GROUPING)
        return report, client.stats, time.perf_counter() - started


def main() -> None:
    with emulator_server() as running:
        report, stats, wall = asyncio.run(backfill(running.url))
        truth = running.emulator.ground_truth(
            "HB",
            datetime.combine(FIRST, clock.min, UTC),
            datetime.combine(LAST, clock(23, 59, 59), UTC),
            GROUPING,
        )
        windows = len({entry.query.split("&page=")[0] for entry in running.emulator.log})
    rows = {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows}
    exact = rows == truth.rows and (report.totals.requests, report.totals.traffic_bytes) == (
        truth.totals
    )
    print(f"HB DAY x TARGET {FIRST}..{LAST} (400 days) against the emulator")
    print(f"  windows: {windows}   requests: {stats.requests}   rows: {len(report.rows):,}")
    print(f"  totals: {report.totals.requests:,} requests, {report.totals.traffic_bytes:,} bytes")
    print(f"  wall time: {wall:.2f} s   equals the emulator's ground truth: {exact}")


if __name__ == "__main__":
    main()
