"""oxystats exporter: scraped over real HTTP while it polls the emulator, whose clock moves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import anyio
import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import oxystats
from oxystats.cli import cli
from oxystats.cli._exporter import run_exporter
from oxystats.cli._exporter_metrics import ExporterMetrics, serve_metrics
from oxystats.cli._poller import UsagePoller
from oxystats.emulator import Dataset, Emulator, EmulatorConfig, Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY, emulator_server

INTERVAL = 0.2
"""Seconds between polls in the in-process tests (the command's floor is 1 s)."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    """One sample's value; KeyError if the scrape lacks it."""
    return samples[(metric, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    """The sample names in a scrape."""
    return {name for name, _ in samples}


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    """GET /metrics over HTTP, parsed."""
    response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def scrape_after(http: httpx.AsyncClient, url: str, polls: float) -> Samples:
    """Scrape until the exporter has done ``polls`` polls (within 10 s)."""
    with anyio.fail_after(10):
        while True:
            samples = await scrape(http, url)
            if value(samples, "oxystats_exporter_polls_total") >= polls:
                return samples
            await anyio.sleep(INTERVAL / 4)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A UTC day's first and last second."""
    start = datetime.combine(day, clock_time(), UTC)
    return start, start + timedelta(days=1, seconds=-1)


def truth(emulator: Emulator, product: str, first: date, last: date) -> tuple[int, int]:
    """The emulator's exact (requests, traffic bytes) over whole UTC days, at its now."""
    return emulator.ground_truth(product, day_bounds(first)[0], day_bounds(last)[1], ["DAY"]).totals


def by_instance(emulator: Emulator, product: str, first: date, last: date) -> dict[str, int]:
    """The emulator's exact requests per instance over whole UTC days, at its now."""
    found = emulator.ground_truth(
        product, day_bounds(first)[0], day_bounds(last)[1], ["INSTANCE"]
    ).rows
    return {key[0]: requests for key, (requests, _) in found.items()}


def clock_of(emulator: Emulator) -> Callable[[], datetime]:
    """The emulator's clock, as the exporter's: "today" is the emulator's today."""

    def now() -> datetime:
        assert emulator.now is not None
        return emulator.now

    return now


@asynccontextmanager
async def exporter_running(
    running: RunningEmulator,
    *,
    by_instance: bool,
    now: Callable[[], datetime],
    max_retries: int = 6,
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The command's parts, wired as it wires them, polling with the given clock."""
    registry = CollectorRegistry()
    hooks = [oxystats.PrometheusMetrics(registry=registry)]
    api = oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=running.url,
        event_hooks=hooks,
        max_retries=max_retries,
    )
    poller = UsagePoller(api, products=None, by_instance=by_instance, now=now)
    metrics = ExporterMetrics(registry, poller.label_names)
    with serve_metrics(registry, "127.0.0.1", 0) as url:
        assert url.startswith("http://127.0.0.1:")
        async with api, httpx.AsyncClient() as http, anyio.create_task_group() as group:
            group.start_soon(run_exporter, poller, metrics, INTERVAL)
            yield http, url
            group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_today_grows_with_the_clock_and_the_month_is_exact(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Advance the clock, wait a poll, scrape: today grew; today and month equal ground truth."""
    emulator = oxystats_emulator.emulator
    emulator.now = datetime(2024, 3, 10, 9, 30, tzinfo=UTC)
    today, month = date(2024, 3, 10), date(2024, 3, 1)
    async with exporter_running(oxystats_emulator, by_instance=False, now=clock_of(emulator)) as (
        http,
        url,
    ):
        before = await scrape_after(http, url, polls=1)
        polls = value(before, "oxystats_exporter_polls_total")
        emulator.advance(timedelta(hours=5))
        # The poll under way when the clock moved may have asked before it did: wait for the next.
        after = await scrape_after(http, url, polls=polls + 2)
    for product in ("HB", "DC"):
        grown = value(after, "oxystats_usage_today_requests", product=product)
        assert grown > value(before, "oxystats_usage_today_requests", product=product)
        requests, traffic = truth(emulator, product, today, today)
        assert grown == requests
        assert value(after, "oxystats_usage_today_traffic_bytes", product=product) == traffic
        requests, traffic = truth(emulator, product, month, today)
        assert value(after, "oxystats_usage_month_to_date_requests", product=product) == requests
        assert (
            value(after, "oxystats_usage_month_to_date_traffic_bytes", product=product) == traffic
        )
    assert value(after, "oxystats_exporter_last_success_timestamp_seconds") <= time.time()
    assert value(after, "oxystats_exporter_last_success_timestamp_seconds") > time.time() - 10
    assert "oxystats_exporter_poll_errors_total" not in names(after)
    # The client's own metrics are served beside the figures.
    assert value(after, "oxystats_requests_total", status="200") > 0
    assert "oxystats_limiter_wait_seconds_bucket" in names(after)


@pytest.mark.anyio
async def test_by_instance_every_instance_has_its_series(
    oxystats_emulator: RunningEmulator,
) -> None:
    """--by-instance: one series per instance, zeros included, equal to ground truth; names join."""
    early = datetime(2024, 3, 1, 1, 30, tzinfo=UTC)  # on the 1st, before some instances work
    sparse = Dataset(instances_per_product=4, targets=2, density=0.3)
    oxystats_emulator.use(Emulator(EmulatorConfig(dataset=sparse, now=early)))
    emulator = oxystats_emulator.emulator
    async with exporter_running(oxystats_emulator, by_instance=True, now=lambda: early) as (
        http,
        url,
    ):
        samples = await scrape_after(http, url, polls=1)
    instances = emulator.instance_list()
    for product in ("HB", "DC"):
        expected = by_instance(emulator, product, early.date(), early.date())
        for instance in (i for i in instances if i["product"] == product):
            labels = {"product": product, "instance_uuid": instance["uuid"]}
            shown = value(samples, "oxystats_usage_today_requests", **labels)
            assert shown == expected.get(instance["uuid"], 0)
            assert value(samples, "oxystats_usage_month_to_date_requests", **labels) == shown
            info = {**labels, "name": instance["name"], "status": instance["status"]}
            assert value(samples, "oxystats_instance_info", **info) == 1
    today = [k for k in samples if k[0] == "oxystats_usage_today_requests"]
    assert len(today) == len(instances)
    assert any(samples[k] == 0 for k in today), "an idle instance shows a zero, not nothing"
    assert any(samples[k] > 0 for k in today)


@pytest.mark.anyio
async def test_failed_polls_are_counted_and_the_last_figures_stay(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Errors count by class; the server keeps answering with the last figures; polls recover."""
    emulator = oxystats_emulator.emulator
    emulator.now = datetime(2024, 3, 10, 12, tzinfo=UTC)
    async with exporter_running(
        oxystats_emulator, by_instance=False, now=clock_of(emulator), max_retries=0
    ) as (http, url):
        good = await scrape_after(http, url, polls=1)
        emulator.faults = Faults(error_500=1.0)
        polls = value(good, "oxystats_exporter_polls_total")
        failing = await scrape_after(http, url, polls=polls + 2)
        emulator.faults = Faults()
        polls = value(failing, "oxystats_exporter_polls_total")
        recovered = await scrape_after(http, url, polls=polls + 2)
    assert value(failing, "oxystats_exporter_poll_errors_total", error="ServerError") >= 1
    assert value(failing, "oxystats_requests_total", status="500") >= 1
    for product in ("HB", "DC"):
        shown = value(failing, "oxystats_usage_today_requests", product=product)
        assert shown == value(good, "oxystats_usage_today_requests", product=product)
    success = "oxystats_exporter_last_success_timestamp_seconds"
    assert value(recovered, success) > value(failing, success) >= value(good, success)


@pytest.mark.anyio
async def test_before_any_success_only_the_counters_show(
    oxystats_emulator: RunningEmulator,
) -> None:
    """An API that never answers: no usage series at all (not zeros), errors counted."""
    emulator = oxystats_emulator.emulator
    emulator.faults = Faults(error_503=1.0)
    async with exporter_running(
        oxystats_emulator, by_instance=False, now=lambda: datetime.now(UTC), max_retries=0
    ) as (http, url):
        samples = await scrape_after(http, url, polls=2)
    assert not any(name.startswith("oxystats_usage_") for name in names(samples))
    assert value(samples, "oxystats_exporter_poll_errors_total", error="ServerError") >= 2
    assert value(samples, "oxystats_exporter_last_success_timestamp_seconds") == 0


# -- the command, as a process ------------------------------------------------------------


SECRET = "sk-exporter-0123456789"


def start_exporter(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m oxystats exporter ARGS``; return it and the URL it says it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "oxystats", "exporter", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, process.kill)  # never hang the suite on a silent process
    watchdog.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        watchdog.cancel()
    assert line.startswith("oxystats exporter listening on "), line
    return process, line.split()[-1]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_command_serves_the_month_and_stops_on_sigterm(backend: str) -> None:
    """As a real process: listens on 127.0.0.1, month-to-date exact, SIGTERM exits 0; no key."""
    real_today = datetime.now(UTC).date()
    dataset = Dataset(start=real_today - timedelta(days=40), days=80)
    with emulator_server(dataset=dataset, keys={SECRET: "account-1"}) as running:
        process, url = start_exporter(
            *["--base-url", running.url, "--port", "0", "--interval", "1"],
            *["--backend", backend],
            env={"OXYLABS_API_KEY": SECRET},
        )
        try:
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/metrics")
            days_before = datetime.now(UTC).date()
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, process.communicate()
                samples = parse(httpx.get(url).text)
                if samples.get(("oxystats_exporter_last_success_timestamp_seconds", frozenset())):
                    break
                assert time.monotonic() < deadline, "no successful poll"
                time.sleep(0.1)
            days = {days_before, datetime.now(UTC).date()}  # the poll's day, even at midnight
            for product in ("HB", "DC"):
                shown = value(samples, "oxystats_usage_month_to_date_requests", product=product)
                emulator = running.emulator
                assert shown in {truth(emulator, product, d.replace(day=1), d)[0] for d in days}
                assert shown > 0
            assert value(samples, "oxystats_requests_total", status="200") >= 3
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, stderr
    assert "INFO oxystats.cli: polling every product of the key every 1 s" in stderr
    assert "INFO oxystats.cli: stopping on SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert SECRET not in stdout + stderr


def test_without_prometheus_client_the_command_names_the_extra() -> None:
    """No prometheus_client: one error line naming the extra, exit 1; other commands work."""
    script = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from oxystats.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {**os.environ, "OXYLABS_API_KEY": DEFAULT_KEY}
    done = subprocess.run(
        [sys.executable, "-c", script, "exporter", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "oxystats: error: oxystats exporter needs prometheus_client: "
        "pip install 'oxystats[cli,prometheus]'\n"
    )
    helped = subprocess.run(
        [sys.executable, "-c", script, "usage", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "0.5"], "--interval"),
        (["--port", "70000"], "--port"),
        (["--product", " HB"], "whitespace"),
    ],
)
def test_bad_options_exit_2_before_listening(args: list[str], needle: str) -> None:
    """A bad interval, port or product: one line, exit 2."""
    result = CliRunner().invoke(cli, ["exporter", *args], env={"OXYLABS_API_KEY": DEFAULT_KEY})
    assert result.exit_code == 2
    assert result.stderr.startswith("oxystats: error: ")
    assert result.stderr.count("\n") == 1
    assert needle in result.stderr


def test_a_busy_port_is_one_line_and_exit_1() -> None:
    """The port is taken: one line saying so, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli,
            ["exporter", "--port", str(port), "--base-url", "http://127.0.0.1:9"],
            env={"OXYLABS_API_KEY": DEFAULT_KEY},
        )
    assert result.exit_code == 1
    assert result.stderr == (
        f"oxystats: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
