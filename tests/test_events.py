"""Event hooks, log lines, the User-Agent, with_options views and event-loop checks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from datetime import date

import anyio
import httpx
import pytest

import oxystats
from oxystats.emulator import EmulatorConfig, Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

FAST = oxystats.Limit(rate=1_000.0, burst=1_000, in_flight=4)
SECRET = "sk-live-events-0123456789"


def fast_backoff(client: oxystats.AsyncClient) -> None:
    """Shrink the exponential backoff so fault tests run in milliseconds."""
    import attrs

    client._retry_policy = attrs.evolve(client._retry_policy, backoff_base=0.001, backoff_max=0.002)


@pytest.mark.anyio
async def test_every_attempt_retry_and_pause_reaches_the_hooks(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Each attempt is a RequestEvent; each retry a RetryEvent; each 429 pause a PauseEvent."""
    oxystats_emulator.emulator.faults = Faults(
        seed=3, error_500=0.3, spurious_429=0.1, retry_after=0
    )
    events: list[oxystats.ClientEvent] = []
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=FAST, event_hooks=[events.append]
    ) as client:
        fast_backoff(client)
        await client.usage("HB", date(2024, 1, 1), date(2024, 2, 29), ["DAY", "TARGET"])
        stats = client.stats
    requests = [e for e in events if isinstance(e, oxystats.RequestEvent)]
    retries = [e for e in events if isinstance(e, oxystats.RetryEvent)]
    pauses = [e for e in events if isinstance(e, oxystats.PauseEvent)]
    assert len(requests) == stats.requests == len(oxystats_emulator.emulator.log)
    assert len(retries) == stats.retries > 0
    assert len(pauses) == stats.rate_limited > 0
    statuses = sorted(e.status for e in requests if e.status is not None)
    assert statuses == sorted(entry.status for entry in oxystats_emulator.emulator.log)
    assert all(e.elapsed >= 0 and e.limiter_wait >= 0 for e in requests)
    assert {e.attempt for e in requests} >= {1, 2}
    assert all(e.request.path == "/stats/v1/usage" for e in requests)


@pytest.mark.anyio
async def test_a_failing_hook_is_logged_not_raised(
    oxystats_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises does not fail the call; a WARNING says so."""

    def broken(event: oxystats.ClientEvent) -> None:
        raise ZeroDivisionError("metrics backend down")

    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, event_hooks=[broken]
    ) as client:
        report = await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
    assert report.rows
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert "event hook" in warnings[0].getMessage()


def run_with_oxystats_log_debug(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new Python with OXYSTATS_LOG=debug; it must succeed."""
    env = {**os.environ, "OXYSTATS_LOG": "debug"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


def test_event_hooks_must_be_a_sequence_of_callables() -> None:
    """A lone callable or a non-callable item is a TypeError at construction."""
    with pytest.raises(TypeError, match="sequence of callables"):
        oxystats.AsyncClient("k", event_hooks=print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callables"):
        oxystats.AsyncClient("k", event_hooks=[42])  # type: ignore[list-item]


@pytest.mark.anyio
async def test_one_debug_line_per_request_with_structured_fields(
    oxystats_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG on "oxystats" logs each request with method, path, query, status, timings; no key."""
    oxystats_emulator.use(oxystats.emulator.Emulator(EmulatorConfig(keys={SECRET: "acct"})))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="oxystats")
    async with oxystats.AsyncClient(SECRET, base_url=oxystats_emulator.url) as client:
        await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
    lines = [r for r in caplog.records if r.name == "oxystats" and r.levelno == logging.DEBUG]
    assert len(lines) == client.stats.requests == 1
    record = lines[0]
    assert record.getMessage().startswith(
        "GET /stats/v1/usage?product=HB&date_from=2024-01-01T00:00:00Z"
    )
    assert record.__dict__["status"] == 200
    assert record.__dict__["path"] == "/stats/v1/usage"
    assert "group_by[]=DAY" in record.__dict__["query"]
    assert record.__dict__["attempt"] == 1
    assert record.__dict__["elapsed_ms"] >= 0
    assert record.__dict__["limiter_wait_ms"] >= 0
    assert SECRET not in caplog.text


def test_oxystats_log_turns_logging_on_without_code(oxystats_emulator: RunningEmulator) -> None:
    """OXYSTATS_LOG=debug prints the request lines on stderr, with no logging setup in code."""
    script = textwrap.dedent(
        f"""
        import anyio, oxystats
        from datetime import date

        async def main():
            url = "{oxystats_emulator.url}"
            async with oxystats.AsyncClient("{DEFAULT_KEY}", base_url=url) as c:
                await c.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])

        anyio.run(main)
        """
    )
    done = run_with_oxystats_log_debug(script)
    assert "DEBUG oxystats: GET /stats/v1/usage?product=HB" in done.stderr
    assert "-> 200 in" in done.stderr


@pytest.mark.parametrize("when", ["before", "after"])
def test_oxystats_log_with_a_root_handler_prints_each_line_once(
    oxystats_emulator: RunningEmulator, when: str
) -> None:
    """OXYSTATS_LOG=debug and logging.basicConfig, before or after the client: each line once."""
    setup = 'logging.basicConfig(format="ROOT %(levelname)s %(message)s")'
    script = textwrap.dedent(
        f"""
        import logging, anyio, oxystats
        from datetime import date

        async def main():
            if "{when}" == "before":
                {setup}
            url = "{oxystats_emulator.url}"
            async with oxystats.AsyncClient("{DEFAULT_KEY}", base_url=url) as c:
                if "{when}" == "after":
                    {setup}
                await c.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])

        anyio.run(main)
        """
    )
    done = run_with_oxystats_log_debug(script)
    lines = [line for line in done.stderr.splitlines() if "GET /stats/v1/usage" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ROOT DEBUG GET /stats/v1/usage?product=HB")


@pytest.mark.anyio
async def test_user_agent_names_the_client(oxystats_emulator: RunningEmulator) -> None:
    """Every request says oxystats/<version> python/<version>, on an owned or injected pool."""
    seen: list[str] = []

    async def note(request: httpx.Request) -> None:
        seen.append(request.headers["user-agent"])

    async with (
        httpx.AsyncClient(event_hooks={"request": [note]}) as http,
        oxystats.AsyncClient(
            DEFAULT_KEY, base_url=oxystats_emulator.url, http_client=http
        ) as client,
    ):
        await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
    expected = f"oxystats/{oxystats.__version__} python/{sys.version.split()[0]}"
    assert seen == [expected]
    owned = oxystats.AsyncClient(DEFAULT_KEY, base_url=oxystats_emulator.url)
    assert owned._pipeline.connection.http.headers["user-agent"] == expected
    await owned.aclose()


@pytest.mark.anyio
async def test_with_options_shares_the_pool_limiter_and_stats(
    oxystats_emulator: RunningEmulator,
) -> None:
    """A view retries as told, shares limiter and stats, and closing it closes nothing."""
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=FAST
    ) as client:
        fast_backoff(client)
        strict = client.with_options(max_retries=0, timeout=5.0)
        assert strict._limiter is client._limiter
        oxystats_emulator.emulator.faults = Faults(error_500=1.0)
        with pytest.raises(oxystats.ServerError) as caught:
            await strict.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
        assert caught.value.attempts == 1
        with pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
        assert caught.value.attempts == 7, "the client keeps its own six retries"
        assert client.stats == strict.stats
        assert client.stats.requests == 8
        await strict.aclose()
        oxystats_emulator.emulator.faults = Faults()
        report = await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
        assert report.rows, "the pool is still open after the view was closed"
        with pytest.raises(ValueError, match="timeout"):
            client.with_options(timeout=-1.0)


def test_a_client_refuses_a_second_event_loop(oxystats_emulator: RunningEmulator) -> None:
    """Reused from a second run, the client says so instead of failing inside httpcore."""
    client = oxystats.AsyncClient(DEFAULT_KEY, base_url=oxystats_emulator.url)

    async def fetch(close: bool) -> None:
        await client.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
        if close:  # its connections are this loop's: they cannot outlive it
            await client.aclose()

    anyio.run(fetch, True)
    with pytest.raises(RuntimeError, match="another event loop"):
        anyio.run(fetch, False)


@pytest.mark.anyio
async def test_the_blocking_client_refuses_a_running_event_loop(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Called inside a running event loop, Client raises at once instead of freezing it."""
    with pytest.raises(RuntimeError, match="AsyncClient"):
        oxystats.Client(DEFAULT_KEY, base_url=oxystats_emulator.url)


def test_oxystats_log_leaves_a_configured_logger_alone(oxystats_emulator: RunningEmulator) -> None:
    """A program that gave the oxystats logger a handler keeps its level: no second handler."""
    script = textwrap.dedent(
        f"""
        import logging, sys, anyio, oxystats
        from datetime import date

        handler = logging.StreamHandler(sys.stdout)
        logger = logging.getLogger("oxystats")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

        async def main():
            url = "{oxystats_emulator.url}"
            async with oxystats.AsyncClient("{DEFAULT_KEY}", base_url=url) as c:
                await c.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
            assert logger.handlers == [handler], logger.handlers
            assert logger.level == logging.INFO

        anyio.run(main)
        """
    )
    done = run_with_oxystats_log_debug(script)
    assert done.stdout == done.stderr == ""
