"""The FastAPI recipe, as its page writes it, under a real uvicorn, with a visitor who hangs up.

The app is the one docs/recipes/fastapi.md shows: its blocks are run here, so
what a reader copies is what is tested. The backfill route is paced by the
emulator's documented limits (10 requests per second), so it lasts seconds;
a real HTTP client starts it and closes its connection mid-way, and the
emulator's request log (arrival times on this process' monotonic clock)
shows when the app's requests stopped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from test_docs import read_page

from oxystats.emulator import (
    Emulator,
    EmulatorConfig,
    Faults,
    LogEntry,
    RateLimits,
    RunningEmulator,
)
from oxystats.testing import DEFAULT_KEY

pytestmark = pytest.mark.anyio

RECIPE = Path(__file__).parent.parent / "docs" / "recipes" / "fastapi.md"
BACKFILL = "/usage/HB/daily?date_from=2024-01-01&date_to=2025-12-31"
"""24 windows of 31 days by day and target: 7 pages each, 168 requests, 17 s at 10 per second."""
HANG_UP_AFTER = 15
"""Requests the emulator has seen when the visitor hangs up."""


def recipe_app(*, with_middleware: bool) -> Any:
    """The recipe's app: its first block, and its second (the middleware) if asked."""
    blocks = read_page(RECIPE).examples[: 2 if with_middleware else 1]
    namespace: dict[str, Any] = {"__name__": "fastapi_recipe"}
    for block in blocks:
        exec(compile(block.code, block.name, "exec"), namespace)
    return namespace["app"]


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn (lifespan on) on 127.0.0.1 in a thread; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def paced(oxystats_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    """An emulator with the documented limits, where the recipe's client looks for the API."""
    oxystats_emulator.use(Emulator(EmulatorConfig(limits=RateLimits.documented())))
    monkeypatch.setenv("OXYLABS_BASE_URL", oxystats_emulator.url)
    monkeypatch.setenv("OXYLABS_API_KEY", DEFAULT_KEY)
    return oxystats_emulator


async def hang_up_mid_backfill(running: RunningEmulator, url: str) -> float:
    """Start the backfill over HTTP, close the connection once it is under way; return when."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as visitor,
        anyio.create_task_group() as group,
    ):
        group.start_soon(visitor.get, BACKFILL)
        with anyio.fail_after(10):
            # Polled: the emulator counts in its server's thread, and signals nothing.
            while running.emulator.counters.total < HANG_UP_AFTER:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()  # the request is abandoned: httpx closes its connection
    return time.monotonic()  # and the pool is closed too: nothing of the visitor's is open


def timeline(log: list[LogEntry], hung_up: float) -> str:
    """The app's requests around the hang-up, for the failure message and the report."""
    return ", ".join(f"{entry.time - hung_up:+.3f}s" for entry in log)


async def test_the_backfill_stops_within_a_second_of_the_hang_up(paced: RunningEmulator) -> None:
    """With the middleware: no upstream request later than 1 s after the visitor left."""
    with served(recipe_app(with_middleware=True)) as url:
        hung_up = await hang_up_mid_backfill(paced, url)
        await anyio.sleep(2.0)
        log = paced.emulator.log.snapshot()
        after = [entry for entry in log if entry.time > hung_up]
        print(f"\n{len(log) - len(after)} requests before the hang-up, {len(after)} after:")
        print(timeline(log, hung_up))
        assert all(entry.time <= hung_up + 1.0 for entry in after), timeline(log, hung_up)
        assert len(log) < 168 / 2, "the backfill ran on"
        # The cancelled call gave its limiter places back: the next visitor is served.
        async with httpx.AsyncClient(base_url=url) as visitor:
            with anyio.fail_after(5):
                response = await visitor.get(
                    "/usage/HB/total", params={"date_from": "2025-01-01", "date_to": "2025-01-31"}
                )
        assert response.status_code == 200
        assert response.json()["requests"] > 0


async def test_without_the_middleware_the_backfill_runs_on(paced: RunningEmulator) -> None:
    """Why the recipe has it: under uvicorn, a closed connection does not cancel the route."""
    with served(recipe_app(with_middleware=False)) as url:
        hung_up = await hang_up_mid_backfill(paced, url)
        await anyio.sleep(3.5)
        log = paced.emulator.log.snapshot()
        late = [entry for entry in log if entry.time > hung_up + 1.0]
        print(f"\nwithout the middleware, {len(late)} requests more than 1 s after the hang-up:")
        print(timeline(log, hung_up))
        # At 10 requests per second, 2.5 s hold at least two bursts of 10; the shutdown
        # cancels the rest.
        assert len(late) >= 10, timeline(log, hung_up)


async def test_a_route_with_options_fails_fast(paced: RunningEmulator) -> None:
    """/total's view (timeout 5 s, one retry, deadline 10 s) answers an error in seconds."""
    paced.emulator.faults = Faults(error_503=1.0)
    with served(recipe_app(with_middleware=True)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as visitor:
            started = time.monotonic()
            response = await visitor.get(
                "/usage/HB/total", params={"date_from": "2025-01-01", "date_to": "2025-01-31"}
            )
            waited = time.monotonic() - started
    assert response.status_code == 500
    assert paced.emulator.counters.by_status == {503: 2}, "one attempt and one retry"
    assert waited < 10
