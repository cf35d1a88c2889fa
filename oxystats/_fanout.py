"""Running many requests concurrently, structured: nothing outlives the call.

`fan_out` runs jobs on a fixed number of workers inside one anyio task
group. A job's result may add more jobs (page 1 of a window reveals pages
2..N). The first failure cancels every other job and is raised as itself,
never wrapped in an ``ExceptionGroup``, so ``except AuthenticationError:``
works for callers.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio

__all__: list[str] = []

J = TypeVar("J")
R = TypeVar("R")


class _FifoQueue(Generic[J]):
    """Jobs in the order they were added."""

    def __init__(self, jobs: Iterable[J]) -> None:
        self._jobs: deque[J] = deque(jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def push(self, jobs: Iterable[J]) -> bool:
        before = len(self._jobs)
        self._jobs.extend(jobs)
        return len(self._jobs) > before

    def pop(self) -> J:
        return self._jobs.popleft()


class _PriorityQueue(Generic[J]):
    """Jobs lowest ``key`` first; equal keys in the order they were added."""

    def __init__(self, jobs: Iterable[J], key: Callable[[J], Any]) -> None:
        self._key = key
        self._added = itertools.count()  # ties never compare the jobs themselves
        self._heap: list[tuple[Any, int, J]] = []
        self.push(jobs)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, jobs: Iterable[J]) -> bool:
        before = len(self._heap)
        for job in jobs:
            heapq.heappush(self._heap, (self._key(job), next(self._added), job))
        return len(self._heap) > before

    def pop(self) -> J:
        return heapq.heappop(self._heap)[2]


class _Pool(Generic[J, R]):
    def __init__(
        self,
        queue: _FifoQueue[J] | _PriorityQueue[J],
        fetch: Callable[[J], Awaitable[R]],
        on_result: Callable[[J, R], Iterable[J]],
        deliver: Callable[[J, R], Awaitable[None]] | None,
    ) -> None:
        self.queue = queue
        self.fetch = fetch
        self.on_result = on_result
        self.deliver = deliver
        self.running = 0
        self.idle = 0  # workers waiting for news
        self.changed = anyio.Event()
        self.failure: Exception | None = None

    def _notify(self) -> None:
        # An event per job costs as much as a row's bookkeeping: only when
        # someone waits for one.
        if self.idle:
            self.changed.set()
            self.changed = anyio.Event()

    async def run_one(self, job: J) -> None:
        result = await self.fetch(job)
        revealed = self.queue.push(self.on_result(job, result))
        if self.deliver is not None:
            if revealed:
                # Before the delivery, which a slow consumer may hold up: the
                # other workers get on with the jobs it revealed meanwhile.
                self._notify()
            await self.deliver(job, result)

    async def worker(self, scope: anyio.CancelScope) -> None:
        while True:
            if self.queue:
                job = self.queue.pop()
                self.running += 1
                try:
                    await self.run_one(job)
                except Exception as exc:
                    # Keep the first failure; the others are its consequences.
                    if self.failure is None:
                        self.failure = exc
                    scope.cancel()
                    return
                finally:
                    self.running -= 1
                    self._notify()
            elif self.running == 0:
                return
            else:
                self.idle += 1
                try:
                    await self.changed.wait()
                finally:
                    self.idle -= 1


async def fan_out(
    jobs: Iterable[J],
    fetch: Callable[[J], Awaitable[R]],
    on_result: Callable[[J, R], Iterable[J]],
    *,
    concurrency: int,
    first_alone: bool = False,
    order: Callable[[J], Any] | None = None,
    deliver: Callable[[J, R], Awaitable[None]] | None = None,
) -> None:
    """Fetch every job, ``concurrency`` at a time.

    ``on_result(job, result)`` runs as each result arrives and returns the
    jobs it reveals, which join the queue. Returns when the queue is empty
    and nothing is running; raises the first failure as itself.

    Args:
        jobs: The jobs to start with.
        fetch: Runs one job.
        on_result: Takes a job's result; returns the jobs it reveals.
        concurrency: How many jobs run at once.
        first_alone: Run the first job before any other starts: a bad key or
            a refused query then costs one request, not ``concurrency``.
        order: Run jobs lowest ``order(job)`` first; by default in the order
            they were queued.
        deliver: Awaited with each result after ``on_result``; while it
            waits (a full stream), its worker starts nothing else.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    queue: _FifoQueue[J] | _PriorityQueue[J] = (
        _FifoQueue(jobs) if order is None else _PriorityQueue(jobs, order)
    )
    pool: _Pool[J, R] = _Pool(queue, fetch, on_result, deliver)
    if first_alone and queue:
        await pool.run_one(queue.pop())
    async with anyio.create_task_group() as group:
        # Start every worker even for one job: page 1 may reveal many more.
        for _ in range(concurrency):
            group.start_soon(pool.worker, group.cancel_scope)
    if pool.failure is not None:
        raise pool.failure
