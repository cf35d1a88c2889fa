"""The safety margin that learns, as a pure function of ``now``: no event loop, no clock."""

from __future__ import annotations

import heapq
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxystats._limits import Limit
from oxystats._margin import (
    FASTEST_SLACK,
    FLOOR_MARGIN,
    HALF_LIFE,
    INITIAL_MARGIN,
    MAX_MARGIN_FRACTION,
    QUIET,
    TRUSTED_AFTER,
    SafetyMargin,
    gate_cap,
)
from oxystats._schedule import KeyQueue, Scheduler, Waiter
from oxystats.testing import max_in_window

ROOMY = Limit(rate=1_000.0, burst=1_000, in_flight=1_000)  # never the bottleneck


def trusted(margin: SafetyMargin, *, fastest: float) -> SafetyMargin:
    """``margin`` after enough answers, the fastest of them ``fastest`` seconds."""
    for _ in range(TRUSTED_AFTER):
        margin.observe(fastest)
    return margin


def test_starts_at_the_initial_margin_and_holds_through_the_quiet() -> None:
    """A new margin is INITIAL_MARGIN, and stays so for QUIET seconds from its first use."""
    margin = SafetyMargin()
    assert margin.value(100.0) == INITIAL_MARGIN
    assert margin.value(100.0 + QUIET) == INITIAL_MARGIN


def test_shrinks_by_half_every_half_life_after_the_quiet_down_to_the_floor() -> None:
    """After QUIET seconds it halves every HALF_LIFE seconds, but never below the floor."""
    margin = SafetyMargin()
    margin.value(0.0)
    assert margin.value(QUIET + HALF_LIFE) == pytest.approx(INITIAL_MARGIN / 2)
    assert margin.value(QUIET + 2 * HALF_LIFE) == pytest.approx(INITIAL_MARGIN / 4)
    assert margin.value(QUIET + 100 * HALF_LIFE) == FLOOR_MARGIN


def test_an_unexpected_429_doubles_it_and_restarts_the_quiet() -> None:
    """A refusal of a request sent after the last rise doubles the margin, from its value now."""
    margin = SafetyMargin()
    margin.value(0.0)
    assert margin.refused(sent_at=1.0, now=1.1)
    assert margin.value(1.1) == pytest.approx(2 * INITIAL_MARGIN)
    assert margin.value(1.1 + QUIET) == pytest.approx(2 * INITIAL_MARGIN)
    later = 1.1 + QUIET + 3 * HALF_LIFE
    shrunk = margin.value(later)
    assert shrunk == pytest.approx(2 * INITIAL_MARGIN / 8)
    assert margin.refused(sent_at=later, now=later)
    assert margin.value(later) == pytest.approx(2 * shrunk)
    assert margin.refusals == 2


def test_refusals_of_requests_sent_before_the_rise_are_one_event() -> None:
    """A spike that gets several requests refused raises the margin once, not once per 429."""
    margin = SafetyMargin()
    margin.value(0.0)
    assert margin.refused(sent_at=1.00, now=1.01)
    # Sent before the rise, with the old margin: the same spike, seen again.
    assert not margin.refused(sent_at=1.005, now=1.02)
    assert not margin.refused(sent_at=1.01, now=1.03)
    assert margin.value(1.03) == pytest.approx(2 * INITIAL_MARGIN)
    assert margin.refusals == 1


def test_never_grows_past_its_maximum() -> None:
    """However many refusals, the margin stays at most MAX_MARGIN, and a gate caps it further."""
    margin = SafetyMargin()
    for step in range(20):
        margin.refused(sent_at=float(step), now=step + 0.5)
    assert margin.value(20.0) == 1.0
    assert gate_cap(Limit(10.0, 10).window) == pytest.approx(MAX_MARGIN_FRACTION * 1.0)


def test_excess_is_measured_against_the_fastest_round_trip_lately() -> None:
    """Excess is how much slower than the fastest of the last 64 to 128, plus the slack."""
    margin = SafetyMargin()
    margin.observe(0.050)
    assert margin.excess(0.050) is None, "one answer proves nothing yet"
    for _ in range(TRUSTED_AFTER):
        margin.observe(0.050)
    assert margin.excess(0.050) == FASTEST_SLACK
    margin.observe(0.020)
    assert margin.excess(0.050) == pytest.approx(0.030 + FASTEST_SLACK)
    assert margin.excess(0.010) == FASTEST_SLACK
    for _ in range(128):
        margin.observe(0.040)
    assert margin.fastest == pytest.approx(0.040), "an old fastest is forgotten"


def test_an_answer_moves_the_start_to_sent_plus_its_excess() -> None:
    """Answered, a request counts from its send plus its round trip's excess, not the margin."""
    slack = FASTEST_SLACK
    scheduler = Scheduler(ROOMY, trusted(SafetyMargin(initial=0.05), fastest=0.010))
    key = KeyQueue(Limit(1.0, 1, 10))  # a one-second window
    first, second = (Waiter(scheduler.next_ticket()) for _ in range(2))
    for waiter in (first, second):
        scheduler.enqueue(key, waiter)
    scheduler.dispatch(now=0.0)
    assert first.start is not None
    assert second.wake_at == pytest.approx(1.0 + 0.05), "unanswered: the whole margin"
    scheduler.sent(key, first.start, 0.001)
    scheduler.answered(key, first.start, sent=0.001, answered=0.011)
    assert first.start.key == pytest.approx(0.001 + slack), "as fast as the fastest"
    scheduler.dispatch(now=0.05)
    assert second.wake_at == pytest.approx(1.001 + slack)


def test_before_trust_an_answer_keeps_its_margin_up_to_its_round_trip() -> None:
    """Before trust, a margin is cut to its round trip: no request arrives after its answer."""
    scheduler = Scheduler(ROOMY, SafetyMargin(initial=0.05))
    key = KeyQueue(Limit(1.0, 5, 10))
    waiters = [Waiter(scheduler.next_ticket()) for _ in range(2)]
    for waiter in waiters:
        scheduler.enqueue(key, waiter)
    scheduler.dispatch(now=0.0)
    quick, slow = (waiter.start for waiter in waiters)
    assert quick is not None
    assert slow is not None
    assert scheduler.answered(key, quick, sent=0.0, answered=0.020) == pytest.approx(0.020)
    assert quick.key == pytest.approx(0.020)
    assert scheduler.answered(key, slow, sent=0.0, answered=0.200) == pytest.approx(0.05)
    assert slow.key == pytest.approx(0.05), "never more than the margin"


def test_a_new_fastest_round_trip_gives_earlier_answers_their_margin_back() -> None:
    """If a faster answer shows the first ones were slow, their starts move later again."""
    scheduler = Scheduler(ROOMY, trusted(SafetyMargin(initial=0.05), fastest=0.030))
    key = KeyQueue(Limit(1.0, 5, 10))
    waiters = [Waiter(scheduler.next_ticket()) for _ in range(2)]
    for waiter in waiters:
        scheduler.enqueue(key, waiter)
    scheduler.dispatch(now=0.0)
    slow, fast = (waiter.start for waiter in waiters)
    assert slow is not None
    assert fast is not None
    slack = FASTEST_SLACK
    scheduler.answered(key, slow, sent=0.0, answered=0.030)  # as fast as any so far
    assert slow.key == pytest.approx(slack)
    scheduler.answered(key, fast, sent=0.0, answered=0.002)
    assert slow.key == pytest.approx(0.028 + slack)
    assert fast.key == pytest.approx(slack)


@settings(max_examples=40, deadline=None)
@given(
    burst=st.integers(min_value=1, max_value=6),
    count=st.integers(min_value=1, max_value=30),
    delays=st.lists(st.floats(min_value=0.0, max_value=0.08), min_size=29, max_size=29),
    other_legs=st.floats(min_value=0.0, max_value=0.3),
)
def test_delays_within_the_margin_never_overfill_the_servers_window(
    burst: int, count: int, delays: list[float], other_legs: float
) -> None:
    """Arrivals late by less than the margin never overfill the server's window, answers or not."""
    # Each request reaches the server delays[i] after it is sent, and its answer
    # comes other_legs later (the server's work and the way back): whatever the
    # answers let the limiter drop from the margin, what is left still covers each
    # request's own delay. The first request meets no delay: the fastest answer is
    # the path's undelayed one, as the margin assumes.
    delays = [0.0, *delays]
    limit = Limit(rate=burst / 0.5, burst=burst, in_flight=1_000)  # a half-second window
    # The margin (100 ms) exceeds any arrival delay drawn here (at most 80 ms).
    scheduler = Scheduler(ROOMY, SafetyMargin())
    key = KeyQueue(limit)
    waiters = [Waiter(scheduler.next_ticket()) for _ in range(count)]
    for waiter in waiters:
        scheduler.enqueue(key, waiter)
    arrivals: list[float] = []
    answers: list[tuple[float, int]] = []  # (when, index), earliest first
    granted: dict[int, float] = {}
    index_of = {id(waiter): i for i, waiter in enumerate(waiters)}
    now = 0.0
    while len(granted) < count or answers:
        for waiter in scheduler.dispatch(now):
            i = index_of[id(waiter)]
            if waiter.start is not None and i not in granted:
                granted[i] = now
                arrivals.append(now + delays[i])
                heapq.heappush(answers, (now + delays[i] + other_legs, i))
        waking = [w.wake_at for w in waiters if w.granted_at is None]
        upcoming = min([*waking, answers[0][0] if answers else math.inf])
        if answers and answers[0][0] <= upcoming:
            when, i = heapq.heappop(answers)
            now = max(now, when)
            start = waiters[i].start
            assert start is not None
            scheduler.answered(key, start, sent=granted[i], answered=when)
            scheduler.release(key)
        else:
            now = max(now, upcoming)
    # A nanosecond of slack for the float rounding of the sums above.
    assert max_in_window(arrivals, limit.window - 1e-9) <= burst
