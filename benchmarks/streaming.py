"""Streaming a one-year backfill to a consumer that takes its time, and one that stops reading.

Run from the repository root::

    python -m benchmarks.streaming [--quick]

The emulator runs in a subprocess with the documented limits (10 requests per
sliding second per key), 60 ms latency and 100 targets, so that 2025 grouped
by DAY x TARGET is 365 full 100-row pages (``--quick``: two months). The
consumer spends 50 ms per 100 rows it is handed (``await anyio.sleep``), as a
consumer writing each page to a database does.

Figures, each from this one run:

* wall time / bound for `stream_usage_pages` and for `iter_usage_pages` (the
  rounds it fetches pause while the consumer holds a page), where bound =
  (pages - burst) / rate + one latency;
* with a consumer that reads one page and then stops reading for 3 s: how
  many requests went out meanwhile, against the most the buffer allows
  (buffer + requests in flight), i.e. memory bounded by the buffer and not by
  the range.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

import anyio

import oxystats
from benchmarks._common import count_status, emulator_process, emulator_stats, reset_emulator

KEY = "bench-key"
RATE = 10.0
BURST = 10
LATENCY = 0.06
TARGETS = 100
GROUPING = ("DAY", "TARGET")
CONSUMER_SECONDS_PER_100_ROWS = 0.05
STALL = 3.0
BUFFER = 20
MAX_RATIO = 1.05


def bound(pages: int) -> float:
    """The fastest any client could fetch ``pages`` pages under the limit."""
    return max(0, pages - BURST) / RATE + LATENCY


async def consume(rows: int) -> None:
    """What the consumer does with a page: 50 ms per 100 rows, awaited."""
    await anyio.sleep(CONSUMER_SECONDS_PER_100_ROWS * rows / 100)


async def streamed(url: str, first: date, last: date) -> tuple[int, float]:
    """`stream_usage_pages` to the slow consumer; returns pages and wall seconds."""
    pages = 0
    async with oxystats.AsyncClient(KEY, base_url=url) as client:
        started = time.perf_counter()
        async with client.stream_usage_pages("HB", first, last, GROUPING) as stream:
            async for fetched in stream:
                await consume(len(fetched.page.data))
                pages += 1
        return pages, time.perf_counter() - started


async def rounds(url: str, first: date, last: date) -> tuple[int, float]:
    """`iter_usage_pages` to the slow consumer; returns pages and wall seconds."""
    pages = 0
    async with oxystats.AsyncClient(KEY, base_url=url) as client:
        started = time.perf_counter()
        async for fetched in client.iter_usage_pages("HB", first, last, GROUPING):
            await consume(len(fetched.page.data))
            pages += 1
        return pages, time.perf_counter() - started


async def stalled(url: str, first: date, last: date) -> tuple[int, int]:
    """Read one page, stop reading for a while; returns requests sent and the allowance."""
    async with oxystats.AsyncClient(KEY, base_url=url) as client:
        allowance = 1 + BUFFER + oxystats.Limit().in_flight
        async with client.stream_usage_pages("HB", first, last, GROUPING, buffer=BUFFER) as stream:
            await stream.__anext__()
            await anyio.sleep(STALL)
            return client.stats.requests, allowance


def main() -> int:
    """Run the three measurements and print the figures with their verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two months instead of a year")
    args = parser.parse_args()
    first, last = (date(2025, 1, 1), date(2025, 2, 28) if args.quick else date(2025, 12, 31))
    options = [
        *("--http", "httptools", "--key", KEY, "--targets", str(TARGETS)),
        *("--documented-limits", "--latency", str(LATENCY)),
    ]
    failed = False
    with emulator_process(options) as url:
        # Warm the emulator's aggregates, then measure from clean counters.
        anyio.run(streamed, url, first, last)
        results = {}
        for name, run in (("stream_usage_pages", streamed), ("iter_usage_pages", rounds)):
            reset_emulator(url)
            pages, wall = anyio.run(run, url, first, last)
            limited = count_status(emulator_stats(url), 429)
            results[name] = (pages, wall, limited)
        reset_emulator(url)
        sent, allowance = anyio.run(stalled, url, first, last)
    print(
        f"consumer: {CONSUMER_SECONDS_PER_100_ROWS * 1000:.0f} ms per 100 rows; "
        f"limit {RATE:g}/s, burst {BURST}; latency {LATENCY * 1000:.0f} ms"
    )
    print(f"{'approach':22} {'pages':>6} {'429s':>5} {'wall s':>7} {'bound s':>8} {'ratio':>6}")
    for name, (pages, wall, limited) in results.items():
        print(
            f"{name:22} {pages:6d} {limited:5d} {wall:7.2f} {bound(pages):8.2f} "
            f"{wall / bound(pages):6.3f}"
        )
    pages, wall, limited = results["stream_usage_pages"]
    ratio = wall / bound(pages)
    verdict = "PASS" if ratio <= MAX_RATIO and limited == 0 else "FAIL"
    failed |= verdict == "FAIL"
    print(
        f"{verdict}: stream_usage_pages wall/bound {ratio:.3f} with a slow consumer "
        f"(target <= {MAX_RATIO}), {limited} x 429"
    )
    verdict = "PASS" if sent <= allowance else "FAIL"
    failed |= verdict == "FAIL"
    print(
        f"{verdict}: a consumer that stopped reading for {STALL:g} s held back fetching at "
        f"{sent} requests (the buffer allows at most {allowance}: 1 read + {BUFFER} buffered "
        f"+ {oxystats.Limit().in_flight} in flight), memory bounded by the buffer"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
