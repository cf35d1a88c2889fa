"""`oxystats sync` at the documented limits: a first sync of one year, then a daily re-sync.

Run from the repository root::

    python -m benchmarks.sync                       # into a SQLite file in a temporary folder
    python -m benchmarks.sync --db postgresql://... # or into a PostgreSQL database of yours

The emulator runs in a subprocess with the documented limits (10 requests per
sliding second and 10 in flight per key) and its clock at NOW. The sync runs
as the real command, in a subprocess of its own, told the same "now"; the
emulator counts the requests. Then the clock moves one day and the same
command runs again, as a daily job would. Both commands are printed as run.

The bound of a run is the physical one: after the first ``burst`` requests the
limit lets ``rate`` a second through, so no client finishes ``n`` requests in
less than ``(n - burst) / rate``, plus a round trip.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from benchmarks._common import (
    ADMIN,
    count_status,
    emulator_process,
    emulator_stats,
    reset_emulator,
)
from oxystats.testing import DEFAULT_KEY

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SINCE = NOW.date() - timedelta(days=364)  # a year of days, today included
RATE, BURST = 10.0, 10
ROUND_TRIP = 0.05  # allowance for the last request's round trip on this machine


def utc(instant: datetime) -> str:
    """ISO 8601 with a Z."""
    return instant.isoformat().replace("+00:00", "Z")


def run_sync(url: str, database: str, now: datetime) -> tuple[list[str], float, str]:
    """Run ``oxystats sync`` as of ``now``; its command, wall time and summary lines."""
    command = [
        *("oxystats", "sync", "--db", database, "--product", "HB"),
        *("--since", SINCE.isoformat(), "--now", utc(now), "--base-url", url),
    ]
    env = {**os.environ, "OXYLABS_API_KEY": DEFAULT_KEY}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "oxystats", *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr}")
    return command, wall, done.stderr


def table_size(database: str) -> tuple[int, int]:
    """The usage table's rows, and the requests summed over them."""
    engine = sa.create_engine(database if "://" in database else f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            rows, requests = connection.execute(
                sa.text("SELECT COUNT(*), SUM(requests) FROM usage")
            ).one()
            return int(rows), int(requests or 0)
    finally:
        engine.dispose()


def report(title: str, command: list[str], wall: float, stats: dict[str, int]) -> None:
    """Print one run: its command, requests, 429s, wall time and the bound."""
    sent = stats["total"]
    bound = max(0.0, (sent - BURST) / RATE) + ROUND_TRIP
    print(title)
    print(f"  command: {shlex.join(command)}")
    print(
        f"  requests: {sent}   429s: {count_status(stats, 429)}   wall: {wall:.2f} s "
        f"(process start included)   bound: {bound:.2f} s   wall / bound: {wall / bound:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a database URL or path (default: a new SQLite file)")
    options = parser.parse_args()
    emulator_options = ["--documented-limits", "--now", utc(NOW)]
    with tempfile.TemporaryDirectory() as folder, emulator_process(emulator_options) as url:
        database = options.db or str(Path(folder) / "usage.sqlite")
        print(f"oxystats sync, HB by DAY x TARGET, emulator at the documented limits, now {NOW}")

        command, wall, summary = run_sync(url, database, NOW)
        report(f"first sync, one year ({SINCE}..{NOW.date()}):", command, wall, emulator_stats(url))
        print("  " + summary.strip().replace("\n", "\n  "))

        later = NOW + timedelta(days=1)
        httpx.post(f"{url}{ADMIN}/now", json={"now": utc(later)}, timeout=10).raise_for_status()
        reset_emulator(url)
        command, wall, summary = run_sync(url, database, later)
        report("daily re-sync, one day later:", command, wall, emulator_stats(url))
        print("  " + summary.strip().replace("\n", "\n  "))
        rows, requests = table_size(database)
        print(f"  the table: {rows:,} rows, {requests:,} requests of usage")


if __name__ == "__main__":
    main()
