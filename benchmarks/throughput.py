"""A one-year DAY x TARGET backfill under the documented per-key limit, four ways.

Run from the repository root::

    python -m benchmarks.throughput [--quick] [--repeat N]

The emulator runs in a subprocess (so this process's CPU time is the client's
alone) with the documented limits (per key: 10 requests per sliding second and
10 in flight; per account 100 and 100), 60 ms latency per request, and 100
targets, so that 2025 is 365 full 100-row pages (``--quick``: two months).

Every approach fetches every page of every 31-day window and merges the rows;
each result is checked against the emulator's ground truth. Figures per run:

* requests sent and 429s provoked, from the emulator's counters (reset between runs);
* wall time / bound, where bound = (pages - burst) / rate + one latency: no
  client can fetch ``pages`` pages faster under a sliding window of ``burst``
  requests per ``burst / rate`` seconds;
* client CPU per request sent (and per page), from ``time.process_time()``.

Every run starts with a full garbage collection, so none inherits the
collector's debts of the one before. ``oxystats`` and ``sequential`` (the two
the CPU target compares) run ``--repeat`` times (default 2), interleaved; the
table shows every run. 0 x 429 and the wall-time ratio must hold in *every*
oxystats run; the CPU verdict compares each approach's best run, as ``timeit``
does, because a busy machine only ever adds CPU time.

The approaches:

* ``oxystats``: a default ``oxystats.AsyncClient`` and one ``usage()`` call;
* ``sequential``: one httpx request after another (page 1 of a window, then
  its other pages); a 429 is retried after its ``Retry-After``;
* ``gather``: every window's page 1 at once with ``asyncio.gather``, then
  every other page at once, no limiter; a 429 is retried after its
  ``Retry-After`` (each request on its own: the naive fix);
* ``aiolimiter``: the same gathers, each request behind
  ``aiolimiter.AsyncLimiter(10, 1)`` (a token bucket: 10 at once, then 10 per
  second), 429s retried the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
import httpx
from aiolimiter import AsyncLimiter

import oxystats
from benchmarks._common import Rows, count_status, emulator_process, emulator_stats, reset_emulator
from oxystats.emulator import Dataset, Emulator, EmulatorConfig

KEY = "bench-key"
RATE = 10.0  # the documented per-key limit the emulator enforces
BURST = 10
LATENCY = 0.06
TARGETS = 100
GROUPING = ("DAY", "TARGET")

# Targets for oxystats, measured against the emulator in the same run.
MAX_RATIO = 1.03
MAX_CPU_VS_SEQUENTIAL = 1.2


@attrs.frozen
class Run:
    """The figures of one approach."""

    name: str
    requests: int
    pages: int
    rate_limited: int
    wall: float
    cpu: float
    correct: bool

    @property
    def bound(self) -> float:
        """The fastest any client could fetch ``pages`` pages under the limit."""
        return max(0, self.pages - BURST) / RATE + LATENCY

    @property
    def ratio(self) -> float:
        """Wall time over the physical bound (1.0 is perfect)."""
        return self.wall / self.bound

    @property
    def window_bound(self) -> float:
        """The fastest under a sliding window: page k+burst starts a full window after page k.

        Stricter than `bound`'s fluid rate, so no client gets below it: the
        last page starts ``(pages - 1) // burst`` whole windows after the first.
        """
        return (max(0, self.pages - 1) // BURST) * (BURST / RATE) + LATENCY

    @property
    def cpu_per_request_us(self) -> float:
        """Client CPU microseconds per request sent (429s included)."""
        return self.cpu / self.requests * 1e6

    @property
    def cpu_per_page_us(self) -> float:
        """Client CPU microseconds per page fetched."""
        return self.cpu / self.pages * 1e6


# --- the naive approaches share the window split and the merge ------------------------


def windows(first: date, last: date) -> list[tuple[str, str]]:
    """31-day windows covering ``first..last`` (whole UTC days), as the API's query strings."""
    out = []
    day = first
    while day <= last:
        end = min(day + timedelta(days=30), last)
        out.append((f"{day.isoformat()}T00:00:00Z", f"{end.isoformat()}T23:59:59Z"))
        day = end + timedelta(days=1)
    return out


def params(window: tuple[str, str], page: int) -> httpx.QueryParams:
    """The query of one page of one window."""
    return httpx.QueryParams(
        [
            ("product", "HB"),
            ("date_from", window[0]),
            ("date_to", window[1]),
            ("group_by[]", GROUPING[0]),
            ("group_by[]", GROUPING[1]),
            ("page", str(page)),
            ("per_page", "100"),
        ]
    )


def merge(rows: Rows, document: dict[str, Any]) -> int:
    """Add a page's rows into ``rows``; return the window's total_pages."""
    for row in document["data"]:
        key = tuple(row["grouped_by"])
        requests, size = rows.get(key, (0, 0))
        rows[key] = (requests + row["requests"], size + row["traffic_bytes"])
    pages: int = document["meta"]["pagination"]["total_pages"]
    return pages


async def get_page(
    http: httpx.AsyncClient, window: tuple[str, str], page: int, limiter: AsyncLimiter | None
) -> dict[str, Any]:
    """GET one page; on 429 sleep its Retry-After and try again (the naive retry)."""
    while True:
        if limiter is None:
            response = await http.get("/stats/v1/usage", params=params(window, page))
        else:
            async with limiter:
                response = await http.get("/stats/v1/usage", params=params(window, page))
        if response.status_code == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            continue
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


def naive_client(url: str) -> httpx.AsyncClient:
    """An httpx client with the same pool size as oxystats' default (10)."""
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {KEY}"},
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        timeout=30.0,
    )


async def warm_up(url: str, first: date, last: date) -> None:
    """Ask for every window once, so no approach pays for the emulator's first aggregation."""
    async with naive_client(url) as http:
        for window in windows(first, last):
            await get_page(http, window, 1, None)


async def sequential(url: str, first: date, last: date) -> Rows:
    """One request after another."""
    rows: Rows = {}
    async with naive_client(url) as http:
        for window in windows(first, last):
            total = merge(rows, await get_page(http, window, 1, None))
            for page in range(2, total + 1):
                merge(rows, await get_page(http, window, page, None))
    return rows


async def gathered(url: str, first: date, last: date, limiter: AsyncLimiter | None) -> Rows:
    """Every page 1 at once, then every other page at once."""
    rows: Rows = {}
    async with naive_client(url) as http:
        spans = windows(first, last)
        firsts = await asyncio.gather(*(get_page(http, w, 1, limiter) for w in spans))
        rest: list[Awaitable[dict[str, Any]]] = []
        for window, document in zip(spans, firsts, strict=True):
            total = merge(rows, document)
            rest.extend(get_page(http, window, page, limiter) for page in range(2, total + 1))
        for document in await asyncio.gather(*rest):
            merge(rows, document)
    return rows


async def with_oxystats(url: str, first: date, last: date) -> Rows:
    """A default client (the documented limits) and one usage() call."""
    async with oxystats.AsyncClient(KEY, base_url=url) as client:
        report = await client.usage("HB", first, last, GROUPING)
    return {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows}


# --- measuring --------------------------------------------------------------------------


def measure(
    name: str, url: str, fetch: Callable[[], Awaitable[Rows]], truth: Rows, pause: float
) -> Run:
    """Run one approach on a reset emulator; read its counters; check its result."""
    reset_emulator(url)
    time.sleep(pause)  # let every window of the previous run age out, on both sides
    gc.collect()

    async def timed() -> tuple[Rows, float, float]:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        rows = await fetch()
        return rows, time.perf_counter() - wall0, time.process_time() - cpu0

    rows, wall, cpu = asyncio.run(timed())
    stats = emulator_stats(url)
    return Run(
        name=name,
        requests=stats["total"],
        pages=count_status(stats, 200),
        rate_limited=count_status(stats, 429),
        wall=wall,
        cpu=cpu,
        correct=rows == truth,
    )


def main() -> int:
    """Run the four approaches against one emulator and print the table and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="two months instead of a year")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        metavar="N",
        help="runs of oxystats and of the sequential loop, interleaved (default 2)",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    first = date(2025, 1, 1)
    last = date(2025, 2, 28) if args.quick else date(2025, 12, 31)

    dataset = Dataset(targets=TARGETS)
    truth_of = Emulator(EmulatorConfig(dataset=dataset)).ground_truth(
        "HB",
        datetime.combine(first, datetime.min.time(), UTC),
        datetime.combine(last, datetime.max.time().replace(microsecond=0), UTC),
        GROUPING,
    )
    truth = dict(truth_of.rows)
    options = [
        "--http",
        "httptools",
        "--key",
        KEY,
        "--targets",
        str(TARGETS),
        "--documented-limits",
        "--latency",
        str(LATENCY),
    ]
    compared: list[tuple[str, Callable[[str], Awaitable[Rows]]]] = [
        ("oxystats", lambda url: with_oxystats(url, first, last)),
        ("sequential httpx", lambda url: sequential(url, first, last)),
    ]
    approaches = compared * args.repeat + [
        ("gather, no limiter", lambda url: gathered(url, first, last, None)),
        ("gather + aiolimiter", lambda url: gathered(url, first, last, AsyncLimiter(RATE, 1))),
    ]
    runs: list[Run] = []
    with emulator_process(options) as url:
        asyncio.run(warm_up(url, first, last))
        for name, approach in approaches:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            runs.append(measure(name, url, functools.partial(approach, url), truth, pause=1.1))

    print(
        f"\nthroughput: HB DAY x TARGET {first}..{last}, {TARGETS} targets; emulator in a "
        f"subprocess: {RATE:g}/s sliding and {BURST} in flight per key, "
        f"{LATENCY * 1000:g} ms latency"
    )
    header = (
        f"{'approach':<22} {'requests':>8} {'pages':>6} {'429s':>5} {'wall s':>7} "
        f"{'bound s':>7} {'ratio':>6} {'best':>6} "
        f"{'CPU us/req':>10} {'CPU us/page':>11} {'result':>7}"
    )
    print(header)
    print("-" * len(header))
    runs_of = Counter(run.name for run in runs)
    seen: Counter[str] = Counter()
    for run in runs:
        seen[run.name] += 1
        label = f"{run.name} #{seen[run.name]}" if runs_of[run.name] > 1 else run.name
        print(
            f"{label:<22} {run.requests:>8} {run.pages:>6} {run.rate_limited:>5} "
            f"{run.wall:>7.2f} {run.bound:>7.2f} {run.ratio:>6.3f} "
            f"{run.window_bound / run.bound:>6.3f} "
            f"{run.cpu_per_request_us:>10.0f} {run.cpu_per_page_us:>11.0f} "
            f"{'ok' if run.correct else 'WRONG':>7}"
        )
    ours = [run for run in runs if run.name == "oxystats"]
    seq = [run for run in runs if run.name == "sequential httpx"]
    most_429s = max(run.rate_limited for run in ours)
    worst_ratio = max(run.ratio for run in ours)
    our_cpu = min(run.cpu_per_request_us for run in ours)
    seq_cpu = min(run.cpu_per_request_us for run in seq)
    cpu_ratio = our_cpu / seq_cpu
    every = f" in every one of {len(ours)} runs" if len(ours) > 1 else ""
    lowest = f", each the lowest of {args.repeat} runs" if args.repeat > 1 else ""
    checks = [
        (most_429s == 0, f"oxystats provoked {most_429s} x 429{every} (target 0)"),
        (
            worst_ratio <= MAX_RATIO,
            f"oxystats wall/bound at most {worst_ratio:.3f}{every} (target <= {MAX_RATIO})",
        ),
        (
            cpu_ratio <= MAX_CPU_VS_SEQUENTIAL,
            f"oxystats CPU per request {cpu_ratio:.2f}x the sequential loop's "
            f"({our_cpu:.0f} against {seq_cpu:.0f} us{lowest}; "
            f"target <= {MAX_CPU_VS_SEQUENTIAL})",
        ),
        (all(run.correct for run in runs), "every approach's merged result equals ground truth"),
    ]
    print(
        "\nbest: the lowest ratio any client can reach against a sliding window "
        "(the last page starts (pages - 1) // burst whole windows after the first)"
    )
    print()
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
