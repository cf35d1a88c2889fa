"""Arrival jitter: the delays drawn, and what a jittered network does to stamps and limits."""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from oxystats.emulator import (
    DEFAULT_KEY,
    ArrivalJitter,
    Emulator,
    EmulatorConfig,
    Faults,
    RateLimitRule,
    RateLimits,
    RunningEmulator,
)
from oxystats.emulator._command import _parser, config_from_args
from oxystats.emulator._jitter import ArrivalDelays
from oxystats.testing import max_in_window

pytestmark = pytest.mark.anyio

INSTANCES = "/stats/v1/filters/instances"
DRAWS = 20_000


async def logged(emulator: Emulator, count: int) -> None:
    """Wait until ``count`` requests are logged: the server logs each just after answering it."""
    with anyio.fail_after(5):
        # Polled: the server's thread signals nothing to this one.
        while emulator.counters.total < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)


def delays(jitter: ArrivalJitter, n: int = DRAWS) -> list[float]:
    """The first ``n`` delays a new stream draws for ``jitter``."""
    stream = ArrivalDelays(jitter)
    return [stream.draw() for _ in range(n)]


def test_ordinary_delays_are_uniform_up_to_max_delay() -> None:
    """Without spikes every delay lies in [0, max_delay], spread evenly over it."""
    drawn = delays(ArrivalJitter(max_delay=0.2, seed=1))
    assert all(0.0 <= d <= 0.2 for d in drawn)
    # The mean of 20,000 uniforms is within 7 standard errors of the middle.
    assert statistics.fmean(drawn) == pytest.approx(0.1, abs=0.003)
    tenths = [0] * 10
    for d in drawn:
        tenths[min(9, int(d / 0.02))] += 1
    # Each tenth holds 2,000 +/- 6 standard deviations (about 42 each).
    assert all(1750 <= count <= 2250 for count in tenths), tenths


def test_spikes_are_rare_and_uniform_above_max_delay() -> None:
    """With spikes a share p of delays is uniform in [J, f*J]; the rest stay in [0, J]."""
    jitter = ArrivalJitter(max_delay=0.1, spike_probability=0.05, spike_factor=4.0, seed=2)
    drawn = delays(jitter)
    spikes = [d for d in drawn if d > 0.1]
    assert all(0.0 <= d <= 0.4 for d in drawn)
    # 5% of 20,000: 1,000 +/- 5 standard deviations (about 31 each).
    assert 845 <= len(spikes) <= 1155
    assert statistics.fmean(spikes) == pytest.approx(0.25, abs=0.015)
    assert min(spikes) < 0.13
    assert max(spikes) > 0.37
    ordinary = [d for d in drawn if d <= 0.1]
    assert statistics.fmean(ordinary) == pytest.approx(0.05, abs=0.002)


def test_always_a_spike_and_no_spread() -> None:
    """spike_probability=1 makes every delay a spike; spike_factor=1 pins spikes to J."""
    assert all(0.5 <= d <= 1.5 for d in delays(ArrivalJitter(0.5, 1.0, 3.0), 1000))
    assert set(delays(ArrivalJitter(0.5, 1.0, 1.0), 100)) == {0.5}


def test_same_seed_same_delays_other_seed_others() -> None:
    """The delays are a function of the seed alone."""
    jitter = ArrivalJitter(max_delay=0.05, spike_probability=0.1, seed=7)
    assert delays(jitter, 500) == delays(jitter, 500)
    assert delays(jitter, 500) != delays(ArrivalJitter(0.05, 0.1, seed=8), 500)


def test_delays_do_not_share_the_fault_streams_numbers() -> None:
    """Seed 0 of the jitter is not random.Random(0), which the faults of seed 0 draw from."""
    faults_numbers = random.Random(0)
    fault_draws = [faults_numbers.random() for _ in range(200)]
    drawn = delays(ArrivalJitter(max_delay=1.0, seed=0), 100)
    assert not set(drawn) & set(fault_draws)


def test_jitter_validation() -> None:
    """Negative or infinite delays, probabilities outside [0, 1] and factors below 1 are refused."""
    with pytest.raises(ValueError, match="max_delay"):
        ArrivalJitter(max_delay=-0.1)
    with pytest.raises(ValueError, match="max_delay"):
        ArrivalJitter(max_delay=float("inf"))
    with pytest.raises(ValueError, match="spike_probability"):
        ArrivalJitter(max_delay=0.1, spike_probability=1.5)
    with pytest.raises(ValueError, match="spike_factor"):
        ArrivalJitter(max_delay=0.1, spike_factor=0.5)
    assert not ArrivalJitter().active
    assert not ArrivalJitter(spike_probability=0.5).active
    assert ArrivalJitter(max_delay=0.01).active


def test_jitter_is_a_runtime_setting() -> None:
    """No delay stream without jitter; assigning jitter or reset() restarts the stream."""
    emulator = Emulator()
    assert emulator.jitter == ArrivalJitter()
    off = emulator.arrival_delays
    assert off is None
    jitter = ArrivalJitter(max_delay=0.3, seed=4)
    emulator.jitter = jitter
    stream = emulator.arrival_delays
    assert stream is not None
    first = [stream.draw() for _ in range(5)]
    emulator.reset()
    restarted = emulator.arrival_delays
    assert restarted is not None
    assert [restarted.draw() for _ in range(5)] == first == delays(jitter, 5)
    assert emulator.jitter == jitter
    emulator.jitter = ArrivalJitter()
    assert emulator.arrival_delays is None


def test_command_line_jitter_flags() -> None:
    """--arrival-jitter and its companions make the config's ArrivalJitter."""
    args = _parser().parse_args(
        [
            "--arrival-jitter=0.05",
            "--jitter-spike-probability=0.02",
            "--jitter-spike-factor=6",
            "--jitter-seed=9",
        ]
    )
    assert config_from_args(args).jitter == ArrivalJitter(0.05, 0.02, 6.0, 9)
    assert config_from_args(_parser().parse_args([])).jitter == ArrivalJitter()


@contextlib.asynccontextmanager
async def in_process(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """A client talking to ``emulator`` in-process (no sockets)."""
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers=headers) as c:
        yield c


async def test_jitter_leaves_the_fault_sequence_alone() -> None:
    """The same fault seed gives the same faults, request by request, with jitter on."""
    faults = Faults(seed=42, error_500=0.3, error_503=0.2, spurious_429=0.2)
    outcomes: list[list[tuple[int, str | None]]] = []
    for jitter in (ArrivalJitter(), ArrivalJitter(max_delay=0.002, seed=3)):
        emulator = Emulator(EmulatorConfig(faults=faults, jitter=jitter))
        async with in_process(emulator) as client:
            for _ in range(40):
                await client.get(INSTANCES)
        outcomes.append([(entry.status, entry.fault) for entry in emulator.log])
    assert outcomes[0] == outcomes[1]
    assert {status for status, _ in outcomes[0]} == {200, 500, 503, 429}


async def test_stamps_lag_send_times_by_the_drawn_delays(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Over HTTP each request is stamped, and answered, no sooner than its drawn delay."""
    jitter = ArrivalJitter(max_delay=0.05, spike_probability=0.2, spike_factor=3.0, seed=5)
    expected = delays(jitter, 20)
    emulator = oxystats_emulator.emulator
    emulator.jitter = jitter
    sent: list[float] = []
    answered: list[float] = []
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        for _ in expected:
            sent.append(time.monotonic())
            assert (await client.get(INSTANCES)).status_code == 200
            answered.append(time.monotonic())
    await logged(emulator, len(expected))
    # One request at a time: the log is in sending order, each entry with its own draw.
    stamps = [entry.time for entry in emulator.log]
    lags = [stamp - start for stamp, start in zip(stamps, sent, strict=True)]
    for lag, delay, start, end in zip(lags, expected, sent, answered, strict=True):
        assert lag >= delay
        assert end - start >= delay
    assert any(delay > 0.05 for delay in expected), "the seed draws spikes"
    # Beyond its delay, a stamp lags by no more than one loopback trip.
    excess = [lag - delay for lag, delay in zip(lags, expected, strict=True)]
    assert statistics.median(excess) < 0.02


async def paced(running: RunningEmulator, count: int, period: float) -> list[float]:
    """Send ``count`` requests ``period`` seconds apart, without waiting for answers.

    Returns the send times (`time.monotonic`, the clock of the emulator's stamps).
    """
    sent: list[float] = []
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with (
        httpx.AsyncClient(base_url=running.url, headers=headers) as client,
        anyio.create_task_group() as group,
    ):
        start = time.monotonic() + 0.05

        async def one(slot: float) -> None:
            await anyio.sleep(slot - time.monotonic())
            sent.append(time.monotonic())
            await client.get(INSTANCES)

        for index in range(count):
            group.start_soon(one, start + index * period)
    return sent


async def test_a_client_at_the_limit_sees_429s_once_the_network_jitters(
    oxystats_emulator: RunningEmulator,
) -> None:
    """10 per second, sent at 10 per second: all admitted; with 0-200 ms of jitter, some 429s."""
    limits = RateLimits(per_key=RateLimitRule(window_requests=10, window_seconds=1.0))
    # Ten sends per 1.02 s: under the limit by what a careful client keeps, 20 ms.
    count, period = 16, 0.102
    jitter = ArrivalJitter(max_delay=0.2, seed=11)

    # The seed makes the outcome certain: stamped at send time + delay (the
    # earliest the emulator can stamp), some request comes less than 0.95 s
    # after the one ten arrivals before it, far more than timing noise.
    planned = sorted(index * period + delay for index, delay in enumerate(delays(jitter, count)))
    gaps = [later - earlier for earlier, later in zip(planned, planned[10:], strict=False)]
    assert min(gaps) < 0.95

    statuses: dict[str, list[int]] = {}
    for name, setting in (("steady", ArrivalJitter()), ("jittery", jitter)):
        emulator = oxystats_emulator.use(Emulator(EmulatorConfig(limits=limits, jitter=setting)))
        sent = await paced(oxystats_emulator, count, period)
        await logged(emulator, count)
        assert max_in_window(sent, 1.0) <= 10, "the client kept to the limit"
        statuses[name] = [entry.status for entry in emulator.log]
        admitted = [entry.time for entry in emulator.log if entry.status == 200]
        assert max_in_window(admitted, 1.0) <= 10
    assert statuses["steady"] == [200] * count
    assert 429 in statuses["jittery"]
