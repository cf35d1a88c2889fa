"""Client-side rate limits: per key, per account, and in flight.

The Dashboard API allows a number of requests per API key and a larger number
across all the keys of one account, and answers 429 past either. The client
keeps itself under both so that a backfill runs as fast as allowed and no
faster.

Why a sliding-window log and not a token bucket
-----------------------------------------------
A token bucket of capacity ``b`` refilled at ``r``/s lets ``b + r`` requests
through in one second (a full bucket, then a second's worth of refill), so a
server that counts requests in a sliding one-second window sees up to twice its
limit (aiolimiter issue #200). Here every limit keeps the start times of its
last ``burst`` requests, and a new request may start at ``t`` only if the
oldest of them started at least one window ``W = burst / rate`` (plus a small
safety margin) before ``t``. That is exactly the server's rule: never more than
``burst`` starts in any window of ``W`` seconds, and ``rate`` requests per
second in steady state.

How waiting works
-----------------
Waiters queue per key, first come first served. The :class:`Account` hands out
slots: among the keys whose head waiter is allowed by its own key *and* by the
account, it serves the waiter that arrived first, and records the start in both
logs at the same instant (there is no await between checking and recording, so
the check and the update are atomic on the event loop). A throttled key never
holds up another key, and a busy key never starves a quiet one: it can only go
before the quiet one's waiter with requests that arrived earlier.

There is no background task. The head waiter of each key sleeps until the
instant its key and the account will next allow it (or until something changes
and it is woken up); whoever changes the state (a new waiter, a finished
request, a pause, a cancelled waiter) re-runs the hand-out synchronously.

Everything here uses anyio primitives only, so it works on asyncio and on trio.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

__all__ = [
    "DEFAULT_ACCOUNT_LIMIT",
    "DEFAULT_KEY_LIMIT",
    "DEFAULT_SAFETY_MARGIN",
    "Account",
    "Limit",
    "LimiterStats",
    "RequestLimiter",
    "SlotTiming",
]

#: Seconds added to every window so that network jitter cannot make a server's
#: sliding window see ``burst + 1`` requests. By default it is capped at 1 % of
#: the window (see :func:`default_safety_margin`), so that steady-state
#: throughput stays at 99 % of ``rate`` or better even for very short windows.
DEFAULT_SAFETY_MARGIN = 0.005
_MAX_MARGIN_FRACTION = 0.01


def _check_rate(value: float) -> float:
    """Validate and normalise ``Limit.rate`` (a converter, so it runs first)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"Limit.rate must be a number of requests per second, not {type(value).__name__}"
        )
    rate = float(value)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"Limit.rate must be a finite number greater than 0, got {value!r}")
    return rate


def _check_count(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    """Validate ``Limit.burst`` and ``Limit.in_flight``: whole numbers, at least 1."""
    # bool is a subclass of int, but Limit(burst=True) is a bug, not a burst of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Limit.{attribute.name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Limit.{attribute.name} must be at least 1, got {value!r}")


@attrs.frozen
class Limit:
    """One limit: requests per second, burst size, and requests outstanding.

    ``Limit(rate=10.0, burst=10, in_flight=10)`` lets at most ``burst`` requests
    start in any window of ``burst / rate`` seconds (so ``rate`` per second in
    steady state, and ``burst`` at once after a quiet spell), with at most
    ``in_flight`` of them awaiting a response at any time.
    """

    rate: float = attrs.field(default=10.0, converter=_check_rate)
    burst: int = attrs.field(default=10, validator=_check_count)
    in_flight: int = attrs.field(default=10, validator=_check_count)

    @property
    def window(self) -> float:
        """The sliding window, in seconds, in which at most ``burst`` requests start."""
        return self.burst / self.rate


#: The documented per-key limit: 10 requests per second, 10 in flight.
DEFAULT_KEY_LIMIT = Limit(10.0, 10, 10)
#: The documented account-wide limit: 100 requests per second, 100 in flight.
DEFAULT_ACCOUNT_LIMIT = Limit(100.0, 100, 100)


def default_safety_margin(limit: Limit) -> float:
    """The margin used when none is given: 5 ms, but at most 1 % of the window."""
    return min(DEFAULT_SAFETY_MARGIN, _MAX_MARGIN_FRACTION * limit.window)


# --- per event loop ---------------------------------------------------------------


class _Run:
    """Facts about one event loop run that the limit state depends on.

    ``anyio.current_time()`` is the loop's clock: ``time.monotonic()`` on
    asyncio, but monotonic plus a random offset on trio, different for every
    ``trio.run``. An :class:`Account` kept at module level and used by two
    successive runs must translate its recorded start times, or it would see a
    pause of hours (or none at all).
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = anyio.current_time() - time.monotonic()


_RUN: anyio.lowlevel.RunVar[_Run] = anyio.lowlevel.RunVar("oxystats._limits.run")


def _current_run() -> _Run:
    run = _RUN.get(None)
    if run is None:
        run = _Run()
        _RUN.set(run)
    return run


# --- one limit's state ------------------------------------------------------------


class _Gate:
    """The state of one :class:`Limit`: a sliding-window log and an in-flight count."""

    __slots__ = ("_run", "in_flight", "limit", "log", "paused_until", "window")

    def __init__(self, limit: Limit, margin: float) -> None:
        self.limit = limit
        self.window = limit.window + margin
        # Start times of the last `burst` requests, oldest first. maxlen drops the
        # oldest on append; it is only appended to once the oldest has aged out.
        self.log: deque[float] = deque(maxlen=limit.burst)
        self.in_flight = 0
        self.paused_until = -math.inf
        self._run: _Run | None = None

    def adopt(self, run: _Run, *, busy: bool) -> None:
        """Make sure the recorded times are on ``run``'s clock."""
        if self._run is run:
            return
        if self._run is not None:
            if busy or self.in_flight:
                raise RuntimeError(
                    "an oxystats Account or client is in use by another event loop; "
                    "share them only between tasks of one event loop"
                )
            shift = run.offset - self._run.offset
            self.log = deque((t + shift for t in self.log), maxlen=self.limit.burst)
            self.paused_until += shift
        self._run = run

    def ready_at(self) -> float:
        """The earliest instant a new request may start (``inf``: wait for a release)."""
        if self.in_flight >= self.limit.in_flight:
            return math.inf
        if len(self.log) < self.limit.burst:
            return self.paused_until
        return max(self.paused_until, self.log[0] + self.window)

    def take(self, now: float) -> None:
        """Count a request starting at ``now``."""
        self.log.append(now)
        self.in_flight += 1

    def retime(self, at: float, later: float) -> None:
        """Move the start counted at ``at`` to ``later``, keeping the log in order."""
        # Gone from the log (pushed out, or rewritten by a pause): nothing to move.
        with contextlib.suppress(ValueError):
            self.log.remove(at)
            bisect.insort(self.log, later)

    def untake(self, at: float) -> None:
        """Forget a request counted at ``at`` that never went out (its waiter was cancelled)."""
        self.in_flight -= 1
        # If it was pushed out of the log, or rewritten by a pause, there is
        # nothing to forget: it no longer constrains anything.
        with contextlib.suppress(ValueError):
            self.log.remove(at)

    def pause(self, until: float) -> None:
        """No request starts before ``until``; afterwards they resume at ``rate``.

        The log is rewritten as if the last ``burst`` requests had started
        ``1/rate`` apart, the newest ``1/rate`` before ``until``: the next
        ``burst`` starts are then spaced ``1/rate`` apart from ``until`` on,
        instead of all ``burst`` going out the instant the pause ends. Each
        entry only ever moves later, so a pause never shortens an earlier one.
        """
        if until <= self.paused_until:
            return
        self.paused_until = until
        burst, rate = self.limit.burst, self.limit.rate
        old = [-math.inf] * (burst - len(self.log)) + list(self.log)
        self.log = deque(
            (max(t, until - (burst - k) / rate) for k, t in enumerate(old)), maxlen=burst
        )


# --- waiters and keys -------------------------------------------------------------


class _Waiter:
    """One task waiting in :meth:`RequestLimiter.slot`."""

    __slots__ = ("abandoned", "event", "granted_at", "sleeping_until", "ticket", "wake_at")

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket  # arrival order across the whole account
        self.event = anyio.Event()  # set when granted, or to make it look again
        self.granted_at: float | None = None
        self.abandoned = False
        self.wake_at = math.inf  # when it might be granted; maintained for queue heads
        # The deadline it is sleeping with; -inf while it runs (never poke a running task).
        self.sleeping_until = -math.inf


class _Key:
    """One key's gate and its first-come-first-served queue of waiters."""

    __slots__ = ("gate", "live", "queue")

    def __init__(self, limit: Limit, margin: float) -> None:
        self.gate = _Gate(limit, margin)
        self.queue: deque[_Waiter] = deque()
        self.live = 0  # waiters in the queue that are not abandoned

    def head(self) -> _Waiter:
        """The first waiter that is still waiting (there must be one)."""
        # Cancelled waiters are only marked, and dropped here once they reach the
        # front: removing them from the middle would make a cancelled fan-out of
        # n waiters cost O(n^2).
        while self.queue[0].abandoned:
            self.queue.popleft()
        return self.queue[0]


# --- public: the account ----------------------------------------------------------


class Account:
    """The account-wide limit, shared by every client created with it.

    All the API keys of one Oxylabs account share one account-wide limit (by
    default 100 requests per second and 100 in flight). Create one ``Account``
    and pass it to every client of that account, and together they stay under
    it; a client given no account gets a private one.

    An ``Account`` holds no threads, tasks or event-loop objects of its own and
    may be shared freely between tasks, clients and keys *of one event loop*.
    It is not thread-safe: do not share it between threads or between event
    loops running at the same time (doing so raises ``RuntimeError``). Using it
    from one ``anyio.run`` after another is fine.
    """

    def __init__(self, limit: Limit = DEFAULT_ACCOUNT_LIMIT) -> None:
        if not isinstance(limit, Limit):
            raise TypeError(f"Account limit must be an oxystats.Limit, not {type(limit).__name__}")
        self._limit = limit
        self._gate = _Gate(limit, default_safety_margin(limit))
        self._tickets = itertools.count()
        # Keys that have live waiters, in the order they got them. A key is only
        # here while it waits, so an Account outliving many clients keeps nothing.
        self._waiting: dict[_Key, None] = {}

    @property
    def limit(self) -> Limit:
        """The account-wide limit."""
        return self._limit

    def __repr__(self) -> str:
        return f"Account(limit={self._limit!r})"

    def _enqueue(self, key: _Key, waiter: _Waiter) -> None:
        key.queue.append(waiter)
        key.live += 1
        self._waiting[key] = None

    def _abandon(self, key: _Key, waiter: _Waiter) -> None:
        waiter.abandoned = True
        key.live -= 1
        if not key.live:
            key.queue.clear()
            del self._waiting[key]

    def _move_start(self, key_gate: _Gate, granted: float, sent: float) -> None:
        """Move a request's start, in its key's log and the account's, from grant to send."""
        key_gate.retime(granted, sent)
        self._gate.retime(granted, sent)

    def _dispatch(self) -> None:
        """Grant every slot that can be granted now; tell the queue heads when to look again.

        Synchronous on purpose: nothing else runs between reading the limits and
        recording a start in the key's and the account's logs.
        """
        now = anyio.current_time()
        gate = self._gate
        while True:
            account_ready = gate.ready_at()
            best: _Waiter | None = None
            best_key: _Key | None = None
            if account_ready <= now:
                for key in self._waiting:
                    head = key.head()
                    if key.gate.ready_at() <= now and (best is None or head.ticket < best.ticket):
                        best, best_key = head, key
            if best is None or best_key is None:
                break
            # Grant: pop, count in both gates at the same instant, wake it up.
            best_key.queue.popleft()
            best_key.live -= 1
            if not best_key.live:
                del self._waiting[best_key]
            best.granted_at = now
            best_key.gate.take(now)
            gate.take(now)
            best.event.set()
        for key in self._waiting:
            head = key.head()
            head.wake_at = max(account_ready, key.gate.ready_at())
            if head.wake_at < head.sleeping_until:
                # It sleeps past the moment it could go (it just became the head,
                # or a release made it eligible sooner): wake it to re-arm.
                head.sleeping_until = head.wake_at
                head.event.set()


# --- the client's limiter ---------------------------------------------------------


class SlotTiming:
    """When one slot's request really went out.

    ``RequestLimiter.slot()`` yields one. Passed to httpx as the ``"trace"``
    request extension, it notes the moment the request's headers start out
    (after any connection set-up) and moves the request's start in the
    limiter's logs from the grant to that moment: the server counts a request
    when it arrives, and a cold connection's handshake can delay it by tens of
    milliseconds while later requests on warm connections go out at once.
    Without it, the grant time is kept.
    """

    __slots__ = ("_move", "granted_at", "sent_at")

    def __init__(self, granted_at: float, move: Callable[[float, float], None]) -> None:
        self.granted_at = granted_at
        self.sent_at: float | None = None
        self._move = move

    async def trace(self, event: str, info: Any) -> None:
        """An httpx/httpcore ``trace`` extension: notes when the request headers start out."""
        if self.sent_at is None and event.endswith(".send_request_headers.started"):
            self.sent_at = anyio.current_time()
            self._move(self.granted_at, self.sent_at)


@attrs.frozen
class LimiterStats:
    """A snapshot of one :class:`RequestLimiter`'s counters."""

    requests: int  # slots granted
    waited: float  # seconds spent waiting for slots, summed over all requests
    max_wait: float  # the longest single wait, in seconds
    cancelled: int  # waits that were cancelled before getting a slot
    pauses: int  # calls to pause()
    in_flight: int  # slots held right now
    waiting: int  # tasks waiting for a slot right now


class RequestLimiter:
    """One API key's limiter, combined with its account's (internal to the client).

    ``async with limiter.slot():`` waits until both the key's limit and the
    account's allow a request, counts it against both at the same instant, and
    holds one in-flight place in both until the block exits.

    ``safety_margin`` (seconds, added to the key's window) defaults to 5 ms
    capped at 1 % of the window; the account's window always uses the default.
    """

    def __init__(
        self,
        key_limit: Limit = DEFAULT_KEY_LIMIT,
        account: Account | None = None,
        *,
        safety_margin: float | None = None,
    ) -> None:
        if not isinstance(key_limit, Limit):
            raise TypeError(f"key_limit must be an oxystats.Limit, not {type(key_limit).__name__}")
        if account is None:
            account = Account()
        elif not isinstance(account, Account):
            raise TypeError(f"account must be an oxystats.Account, not {type(account).__name__}")
        if safety_margin is None:
            safety_margin = default_safety_margin(key_limit)
        elif (
            isinstance(safety_margin, bool)
            or not isinstance(safety_margin, int | float)
            or not (math.isfinite(safety_margin) and safety_margin >= 0)
        ):
            raise ValueError(f"safety_margin must be a finite number >= 0, got {safety_margin!r}")
        self._account = account
        self._key = _Key(key_limit, float(safety_margin))
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
        )

    def __repr__(self) -> str:
        return f"RequestLimiter(key_limit={self.key_limit!r}, account={self._account!r})"

    def _adopt_run(self) -> None:
        run = _current_run()
        self._key.gate.adopt(run, busy=self._key.live > 0)
        self._account._gate.adopt(run, busy=bool(self._account._waiting))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[SlotTiming]:
        """Wait for a slot allowed by the key and the account, and hold it for the block.

        Cancellation is safe at any point: a task cancelled while waiting holds
        nothing afterwards, and one cancelled inside the block gives its
        in-flight place back.

        The block gets a `SlotTiming`; see there why and how it moves the
        request's start from the grant to the moment it was really sent.
        """
        granted_at = await self._acquire()
        key_gate = self._key.gate
        timing = SlotTiming(
            granted_at, lambda granted, sent: self._account._move_start(key_gate, granted, sent)
        )
        try:
            yield timing
        finally:
            self._key.gate.in_flight -= 1
            self._account._gate.in_flight -= 1
            # A place is free: hand it to the next waiter of this or another key.
            self._account._dispatch()

    async def _acquire(self) -> float:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._adopt_run()
        account, key = self._account, self._key
        entered = anyio.current_time()
        waiter = _Waiter(next(account._tickets))
        account._enqueue(key, waiter)
        try:
            account._dispatch()
            while waiter.granted_at is None:
                waiter.sleeping_until = waiter.wake_at
                with anyio.CancelScope(deadline=waiter.wake_at):
                    await waiter.event.wait()
                waiter.sleeping_until = -math.inf
                if waiter.granted_at is None:
                    # Woken by the clock or poked: events cannot be cleared, so
                    # take a fresh one, then look again.
                    waiter.event = anyio.Event()
                    account._dispatch()
        except BaseException:
            if waiter.granted_at is not None:
                # Granted, but cancelled before it could run: the request never
                # went out, so give back the place and the start time.
                key.gate.untake(waiter.granted_at)
                account._gate.untake(waiter.granted_at)
            else:
                account._abandon(key, waiter)
            self._cancelled += 1
            # Whatever it was blocking (the head of the queue, or capacity) moves on.
            account._dispatch()
            raise
        wait = waiter.granted_at - entered
        self._requests += 1
        self._waited += wait
        self._max_wait = max(self._max_wait, wait)
        return waiter.granted_at

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
        gate = self._account._gate if account_wide else self._key.gate
        gate.pause(anyio.current_time() + seconds)
        self._pauses += 1
        self._account._dispatch()
