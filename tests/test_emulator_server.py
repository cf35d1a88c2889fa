"""Serving the emulator: the app factory, the thread server, the fixtures and the command line."""

from __future__ import annotations

import gc
import subprocess
import sys
from datetime import date

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from oxystats.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_KEY,
    Dataset,
    Emulator,
    EmulatorConfig,
    RateLimits,
    RunningEmulator,
    create_app,
    serve,
    serve_in_thread,
)
from oxystats.emulator._command import _parser, config_from_args
from oxystats.testing import emulator_server

pytestmark = pytest.mark.anyio

INSTANCES = "/stats/v1/filters/instances"


async def test_create_app_exposes_the_emulator() -> None:
    """create_app returns a Starlette app whose state holds its Emulator."""
    config = EmulatorConfig(keys={"k": "acct"})
    app = create_app(config)
    assert isinstance(app, Starlette)
    emulator = app.state.emulator
    assert isinstance(emulator, Emulator)
    assert emulator.config is config
    assert Emulator().app.state.emulator is not emulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu") as client:
        response = await client.get(INSTANCES, headers={"Authorization": "Bearer k"})
    assert response.status_code == 200


async def test_fixture_serves_a_fresh_emulator_over_http(
    oxystats_emulator: RunningEmulator,
) -> None:
    """The fixture gives a default emulator on 127.0.0.1 with empty counters."""
    assert oxystats_emulator.url.startswith("http://127.0.0.1:")
    assert oxystats_emulator.emulator.counters.total == 0
    assert oxystats_emulator.emulator.limits == RateLimits()
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        assert (await client.get(INSTANCES)).status_code == 200
    assert oxystats_emulator.emulator.counters.total == 1


async def test_emulator_server_context_manager_starts_and_stops() -> None:
    """emulator_server(**config) serves that config and is gone after the block."""
    config = {"keys": {"secret-1": "team"}, "dataset": Dataset(products=("HB",))}
    with emulator_server(**config) as running:
        headers = {"Authorization": "Bearer secret-1"}
        async with httpx.AsyncClient(base_url=running.url, headers=headers) as client:
            body = (await client.get(INSTANCES)).json()
        assert {item["product"] for item in body["data"]} == {"HB"}
        assert running.emulator.log[0].key_id == "team/key-1"
        url = running.url
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + INSTANCES)


def test_serve_in_thread_accepts_an_emulator_and_can_swap() -> None:
    """serve_in_thread serves a given Emulator; use() swaps in another behind the same URL."""
    first, second = Emulator(), Emulator()
    with serve_in_thread(first) as running:
        assert running.emulator is first
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        assert httpx.get(running.url + INSTANCES, headers=headers).status_code == 200
        running.use(second)
        assert httpx.get(running.url + INSTANCES, headers=headers).status_code == 200
    assert (first.counters.total, second.counters.total) == (1, 1)


def test_command_line_options_make_a_config() -> None:
    """The command line's options map onto EmulatorConfig."""
    args = _parser().parse_args(
        [
            "--seed=3",
            "--targets=50",
            "--start=2025-01-01",
            "--key=k1",
            "--key=k2:other",
            "--documented-limits",
            "--latency=0.06",
            "--error-500=0.1",
            "--drop-connection=0.05",
        ]
    )
    config = config_from_args(args)
    assert config.dataset == Dataset(seed=3, targets=50, start=date(2025, 1, 1))
    assert dict(config.keys) == {"k1": DEFAULT_ACCOUNT, "k2": "other"}
    assert config.limits == RateLimits.documented()
    assert (config.faults.latency, config.faults.error_500) == (0.06, 0.1)
    assert config.faults.drop_connection == 0.05
    assert "k1" not in repr(config)


def test_command_line_serves_and_prints_the_url() -> None:
    """``python -m oxystats.emulator --port 0`` prints its URL, serves it and never the key."""
    command = [sys.executable, "-m", "oxystats.emulator", "--port", "0", "--key", "cli-key:acct"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("oxystats emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        response = httpx.get(url + INSTANCES, headers={"Authorization": "Bearer cli-key"})
        assert response.status_code == 200
        assert httpx.get(url + "/__emulator__/stats").json()["by_key"] == {"acct/key-1": 1}
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert "cli-key" not in line + out + err


def test_serve_freezes_the_startup_heap_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() moves the startup heap out of the collector's sight before uvicorn runs."""
    frozen_at_run: list[int] = []
    urls: list[str] = []

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        frozen_at_run.append(gc.get_freeze_count())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    gc.unfreeze()
    try:
        serve(EmulatorConfig(), port=0, on_ready=urls.append)
    finally:
        gc.unfreeze()  # the test process keeps its collector as it was
    assert len(frozen_at_run) == 1
    assert frozen_at_run[0] > 0
    assert len(urls) == 1
    assert urls[0].startswith("http://127.0.0.1:")
