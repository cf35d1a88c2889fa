"""What the command says on stderr: -v, -vv, --log-format json, and its defaults."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from cli_helpers import ENV, invoke, run_on_terminal, run_process, usage_args

from oxystats.emulator import Emulator, EmulatorConfig, Faults, RunningEmulator
from oxystats.testing import emulator_server

SECRET = "sk-logging-0123456789"
DEAD = "http://127.0.0.1:9"


def test_vv_prints_one_debug_line_per_request(oxystats_emulator: RunningEmulator) -> None:
    """-vv: one DEBUG line per request, with status and timings; the plan and the end too."""
    result = invoke(oxystats_emulator, *usage_args("--format", "csv", "-vv"))
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    requests = [line for line in lines if " DEBUG oxystats: GET /stats/v1/usage?" in line]
    assert len(requests) == oxystats_emulator.emulator.counters.total == 2
    assert all(" -> 200 in " in line and "(attempt 1, waited " in line for line in requests)
    assert "DEBUG oxystats.cli: HB usage 2025-01-01 00:00:00 .. 2025-02-20 23:59:59 UTC" in lines[0]
    assert "2 windows, so at least 2 requests" in lines[0]
    assert "DEBUG oxystats.cli: 51 rows; 2 requests, 0 retries, 0 x 429" in lines[-1]
    assert len(lines) == 4


def test_v_shows_retries_not_requests(oxystats_emulator: RunningEmulator) -> None:
    """-v: a line per retry and per pause; no line per request."""
    oxystats_emulator.emulator.faults = Faults(seed=1, spurious_429=0.5, retry_after=0)
    result = invoke(oxystats_emulator, *usage_args("--format", "csv", "-v", "--max-retries", "9"))
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    retries = [line for line in lines if " INFO oxystats: retry " in line]
    pauses = [line for line in lines if " INFO oxystats: pausing new requests " in line]
    limited = oxystats_emulator.emulator.counters.by_status[429]
    assert len(retries) == len(pauses) == limited > 0
    assert all("after 429 GET /stats/v1/usage?product=HB&" in line for line in retries)
    assert len(lines) == len(retries) + len(pauses)


def test_json_lines_carry_the_structured_fields(oxystats_emulator: RunningEmulator) -> None:
    """--log-format json: every stderr line is a JSON object; request lines have their fields."""
    oxystats_emulator.use(Emulator(EmulatorConfig(keys={SECRET: "account-1"})))
    result = invoke(
        oxystats_emulator,
        *usage_args("--format", "csv", "-vv", "--log-format", "json"),
        env={"OXYLABS_API_KEY": SECRET},
    )
    assert result.exit_code == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    requests = [e for e in entries if e["logger"] == "oxystats"]
    assert len(requests) == 2
    first = requests[0]
    assert first["level"] == "debug"
    assert first["time"].endswith("Z")
    assert first["method"] == "GET"
    assert first["path"] == "/stats/v1/usage"
    assert first["query"].startswith("product=HB&date_from=2025-01-01T00:00:00Z&")
    assert first["status"] == 200
    assert first["error"] is None
    assert first["attempt"] == 1
    assert first["elapsed_ms"] >= 0
    assert first["limiter_wait_ms"] >= 0
    assert first["message"].startswith("GET /stats/v1/usage?product=HB&")
    plan = entries[0]
    assert plan["logger"] == "oxystats.cli"
    assert plan["windows"] == 2
    assert entries[-1]["rows"] == 51
    assert SECRET not in result.stderr + result.stdout


def test_json_error_line(oxystats_emulator: RunningEmulator) -> None:
    """With --log-format json, the final error is a JSON object too (and never the key)."""
    result = invoke(
        oxystats_emulator,
        *usage_args("--log-format", "json"),
        env={"OXYLABS_API_KEY": "wrong-key-123"},
    )
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["message"].startswith("the API key was refused (401")
    assert "wrong-key-123" not in result.stderr


def test_unreachable_api_is_not_silent_without_a_terminal() -> None:
    """stderr is a pipe, no -v: each retry is a line as it happens, then the error."""
    done = run_process("instances", "--base-url", DEAD, "--max-retries", "2")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 3, lines
    assert " INFO oxystats: retry 1/2 in " in lines[0]
    assert " INFO oxystats: retry 2/2 in " in lines[1]
    assert "after ConnectError GET /stats/v1/filters/instances?page=1" in lines[0]
    assert lines[2].startswith("oxystats: error: cannot reach the API")


def test_quiet_says_only_the_error() -> None:
    """-q: no retry lines, only the error."""
    done = run_process("instances", "--base-url", DEAD, "--max-retries", "1", "-q")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("oxystats: error: ")
    ]
    assert done.stderr.count("\n") == 1


def test_oxystats_log_is_honoured_once(oxystats_emulator: RunningEmulator) -> None:
    """OXYSTATS_LOG=debug without -v: the request lines, each once (no second handler)."""
    done = run_process(
        *usage_args("--base-url", oxystats_emulator.url, "--format", "csv"),
        env={**ENV, "OXYSTATS_LOG": "debug"},
    )
    assert done.returncode == 0, done.stderr
    requests = [line for line in done.stderr.splitlines() if "oxystats: GET " in line]
    assert len(requests) == oxystats_emulator.emulator.counters.total == 2


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_long_run_says_its_plan_when_it_starts(log_format: str) -> None:
    """Without a terminal, a run of 130 windows says so at once (its end too, interrupted here)."""
    with emulator_server() as running:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oxystats",
                *["usage", "--product", "HB", "--from", "2015-01-01", "--to", "2025-12-31"],
                *["--format", "csv", "--base-url", running.url, "--log-format", log_format],
            ],
            env={**os.environ, **ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(30, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None
            first = process.stderr.readline()
            process.send_signal(signal.SIGINT)
            rest = process.communicate(timeout=20)[1]
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130
    plan = "130 windows, so at least 130 requests and 12.0 s at 10/s, burst 10"
    if log_format == "text":
        span = "HB usage 2015-01-01 00:00:00 .. 2025-12-31 23:59:59 UTC: "
        assert f" INFO oxystats.cli: {span}" in first
        assert plan in first
        assert rest.splitlines()[-1] == "oxystats: interrupted"
    else:
        lines = [json.loads(line) for line in [first, *rest.splitlines()]]
        assert lines[0]["level"] == "info"
        assert plan in lines[0]["message"]
        assert lines[-1]["message"] == "interrupted"
        assert lines[-1]["level"] == "warning"


def test_v_on_a_terminal_prints_lines_above_the_bar(oxystats_emulator: RunningEmulator) -> None:
    """On a real 80-column terminal, -v's retry lines come whole, above the bar, never in it."""
    oxystats_emulator.emulator.faults = Faults(seed=1, spurious_429=0.5, retry_after=0)
    args = usage_args("--base-url", oxystats_emulator.url, "--format", "csv", "-v")
    done, lines = run_on_terminal(*args, "--max-retries", "9")
    assert done.returncode == 0
    retries = [line for line in lines if " INFO oxystats: retry " in line]
    assert len(retries) == oxystats_emulator.emulator.counters.by_status[429] > 0
    # A retry line is long (it names the request); the terminal wraps it, but it never
    # shares a line with the bar.
    assert not any(" pages " in line and "oxystats" in line for line in lines[:-1])
    assert lines[-1].startswith("oxystats: ")  # the summary, after the bar


def test_the_command_owns_the_logger_only_while_it_runs(
    oxystats_emulator: RunningEmulator,
) -> None:
    """After a run in-process, the oxystats logger is as it was: level, handlers, propagation."""
    logger = logging.getLogger("oxystats")
    before = (logger.level, list(logger.handlers), logger.propagate)
    result = invoke(oxystats_emulator, *usage_args("--format", "csv", "-vv"))
    assert result.exit_code == 0, result.stderr
    assert (logger.level, list(logger.handlers), logger.propagate) == before
