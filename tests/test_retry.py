"""Retries: what is retried, how long it waits, when it gives up, and what it logs.

Most tests inject a fake ``sleep`` and ``clock`` so that waits of seconds take
no time; a few run with the real ``anyio.sleep`` on both backends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oxystats._retry import (
    DEFAULT_RETRY_POLICY,
    RETRY_STATUSES,
    RetryEvent,
    RetryPolicy,
    backoff_cap,
    call_with_retries,
    compute_wait,
    is_retryable,
    parse_retry_after,
)

pytestmark = pytest.mark.anyio

SECRET = "sk-very-secret-api-key"


class FakeAPIError(Exception):
    """Stands in for oxystats.APIError / RateLimitError: a status and maybe a Retry-After."""

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"{status_code} (Authorization: Bearer {SECRET})")
        self.status_code = status_code
        self.retry_after = retry_after


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """An async callable that raises the given exceptions in turn, then returns "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0
        self.raised: list[BaseException] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            exc = self.failures.pop(0)
            self.raised.append(exc)
            raise exc
        return "ok"


class Always:
    """An async callable that fails every time with a fresh exception from ``make``."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        self.make = make
        self.calls = 0
        self.last: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.last = self.make()
        raise self.last


async def run(
    fn: Callable[[], Awaitable[str]],
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    *,
    time: FakeTime | None = None,
    events: list[RetryEvent] | None = None,
    rand: Callable[[], float] = lambda: 0.5,
) -> str:
    """call_with_retries on fake time (unless told otherwise)."""
    time = time or FakeTime()
    return await call_with_retries(
        fn,
        policy,
        on_retry=None if events is None else events.append,
        describe="GET /v2/stats/usage",
        sleep=time.sleep,
        clock=time.clock,
        rand=rand,
    )


# --- RetryPolicy ------------------------------------------------------------------------


def test_policy_defaults() -> None:
    """The defaults are the documented ones."""
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff_base, policy.backoff_max) == (6, 0.5, 30.0)
    assert (policy.max_retry_after, policy.deadline) == (120.0, None)
    assert policy.retry_statuses == RETRY_STATUSES == {429, 500, 502, 503, 504}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"max_retries": True}, TypeError),
        ({"backoff_base": -0.1}, ValueError),
        ({"backoff_max": math.inf}, ValueError),
        ({"max_retry_after": math.nan}, ValueError),
        ({"deadline": -1.0}, ValueError),
        ({"deadline": "10"}, TypeError),
        ({"retry_statuses": {500}}, TypeError),
    ],
)
def test_policy_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Bad policies fail at construction, naming the field."""
    with pytest.raises(error, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- parse_retry_after ------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 30, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.2", 2.0),
        ("0.001", 1.0),
        ("3.0", 3.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),  # 29.5 s away: rounded up
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("+5", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("5 s", None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Seconds or HTTP dates, always rounded up; dates in the past are 0; garbage is None."""
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_defaults_to_the_current_time() -> None:
    """Without ``now`` an HTTP date is counted from the current time."""
    soon = datetime.now(UTC) + timedelta(seconds=90)
    header = soon.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(header) in (89.0, 90.0)


def test_parse_retry_after_rejects_a_naive_now() -> None:
    """A naive ``now`` is an error, not a guess."""
    with pytest.raises(ValueError, match="timezone"):
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW.replace(tzinfo=None))


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_whole_seconds(seconds: int) -> None:
    """Whole delta-seconds come back unchanged."""
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False))
def test_parse_retry_after_never_rounds_down(seconds: object) -> None:
    """A fractional value becomes the next whole second, never less than it was."""
    parsed = parse_retry_after(str(seconds))
    assert parsed is not None
    assert parsed == math.ceil(float(str(seconds)))
    assert parsed >= float(str(seconds))


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(header: str) -> None:
    """Any header value gives None or a finite, non-negative whole number of seconds."""
    parsed = parse_retry_after(header, now=NOW)
    assert parsed is None or (math.isfinite(parsed) and parsed >= 0 and parsed == int(parsed))


# --- what is retried --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    """Rate limiting and transient server errors are worth another try."""
    assert is_retryable(FakeAPIError(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
def test_permanent_statuses(status: int) -> None:
    """Bad requests, bad or missing keys, and the like are never retried."""
    assert not is_retryable(FakeAPIError(status))


REQUEST = httpx.Request("GET", f"https://api.oxylabs.io/v2/stats/usage?key={SECRET}")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ConnectTimeout("slow", request=REQUEST),
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.PoolTimeout("busy"),
        httpx.RemoteProtocolError("dropped", request=REQUEST),
        httpx.ReadError("reset"),
    ],
)
def test_transport_errors_are_retried(exc: Exception) -> None:
    """Connection failures, timeouts and dropped connections are retried."""
    assert is_retryable(exc)


def test_wrapped_transport_errors_are_retried() -> None:
    """A transport error wrapped in another exception (``raise ... from``) is still retried."""
    wrapped = RuntimeError("could not connect")
    wrapped.__cause__ = httpx.ConnectError("refused")
    assert is_retryable(wrapped)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.UnsupportedProtocol("ftp://"),
        httpx.LocalProtocolError("bad header"),
        ValueError("bug"),
        KeyboardInterrupt(),
        httpx.HTTPStatusError(
            "400", request=REQUEST, response=httpx.Response(400, request=REQUEST)
        ),
    ],
)
def test_other_errors_are_not_retried(exc: BaseException) -> None:
    """Errors another attempt cannot fix, bugs and interrupts are not retried."""
    assert not is_retryable(exc)


def test_custom_statuses() -> None:
    """The set of retried statuses is a setting."""
    assert is_retryable(FakeAPIError(408), statuses={408})
    assert not is_retryable(FakeAPIError(500), statuses={408})


# --- how long to wait -------------------------------------------------------------------


def test_backoff_cap_doubles_up_to_the_maximum() -> None:
    """The n-th retry's cap is backoff_base * 2 ** (n - 1), at most backoff_max."""
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0)
    assert [backoff_cap(policy, n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_cap(policy, 10_000) == 30.0
    assert backoff_cap(RetryPolicy(backoff_base=0.0), 10_000) == 0.0


@given(
    base=st.floats(min_value=0, max_value=100),
    maximum=st.floats(min_value=0, max_value=1000),
    retry=st.integers(min_value=1, max_value=5000),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_full_jitter_within_the_cap(
    base: float, maximum: float, retry: int, r: float
) -> None:
    """Without Retry-After the wait is uniform in [0, cap]: r * cap, never beyond."""
    policy = RetryPolicy(backoff_base=base, backoff_max=maximum)
    wait = compute_wait(policy, FakeAPIError(503), retry, rand=lambda: r)
    assert wait is not None
    assert 0 <= wait <= min(maximum, backoff_cap(policy, retry))
    assert wait == pytest.approx(r * backoff_cap(policy, retry))


@given(retry_after=st.integers(min_value=0, max_value=240), retry=st.integers(1, 10))
def test_retry_after_is_waited_exactly_up_to_the_cap(retry_after: int, retry: int) -> None:
    """A Retry-After is the wait, exactly; beyond max_retry_after it means "don't retry"."""
    policy = RetryPolicy(max_retry_after=120.0)
    wait = compute_wait(policy, FakeAPIError(429, float(retry_after)), retry, rand=lambda: 0.5)
    assert wait == (float(retry_after) if retry_after <= 120 else None)


# --- the retry loop, on fake time -------------------------------------------------------


async def test_persistent_failure_makes_max_retries_plus_one_calls() -> None:
    """A persistent 500 is tried max_retries + 1 times and the last exception is raised as is."""
    fn = Always(lambda: FakeAPIError(500))
    time = FakeTime()
    with pytest.raises(FakeAPIError) as raised:
        await run(fn, RetryPolicy(max_retries=4), time=time)
    assert fn.calls == 5
    assert raised.value is fn.last
    assert len(time.sleeps) == 4


async def test_success_after_failures_returns_the_result() -> None:
    """Transient failures are retried until the call succeeds; on_retry hears of each."""
    fn = Flaky(FakeAPIError(503), httpx.ReadTimeout("slow"), FakeAPIError(429))
    events: list[RetryEvent] = []
    assert await run(fn, events=events) == "ok"
    assert fn.calls == 4
    assert [e.retry for e in events] == [1, 2, 3]
    assert [e.reason for e in events] == ["503", "ReadTimeout", "429"]
    assert all(e.max_retries == 6 and e.description == "GET /v2/stats/usage" for e in events)
    assert [e.exception for e in events] == fn.raised


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_permanent_errors_are_raised_at_once(status: int) -> None:
    """400, 401 and 403 are raised after one attempt, without waiting."""
    fn = Always(lambda: FakeAPIError(status))
    time = FakeTime()
    with pytest.raises(FakeAPIError) as raised:
        await run(fn, time=time)
    assert (fn.calls, time.sleeps) == (1, [])
    assert raised.value is fn.last


async def test_zero_retries_means_one_attempt() -> None:
    """max_retries=0 turns retrying off."""
    fn = Always(lambda: FakeAPIError(503))
    with pytest.raises(FakeAPIError):
        await run(fn, RetryPolicy(max_retries=0))
    assert fn.calls == 1


async def test_retry_after_is_honoured_exactly() -> None:
    """With a Retry-After the wait is exactly that, whatever the backoff would have been."""
    fn = Flaky(FakeAPIError(429, retry_after=7.0), FakeAPIError(429, retry_after=2.0))
    time = FakeTime()
    events: list[RetryEvent] = []
    assert await run(fn, time=time, events=events) == "ok"
    assert time.sleeps == [7.0, 2.0]
    assert [e.retry_after for e in events] == [7.0, 2.0]


async def test_retry_after_over_the_cap_is_raised_immediately() -> None:
    """A Retry-After longer than max_retry_after is not waited for: the error is raised."""
    fn = Flaky(FakeAPIError(429, retry_after=121.0))
    time = FakeTime()
    with pytest.raises(FakeAPIError) as raised:
        await run(fn, RetryPolicy(max_retry_after=120.0), time=time)
    assert (fn.calls, time.sleeps) == (1, [])
    assert raised.value.retry_after == 121.0


async def test_backoff_grows_and_is_bounded() -> None:
    """Backoff waits stay within [0, min(backoff_max, base * 2 ** (n - 1))] with real jitter."""
    policy = RetryPolicy(max_retries=8, backoff_base=0.5, backoff_max=4.0)
    for _ in range(20):
        time = FakeTime()
        with pytest.raises(FakeAPIError):
            await call_with_retries(
                Always(lambda: FakeAPIError(502)), policy, sleep=time.sleep, clock=time.clock
            )
        caps = [backoff_cap(policy, n) for n in range(1, 9)]
        assert caps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
        assert all(0 <= wait <= cap for wait, cap in zip(time.sleeps, caps, strict=True))
    # Jittered, not fixed: with rand at its top the waits approach the caps.
    time = FakeTime()
    with pytest.raises(FakeAPIError):
        await run(Always(lambda: FakeAPIError(502)), policy, time=time, rand=lambda: 0.999)
    assert time.sleeps == pytest.approx([cap * 0.999 for cap in caps])


async def test_deadline_stops_before_a_wait_that_would_cross_it() -> None:
    """With a deadline, no retry is scheduled to start after it."""
    fn = Always(lambda: FakeAPIError(503))
    time = FakeTime()
    policy = RetryPolicy(backoff_base=4.0, backoff_max=100.0, deadline=10.0)
    with pytest.raises(FakeAPIError):
        await run(fn, policy, time=time, rand=lambda: 0.999)
    # Waits would be ~4, ~8: 4 fits in 10 s, 4 + 8 does not.
    assert fn.calls == 2
    assert time.sleeps == pytest.approx([4.0 * 0.999])


async def test_deadline_counts_time_spent_in_attempts() -> None:
    """Slow attempts use up the deadline too."""
    time = FakeTime()

    async def slow_failure() -> str:
        time.now += 6.0
        raise FakeAPIError(500)

    with pytest.raises(FakeAPIError):
        await run(slow_failure, RetryPolicy(backoff_base=1.0, deadline=10.0), time=time)
    # 6 s attempt + 0.5 s wait fits; 12.5 s + another wait does not.
    assert len(time.sleeps) == 1


async def test_lambda_returning_a_coroutine_is_awaited() -> None:
    """fn may be a plain lambda returning an awaitable, as the client passes it."""
    fn = Flaky(FakeAPIError(500))
    assert await run(lambda: fn()) == "ok"
    assert fn.calls == 2


# --- logging ----------------------------------------------------------------------------


async def test_every_retry_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry logs its count, wait, reason and request on the "oxystats" logger."""
    caplog.set_level(logging.INFO, logger="oxystats")
    fn = Flaky(FakeAPIError(503), FakeAPIError(429, retry_after=2.0))
    await run(fn, RetryPolicy(max_retries=6, backoff_base=0.5), rand=lambda: 0.5)
    records = [r for r in caplog.records if r.name == "oxystats"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert [r.getMessage() for r in records] == [
        "retry 1/6 in 0.25 s after 503 GET /v2/stats/usage",
        "retry 2/6 in 2.0 s after 429 GET /v2/stats/usage",
    ]
    assert SECRET not in caplog.text


async def test_log_describes_the_request_without_query_or_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without ``describe`` the log names the failed request's method and path, nothing more."""
    caplog.set_level(logging.INFO, logger="oxystats")
    time = FakeTime()
    fn = Flaky(httpx.ConnectError(f"refused {SECRET}", request=REQUEST), httpx.ReadError("x"))
    assert await call_with_retries(fn, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0) == "ok"
    messages = [r.getMessage() for r in caplog.records if r.name == "oxystats"]
    assert messages == [
        "retry 1/6 in 0.00 s after ConnectError GET /v2/stats/usage",
        "retry 2/6 in 0.00 s after ReadError",
    ]
    assert SECRET not in caplog.text


# --- real time, both backends -----------------------------------------------------------


async def test_real_sleeps_on_this_backend() -> None:
    """With the default anyio.sleep and clock the retries really wait, on asyncio and trio."""
    fn = Flaky(FakeAPIError(502), FakeAPIError(502))
    begin = anyio.current_time()
    result = await call_with_retries(fn, RetryPolicy(backoff_base=0.01), rand=lambda: 0.999)
    assert result == "ok"
    # 0.01 + 0.02 (times 0.999)
    assert anyio.current_time() - begin >= 0.029


async def test_real_deadline_on_this_backend() -> None:
    """The deadline is measured on the event loop's clock."""
    fn = Always(lambda: FakeAPIError(503))
    begin = anyio.current_time()
    with pytest.raises(FakeAPIError):
        await call_with_retries(
            fn,
            RetryPolicy(max_retries=50, backoff_base=0.02, backoff_max=0.02, deadline=0.1),
            rand=lambda: 0.999,
        )
    elapsed = anyio.current_time() - begin
    assert elapsed <= 0.1 + 0.05
    assert 4 <= fn.calls <= 6


async def test_cancellation_is_not_retried() -> None:
    """A cancelled attempt propagates the cancellation; no retry is made."""
    calls = 0

    async def hangs() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with anyio.move_on_after(0.02) as scope:
        await call_with_retries(hangs, RetryPolicy(backoff_base=0.0))
    assert scope.cancelled_caught
    assert calls == 1
