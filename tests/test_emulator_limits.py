"""Server-side rate limits: sliding windows, token buckets, in-flight caps, per key and account."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from oxystats.emulator import (
    DEFAULT_KEY,
    Emulator,
    EmulatorConfig,
    Faults,
    RateLimitRule,
    RateLimits,
)
from oxystats.emulator._ratelimit import Limiter, Ticket

pytestmark = pytest.mark.anyio

INSTANCES = "/stats/v1/filters/instances"
KEYS = {"key-a": "acme", "key-b": "acme", "key-c": "other"}


@contextlib.asynccontextmanager
async def in_process(
    emulator: Emulator, key: str = DEFAULT_KEY
) -> AsyncIterator[httpx.AsyncClient]:
    """A client talking to ``emulator`` in-process (fast, no sockets)."""
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers=headers) as c:
        yield c


def admitted(result: Ticket | int) -> bool:
    """Whether the limiter admitted the request."""
    return isinstance(result, Ticket)


def test_sliding_window_counts_arrivals_in_the_last_window() -> None:
    """3 per 1 s: the 4th is refused until the first arrival is a full window old."""
    limiter = Limiter(RateLimits(per_key=RateLimitRule(window_requests=3, window_seconds=1.0)))
    assert all(admitted(limiter.acquire("k", "a", t)) for t in (0.0, 0.2, 0.4))
    assert limiter.acquire("k", "a", 0.5) == 1
    assert limiter.acquire("k", "a", 0.999) == 1
    assert admitted(limiter.acquire("k", "a", 1.0001))
    assert not admitted(limiter.acquire("k", "a", 1.1))
    assert admitted(limiter.acquire("k", "a", 1.2001))


def test_rejected_requests_do_not_count() -> None:
    """Hammering while refused does not push back the moment the window frees up."""
    limiter = Limiter(RateLimits(per_key=RateLimitRule(window_requests=2, window_seconds=1.0)))
    assert admitted(limiter.acquire("k", "a", 0.0))
    assert admitted(limiter.acquire("k", "a", 0.0))
    for step in range(1, 100):
        assert not admitted(limiter.acquire("k", "a", step / 100))
    assert admitted(limiter.acquire("k", "a", 1.001))
    assert admitted(limiter.acquire("k", "a", 1.002))


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    """Retry-After is the wait rounded up to whole seconds, at least 1."""
    limiter = Limiter(RateLimits(per_key=RateLimitRule(window_requests=1, window_seconds=5.0)))
    assert admitted(limiter.acquire("k", "a", 10.0))
    assert limiter.acquire("k", "a", 10.5) == 5
    assert limiter.acquire("k", "a", 14.2) == 1
    bucket = Limiter(RateLimits(per_key=RateLimitRule(bucket_rate=0.25, bucket_burst=1)))
    assert admitted(bucket.acquire("k", "a", 0.0))
    assert bucket.acquire("k", "a", 0.0) == 4


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """Rate 5/s with burst 2: two at once, then one every 0.2 s."""
    limiter = Limiter(RateLimits(per_key=RateLimitRule(bucket_rate=5.0, bucket_burst=2)))
    assert admitted(limiter.acquire("k", "a", 0.0))
    assert admitted(limiter.acquire("k", "a", 0.0))
    assert limiter.acquire("k", "a", 0.0) == 1
    assert not admitted(limiter.acquire("k", "a", 0.19))
    assert admitted(limiter.acquire("k", "a", 0.201))
    assert not admitted(limiter.acquire("k", "a", 0.21))
    assert admitted(limiter.acquire("k", "a", 10.0))
    assert admitted(limiter.acquire("k", "a", 10.0))
    assert not admitted(limiter.acquire("k", "a", 10.0))


def test_in_flight_cap_frees_on_release() -> None:
    """Two in flight: a third is refused until one is released."""
    limiter = Limiter(RateLimits(per_key=RateLimitRule(in_flight=2)))
    first, second = limiter.acquire("k", "a", 0.0), limiter.acquire("k", "a", 0.0)
    assert isinstance(first, Ticket)
    assert admitted(second)
    assert limiter.acquire("k", "a", 5.0) == 1
    limiter.release(first)
    assert admitted(limiter.acquire("k", "a", 5.0))


def test_documented_preset() -> None:
    """The documented preset: 10/s and 10 in flight per key, 100 of each per account."""
    limits = RateLimits.documented()
    assert limits.per_key == RateLimitRule(window_requests=10, window_seconds=1.0, in_flight=10)
    assert limits.per_account == RateLimitRule(
        window_requests=100, window_seconds=1.0, in_flight=100
    )
    limiter = Limiter(limits)
    tickets = [limiter.acquire("k", "a", 0.01 * n) for n in range(10)]
    assert all(admitted(t) for t in tickets)
    for ticket in tickets:
        assert isinstance(ticket, Ticket)
        limiter.release(ticket)
    assert not admitted(limiter.acquire("k", "a", 0.5))
    assert admitted(limiter.acquire("other-key", "a", 0.5))


def test_rule_validation() -> None:
    """Nonsense rules are refused when built."""
    with pytest.raises(ValueError, match="bucket_rate"):
        RateLimitRule(bucket_burst=3)
    with pytest.raises(ValueError, match="positive"):
        RateLimitRule(window_requests=0)
    with pytest.raises(ValueError, match="positive"):
        RateLimitRule(window_seconds=-1)
    assert RateLimitRule(bucket_rate=2.5).burst == 3


async def test_window_over_http_with_retry_after() -> None:
    """Over the app, the window's excess gets 429 + Retry-After, and frees up in time."""
    emulator = Emulator()
    emulator.limits = RateLimits(per_key=RateLimitRule(window_requests=3, window_seconds=0.3))
    async with in_process(emulator) as client:
        statuses = [(await client.get(INSTANCES)).status_code for _ in range(5)]
        refused = await client.get(INSTANCES)
        await anyio.sleep(0.32)
        again = [(await client.get(INSTANCES)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200, 429, 429]
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": "Too many requests",
        "message": "User has reached the thread/concurrent session limit.",
    }
    assert again == [200, 200, 200]


async def test_in_flight_over_http() -> None:
    """With two slow requests in flight, a third concurrent one is refused with 429."""
    emulator = Emulator()
    emulator.limits = RateLimits(per_key=RateLimitRule(in_flight=2))
    emulator.faults = Faults(latency=0.2)
    statuses: list[int] = []
    async with in_process(emulator) as client:

        async def one() -> None:
            statuses.append((await client.get(INSTANCES)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
        emulator.faults = Faults()
        after = (await client.get(INSTANCES)).status_code
    assert sorted(statuses) == [200, 200, 429]
    assert after == 200
    assert emulator.stats()["in_flight"] == {"account-1/key-1": 0}


async def test_account_limit_is_shared_by_its_keys() -> None:
    """Two keys of one account share the account window; another account is unaffected."""
    emulator = Emulator(
        EmulatorConfig(
            keys=KEYS,
            limits=RateLimits(per_account=RateLimitRule(window_requests=4, window_seconds=10)),
        )
    )
    async with (
        in_process(emulator, "key-a") as a,
        in_process(emulator, "key-b") as b,
        in_process(emulator, "key-c") as c,
    ):
        first = [(await client.get(INSTANCES)).status_code for client in (a, b, a, b)]
        assert first == [200] * 4
        assert (await a.get(INSTANCES)).status_code == 429
        assert (await b.get(INSTANCES)).status_code == 429
        assert (await c.get(INSTANCES)).status_code == 200
    assert emulator.counters.by_key == {"acme/key-1": 3, "acme/key-2": 3, "other/key-3": 1}


async def test_key_limit_is_per_key() -> None:
    """Per-key limits are separate for two keys of one account."""
    emulator = Emulator(
        EmulatorConfig(
            keys=KEYS,
            limits=RateLimits(per_key=RateLimitRule(window_requests=2, window_seconds=10)),
        )
    )
    async with in_process(emulator, "key-a") as a, in_process(emulator, "key-b") as b:
        statuses = [(await client.get(INSTANCES)).status_code for client in (a, a, a, b, b, b)]
    assert statuses == [200, 200, 429, 200, 200, 429]


async def test_reset_clears_limiter_state() -> None:
    """reset() forgets the window, the log and the counters."""
    emulator = Emulator()
    emulator.limits = RateLimits(per_key=RateLimitRule(window_requests=1, window_seconds=60))
    async with in_process(emulator) as client:
        assert (await client.get(INSTANCES)).status_code == 200
        assert (await client.get(INSTANCES)).status_code == 429
        emulator.reset()
        assert emulator.log == []
        assert emulator.counters.total == 0
        assert (await client.get(INSTANCES)).status_code == 200


async def test_unauthenticated_requests_are_not_limited() -> None:
    """403 and 401 come before the limiter and do not use up a key's window."""
    emulator = Emulator()
    emulator.limits = RateLimits(per_key=RateLimitRule(window_requests=1, window_seconds=60))
    async with in_process(emulator, "bad-key") as bad, in_process(emulator) as good:
        assert [(await bad.get(INSTANCES)).status_code for _ in range(3)] == [401] * 3
        assert (await good.get(INSTANCES)).status_code == 200
