"""Waiting for a slot: the `Account` and each key's `RequestLimiter`, on an event loop.

The decisions are `oxystats._schedule`'s; this module adds the clock, the
sleeping and the waking. There is no background task. The head waiter of each
key sleeps until the instant its key and the account will next allow it (or
until something changes and it is woken up); whoever changes the state (a new
waiter, a finished request, a pause, a cancelled waiter) re-runs the hand-out
synchronously.

Everything here uses anyio primitives only, so it works on asyncio and on trio.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from oxystats._limits import DEFAULT_ACCOUNT_LIMIT, DEFAULT_KEY_LIMIT, Limit
from oxystats._schedule import KeyQueue, Scheduler, Start, Waiter

__all__ = ["Account"]


class _Run:
    """One event loop run, and how far its clock is ahead of ``time.monotonic()``.

    ``anyio.current_time()`` is the loop's clock: ``time.monotonic()`` on
    asyncio, but monotonic plus a random offset on trio, different for every
    ``trio.run``.
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = anyio.current_time() - time.monotonic()


_RUN: anyio.lowlevel.RunVar[_Run] = anyio.lowlevel.RunVar("oxystats._limiter.run")


def _current_run() -> _Run:
    run = _RUN.get(None)
    if run is None:
        run = _Run()
        _RUN.set(run)
    return run


class Account:
    """The account-wide limit, shared by every client created with it.

    All the API keys of one Oxylabs account share one account-wide limit (by
    default 100 requests per second and 100 in flight). Create one [`Account`][oxystats.Account]
    and pass it to every client of that account, and together they stay under
    it; a client given no account gets a private one.

    An [`Account`][oxystats.Account] holds no threads, tasks or event-loop objects of its own and
    may be shared freely between tasks, clients and keys *of one event loop*.
    It is not thread-safe: do not share it between threads or between event
    loops running at the same time (doing so raises `RuntimeError`). Using it
    from one `anyio.run` after another is fine.

    Args:
        limit: The account-wide limit.
    """

    def __init__(self, limit: Limit = DEFAULT_ACCOUNT_LIMIT) -> None:
        if not isinstance(limit, Limit):
            raise TypeError(f"Account limit must be an oxystats.Limit, not {type(limit).__name__}")
        self._limit = limit
        self._scheduler = Scheduler(limit)

    @property
    def limit(self) -> Limit:
        """The account-wide limit."""
        return self._limit

    def __repr__(self) -> str:
        return f"Account(limit={self._limit!r})"


class _AsyncWaiter(Waiter):
    """A `Waiter` with the event its task sleeps on."""

    __slots__ = ("event",)

    def __init__(self, ticket: int) -> None:
        super().__init__(ticket)
        self.event = anyio.Event()  # set when granted, or to make it look again


class SlotTiming:
    """When one slot's request really went out, and when its answer came.

    `RequestLimiter.slot()` yields one. Passed to httpx as the ``"trace"``
    request extension, it notes the moment the request's headers start out
    (after any connection set-up) and moves the request's start in the
    limiter's logs from the grant to that moment: the server counts a request
    when it arrives, and a cold connection's handshake can delay it by tens of
    milliseconds while later requests on warm connections go out at once.
    It also notes when the answer's headers came in: the round trip tells the
    limiter how late the request can have arrived (see `oxystats._margin`).
    Without it, the grant time is kept, with the whole safety margin.
    """

    __slots__ = ("_on_sent", "answered_at", "granted_at", "sent_at")

    def __init__(self, granted_at: float, on_sent: Callable[[float], None]) -> None:
        self.granted_at = granted_at
        self.sent_at: float | None = None
        self.answered_at: float | None = None
        self._on_sent = on_sent

    async def trace(self, event: str, info: Any) -> None:
        """An httpx/httpcore ``trace`` extension: notes when the request left and was answered."""
        if self.sent_at is None:
            if event.endswith(".send_request_headers.started"):
                self.sent_at = anyio.current_time()
                self._on_sent(self.sent_at)
        elif self.answered_at is None and event.endswith(".receive_response_headers.complete"):
            self.answered_at = anyio.current_time()


@attrs.frozen
class LimiterStats:
    """A snapshot of one `RequestLimiter`'s counters."""

    requests: int  # slots granted
    waited: float  # seconds spent waiting for slots, summed over all requests
    max_wait: float  # the longest single wait, in seconds
    cancelled: int  # waits that were cancelled before getting a slot
    pauses: int  # calls to pause()
    in_flight: int  # slots held right now
    waiting: int  # tasks waiting for a slot right now
    safety_margin: float  # seconds a start may be counted after its send, at most


class RequestLimiter:
    """One API key's limiter, combined with its account's (internal to the client).

    ``async with limiter.slot():`` waits until both the key's limit and the
    account's allow a request, counts it against both at the same instant, and
    holds one in-flight place in both until the block exits.

    The safety margin is the account's (see `oxystats._margin`): it learns
    from the answers and the unexpected 429s of every key of the account.
    """

    def __init__(
        self, key_limit: Limit = DEFAULT_KEY_LIMIT, account: Account | None = None
    ) -> None:
        if not isinstance(key_limit, Limit):
            raise TypeError(f"key_limit must be an oxystats.Limit, not {type(key_limit).__name__}")
        if account is None:
            account = Account()
        elif not isinstance(account, Account):
            raise TypeError(f"account must be an oxystats.Account, not {type(account).__name__}")
        self._account = account
        self._scheduler = account._scheduler
        self._key = KeyQueue(key_limit)
        self._requests = 0
        self._waited = 0.0
        self._max_wait = 0.0
        self._cancelled = 0
        self._pauses = 0

    @property
    def key_limit(self) -> Limit:
        """This key's limit."""
        return self._key.gate.limit

    @property
    def account(self) -> Account:
        """The account this key belongs to."""
        return self._account

    @property
    def stats(self) -> LimiterStats:
        """Counters for this key: requests, seconds waited, in flight, waiting."""
        return LimiterStats(
            requests=self._requests,
            waited=self._waited,
            max_wait=self._max_wait,
            cancelled=self._cancelled,
            pauses=self._pauses,
            in_flight=self._key.gate.in_flight,
            waiting=self._key.live,
            safety_margin=self._scheduler.margin.value_now(),
        )

    def __repr__(self) -> str:
        return f"RequestLimiter(key_limit={self.key_limit!r}, account={self._account!r})"

    def _adopt_run(self) -> None:
        run = _current_run()
        self._key.gate.rebase(run, run.offset, busy=self._key.live > 0)
        self._scheduler.rebase(run, run.offset)

    def _dispatch(self) -> None:
        for waiter in self._scheduler.dispatch(anyio.current_time()):
            assert isinstance(waiter, _AsyncWaiter)
            waiter.event.set()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[SlotTiming]:
        """Wait for a slot allowed by the key and the account, and hold it for the block.

        Cancellation is safe at any point: a task cancelled while waiting holds
        nothing afterwards, and one cancelled inside the block gives its
        in-flight place back.

        The block gets a `SlotTiming`; see there why and how it moves the
        request's start from the grant to the moment it was really sent.
        """
        granted_at, start = await self._acquire()
        scheduler, key = self._scheduler, self._key
        timing = SlotTiming(granted_at, lambda sent: scheduler.sent(key, start, sent))
        try:
            yield timing
        finally:
            if timing.sent_at is not None and timing.answered_at is not None:
                scheduler.answered(key, start, timing.sent_at, timing.answered_at)
            scheduler.release(key)
            # A place is free: hand it to the next waiter of this or another key.
            self._dispatch()

    async def _acquire(self) -> tuple[float, Start]:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._adopt_run()
        scheduler, key = self._scheduler, self._key
        entered = anyio.current_time()
        waiter = _AsyncWaiter(scheduler.next_ticket())
        scheduler.enqueue(key, waiter)
        try:
            self._dispatch()
            while waiter.granted_at is None:
                waiter.sleeping_until = waiter.wake_at
                with anyio.CancelScope(deadline=waiter.wake_at):
                    await waiter.event.wait()
                waiter.sleeping_until = -math.inf
                if waiter.granted_at is None:
                    # Woken by the clock or poked: events cannot be cleared, so
                    # take a fresh one, then look again.
                    waiter.event = anyio.Event()
                    self._dispatch()
        except BaseException:
            if waiter.start is not None:
                # Granted, but cancelled before it could run: the request never
                # went out, so give back the place and the start time.
                scheduler.untake(key, waiter.start)
            else:
                scheduler.abandon(key, waiter)
            self._cancelled += 1
            # Whatever it was blocking (the head of the queue, or capacity) moves on.
            self._dispatch()
            raise
        wait = waiter.granted_at - entered
        self._requests += 1
        self._waited += wait
        self._max_wait = max(self._max_wait, wait)
        assert waiter.start is not None
        return waiter.granted_at, waiter.start

    def note_refusal(self, timing: SlotTiming) -> None:
        """The server refused (429) the request sent in the slot ``timing`` describes.

        The client's own log allowed that request, so the path delays arrivals
        more than the safety margin allows for: the margin grows (once per
        event, see `oxystats._margin.SafetyMargin.refused`).
        """
        self._adopt_run()
        sent = timing.granted_at if timing.sent_at is None else timing.sent_at
        self._scheduler.margin.refused(sent, anyio.current_time())

    def pause(self, seconds: float, *, account_wide: bool = False) -> None:
        """Start no new request for this key (or the whole account) for ``seconds``.

        Call it after a 429 with ``Retry-After``. Requests already in flight are
        not affected. A later pause extends an earlier one, never shortens it.
        When the pause ends, requests resume spread out at the limit's rate, not
        as a burst.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ValueError(f"pause needs a finite number of seconds >= 0, got {seconds!r}")
        self._adopt_run()
        gate = self._scheduler.gate if account_wide else self._key.gate
        now = anyio.current_time()
        self._scheduler.pause(gate, now + seconds, now)
        self._pauses += 1
        self._dispatch()
