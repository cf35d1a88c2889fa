"""The rate limiter: sliding windows, key + account, in-flight caps, FIFO, cancellation, pauses.

Real-time tests use short windows (tens of milliseconds) so that both backends
together stay within a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus
from hypothesis import given
from hypothesis import strategies as st

from oxystats._limiter import Account, RequestLimiter, SlotTiming
from oxystats._limits import DEFAULT_ACCOUNT_LIMIT, DEFAULT_KEY_LIMIT, Limit
from oxystats._margin import FASTEST_SLACK
from oxystats._schedule import Gate as _Gate
from oxystats.testing import max_in_window

pytestmark = pytest.mark.anyio

FAST = Limit(rate=10_000.0, burst=1_000, in_flight=1_000)  # never the bottleneck


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Yield to other tasks until ``predicate()`` is true (for at most two seconds)."""
    with anyio.fail_after(2.0):
        # Polling a counter is the simplest way to let other tasks reach a wait.
        while not predicate():
            await anyio.lowlevel.checkpoint()


async def sent_and_answered(timing: SlotTiming) -> None:
    """Tell the limiter, as httpx's trace would, that the request went out and got its answer."""
    await timing.trace("http11.send_request_headers.started", {})
    await timing.trace("http11.receive_response_headers.complete", {})


async def waiting(limiter: RequestLimiter, count: int) -> None:
    """Wait until ``count`` tasks wait in ``limiter``."""
    await wait_until(lambda: limiter.stats.waiting == count)


# --- Limit and Account -------------------------------------------------------------


def test_limit_defaults() -> None:
    """Limit() is the documented per-key limit; the window is burst / rate."""
    assert Limit() == DEFAULT_KEY_LIMIT == Limit(10.0, 10, 10)
    assert Limit(rate=50, burst=5).window == pytest.approx(0.1)
    assert isinstance(Limit(rate=3).rate, float)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rate": 0}, ValueError, "rate"),
        ({"rate": -1.0}, ValueError, "rate"),
        ({"rate": math.nan}, ValueError, "rate"),
        ({"rate": math.inf}, ValueError, "rate"),
        ({"rate": "10"}, TypeError, "rate"),
        ({"rate": True}, TypeError, "rate"),
        ({"burst": 0}, ValueError, "burst"),
        ({"burst": 2.0}, TypeError, "burst"),
        ({"burst": True}, TypeError, "burst"),
        ({"in_flight": 0}, ValueError, "in_flight"),
        ({"in_flight": -3}, ValueError, "in_flight"),
        ({"in_flight": False}, TypeError, "in_flight"),
    ],
)
def test_limit_validation(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    """Bad limits fail at construction with a message naming the field."""
    with pytest.raises(error, match=match):
        Limit(**kwargs)  # type: ignore[arg-type]


def test_limit_is_frozen() -> None:
    """A Limit cannot be changed after it is made (an Account may share it)."""
    limit = Limit()
    with pytest.raises(AttributeError):
        limit.rate = 5.0  # type: ignore[misc]


def test_account_limit_and_repr() -> None:
    """An Account shows and exposes its limit; the default is 100/s, 100 in flight."""
    assert Account().limit == DEFAULT_ACCOUNT_LIMIT == Limit(100.0, 100, 100)
    account = Account(Limit(12.0, 12, 5))
    assert account.limit == Limit(12.0, 12, 5)
    assert repr(account) == "Account(limit=Limit(rate=12.0, burst=12, in_flight=5))"
    with pytest.raises(TypeError, match="Limit"):
        Account(100)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        account.limit = Limit()  # type: ignore[misc]


def test_request_limiter_arguments() -> None:
    """RequestLimiter rejects non-Limit limits and non-Account accounts."""
    with pytest.raises(TypeError, match="key_limit"):
        RequestLimiter(10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="account"):
        RequestLimiter(Limit(), Limit())  # type: ignore[arg-type]
    assert RequestLimiter().account.limit == DEFAULT_ACCOUNT_LIMIT


# --- the sliding-window log, without an event loop ---------------------------------


@given(
    rate=st.floats(min_value=1.0, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=20),
    arrivals=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=80),
)
def test_gate_never_lets_more_than_burst_into_a_window(
    rate: float, burst: int, arrivals: list[float]
) -> None:
    """Starting each request at max(arrival, ready_at()) keeps every window at <= burst."""
    limit = Limit(rate, burst, in_flight=1_000)
    gate = _Gate(limit)
    starts: list[float] = []
    for arrival in sorted(arrivals):
        start = max(arrival, gate.ready_at(), starts[-1] if starts else -math.inf)
        # A microsecond of margin absorbs float rounding (the real one is milliseconds).
        gate.take(start + 1e-6)
        starts.append(start)
    assert max_in_window(starts, limit.window) <= burst


@given(
    rate=st.floats(min_value=1.0, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=20),
    n=st.integers(min_value=1, max_value=200),
)
def test_gate_back_to_back_reaches_the_rate(rate: float, burst: int, n: int) -> None:
    """With requests always waiting, n starts take (n - burst) / rate: the full rate."""
    gate = _Gate(Limit(rate, burst, in_flight=1_000))
    start = 0.0
    for _ in range(n):
        start = max(start, gate.ready_at())
        gate.take(start)
    expected = max(0, math.ceil(n / burst) - 1) * burst / rate
    assert start == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(
    rate=st.floats(min_value=1.0, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=20),
    earlier=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=20),
    pause=st.floats(min_value=0.0, max_value=3.0),
)
def test_gate_pause_spreads_the_resumption(
    rate: float, burst: int, earlier: list[float], pause: float
) -> None:
    """After pause(P) the k-th next start is no earlier than P + k / rate."""
    gate = _Gate(Limit(rate, burst, in_flight=1_000))
    now = 0.0
    for arrival in sorted(earlier):
        now = max(now, arrival, gate.ready_at())
        gate.take(now)
    until = now + pause
    gate.pause(until)
    for k in range(burst + 2):
        now = max(now, gate.ready_at())
        assert now >= until + k / rate - 1e-9
        gate.take(now)


def test_gate_pause_never_shortens() -> None:
    """A shorter pause after a longer one changes nothing."""
    gate = _Gate(Limit(10.0, 2, in_flight=10))
    gate.pause(5.0)
    before = (gate.paused_until, list(gate.log), gate.ready_at())
    gate.pause(1.0)
    assert (gate.paused_until, list(gate.log), gate.ready_at()) == before
    gate.pause(6.0)
    assert gate.ready_at() == pytest.approx(6.0)


def test_gate_in_flight_and_untake() -> None:
    """A full in-flight cap means 'wait for a release'; untake forgets a start entirely."""
    gate = _Gate(Limit(1.0, 2, in_flight=2))
    gate.take(0.0)
    gate.take(0.5)
    assert gate.ready_at() == math.inf
    gate.untake(0.5)
    assert gate.in_flight == 1
    assert list(gate.log) == [0.0]
    assert gate.ready_at() == -math.inf  # the log is not full any more


# --- rate, on both event loops --------------------------------------------------------


async def test_no_window_holds_more_than_burst() -> None:
    """Across many concurrent tasks, no sliding window of W sees more than burst starts."""
    limit = Limit(rate=50.0, burst=5, in_flight=100)
    limiter = RequestLimiter(limit, Account(FAST))
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(request)
    assert len(starts) == 30
    assert max_in_window(starts, limit.window) == limit.burst
    assert limiter.stats.requests == 30
    assert limiter.stats.in_flight == 0


async def test_steady_state_rate_is_the_limit_less_the_answered_margin() -> None:
    """Answered at once, each start comes a window plus at most the slack (+1%) after its pair."""
    # That is `burst` starts per window: the full rate, less what an answer as fast
    # as the fastest still costs (FASTEST_SLACK). The first window pays the whole
    # margin (nothing is known of the path yet), which shifts part of the schedule
    # once; it is left out. The 1% is for the event loop's timer lateness.
    limit = Limit(rate=100.0, burst=20, in_flight=1_000)
    limiter = RequestLimiter(limit, Account(FAST))
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot() as timing:
            starts.append(anyio.current_time())
            await sent_and_answered(timing)

    async with anyio.create_task_group() as tg:
        for _ in range(120):
            tg.start_soon(request)
    starts.sort()
    gaps = [starts[k] - starts[k - limit.burst] for k in range(2 * limit.burst, len(starts))]
    assert min(gaps) >= limit.window  # never faster than the limit...
    assert sum(gaps) / len(gaps) <= (limit.window + FASTEST_SLACK) * 1.01  # ...nor much slower
    assert limiter.stats.waited > 0


async def test_key_and_account_limits_hold_together() -> None:
    """Two keys sharing an Account stay under the account's limit together, and each its own."""
    account = Account(Limit(rate=12.0, burst=12, in_flight=100))
    key_limit = Limit(rate=8.0, burst=4, in_flight=100)
    limiters = [RequestLimiter(key_limit, account) for _ in range(2)]
    starts: dict[int, list[float]] = {0: [], 1: []}

    async def request(key: int) -> None:
        async with limiters[key].slot():
            starts[key].append(anyio.current_time())

    begin = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            for key in (0, 1):
                tg.start_soon(request, key)
    every = starts[0] + starts[1]
    assert len(every) == 16
    assert max_in_window(every, account.limit.window) == 12
    for key in (0, 1):
        assert max_in_window(starts[key], key_limit.window) <= key_limit.burst
    # On their own limits the keys would be done after 0.5 s (4 at once, 4 more
    # one window later); the account's 12 per second held the last 4 back.
    assert max(every) - begin >= account.limit.window


# --- in flight ---------------------------------------------------------------------


async def test_in_flight_cap_per_key() -> None:
    """No more than the key's in_flight requests are ever outstanding."""
    limiter = RequestLimiter(Limit(rate=10_000.0, burst=100, in_flight=3), Account(FAST))
    current = peak = 0

    async def request() -> None:
        nonlocal current, peak
        async with limiter.slot():
            current += 1
            peak = max(peak, current)
            await anyio.sleep(0.01)
            current -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(request)
    assert peak == 3


async def test_in_flight_cap_per_account() -> None:
    """Keys sharing an Account never hold more than its in_flight between them."""
    account = Account(Limit(rate=10_000.0, burst=100, in_flight=4))
    limiters = [RequestLimiter(Limit(10_000.0, 100, 3), account) for _ in range(2)]
    current = [0, 0]
    peak_key = [0, 0]
    peak_total = 0

    async def request(key: int) -> None:
        nonlocal peak_total
        async with limiters[key].slot():
            current[key] += 1
            peak_key[key] = max(peak_key[key], current[key])
            peak_total = max(peak_total, sum(current))
            await anyio.sleep(0.01)
            current[key] -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            for key in (0, 1):
                tg.start_soon(request, key)
    assert peak_total == 4
    assert max(peak_key) <= 3


# --- order ---------------------------------------------------------------------------


@pytest.mark.parametrize("blocked_by", ["in_flight", "rate"])
async def test_waiters_are_served_first_come_first_served(blocked_by: str) -> None:
    """Waiters of one key get their slots in the order they asked, whatever blocks them."""
    if blocked_by == "in_flight":
        limiter = RequestLimiter(Limit(10_000.0, 100, in_flight=1), Account(FAST))
    else:
        limiter = RequestLimiter(Limit(200.0, burst=1, in_flight=100), Account(FAST))
    order: list[int] = []

    async def request(i: int) -> None:
        async with limiter.slot():
            order.append(i)

    async with anyio.create_task_group() as tg, limiter.slot():
        if blocked_by == "rate":
            limiter.pause(0.03)
        for i in range(10):
            tg.start_soon(request, i)
            await waiting(limiter, i + 1)
    assert order == list(range(10))


async def test_account_serves_keys_in_arrival_order() -> None:
    """When the account is the bottleneck, a busy key cannot starve a later-arriving one."""
    account = Account(Limit(rate=200.0, burst=1, in_flight=100))
    a, b = RequestLimiter(FAST, account), RequestLimiter(FAST, account)
    order: list[str] = []

    async def request(limiter: RequestLimiter, name: str) -> None:
        async with limiter.slot():
            order.append(name)

    a.pause(0.03, account_wide=True)
    async with anyio.create_task_group() as tg:
        for limiter, name in [(a, "a1"), (b, "b"), (a, "a2")]:
            for _ in range(5):
                before = limiter.stats.waiting
                tg.start_soon(request, limiter, name)
                await waiting(limiter, before + 1)
    assert order == ["a1"] * 5 + ["b"] * 5 + ["a2"] * 5


async def test_throttled_key_does_not_hold_up_another() -> None:
    """A key waiting on its own limit leaves the account's capacity to other keys."""
    account = Account(Limit(rate=1_000.0, burst=100, in_flight=100))
    slow = RequestLimiter(Limit(rate=20.0, burst=1, in_flight=10), account)
    fast = RequestLimiter(Limit(rate=1_000.0, burst=10, in_flight=10), account)
    slow_starts: list[float] = []

    async def slow_request() -> None:
        async with slow.slot():
            slow_starts.append(anyio.current_time())

    async with slow.slot():
        pass
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(slow_request)
        await wait_until(lambda: slow.stats.waiting == 3)
        for _ in range(5):
            async with fast.slot():
                pass
        fast_done = anyio.current_time()
    # The slow key's next start was 50 ms away; the fast key did not wait for it.
    assert fast_done < min(slow_starts)
    assert fast.stats.max_wait < 0.02


# --- cancellation ----------------------------------------------------------------------


async def test_cancelled_waiters_leave_full_capacity() -> None:
    """After a cancelled fan-out the key and the account have every place back at once."""
    account = Account(Limit(rate=5_000.0, burst=5, in_flight=5))
    limiter = RequestLimiter(Limit(rate=5_000.0, burst=5, in_flight=5), account)
    release = anyio.Event()

    async def holder(*, task_status: TaskStatus[None]) -> None:
        async with limiter.slot():
            task_status.started()
            await release.wait()

    async def impatient() -> None:
        with anyio.move_on_after(0.05):
            async with limiter.slot():
                pytest.fail("no slot should have been free")

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            await tg.start(holder)
        async with anyio.create_task_group() as waiters:
            for _ in range(100):
                waiters.start_soon(impatient)
        release.set()
    stats = limiter.stats
    assert (stats.in_flight, stats.waiting, stats.cancelled) == (0, 0, 100)
    # The holders' starts age out of the 1 ms window; then 5 go at once, again.
    await anyio.sleep(0.01)
    entered = 0
    all_in = anyio.Event()

    async def again() -> None:
        nonlocal entered
        async with limiter.slot():
            entered += 1
            if entered == 5:
                all_in.set()
            await all_in.wait()

    with anyio.fail_after(0.1):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(again)
    assert limiter.stats.max_wait < 0.05 or limiter.stats.requests == 10


async def test_cancelled_head_does_not_stall_the_queue() -> None:
    """When the waiter at the front is cancelled, the one behind it is served on time."""
    limiter = RequestLimiter(Limit(rate=20.0, burst=1, in_flight=10), Account(FAST))
    async with limiter.slot():
        pass
    served = anyio.Event()

    async def impatient() -> None:
        with anyio.move_on_after(0.02):
            async with limiter.slot():
                pytest.fail("the front waiter should have timed out")

    async def patient() -> None:
        async with limiter.slot():
            served.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(impatient)
        await wait_until(lambda: limiter.stats.waiting == 1)
        tg.start_soon(patient)
        await wait_until(lambda: limiter.stats.waiting == 2)
        with anyio.fail_after(0.5):
            await served.wait()
    assert limiter.stats.cancelled == 1
    assert limiter.stats.max_wait < 0.1


async def _enter_in_scope(limiter: RequestLimiter, scope: anyio.CancelScope) -> None:
    with scope:
        async with limiter.slot():
            pass


async def test_cancelled_while_holding_releases() -> None:
    """A task cancelled inside the slot gives its in-flight place back."""
    limiter = RequestLimiter(Limit(rate=10_000.0, burst=100, in_flight=1), Account(FAST))
    with anyio.move_on_after(0.02):
        async with limiter.slot():
            assert limiter.stats.in_flight == 1
            await anyio.sleep_forever()
    assert limiter.stats.in_flight == 0
    with anyio.fail_after(0.1):
        async with limiter.slot():
            pass


async def test_granted_then_cancelled_gives_the_slot_back() -> None:
    """A waiter granted a slot but cancelled before it ran holds nothing afterwards."""
    account = Account(Limit(rate=10_000.0, burst=100, in_flight=1))
    limiter = RequestLimiter(Limit(rate=10_000.0, burst=100, in_flight=1), account)
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        async with limiter.slot():
            tg.start_soon(_enter_in_scope, limiter, scope)
            await wait_until(lambda: limiter.stats.waiting == 1)
        # Leaving the block granted the waiter its slot; cancel it before it runs.
        # (An expired deadline rather than cancel(): same effect, and it works
        # with every trio version anyio supports.)
        scope.deadline = -math.inf
    stats = limiter.stats
    assert (stats.in_flight, stats.waiting) == (0, 0)
    with anyio.fail_after(0.1):
        async with limiter.slot():
            assert limiter.stats.in_flight == 1


async def test_already_cancelled_caller_takes_nothing() -> None:
    """slot() in a cancelled scope raises at once without counting a request."""
    limiter = RequestLimiter(Limit(), Account(FAST))
    with anyio.CancelScope(deadline=-math.inf):
        async with limiter.slot():
            pytest.fail("should not get a slot")
    assert (limiter.stats.requests, limiter.stats.in_flight) == (0, 0)


# --- pauses ----------------------------------------------------------------------------


async def test_pause_then_resume_spread_out() -> None:
    """No start before the pause ends, and then the k-th no sooner than k/rate after: no burst."""
    limit = Limit(rate=50.0, burst=5, in_flight=100)
    limiter = RequestLimiter(limit, Account(FAST))
    grants: list[float] = []

    async def request() -> None:
        async with limiter.slot() as timing:
            # The limiter's decision, not when this task next got the CPU.
            grants.append(timing.granted_at)

    paused_at = anyio.current_time()
    limiter.pause(0.1)
    async with anyio.create_task_group() as tg:
        for _ in range(7):
            tg.start_soon(request)
    grants.sort()
    for k, granted in enumerate(grants):
        assert granted >= paused_at + 0.1 + k / limit.rate - 1e-9
    assert limiter.stats.pauses == 1


@pytest.mark.parametrize("pauses", [(0.15, 0.05), (0.05, 0.15)])
async def test_pause_extends_but_never_shortens(pauses: tuple[float, float]) -> None:
    """Of two pauses the later end wins, whichever order they come in."""
    limiter = RequestLimiter(Limit(rate=100.0, burst=10), Account(FAST))
    begin = anyio.current_time()
    for seconds in pauses:
        limiter.pause(seconds)
    async with limiter.slot():
        assert anyio.current_time() >= begin + 0.15


async def test_pause_holds_only_its_key_unless_account_wide() -> None:
    """A key's pause leaves other keys alone; an account-wide pause holds them all."""
    account = Account(FAST)
    a, b = RequestLimiter(FAST, account), RequestLimiter(FAST, account)
    a.pause(10.0)
    with anyio.fail_after(0.1):
        async with b.slot():
            pass
    begin = anyio.current_time()
    a.pause(0.05, account_wide=True)
    async with b.slot():
        assert anyio.current_time() >= begin + 0.05


async def test_pause_wakes_nobody_early() -> None:
    """A pause applied while tasks already wait holds them too."""
    limiter = RequestLimiter(Limit(rate=10_000.0, burst=100, in_flight=1), Account(FAST))
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg, limiter.slot():
        tg.start_soon(request)
        await wait_until(lambda: limiter.stats.waiting == 1)
        paused_at = anyio.current_time()
        limiter.pause(0.05)
    assert starts[0] >= paused_at + 0.05


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
async def test_pause_validation(seconds: float) -> None:
    """pause() needs a finite, non-negative number of seconds."""
    limiter = RequestLimiter()
    with pytest.raises(ValueError, match="seconds"):
        limiter.pause(seconds)


# --- event loops -------------------------------------------------------------------------


def test_account_survives_successive_event_loops() -> None:
    """An Account used by one anyio.run, then another (even another backend), still works."""
    account = Account(Limit(rate=20.0, burst=2, in_flight=10))
    ends: list[float] = []

    async def burst_of_two() -> None:
        limiter = RequestLimiter(FAST, account)
        with anyio.fail_after(1.0):
            for _ in range(2):
                async with limiter.slot():
                    pass
            ends.append(anyio.current_time())

    anyio.run(burst_of_two, backend="trio")
    anyio.run(burst_of_two, backend="asyncio")
    anyio.run(burst_of_two, backend="trio")
    assert len(ends) == 3
