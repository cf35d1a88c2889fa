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
oldest of them started at least one window ``W = burst / rate`` before ``t``.
That is exactly the server's rule: never more than ``burst`` starts in any
window of ``W`` seconds, and ``rate`` requests per second in steady state. A
start is counted a safety margin after the request was sent, because the
server stamps it on arrival; `oxystats._margin` says how large, and why a
request's answer can shrink it.

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
from oxystats._margin import SafetyMargin, gate_cap

__all__: list[str] = []

_REMEMBERED = 256
"""Answered requests whose margins follow the fastest round trip (more than any log holds)."""


class Gate:
    """The state of one `Limit`: a sliding-window log, an in-flight count, a pause.

    The log holds when each of the last ``burst`` requests is counted as having
    started: its send time plus its share of the safety margin (see
    `oxystats._margin`), in order. Those counted times can move (a request
    sent later than granted, an answer showing it was not delayed), so an
    entry that fell out of the log is remembered by the latest of them,
    ``dropped``, and still holds back the next start.
    """

    __slots__ = ("cap", "clock", "dropped", "in_flight", "limit", "log", "paused_until", "window")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.window = limit.window
        self.cap = gate_cap(limit.window)  # the most margin this window gets
        self.log: deque[float] = deque()
        self.dropped = -math.inf
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
            self.log = deque(t + shift for t in self.log)
            self.dropped += shift
            self.paused_until += shift
        self.clock = (clock, offset)

    def ready_at(self) -> float:
        """The earliest instant a new request may start (``inf``: wait for a release)."""
        if self.in_flight >= self.limit.in_flight:
            return math.inf
        ready = max(self.paused_until, self.dropped + self.window)
        if len(self.log) >= self.limit.burst:
            ready = max(ready, self.log[0] + self.window)
        return ready

    def counted_at(self, sent: float, margin: float) -> float:
        """Where a request sent at ``sent`` is counted, given ``margin`` (capped for this gate)."""
        return sent + min(margin, self.cap)

    def take(self, at: float) -> None:
        """Count a request as starting at ``at``, and as one more in flight."""
        self.in_flight += 1
        self._add(at)

    def _add(self, at: float) -> None:
        log = self.log
        if not log or at >= log[-1]:
            log.append(at)
        else:
            bisect.insort(log, at)
        if len(log) > self.limit.burst:
            self.dropped = max(self.dropped, log.popleft())

    def retime(self, at: float, later: float) -> None:
        """Count the start counted at ``at`` as at ``later`` instead (earlier or later)."""
        try:
            self.log.remove(at)
        except ValueError:
            # Fell out of the log (or was rewritten by a pause): only `dropped`
            # still stands for it, and only a later time can change that.
            if later > at:
                self.dropped = max(self.dropped, later)
            return
        self._add(later)

    def untake(self, at: float) -> None:
        """Forget a request counted at ``at`` that never went out (its waiter was cancelled)."""
        self.in_flight -= 1
        # If it was pushed out of the log, or rewritten by a pause, there is
        # nothing to forget: it no longer constrains anything.
        with contextlib.suppress(ValueError):
            self.log.remove(at)

    def pause(self, until: float, margin: float = 0.0) -> None:
        """No request starts before ``until``; afterwards they resume at ``rate``.

        The log is rewritten as if the last ``burst`` requests had been sent
        ``1/rate`` apart, the newest ``1/rate`` before ``until``, and counted
        with ``margin`` as real ones are: the next ``burst`` starts are then
        spaced ``1/rate`` apart from ``until`` on (plus the margin), instead of
        all ``burst`` going out the instant the pause ends. Each entry only
        ever moves later, so a pause never shortens an earlier one.
        """
        if until <= self.paused_until:
            return
        self.paused_until = until
        burst, rate = self.limit.burst, self.limit.rate
        old = [-math.inf] * (burst - len(self.log)) + list(self.log)
        self.log = deque(
            max(t, self.counted_at(until - (burst - k) / rate, margin)) for k, t in enumerate(old)
        )


class Start:
    """Where one granted request is counted: in its key's log and in its account's."""

    __slots__ = ("account", "key")

    def __init__(self, key: float, account: float) -> None:
        self.key = key
        self.account = account


class Waiter:
    """One request waiting for a slot."""

    __slots__ = ("abandoned", "granted_at", "sleeping_until", "start", "ticket", "wake_at")

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket  # arrival order across the whole account
        self.granted_at: float | None = None
        self.start: Start | None = None  # where the grant is counted; set with granted_at
        self.abandoned = False
        self.wake_at = math.inf  # when it might be granted; maintained for queue heads
        # The deadline it is sleeping with; -inf while it runs (never wake a running task).
        self.sleeping_until = -math.inf


class KeyQueue:
    """One key's gate and its first-come-first-served queue of waiters."""

    __slots__ = ("gate", "live", "queue")

    def __init__(self, limit: Limit) -> None:
        self.gate = Gate(limit)
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

    def __init__(self, limit: Limit, margin: SafetyMargin | None = None) -> None:
        self.gate = Gate(limit)
        self.margin = SafetyMargin() if margin is None else margin
        # The requests answered lately: re-measured against a new fastest round trip.
        self._answered: deque[tuple[KeyQueue, Start, float, float]] = deque(maxlen=_REMEMBERED)
        self._tickets = itertools.count()
        # Keys that have live waiters, in the order they got them. A key is only
        # here while it waits, so an account outliving many clients keeps nothing.
        self._waiting: dict[KeyQueue, None] = {}

    def rebase(self, clock: object, offset: float) -> None:
        """Move the account's times onto another event loop's clock (see `Gate.rebase`)."""
        if self.gate.clock is not None and self.gate.clock[0] is not clock:
            self._answered.clear()
        self.gate.rebase(clock, offset, busy=self.busy)
        self.margin.rebase(clock, offset)

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

    def take(self, key: KeyQueue, now: float) -> Start:
        """Count a request of ``key`` starting at ``now`` in both logs; return where."""
        margin = self.margin.value(now)
        start = Start(key.gate.counted_at(now, margin), self.gate.counted_at(now, margin))
        key.gate.take(start.key)
        self.gate.take(start.account)
        return start

    def untake(self, key: KeyQueue, start: Start) -> None:
        """Forget a grant whose request never went out."""
        key.gate.untake(start.key)
        self.gate.untake(start.account)

    def pause(self, gate: Gate, until: float, now: float) -> None:
        """Start nothing through ``gate`` (a key's or the account's) before ``until``."""
        gate.pause(until, self.margin.value(now))

    def release(self, key: KeyQueue) -> None:
        """A request of ``key`` has its answer: free its in-flight places."""
        key.gate.in_flight -= 1
        self.gate.in_flight -= 1

    def sent(self, key: KeyQueue, start: Start, sent: float) -> None:
        """A granted request went out at ``sent``: count it from there, in both logs."""
        self._move(key, start, sent, self.margin.value(sent))

    def answered(self, key: KeyQueue, start: Start, sent: float, answered: float) -> float:
        """Its answer came at ``answered``: its round trip bounds how late it arrived.

        The request's margin shrinks to how much slower than the fastest lately
        its round trip was (never below zero, never above the margin). When a
        new fastest round trip shows that the earlier ones were slow after all,
        the requests answered lately get their margins back accordingly. The
        requests answered before there were enough answers to trust keep their
        whole margin, but never more than their own round trip (a request
        cannot have arrived after its answer came): a cold start (connections,
        caches) is when the fastest answer is least likely to be one that met
        no delay.

        Returns:
            The margin the request is now counted with (before the gates' caps).
        """
        margin = self.margin
        round_trip = answered - sent
        fastest = margin.fastest
        margin.observe(round_trip)
        if margin.excess(round_trip) is None:
            untrusted = min(round_trip, margin.value(answered))
            self._move(key, start, sent, untrusted)
            return untrusted
        self._answered.append((key, start, sent, round_trip))
        value = margin.value(answered)
        # Normally only this answer moves; after a new fastest, every recent one.
        recent = self._answered if margin.fastest < fastest else ((key, start, sent, round_trip),)
        for other_key, other, other_sent, other_trip in recent:
            excess = margin.excess(other_trip)
            assert excess is not None
            self._move(other_key, other, other_sent, min(excess, value))
        excess = margin.excess(round_trip)
        assert excess is not None
        return min(excess, value)

    def _move(self, key: KeyQueue, start: Start, sent: float, margin: float) -> None:
        at_key, at_account = key.gate.counted_at(sent, margin), self.gate.counted_at(sent, margin)
        key.gate.retime(start.key, at_key)
        self.gate.retime(start.account, at_account)
        start.key, start.account = at_key, at_account

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
            best.start = self.take(best_key, now)
            wake.append(best)
        for key in self._waiting:
            head = key.head()
            head.wake_at = max(account_ready, key.gate.ready_at())
            if head.wake_at < head.sleeping_until:
                head.sleeping_until = head.wake_at
                wake.append(head)
        return wake
