"""The limiter's hand-out of request slots: pure bookkeeping, driven by ``now``.

Nothing here sleeps, reads a clock or touches an event loop: every decision
takes the current time as an argument, so tests drive it instant by instant.
`oxystats._limiter` does the waiting around it.

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

How slots are handed out
------------------------
Waiters queue per key, first come first served. Among the keys whose head
waiter is allowed by its own key *and* by the account, `Scheduler.dispatch`
serves the waiter that arrived first, and records the start in both logs at the
same instant. A throttled key never holds up another key, and a busy key never
starves a quiet one: it can only go before the quiet one's waiter with
requests that arrived earlier.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
from collections import deque

from oxystats._limits import Limit

__all__: list[str] = []


class Gate:
    """The state of one `Limit`: a sliding-window log, an in-flight count, a pause."""

    __slots__ = ("clock", "in_flight", "limit", "log", "paused_until", "window")

    def __init__(self, limit: Limit, margin: float) -> None:
        self.limit = limit
        self.window = limit.window + margin
        # Start times of the last `burst` requests, oldest first. maxlen drops the
        # oldest on append; it is only appended to once the oldest has aged out.
        self.log: deque[float] = deque(maxlen=limit.burst)
        self.in_flight = 0
        self.paused_until = -math.inf
        # Which clock the recorded times are on, as (identity, offset); see `rebase`.
        self.clock: tuple[object, float] | None = None

    def rebase(self, clock: object, offset: float, *, busy: bool) -> None:
        """Move the recorded times onto another clock, ``offset`` being its lead on the last.

        An event loop's clock may differ from the next loop's (trio adds a random
        offset per run): an `Account` used by one run after another translates its
        history instead of seeing a pause of hours, or none at all. A clock change
        while requests wait or are in flight means two loops share the state,
        which is refused.
        """
        if self.clock is not None and self.clock[0] is clock:
            return
        if self.clock is not None:
            if busy or self.in_flight:
                raise RuntimeError(
                    "an oxystats Account or client is in use by another event loop; "
                    "share them only between tasks of one event loop"
                )
            shift = offset - self.clock[1]
            self.log = deque((t + shift for t in self.log), maxlen=self.limit.burst)
            self.paused_until += shift
        self.clock = (clock, offset)

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


class Waiter:
    """One request waiting for a slot."""

    __slots__ = ("abandoned", "granted_at", "sleeping_until", "ticket", "wake_at")

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket  # arrival order across the whole account
        self.granted_at: float | None = None
        self.abandoned = False
        self.wake_at = math.inf  # when it might be granted; maintained for queue heads
        # The deadline it is sleeping with; -inf while it runs (never wake a running task).
        self.sleeping_until = -math.inf


class KeyQueue:
    """One key's gate and its first-come-first-served queue of waiters."""

    __slots__ = ("gate", "live", "queue")

    def __init__(self, limit: Limit, margin: float) -> None:
        self.gate = Gate(limit, margin)
        self.queue: deque[Waiter] = deque()
        self.live = 0  # waiters in the queue that are not abandoned

    def head(self) -> Waiter:
        """The first waiter that is still waiting (there must be one)."""
        # Cancelled waiters are only marked, and dropped here once they reach the
        # front: removing them from the middle would make a cancelled fan-out of
        # n waiters cost O(n^2).
        while self.queue[0].abandoned:
            self.queue.popleft()
        return self.queue[0]


class Scheduler:
    """An account's hand-out of slots to the waiters of its keys.

    Synchronous on purpose: between reading the limits and recording a start
    in the key's and the account's logs nothing else runs, so the check and the
    update are atomic on the event loop.
    """

    def __init__(self, limit: Limit, margin: float) -> None:
        self.gate = Gate(limit, margin)
        self._tickets = itertools.count()
        # Keys that have live waiters, in the order they got them. A key is only
        # here while it waits, so an account outliving many clients keeps nothing.
        self._waiting: dict[KeyQueue, None] = {}

    @property
    def busy(self) -> bool:
        """Whether any key has a waiter."""
        return bool(self._waiting)

    def next_ticket(self) -> int:
        """The arrival number of the next waiter."""
        return next(self._tickets)

    def enqueue(self, key: KeyQueue, waiter: Waiter) -> None:
        """Queue ``waiter`` behind ``key``'s earlier waiters."""
        key.queue.append(waiter)
        key.live += 1
        self._waiting[key] = None

    def abandon(self, key: KeyQueue, waiter: Waiter) -> None:
        """Take a waiter that was never granted out of the running."""
        waiter.abandoned = True
        key.live -= 1
        if not key.live:
            key.queue.clear()
            del self._waiting[key]

    def untake(self, key: KeyQueue, granted_at: float) -> None:
        """Forget a grant whose request never went out."""
        key.gate.untake(granted_at)
        self.gate.untake(granted_at)

    def release(self, key: KeyQueue) -> None:
        """A request of ``key`` has its answer: free its in-flight places."""
        key.gate.in_flight -= 1
        self.gate.in_flight -= 1

    def retime(self, key: KeyQueue, granted: float, sent: float) -> None:
        """Move a request's start, in its key's log and the account's, from grant to send."""
        key.gate.retime(granted, sent)
        self.gate.retime(granted, sent)

    def dispatch(self, now: float) -> list[Waiter]:
        """Grant every slot that can be granted at ``now``; return the waiters to wake.

        Those are the waiters just granted, and the queue heads that sleep past
        the moment they could now go (they became the head, or a release made
        them eligible sooner): woken, they sleep again until their ``wake_at``.
        """
        gate = self.gate
        wake: list[Waiter] = []
        while True:
            account_ready = gate.ready_at()
            best: Waiter | None = None
            best_key: KeyQueue | None = None
            if account_ready <= now:
                for key in self._waiting:
                    head = key.head()
                    if key.gate.ready_at() <= now and (best is None or head.ticket < best.ticket):
                        best, best_key = head, key
            if best is None or best_key is None:
                break
            # Grant: pop, count in both gates at the same instant.
            best_key.queue.popleft()
            best_key.live -= 1
            if not best_key.live:
                del self._waiting[best_key]
            best.granted_at = now
            best_key.gate.take(now)
            gate.take(now)
            wake.append(best)
        for key in self._waiting:
            head = key.head()
            head.wake_at = max(account_ready, key.gate.ready_at())
            if head.wake_at < head.sleeping_until:
                head.sleeping_until = head.wake_at
                wake.append(head)
        return wake
