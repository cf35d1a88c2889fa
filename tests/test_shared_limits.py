"""Limits shared through a real redis-server: across Accounts as across processes.

Two `Account` objects with the same ``redis_url`` and ``name`` know nothing of
each other but what Redis tells them, exactly as two processes would; tests
that need a real second process (a SIGKILLed holder) start one. The server is
the session's ``oxystats_redis`` (a real ``redis-server`` on 127.0.0.1), or a
test's own when it stops and restarts it. No test here is skipped for want of
a server: `oxystats.testing.find_redis_server` fails loudly instead.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from datetime import time as dtime

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs
import pytest
import redis
from anyio.abc import TaskStatus

import oxystats
from oxystats._limiter import RequestLimiter, SlotTiming
from oxystats._shared import Gates, fingerprint
from oxystats.emulator import RateLimitRule, RateLimits, RunningEmulator
from oxystats.testing import DEFAULT_KEY, RunningRedis, max_in_window, redis_server

pytestmark = pytest.mark.anyio

ROOMY = oxystats.Limit(rate=10_000.0, burst=1_000, in_flight=1_000)  # never the bottleneck
_names = itertools.count()


@pytest.fixture
def name() -> str:
    """An account name of its own for each test (their keys never meet in Redis)."""
    return f"test-{os.getpid()}-{next(_names)}"


def shared(
    redis: RunningRedis, name: str, limit: oxystats.Limit = ROOMY, *, lease: float = 60.0
) -> oxystats.Account:
    """A new Account on the test's Redis: another process, as far as Redis can tell."""
    return oxystats.Account(limit, redis_url=redis.url, name=name, lease=lease)


def gates_of(limiter: RequestLimiter) -> Gates:
    """The Redis keys behind a limiter's key and account."""
    assert limiter._gates is not None
    return limiter._gates


def in_redis(url: str, gates: Gates) -> dict[str, int]:
    """What Redis holds for ``gates``: starts logged and live leases, per gate, and tickets."""
    client = redis.Redis.from_url(url)
    try:
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        keys = gates.keys
        return {
            "account starts": int(client.zcard(keys[0])),
            "account leases": int(client.zcount(keys[1], now, "+inf")),
            "key starts": int(client.zcard(keys[3])),
            "key leases": int(client.zcount(keys[4], now, "+inf")),
            "tickets": int(client.zcard(keys[6])),
        }
    finally:
        client.close()


async def sent_and_answered(timing: SlotTiming) -> None:
    """Tell the limiter, as httpx's trace would, that the request went out and got its answer."""
    await timing.trace("http11.send_request_headers.started", {})
    await timing.trace("http11.receive_response_headers.complete", {})


# --- arguments ---------------------------------------------------------------------------


def test_account_arguments_are_checked_before_anything_runs() -> None:
    """Bad redis_url, name or lease raise ValueError/TypeError at construction."""
    with pytest.raises(ValueError, match="redis_url"):
        oxystats.Account(redis_url="http://localhost:6379")
    with pytest.raises(TypeError, match="redis_url"):
        oxystats.Account(redis_url=6379)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        oxystats.Account(redis_url="redis://localhost", name="has space")
    with pytest.raises(ValueError, match="name"):
        oxystats.Account(name="{tag}")
    with pytest.raises(ValueError, match="lease"):
        oxystats.Account(redis_url="redis://localhost", lease=0)
    with pytest.raises(TypeError, match="lease"):
        oxystats.Account(lease="60")  # type: ignore[arg-type]


def test_account_repr_hides_the_redis_password() -> None:
    """The repr and redis_url name the server, never its user or password."""
    account = oxystats.Account(redis_url="redis://user:s3cret@cache.internal:6380/2", name="team")
    assert account.redis_url == "redis://cache.internal:6380/2"
    assert "s3cret" not in repr(account)
    assert "user" not in repr(account)
    assert account.name == "team"
    assert oxystats.Account().redis_url is None


def test_without_redis_py_the_error_names_the_extra() -> None:
    """Account(redis_url=...) without redis-py raises ImportError naming oxystats[redis]."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        import oxystats
        oxystats.Account()  # no redis_url: no need of it
        try:
            oxystats.Account(redis_url="redis://localhost:6379/0")
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'oxystats[redis]'" in done.stdout


def test_key_fingerprint_is_keyed_and_stable() -> None:
    """A key's fingerprint is stable, differs between keys and contains nothing of the key."""
    assert fingerprint("key-a") == fingerprint("key-a")
    assert fingerprint("key-a") != fingerprint("key-b")
    assert "key-a" not in fingerprint("key-a")


# --- the limits, across accounts ---------------------------------------------------------


async def test_two_processes_sharing_a_key_stay_under_its_limit(
    oxystats_redis: RunningRedis, name: str
) -> None:
    """Two Accounts using one key through Redis never start more than burst per window."""
    key_limit = oxystats.Limit(rate=100.0, burst=5, in_flight=100)
    limiters = [
        RequestLimiter(key_limit, shared(oxystats_redis, name), key_fingerprint=fingerprint("k"))
        for _ in range(2)
    ]
    starts: list[float] = []

    async def request(limiter: RequestLimiter) -> None:
        async with limiter.slot():
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            for limiter in limiters:
                tg.start_soon(request, limiter)
    assert len(starts) == 20
    # Granted on Redis' clock; the starts seen here lag the grants by a round trip
    # each, which may differ by a millisecond or so.
    assert max_in_window(starts, key_limit.window - 0.002) <= key_limit.burst
    # 20 starts, 5 per 50 ms: no faster than three windows after the first.
    assert max(starts) - min(starts) >= 3 * key_limit.window
    assert all(limiter.stats.in_flight == 0 for limiter in limiters)


async def test_the_account_limit_binds_keys_of_different_processes(
    oxystats_redis: RunningRedis, name: str
) -> None:
    """Different keys in different Accounts stay under the shared account limit together."""
    account_limit = oxystats.Limit(rate=200.0, burst=6, in_flight=100)
    limiters = [
        RequestLimiter(
            ROOMY, shared(oxystats_redis, name, account_limit), key_fingerprint=fingerprint(key)
        )
        for key in ("a", "b", "c")
    ]
    starts: list[float] = []

    async def request(limiter: RequestLimiter) -> None:
        async with limiter.slot():
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            for limiter in limiters:
                tg.start_soon(request, limiter)
    assert len(starts) == 18
    assert max_in_window(starts, account_limit.window - 0.002) <= account_limit.burst


async def test_in_flight_places_are_shared(oxystats_redis: RunningRedis, name: str) -> None:
    """Accounts sharing a key never hold more than its in_flight between them."""
    key_limit = oxystats.Limit(rate=10_000.0, burst=100, in_flight=3)
    limiters = [
        RequestLimiter(key_limit, shared(oxystats_redis, name), key_fingerprint=fingerprint("k"))
        for _ in range(3)
    ]
    current = peak = 0

    async def request(limiter: RequestLimiter) -> None:
        nonlocal current, peak
        async with limiter.slot():
            current += 1
            peak = max(peak, current)
            await anyio.sleep(0.02)
            current -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            for limiter in limiters:
                tg.start_soon(request, limiter)
    assert peak == 3
    assert in_redis(oxystats_redis.url, gates_of(limiters[0]))["key leases"] == 0


async def test_first_come_first_served_across_processes(
    oxystats_redis: RunningRedis, name: str
) -> None:
    """Waiters of two Accounts on one key get its only in-flight place in the order they came."""
    key_limit = oxystats.Limit(rate=10_000.0, burst=100, in_flight=1)
    limiters = [
        RequestLimiter(key_limit, shared(oxystats_redis, name), key_fingerprint=fingerprint("k"))
        for _ in range(2)
    ]
    order: list[int] = []
    release = anyio.Event()

    async def holder(*, task_status: TaskStatus[None]) -> None:
        async with limiters[0].slot():
            task_status.started()
            await release.wait()

    async def request(i: int) -> None:
        async with limiters[i % 2].slot():
            order.append(i)

    async with anyio.create_task_group() as tg:
        await tg.start(holder)
        for i in range(8):
            tg.start_soon(request, i)
            # Each waiter is in Redis' queue before the next one comes.
            await anyio.sleep(0.02)
        release.set()
    assert order == list(range(8))


# --- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "redis"])
async def test_hundreds_of_cancelled_acquires_leave_full_capacity(
    oxystats_redis: RunningRedis, name: str, where: str
) -> None:
    """300 acquires cancelled at random moments (waiting, granted, holding) give everything back."""
    limit = oxystats.Limit(rate=1_000.0, burst=4, in_flight=4)
    account = oxystats.Account(limit) if where == "local" else shared(oxystats_redis, name, limit)
    limiter = RequestLimiter(limit, account, key_fingerprint=fingerprint("k"))
    rng = random.Random(2024)
    completed = 0

    async def impatient(patience: float, hold: float) -> None:
        nonlocal completed
        with anyio.move_on_after(patience):
            async with limiter.slot() as timing:
                await sent_and_answered(timing)
                await anyio.sleep(hold)
                completed += 1

    for _ in range(30):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(impatient, rng.uniform(0.0, 0.004), rng.uniform(0.0, 0.004))
    stats = limiter.stats
    assert stats.cancelled + completed >= 1, "some acquires were cancelled, some went through"
    assert stats.cancelled > 50
    assert (stats.in_flight, stats.waiting) == (0, 0)
    if where == "redis":
        held = in_redis(oxystats_redis.url, gates_of(limiter))
        assert (held["account leases"], held["key leases"], held["tickets"]) == (0, 0, 0)
    # Full capacity: after one window, all four in-flight places at once.
    await anyio.sleep(limit.window + limit.window / 4)
    inside = 0
    all_in = anyio.Event()

    async def hold_one() -> None:
        nonlocal inside
        async with limiter.slot():
            inside += 1
            if inside == limit.in_flight:
                all_in.set()
            await all_in.wait()

    with anyio.fail_after(1.0):
        async with anyio.create_task_group() as tg:
            for _ in range(limit.in_flight):
                tg.start_soon(hold_one)
    assert limiter.stats.in_flight == 0


# --- a process that dies holding places ----------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys, anyio, oxystats
    from oxystats._limiter import RequestLimiter
    from oxystats._shared import fingerprint

    async def main() -> None:
        limit = oxystats.Limit(rate=1000.0, burst=100, in_flight=3)
        account = oxystats.Account(limit, redis_url=sys.argv[1], name=sys.argv[2], lease=1.0)
        limiter = RequestLimiter(limit, account, key_fingerprint=fingerprint("k"))
        async with limiter.slot(), limiter.slot(), limiter.slot():
            print("holding", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


@pytest.fixture
def holder(oxystats_redis: RunningRedis, name: str) -> Iterator[subprocess.Popen[str]]:
    """A separate process that takes all three in-flight places of key k and holds them."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, oxystats_redis.url, name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def test_a_killed_holder_frees_its_places_within_one_lease(
    oxystats_redis: RunningRedis, name: str, holder: subprocess.Popen[str]
) -> None:
    """SIGKILL a process holding every in-flight place: they are free again within its lease."""
    limit = oxystats.Limit(rate=1_000.0, burst=100, in_flight=3)
    account = shared(oxystats_redis, name, limit, lease=1.0)
    limiter = RequestLimiter(limit, account, key_fingerprint=fingerprint("k"))
    killed = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with anyio.fail_after(3.0):
        async with limiter.slot(), limiter.slot(), limiter.slot():
            regained = time.monotonic() - killed
    assert regained <= 1.0 + 0.2  # one lease, and a poll or two


# --- Redis away, back, and forgetful ---------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RunningRedis]:
    """A redis-server of this test's own, free to stop and restart."""
    with redis_server() as running:
        yield running


async def test_unreachable_redis_falls_back_to_local_limits_and_warns_once(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With no Redis listening, slots come from the local limits; one WARNING says so."""
    with redis_server() as gone:
        url = gone.url
    account = oxystats.Account(ROOMY, redis_url=url, name=name)
    limiter = RequestLimiter(ROOMY, account, key_fingerprint=fingerprint("k"))
    with caplog.at_level(logging.WARNING, logger="oxystats"):
        for _ in range(5):
            async with limiter.slot():
                pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "shared_limits", None) for r in warnings] == ["unreachable"]
    assert limiter.stats.requests == 5


async def test_redis_restart_mid_backfill_gives_exact_results(
    oxystats_emulator: RunningEmulator,
    own_redis: RunningRedis,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stop Redis mid-backfill, start it again empty: ground truth, one warning, back to Redis."""
    oxystats_emulator.emulator.limits = RateLimits(
        per_key=RateLimitRule(window_requests=5, window_seconds=0.25, in_flight=10)
    )
    # About 80 requests at 20/s: Redis goes away after 10 and is back for the last 40 or so.
    key_limit = oxystats.Limit(rate=20.0, burst=5, in_flight=10)
    account = shared(own_redis, name, key_limit)
    first, last = date(2024, 1, 1), date(2024, 12, 31)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=key_limit, account=account
    ) as client:
        # Quick retries (the private policy, as test_resilience does): the point is the outage.
        client._retry_policy = attrs.evolve(
            client._retry_policy, max_retries=8, backoff_base=0.005, backoff_max=0.02
        )
        shared_limits = account._shared
        assert shared_limits is not None

        async def outage() -> None:
            await wait_for(lambda: client.stats.requests >= 10)
            # In a worker thread: Redis dies and comes back while the client goes on.
            await anyio.to_thread.run_sync(own_redis.stop)
            await wait_for(lambda: shared_limits.down_since is not None)
            calls_before = shared_limits.calls
            await anyio.sleep(0.3)
            # Empty: no data, no scripts (NOSCRIPT on the next call).
            await anyio.to_thread.run_sync(own_redis.start)
            await wait_for(lambda: shared_limits.down_since is None)
            assert shared_limits.calls > calls_before

        with caplog.at_level(logging.WARNING, logger="oxystats"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outage)
                report = await client.usage("HB", first, last, ["DAY", "TARGET"])
    truth = oxystats_emulator.emulator.ground_truth(
        "HB", *utc_range(first, last), ["DAY", "TARGET"]
    )
    assert {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows} == truth.rows
    # Every 429 (there may be one where local and shared bookkeeping hand over) was retried.
    assert client.stats.retries == client.stats.rate_limited
    # The structured field, not the text: other tests' keys may be redacted from it.
    states = [
        getattr(r, "shared_limits", None) for r in caplog.records if r.levelno >= logging.WARNING
    ]
    assert states == ["unreachable", "back"]


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` every 5 ms until it holds (for at most 10 s)."""
    with anyio.fail_after(10.0):
        while not predicate():  # noqa: ASYNC110 (a state of the client, not an event)
            await anyio.sleep(0.005)


def utc_range(first: date, last: date) -> tuple[datetime, datetime]:
    """The inclusive datetimes the client uses for whole UTC days ``first..last``."""
    return datetime.combine(first, dtime(0), UTC), datetime.combine(last, dtime(23, 59, 59), UTC)


async def test_scripts_flushed_from_redis_are_loaded_again(
    oxystats_redis: RunningRedis, name: str
) -> None:
    """After SCRIPT FLUSH (as after a restart), the next call reloads the scripts (NOSCRIPT)."""
    limiter = RequestLimiter(ROOMY, shared(oxystats_redis, name), key_fingerprint=fingerprint("k"))
    async with limiter.slot():
        pass
    client = redis.Redis.from_url(oxystats_redis.url)
    client.script_flush()
    client.close()
    shared_limits = limiter.account._shared
    assert shared_limits is not None
    calls = shared_limits.calls
    async with limiter.slot():
        pass
    assert shared_limits.calls > calls
    assert shared_limits.down_since is None


async def test_redis_holds_fingerprints_under_one_hash_tag(
    oxystats_emulator: RunningEmulator, oxystats_redis: RunningRedis, name: str
) -> None:
    """Every key of the account shares one hash tag, and none contains the API key."""
    account = shared(oxystats_redis, name, oxystats.Limit())
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, account=account
    ) as client:
        await client.instances()
    client_redis = redis.Redis.from_url(oxystats_redis.url)
    keys = [key.decode() for key in client_redis.scan_iter(match=f"*{{{name}}}*")]
    client_redis.close()
    assert keys
    assert all(f"{{{name}}}" in key for key in keys)
    assert not any(DEFAULT_KEY in key for key in keys)
    assert any(fingerprint(DEFAULT_KEY) in key for key in keys)
