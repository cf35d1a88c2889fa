"""Resilience end to end: shared limits, fault mixes, Retry-After, cancellation, give-ups.

Every test talks to the emulator over real HTTP on 127.0.0.1 (the session's
server, serving a fresh `Emulator` per test). Rates are high wherever the rate
itself is not the point, so that both backends together stay within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as dtime

import anyio
import anyio.lowlevel
import attrs
import pytest

import oxystats
from oxystats.emulator import (
    Emulator,
    EmulatorConfig,
    Faults,
    LogEntry,
    RateLimitRule,
    RateLimits,
    RunningEmulator,
)
from oxystats.testing import DEFAULT_KEY, max_in_window

pytestmark = pytest.mark.anyio

FAST = oxystats.Limit(rate=100.0, burst=100, in_flight=10)  # never the bottleneck here
DAY_TARGET = (oxystats.GroupBy.DAY, oxystats.GroupBy.TARGET)
SCHEDULING_SLACK = 0.005  # seconds of timer and scheduling noise allowed for


def fast_backoff(client: oxystats.AsyncClient) -> None:
    """Shrink the client's exponential backoff so fault tests run in seconds.

    RetryPolicy.backoff_base/backoff_max are not AsyncClient arguments (the
    public API stays as designed), so the test swaps the private policy;
    Retry-After waits are unaffected.
    """
    client._retry_policy = attrs.evolve(client._retry_policy, backoff_base=0.005, backoff_max=0.02)


def utc_range(first: date, last: date) -> tuple[datetime, datetime]:
    """The inclusive datetimes the client uses for whole UTC days ``first..last``."""
    return (
        datetime.combine(first, dtime(0, 0, 0), UTC),
        datetime.combine(last, dtime(23, 59, 59), UTC),
    )


def assert_equals_truth(
    running: RunningEmulator, report: oxystats.UsageReport, first: date, last: date
) -> None:
    """The merged report equals the emulator's ground truth, rows and totals."""
    start, end = utc_range(first, last)
    truth = running.emulator.ground_truth("HB", start, end, [g.value for g in report.grouping])
    rows = {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows}
    assert len(rows) == len(report.rows), "no key twice in a merged report"
    assert rows == truth.rows
    assert (report.totals.requests, report.totals.traffic_bytes) == truth.totals
    assert truth.rows, "a test over no data proves little"


def api_entries(running: RunningEmulator) -> list[LogEntry]:
    """The emulator's log of API requests, in arrival order."""
    return sorted(running.emulator.log.snapshot(), key=lambda entry: entry.time)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` every millisecond until it holds (for at most five seconds)."""
    with anyio.fail_after(5.0):
        # Polling a counter is the simplest way to wait for a state of the client;
        # sleeping (not a bare checkpoint) leaves the CPU to the server thread.
        while True:
            if predicate():
                return
            await anyio.sleep(0.001)


def serve(running: RunningEmulator, **config: object) -> Emulator:
    """Serve a fresh emulator with ``config`` (EmulatorConfig fields) at the same URL."""
    return running.use(Emulator(EmulatorConfig(**config)))  # type: ignore[arg-type]


# --- shared account -----------------------------------------------------------------


async def test_two_keys_share_one_account_without_429(oxystats_emulator: RunningEmulator) -> None:
    """Two clients of one Account(12/s) stay under an emulator enforcing 12 per 1 s per account."""
    serve(
        oxystats_emulator,
        keys={"key-a": "shared", "key-b": "shared"},
        limits=RateLimits(
            per_account=RateLimitRule(window_requests=12, window_seconds=1.0, in_flight=12)
        ),
    )
    account = oxystats.Account(oxystats.Limit(rate=12, burst=12, in_flight=12))
    ranges = {
        "key-a": (date(2024, 1, 1), date(2024, 2, 29)),
        "key-b": (date(2024, 6, 1), date(2024, 7, 31)),
    }
    reports: dict[str, oxystats.UsageReport] = {}

    async def run(key: str) -> None:
        async with oxystats.AsyncClient(
            key, base_url=oxystats_emulator.url, key_limit=FAST, account=account
        ) as client:
            first, last = ranges[key]
            reports[key] = await client.usage("HB", first, last, DAY_TARGET)
            assert client.stats.rate_limited == 0

    async with anyio.create_task_group() as group:
        for key in ranges:
            group.start_soon(run, key)

    entries = api_entries(oxystats_emulator)
    assert [e.status for e in entries].count(429) == 0
    assert {e.key_id for e in entries} == {"shared/key-1", "shared/key-2"}
    assert len(entries) > 24, "enough requests that the account limit binds for seconds"
    assert max_in_window([e.time for e in entries], 1.0) <= 12
    for key, (first, last) in ranges.items():
        assert_equals_truth(oxystats_emulator, reports[key], first, last)


# --- fault mixes ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 2024])
async def test_fault_mix_still_gives_ground_truth(
    oxystats_emulator: RunningEmulator, seed: int
) -> None:
    """10% 500, 5% 503, 5% spurious 429 (Retry-After: 1), 3% drops: usage() equals ground truth."""
    oxystats_emulator.emulator.faults = Faults(
        seed=seed,
        error_500=0.10,
        error_503=0.05,
        spurious_429=0.05,
        drop_connection=0.03,
        retry_after=1,  # each spurious 429 costs a 1 s pause of the key: keep the run short
    )
    first, last = date(2024, 1, 1), date(2024, 4, 30)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=FAST
    ) as client:
        fast_backoff(client)
        report = await client.usage("HB", first, last, DAY_TARGET)
        stats = client.stats
    assert_equals_truth(oxystats_emulator, report, first, last)
    faults = oxystats_emulator.emulator.counters.by_fault
    assert sum(faults.values()) > 0, "the seed injected faults"
    assert stats.retries > 0
    assert stats.retries == sum(faults.values()), "every fault cost exactly one retry"
    assert stats.requests == len(oxystats_emulator.emulator.log)


# --- Retry-After ------------------------------------------------------------------------


async def test_no_request_before_retry_after(oxystats_emulator: RunningEmulator) -> None:
    """After a 429 with Retry-After: 2, the key's next request arrives at least 2 s later."""
    # 4 requests per sliding 2 s: the fifth is refused with Retry-After: 2.
    oxystats_emulator.emulator.limits = RateLimits(
        per_key=RateLimitRule(window_requests=4, window_seconds=2.0)
    )
    # One in flight, two calls at once: one task holds the slot while the other
    # waits in the limiter, so the pause must hold back a task that did not see the 429.
    ranges = [
        (date(2024, 2, 1), date(2024, 2, 15)),
        (date(2024, 3, 1), date(2024, 3, 15)),
    ]
    reports: list[oxystats.UsageReport] = []
    async with oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=oxystats_emulator.url,
        key_limit=oxystats.Limit(rate=100.0, burst=100, in_flight=1),
    ) as client:

        async def run(first: date, last: date) -> None:
            reports.append(await client.usage("HB", first, last, DAY_TARGET))

        async with anyio.create_task_group() as group:
            for first, last in ranges:
                group.start_soon(run, first, last)
        assert client.stats.rate_limited >= 1

    entries = api_entries(oxystats_emulator)
    refused = [i for i, e in enumerate(entries) if e.status == 429]
    assert refused, "the emulator's limit was reached"
    for i in refused:
        assert i + 1 < len(entries), "a refused request is retried"
        gap = entries[i + 1].time - entries[i].time
        assert gap >= 2.0 - SCHEDULING_SLACK, f"request {i + 1} came {gap:.3f} s after a 429"
    for report, (first, last) in zip(
        sorted(reports, key=lambda r: r.rows[0].grouped_by), ranges, strict=True
    ):
        assert_equals_truth(oxystats_emulator, report, first, last)


async def test_retry_after_above_the_cap_raises_at_once(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Retry-After: 300 raises RateLimitError(retry_after=300) at once and stalls nothing after."""
    oxystats_emulator.emulator.faults = Faults(spurious_429=1.0, retry_after=300)
    async with oxystats.AsyncClient(DEFAULT_KEY, base_url=oxystats_emulator.url) as client:
        started = time.monotonic()
        with pytest.raises(oxystats.RateLimitError) as caught:
            await client.usage("HB", date(2024, 2, 1), date(2024, 2, 2), ["DAY"])
        assert time.monotonic() - started < 1.0
        assert caught.value.retry_after == 300
        assert caught.value.attempts == 1
        assert len(oxystats_emulator.emulator.log) == 1

        oxystats_emulator.emulator.faults = Faults()
        started = time.monotonic()
        with anyio.fail_after(5):
            report = await client.usage("HB", date(2024, 2, 1), date(2024, 2, 2), ["DAY"])
        assert time.monotonic() - started < 1.0, "the refused call left no long pause behind"
    assert_equals_truth(oxystats_emulator, report, date(2024, 2, 1), date(2024, 2, 2))


# --- cancellation -----------------------------------------------------------------------


async def test_cancelled_usage_gives_back_all_capacity(
    oxystats_emulator: RunningEmulator,
) -> None:
    """A big usage() cancelled midway holds no slot and no waiter; the next call starts at once."""
    oxystats_emulator.emulator.faults = Faults(latency=0.05)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=FAST
    ) as client:
        limiter = client._limiter
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as group:
                # Two large calls share 10 slots: some tasks hold slots, others wait.
                for year in (2024, 2025):
                    group.start_soon(
                        client.usage, "HB", date(year, 1, 1), date(year, 12, 31), DAY_TARGET
                    )
                await wait_until(
                    lambda: (
                        limiter.stats.in_flight == 10
                        and limiter.stats.waiting > 0
                        and client.stats.requests >= 30
                    )
                )
                scope.cancel()
        assert scope.cancelled_caught
        assert client.stats.requests < 300, "cancelled midway, long before the end"
        assert limiter.stats.in_flight == 0
        assert limiter.stats.waiting == 0

        oxystats_emulator.emulator.faults = Faults()
        waited = limiter.stats.waited
        started = time.monotonic()
        report = await client.usage("HB", date(2024, 2, 1), date(2024, 2, 2), ["DAY"])
        assert limiter.stats.waited - waited < 0.002, "the limiter let it go at once"
    # Cancelled requests may still be logged as the server finishes them: skip those.
    first_arrival = min(e.time for e in api_entries(oxystats_emulator) if e.time >= started)
    # Usually 1-5 ms; the bound allows for a new connection to a server (in this
    # process's thread) still winding down the cancelled requests.
    assert first_arrival - started < 0.1, "the next call's first request went out at once"
    assert_equals_truth(oxystats_emulator, report, date(2024, 2, 1), date(2024, 2, 2))


# --- what is not retried, and when retrying stops -----------------------------------------


async def test_401_is_not_retried(oxystats_emulator: RunningEmulator) -> None:
    """An unknown key (401) raises AuthenticationError after exactly one request."""
    async with oxystats.AsyncClient("unknown-key", base_url=oxystats_emulator.url) as client:
        with pytest.raises(oxystats.AuthenticationError) as caught:
            await client.usage("HB", date(2024, 1, 1), date(2024, 12, 31), DAY_TARGET)
        assert client.stats.retries == 0
    assert caught.value.attempts == 1
    assert [e.status for e in oxystats_emulator.emulator.log] == [401]


@pytest.mark.parametrize("max_retries", [0, 3])
async def test_persistent_500_raises_after_max_retries(
    oxystats_emulator: RunningEmulator, max_retries: int
) -> None:
    """A 500 that persists raises ServerError after exactly max_retries + 1 requests."""
    oxystats_emulator.emulator.faults = Faults(error_500=1.0)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, max_retries=max_retries
    ) as client:
        fast_backoff(client)
        with pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", date(2024, 2, 1), date(2024, 2, 2), ["DAY"])
        assert client.stats.retries == max_retries
    assert caught.value.status_code == 500
    assert caught.value.attempts == max_retries + 1
    assert [e.status for e in oxystats_emulator.emulator.log] == [500] * (max_retries + 1)


# --- logging ------------------------------------------------------------------------------


async def test_retries_are_logged_without_the_key(
    oxystats_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry logs one INFO line on "oxystats"; no log line anywhere contains the key."""
    secret = "sk-live-0123456789abcdef"
    serve(
        oxystats_emulator,
        keys={secret: "account-1"},
        faults=Faults(seed=11, error_500=0.3, error_503=0.1, drop_connection=0.1),
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="oxystats")
    async with oxystats.AsyncClient(
        secret, base_url=oxystats_emulator.url, key_limit=FAST
    ) as client:
        fast_backoff(client)
        await client.usage("HB", date(2024, 1, 1), date(2024, 2, 29), DAY_TARGET)
        retries = client.stats.retries
    assert retries > 0
    lines = [r for r in caplog.records if r.name == "oxystats" and r.levelno == logging.INFO]
    assert len(lines) == retries
    assert all(r.getMessage().startswith("retry ") for r in lines)
    assert any("/stats/v1/usage" in r.getMessage() for r in lines)
    for record in caplog.records:
        assert secret not in record.getMessage()
    assert secret not in caplog.text
