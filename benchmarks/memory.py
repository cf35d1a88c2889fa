"""Peak memory of a million-row backfill: `iter_usage` streams, `usage` holds.

Run from the repository root::

    python -m benchmarks.memory            # about 1.0 million rows
    python -m benchmarks.memory --quick    # about 100,000 rows

An emulator with 500 targets and 5 HB instances runs in a subprocess; each
measurement runs in a fresh child process, so its peak RSS
(``ru_maxrss``) is its own: a baseline that imports oxystats and sends one
request, `iter_usage` over a DAY x TARGET x INSTANCE backfill of 400 days,
and `usage` over the same range for contrast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from datetime import date, timedelta

import oxystats
from benchmarks._common import emulator_process

TARGETS = 500
INSTANCES = 5
START = date(2025, 1, 1)
GROUPING = ["DAY", "TARGET", "INSTANCE"]
KEY = "bench-key"
# The emulator enforces no limit here, so lift the client's (both of them).
FAST = oxystats.Limit(rate=10_000.0, burst=100, in_flight=10)
FAST_ACCOUNT = oxystats.Limit(rate=10_000.0, burst=100, in_flight=100)


def emulator(days: int) -> contextlib.AbstractContextManager[str]:
    """Serve a big dataset in a subprocess; the context gives its URL."""
    return emulator_process(
        [
            *("--http", "httptools", "--key", KEY, "--targets", str(TARGETS)),
            *("--instances-per-product", str(INSTANCES)),
            *("--start", START.isoformat(), "--days", str(days + 5)),
        ]
    )


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(mode: str, url: str, days: int) -> dict[str, float]:
    """Run one mode in this process and return its figures."""
    end = START + timedelta(days=days - 1)
    rows = 0
    started = time.perf_counter()
    async with oxystats.AsyncClient(
        KEY,
        base_url=url,
        key_limit=FAST,
        account=oxystats.Account(FAST_ACCOUNT),
        timeout=120.0,
    ) as client:
        if mode == "baseline":
            rows = len(await client.instances())
        elif mode == "iter_usage":
            async for _ in client.iter_usage("HB", START, end, GROUPING):
                rows += 1
        else:
            rows = len((await client.usage("HB", START, end, GROUPING)).rows)
        requests = client.stats.requests
    return {
        "rows": rows,
        "requests": requests,
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": peak_rss_mib(),
    }


def child(mode: str, url: str, days: int) -> dict[str, float]:
    """Measure one mode in a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks.memory", "--child", mode, url, str(days)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(output)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 days instead of 400")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "DAYS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        mode, url, days = arguments.child
        print(json.dumps(asyncio.run(measure(mode, url, int(days)))))
        return
    days = 40 if arguments.quick else 400
    with emulator(days) as url:
        # Warm the emulator's caches so that both runs measure the client alone.
        child("usage", url, days)
        results = {mode: child(mode, url, days) for mode in ("baseline", "iter_usage", "usage")}
    print(f"DAY x TARGET x INSTANCE, HB, {days} days, {TARGETS} targets x {INSTANCES} instances")
    print(f"{'mode':<12}{'rows':>12}{'requests':>10}{'seconds':>9}{'peak RSS MiB':>14}")
    for mode, figures in results.items():
        print(
            f"{mode:<12}{figures['rows']:>12,.0f}{figures['requests']:>10,.0f}"
            f"{figures['seconds']:>9.1f}{figures['peak_rss_mib']:>14.1f}"
        )
    streamed = results["iter_usage"]["peak_rss_mib"] - results["baseline"]["peak_rss_mib"]
    held = results["usage"]["peak_rss_mib"] - results["baseline"]["peak_rss_mib"]
    print(f"above baseline: iter_usage {streamed:.1f} MiB, usage {held:.1f} MiB")
    # iter_usage does not merge: a key repeats once per window it appears in.
    # Whole-day ranges get whole-day windows, so a DAY-first grouping has none.
    extra = results["iter_usage"]["rows"] - results["usage"]["rows"]
    print(f"iter_usage yielded {extra:,.0f} more rows than usage merged")


if __name__ == "__main__":
    main()
