"""stream_usage and stream_usage_pages: fetching in the background, bounded and structured."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from datetime import time as dtime

import anyio
import pytest

import oxystats
from oxystats.emulator import Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

pytestmark = pytest.mark.anyio

FAST = oxystats.Limit(rate=1_000.0, burst=1_000, in_flight=4)
DAY_TARGET = ("DAY", "TARGET")
FIRST, LAST = date(2024, 1, 1), date(2024, 3, 31)


def client_for(running: RunningEmulator, **options: object) -> oxystats.AsyncClient:
    """A client of the emulator that the limiter never slows down."""
    return oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=running.url,
        key_limit=FAST,
        **options,  # type: ignore[arg-type]
    )


def truth_of(running: RunningEmulator, first: date, last: date) -> dict[tuple[str, ...], int]:
    """Requests per (day, target) key over whole UTC days, from the emulator's ground truth."""
    start = datetime.combine(first, dtime.min, UTC)
    end = datetime.combine(last, dtime(23, 59, 59), UTC)
    truth = running.emulator.ground_truth("HB", start, end, list(DAY_TARGET))
    return {key: requests for key, (requests, _) in truth.rows.items()}


async def drain(stream: AbstractAsyncContextManager[AsyncIterator[object]]) -> int:
    """Read a stream to its end; return how many items it gave."""
    count = 0
    async with stream as items:
        async for _ in items:
            count += 1
    return count


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` every 10 ms until it holds (for at most five seconds)."""
    with anyio.fail_after(5):
        while True:
            if predicate():
                return
            await anyio.sleep(0.01)


def in_flight_requests(client: oxystats.AsyncClient) -> int:
    """Requests holding a limiter slot right now."""
    return client._limiter.stats.in_flight + client._limiter.stats.waiting


async def test_rows_are_every_row_of_every_page(oxystats_emulator: RunningEmulator) -> None:
    """The streamed rows, summed by key, equal the ground truth; pages come once each."""
    async with client_for(oxystats_emulator) as client:
        seen_pages: Counter[tuple[int, int]] = Counter()
        async with client.stream_usage_pages("HB", FIRST, LAST, DAY_TARGET) as pages:
            async for fetched in pages:
                seen_pages[(fetched.window_index, fetched.number)] += 1
        totals: Counter[tuple[str, ...]] = Counter()
        async with client.stream_usage("HB", FIRST, LAST, DAY_TARGET) as rows:
            async for row in rows:
                totals[row.grouped_by] += row.requests
    assert set(seen_pages.values()) == {1}
    assert len(seen_pages) == client.stats.requests // 2
    assert dict(totals) == truth_of(oxystats_emulator, FIRST, LAST)


async def test_leaving_early_leaves_nothing_behind(oxystats_emulator: RunningEmulator) -> None:
    """Leaving the block after 3 rows cancels what is in flight: no task, no slot, no warning."""
    oxystats_emulator.emulator.faults = Faults(latency=0.05)
    async with client_for(oxystats_emulator) as client:
        tasks_before = len(anyio.get_running_tasks())
        taken = []
        async with client.stream_usage(
            "HB", date(2023, 1, 1), date(2025, 12, 31), DAY_TARGET
        ) as rows:
            async for row in rows:
                taken.append(row)
                if len(taken) == 3:
                    break
        assert len(anyio.get_running_tasks()) == tasks_before
        assert in_flight_requests(client) == 0
        sent = client.stats.requests
        await anyio.sleep(0.2)
        assert client.stats.requests == sent, "nothing fetches after the block"
    gc.collect()  # an abandoned async generator would warn here (warnings are errors)


async def test_fetching_goes_on_while_the_body_works(oxystats_emulator: RunningEmulator) -> None:
    """While the body holds the first page, the other pages are fetched up to the buffer."""
    async with (
        client_for(oxystats_emulator) as client,
        client.stream_usage_pages(
            "HB", date(2023, 1, 1), date(2025, 12, 31), DAY_TARGET, buffer=3
        ) as pages,
    ):
        await pages.__anext__()
        await wait_until(lambda: client.stats.requests >= 1 + 3)
        await anyio.sleep(0.3)
        # Full buffer: each worker holds at most one page it cannot hand over.
        assert client.stats.requests <= 1 + 3 + FAST.in_flight
        assert client.stats.requests < 40


async def test_a_failure_comes_out_as_itself_after_the_pages_before_it(
    oxystats_emulator: RunningEmulator,
) -> None:
    """A failure mid-stream is raised by the stream, as itself, after the pages before it."""
    got = 0

    async def read_then_break_the_server(client: oxystats.AsyncClient) -> None:
        nonlocal got
        async with client.stream_usage_pages("HB", FIRST, LAST, DAY_TARGET) as pages:
            async for _ in pages:
                got += 1
                if got == 2:
                    oxystats_emulator.emulator.faults = Faults(error_500=1.0)

    async with client_for(oxystats_emulator, max_retries=0) as client:
        with pytest.raises(oxystats.ServerError):
            await read_then_break_the_server(client)
        assert got >= 2
        assert in_flight_requests(client) == 0


async def test_a_bad_key_costs_one_request(oxystats_emulator: RunningEmulator) -> None:
    """An unknown key raises AuthenticationError itself, not a group, after one request."""
    async with oxystats.AsyncClient(
        "not-a-key", base_url=oxystats_emulator.url, key_limit=FAST
    ) as client:
        with pytest.raises(oxystats.AuthenticationError):
            await drain(client.stream_usage("HB", FIRST, LAST, DAY_TARGET))
        assert client.stats.requests == 1


async def test_the_body_s_exception_comes_out_as_itself(oxystats_emulator: RunningEmulator) -> None:
    """An exception raised in the block leaves it unwrapped, and fetching stops."""

    class Stop(Exception):
        """The body's own failure."""

    async def fail_on_the_first_row(client: oxystats.AsyncClient) -> None:
        async with client.stream_usage("HB", FIRST, LAST, DAY_TARGET) as rows:
            async for _ in rows:
                raise Stop("mine")

    async with client_for(oxystats_emulator) as client:
        with pytest.raises(Stop) as caught:
            await fail_on_the_first_row(client)
        assert caught.value.__context__ is None
        assert in_flight_requests(client) == 0


async def test_done_pages_are_not_fetched_again(oxystats_emulator: RunningEmulator) -> None:
    """Pages listed in done are skipped; a window whose page 1 is done needs no page 1."""
    async with client_for(oxystats_emulator) as client:
        async with client.stream_usage_pages("HB", FIRST, LAST, DAY_TARGET) as pages:
            every = {(f.window_index, f.number): f.total_pages async for f in pages}
        assert len(every) > 3
        done = dict(sorted(every.items())[:3])
        sent = client.stats.requests
        async with client.stream_usage_pages("HB", FIRST, LAST, DAY_TARGET, done=done) as pages:
            rest = {(f.window_index, f.number) async for f in pages}
    assert rest == set(every) - set(done)
    assert client.stats.requests - sent == len(rest)


async def test_bad_arguments_fail_at_the_call(oxystats_emulator: RunningEmulator) -> None:
    """A bad argument raises at the call, before any block is entered or request sent."""
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(ValueError, match="group_by"):
            client.stream_usage("HB", FIRST, LAST, ["WEEK"])
        with pytest.raises(ValueError, match="buffer"):
            client.stream_usage_pages("HB", FIRST, LAST, ["DAY"], buffer=0)
        with pytest.raises(TypeError, match="buffer"):
            client.stream_usage("HB", FIRST, LAST, ["DAY"], buffer=2.5)  # type: ignore[arg-type]
        assert client.stats.requests == 0
