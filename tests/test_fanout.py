"""Tests of the structured fan-out."""

from __future__ import annotations

from collections.abc import Iterable

import anyio
import anyio.lowlevel
import pytest

from oxystats._fanout import fan_out

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """A failure raised by one job."""


async def test_jobs_reveal_more_jobs() -> None:
    """Results may add jobs; every job runs once, at most `concurrency` at a time."""
    seen: list[int] = []
    running = peak = 0

    async def fetch(job: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1
        return job

    def on_result(job: int, result: int) -> Iterable[int]:
        seen.append(result)
        return range(job * 10 + 1, job * 10 + 6) if job < 3 else ()

    await fan_out([1, 2], fetch, on_result, concurrency=3)
    assert sorted(seen) == sorted([1, 2, *range(11, 16), *range(21, 26)])
    assert peak <= 3


async def test_first_failure_is_raised_as_itself_and_cancels_the_rest() -> None:
    """No ExceptionGroup: the failing job's own exception reaches the caller."""
    finished: list[int] = []

    async def fetch(job: int) -> int:
        if job == 0:
            raise Boom("job 0")
        await anyio.sleep(5)
        finished.append(job)
        return job

    with anyio.fail_after(2):
        with pytest.raises(Boom, match="job 0"):
            await fan_out(range(10), fetch, lambda job, result: (), concurrency=4)
    assert finished == []


async def test_outer_cancellation_leaves_nothing_running() -> None:
    """Cancelling the caller cancels every job, and nothing outlives the call."""
    started = 0
    finished = 0

    async def fetch(job: int) -> int:
        nonlocal started, finished
        started += 1
        await anyio.sleep(10)
        finished += 1
        return job

    with anyio.move_on_after(0.05) as scope:
        await fan_out(range(100), fetch, lambda job, result: (), concurrency=5)
    assert scope.cancelled_caught
    assert started == 5
    await anyio.sleep(0.01)
    assert finished == 0


async def test_empty_job_list() -> None:
    """No jobs is no work, not a hang."""
    with anyio.fail_after(1):
        await fan_out(
            [], lambda job: anyio.lowlevel.checkpoint(), lambda job, result: (), concurrency=3
        )
