"""The slot hand-out as a pure function of ``now``: no event loop, no clock, no sleeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oxystats._limits import Limit
from oxystats._schedule import KeyQueue, Scheduler, Waiter
from oxystats.testing import max_in_window

ROOMY = Limit(rate=1_000.0, burst=1_000, in_flight=1_000)  # never the bottleneck


def queue(scheduler: Scheduler, key: KeyQueue, count: int = 1) -> list[Waiter]:
    """Queue ``count`` new waiters behind ``key``."""
    waiters = [Waiter(scheduler.next_ticket()) for _ in range(count)]
    for waiter in waiters:
        scheduler.enqueue(key, waiter)
    return waiters


def test_a_free_limit_grants_at_once() -> None:
    """With room in both limits, every waiter is granted at the instant asked."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    key = KeyQueue(Limit(10.0, 3, 10), margin=0.0)
    waiters = queue(scheduler, key, 3)
    assert scheduler.dispatch(now=5.0) == waiters
    assert [w.granted_at for w in waiters] == [5.0, 5.0, 5.0]
    assert key.gate.in_flight == scheduler.gate.in_flight == 3
    assert not scheduler.busy


def test_a_full_window_defers_to_the_oldest_start_plus_the_window() -> None:
    """The burst+1-th request waits until the oldest start is one window (plus margin) old."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    key = KeyQueue(Limit(10.0, 2, 10), margin=0.01)  # window 0.2 s, plus 10 ms
    first, second, third = queue(scheduler, key, 3)
    assert scheduler.dispatch(now=0.0) == [first, second]
    assert third.granted_at is None
    assert third.wake_at == pytest.approx(0.21)
    assert scheduler.dispatch(now=0.2) == []
    assert scheduler.dispatch(now=third.wake_at) == [third]
    assert third.granted_at == pytest.approx(0.21)


def test_sleeping_heads_are_woken_when_they_could_go_sooner() -> None:
    """A head sleeping past its new ready time is returned to be woken, once."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    key = KeyQueue(Limit(1_000.0, 100, in_flight=1), margin=0.0)
    holder, waiter = queue(scheduler, key, 2)
    assert scheduler.dispatch(now=0.0) == [holder]
    assert waiter.wake_at == math.inf  # the in-flight cap: it waits for a release
    waiter.sleeping_until = math.inf
    scheduler.release(key)
    assert scheduler.dispatch(now=0.1) == [waiter]
    assert waiter.granted_at == 0.1


def test_first_come_first_served_across_keys() -> None:
    """Among keys their own limits allow, the account serves the earliest ticket first."""
    scheduler = Scheduler(Limit(10.0, 1, 10), margin=0.0)  # one start per 0.1 s, account-wide
    a = KeyQueue(ROOMY, margin=0.0)
    b = KeyQueue(ROOMY, margin=0.0)
    a1 = queue(scheduler, a)[0]
    b1 = queue(scheduler, b)[0]
    a2 = queue(scheduler, a)[0]
    b2 = queue(scheduler, b)[0]
    order = []
    for step in range(4):
        order.extend(scheduler.dispatch(now=step * 0.1))
    assert order == [a1, b1, a2, b2]


def test_a_throttled_key_does_not_hold_up_another() -> None:
    """A key out of its own budget lets a later waiter of another key go first."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    slow = KeyQueue(Limit(1.0, 1, 10), margin=0.0)
    fast = KeyQueue(ROOMY, margin=0.0)
    first_slow, second_slow = queue(scheduler, slow, 2)
    quick = queue(scheduler, fast)[0]
    assert scheduler.dispatch(now=0.0) == [first_slow, quick]
    assert second_slow.wake_at == 1.0


def test_abandoned_waiters_leave_the_queue() -> None:
    """A cancelled waiter is skipped; once a key has none left, the account is idle."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    key = KeyQueue(Limit(10.0, 1, 10), margin=0.0)
    first, second, third = queue(scheduler, key, 3)
    scheduler.dispatch(now=0.0)
    scheduler.abandon(key, second)
    assert scheduler.dispatch(now=0.1) == [third]
    assert first.granted_at == 0.0
    assert second.granted_at is None
    assert not scheduler.busy


def test_untake_returns_the_start_and_the_place() -> None:
    """A grant whose request never went out frees its window entry and in-flight place."""
    scheduler = Scheduler(ROOMY, margin=0.0)
    key = KeyQueue(Limit(10.0, 1, 1), margin=0.0)
    granted, blocked = queue(scheduler, key, 2)
    scheduler.dispatch(now=0.0)
    assert granted.granted_at is not None
    scheduler.untake(key, granted.granted_at)
    assert scheduler.dispatch(now=0.0) == [blocked]


def test_retime_moves_a_start_in_both_logs() -> None:
    """A request sent later than granted counts from when it was sent, in key and account."""
    scheduler = Scheduler(Limit(10.0, 1, 10), margin=0.0)
    key = KeyQueue(ROOMY, margin=0.0)
    _, second = queue(scheduler, key, 2)
    scheduler.dispatch(now=0.0)
    scheduler.retime(key, 0.0, 0.05)
    assert scheduler.dispatch(now=0.1) == []
    assert second.wake_at == pytest.approx(0.15)


@given(
    arrivals=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=60),
    key_burst=st.integers(min_value=1, max_value=5),
    account_burst=st.integers(min_value=1, max_value=8),
)
def test_no_window_ever_exceeds_a_burst(
    arrivals: list[float], key_burst: int, account_burst: int
) -> None:
    """Driven at every instant it asks to be woken, no window of either limit overflows."""
    # A nanosecond of margin keeps float rounding from shifting a start by one ulp.
    scheduler = Scheduler(Limit(20.0, account_burst, 1_000), margin=1e-9)
    keys = [KeyQueue(Limit(10.0, key_burst, 1_000), margin=1e-9) for _ in range(2)]
    starts: list[list[float]] = [[], []]
    pending = sorted((t, i % 2) for i, t in enumerate(arrivals))
    waiting: dict[Waiter, int] = {}
    now = 0.0
    while True:
        while pending and pending[0][0] <= now:
            _, which = pending.pop(0)
            waiting[queue(scheduler, keys[which])[0]] = which
        for waiter in scheduler.dispatch(now):
            if waiter.granted_at is not None and waiter in waiting:
                starts[waiting.pop(waiter)].append(waiter.granted_at)
        if not (pending or waiting):
            break
        wakes = [w.wake_at for w in waiting]
        upcoming = [pending[0][0]] if pending else []
        now = max(now, min(wakes + upcoming))
    everything = starts[0] + starts[1]
    assert len(everything) == len(arrivals)
    assert max_in_window(everything, scheduler.gate.limit.window) <= account_burst
    for which in (0, 1):
        assert max_in_window(starts[which], keys[which].gate.limit.window) <= key_burst
