"""Fault injection: reproducible from a seed, every kind shaped as documented."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator

import attrs
import httpx
import pytest

from oxystats.emulator import (
    DEFAULT_KEY,
    Emulator,
    EmulatorConfig,
    Faults,
    RateLimitRule,
    RateLimits,
    RunningEmulator,
)

pytestmark = pytest.mark.anyio

USAGE = "/stats/v1/usage"
PARAMS: list[tuple[str, str | int | float | bool | None]] = [
    ("product", "HB"),
    ("date_from", "2024-03-01T00:00:00Z"),
    ("date_to", "2024-03-10T00:00:00Z"),
    ("group_by[]", "DAY"),
]
MIXED = Faults(
    seed=42, error_500=0.2, error_503=0.1, spurious_429=0.1, drop_connection=0.1, malformed_body=0.1
)


@contextlib.asynccontextmanager
async def in_process(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """A client talking to ``emulator`` in-process (fast, no sockets)."""
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers=headers) as c:
        yield c


async def outcome(client: httpx.AsyncClient) -> str:
    """What one request ended as: a status, 'dropped', or 'malformed'."""
    try:
        response = await client.get(USAGE, params=PARAMS)
    except httpx.TransportError:
        return "dropped"
    try:
        body = response.json()
    except json.JSONDecodeError:
        return "malformed"
    if response.status_code == 200 and not isinstance(body.get("data"), list):
        return "malformed"
    return str(response.status_code)


async def sequence(faults: Faults, n: int = 60) -> list[str]:
    """The outcomes of ``n`` sequential requests to a new emulator with ``faults``."""
    emulator = Emulator(EmulatorConfig(faults=faults))
    async with in_process(emulator) as client:
        return [await outcome(client) for _ in range(n)]


async def test_same_seed_same_faults() -> None:
    """Two emulators with one seed fail the same requests the same way; another seed differs."""
    first = await sequence(MIXED)
    assert first == await sequence(MIXED)
    assert first != await sequence(attrs.evolve(MIXED, seed=43))
    assert set(first) == {"200", "500", "503", "429", "dropped", "malformed"}


async def test_reset_and_reassignment_restart_the_stream() -> None:
    """reset() and assigning faults both restart the sequence from the seed."""
    emulator = Emulator(EmulatorConfig(faults=MIXED))
    async with in_process(emulator) as client:
        first = [await outcome(client) for _ in range(30)]
        emulator.reset()
        second = [await outcome(client) for _ in range(30)]
        emulator.faults = MIXED
        third = [await outcome(client) for _ in range(30)]
    assert first == second == third


async def test_fault_stream_ignores_rate_limiting() -> None:
    """Requests refused by the limiter still draw, so faults depend only on the sequence."""
    emulator = Emulator(EmulatorConfig(faults=MIXED))
    emulator.limits = RateLimits(per_key=RateLimitRule(window_requests=1, window_seconds=60))
    async with in_process(emulator) as client:
        await outcome(client)
        for _ in range(9):
            assert await outcome(client) == "429"
        emulator.limits = RateLimits()
        tail = [await outcome(client) for _ in range(20)]
    assert tail == (await sequence(MIXED, 30))[10:]


async def test_spurious_429_has_the_configured_retry_after() -> None:
    """A spurious 429 looks like a real one, with Retry-After from the config."""
    emulator = Emulator(EmulatorConfig(faults=Faults(spurious_429=1.0, retry_after=3)))
    async with in_process(emulator) as client:
        response = await client.get(USAGE, params=PARAMS)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == "Too many requests"


async def test_malformed_bodies() -> None:
    """Malformed 200s are either truncated JSON or JSON of the wrong shape."""
    emulator = Emulator(EmulatorConfig(faults=Faults(malformed_body=1.0)))
    kinds = set()
    async with in_process(emulator) as client:
        for _ in range(20):
            response = await client.get(USAGE, params=PARAMS)
            assert response.status_code == 200
            try:
                body = response.json()
            except json.JSONDecodeError:
                kinds.add("truncated")
            else:
                assert "totals" not in body
                kinds.add("wrong shape")
    assert kinds == {"truncated", "wrong shape"}


async def test_dropped_connection_in_process() -> None:
    """Through ASGITransport a dropped connection is an httpx.TransportError as well."""
    emulator = Emulator(EmulatorConfig(faults=Faults(drop_connection=1.0)))
    async with in_process(emulator) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(USAGE, params=PARAMS)
    assert [(entry.status, entry.fault) for entry in emulator.log] == [(200, "drop_connection")]
    assert emulator.counters.by_fault == {"drop_connection": 1}


async def test_dropped_connection_over_http(oxystats_emulator: RunningEmulator) -> None:
    """Over real HTTP the client sees the connection die mid-body (RemoteProtocolError)."""
    oxystats_emulator.emulator.faults = Faults(drop_connection=1.0)
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        for _ in range(3):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(USAGE, params=PARAMS)


async def test_latency_is_added() -> None:
    """latency delays each admitted request by about that long."""
    emulator = Emulator(EmulatorConfig(faults=Faults(latency=0.05, latency_jitter=0.01)))
    async with in_process(emulator) as client:
        started = time.monotonic()
        for _ in range(3):
            assert (await client.get(USAGE, params=PARAMS)).status_code == 200
    assert time.monotonic() - started >= 3 * 0.04


def test_fault_validation() -> None:
    """Probabilities outside [0, 1] or summing past 1 are refused."""
    with pytest.raises(ValueError, match="probability"):
        Faults(error_500=1.5)
    with pytest.raises(ValueError, match="sum"):
        Faults(error_500=0.6, error_503=0.6)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)
    assert not Faults().active
    assert Faults(latency=0.1).active
