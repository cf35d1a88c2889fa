"""Running many requests concurrently, structured: nothing outlives the call.

`fan_out` runs jobs on a fixed number of workers inside one anyio task
group. A job's result may add more jobs (page 1 of a window reveals pages
2..N). The first failure cancels every other job and is raised as itself,
never wrapped in an ``ExceptionGroup``, so ``except AuthenticationError:``
works for callers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

import anyio

__all__: list[str] = []

J = TypeVar("J")
R = TypeVar("R")


class _Pool(Generic[J, R]):
    def __init__(
        self,
        jobs: Iterable[J],
        fetch: Callable[[J], Awaitable[R]],
        on_result: Callable[[J, R], Iterable[J]],
    ) -> None:
        self.queue: deque[J] = deque(jobs)
        self.fetch = fetch
        self.on_result = on_result
        self.running = 0
        self.changed = anyio.Event()
        self.failure: Exception | None = None

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def worker(self, scope: anyio.CancelScope) -> None:
        while True:
            if self.queue:
                job = self.queue.popleft()
                self.running += 1
                try:
                    result = await self.fetch(job)
                    self.queue.extend(self.on_result(job, result))
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
                await self.changed.wait()


async def fan_out(
    jobs: Iterable[J],
    fetch: Callable[[J], Awaitable[R]],
    on_result: Callable[[J, R], Iterable[J]],
    *,
    concurrency: int,
    first_alone: bool = False,
) -> None:
    """Fetch every job, ``concurrency`` at a time, in queue order.

    ``on_result(job, result)`` runs as each result arrives and returns the
    jobs it reveals, which join the end of the queue. Returns when the queue
    is empty and nothing is running; raises the first failure as itself.

    With ``first_alone``, the first job runs before any other starts: a bad
    key or a refused query then costs one request, not ``concurrency``.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    pool: _Pool[J, R] = _Pool(jobs, fetch, on_result)
    if first_alone and pool.queue:
        first = pool.queue.popleft()
        pool.queue.extend(on_result(first, await fetch(first)))
    async with anyio.create_task_group() as group:
        # Start every worker even for one job: page 1 may reveal many more.
        for _ in range(concurrency):
            group.start_soon(pool.worker, group.cancel_scope)
    if pool.failure is not None:
        raise pool.failure
