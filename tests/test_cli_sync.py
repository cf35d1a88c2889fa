"""``oxystats sync``: in-process, and as real processes killed mid-sync or run side by side.

Against the emulator over HTTP, into SQLite and into the session's PostgreSQL;
the command is told the emulator's "now" with ``--now``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from oxystats.cli import cli
from oxystats.emulator import Emulator, Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
YEAR_AGO = date(2024, 3, 11)
ENV = {"OXYLABS_API_KEY": DEFAULT_KEY}
FAST = ["--rate", "1000", "--burst", "100"]

Rows = dict[tuple[str, ...], tuple[int, int]]


def sync_args(database: str, running: RunningEmulator, *extra: str) -> list[str]:
    """``sync`` of HB into ``database`` from a year ago, as of NOW, against the emulator."""
    return [
        *("sync", "--db", database, "--product", "HB", "--since", YEAR_AGO.isoformat()),
        *("--now", NOW.isoformat(), "--base-url", running.url, *extra),
    ]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``oxystats ARGS`` in-process."""
    return CliRunner().invoke(cli, list(args), env=ENV if env is None else env)


def command(*args: str) -> list[str]:
    """``python -m oxystats ARGS``."""
    return [sys.executable, "-m", "oxystats", *args]


def engine_for(database: str) -> sa.Engine:
    """An engine on a database given as ``--db`` takes it."""
    return sa.create_engine(database if "://" in database else f"sqlite:///{database}")


def fetch(database: str, sql: str) -> list[tuple[object, ...]]:
    """The rows of one query; none while the tables do not exist yet."""
    engine = engine_for(database)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return []
    finally:
        engine.dispose()


def table_rows(database: str) -> Rows:
    """The usage table: (product, day, target) -> (requests, traffic_bytes)."""
    rows = fetch(database, "SELECT product, day, target, requests, traffic_bytes FROM usage")
    return {(str(p), str(d), str(t)): (int(str(r)), int(str(b))) for p, d, t, r, b in rows}


def truth(emulator: Emulator, first: date, now: datetime) -> Rows:
    """The exact HB usage by day and target from ``first`` up to ``now``."""
    start = datetime.combine(first, datetime.min.time(), UTC)
    exact = emulator.ground_truth("HB", start, now, ["DAY", "TARGET"])
    return {("HB", *key): value for key, value in exact.rows.items()}


def statuses(database: str) -> list[tuple[str, str | None]]:
    """(status, written_through) of every run, oldest first."""
    rows = fetch(database, "SELECT status, written_through FROM sync_runs ORDER BY id")
    return [(str(status), None if day is None else str(day)) for status, day in rows]


def wait_for(
    condition: Callable[[], bool], victim: subprocess.Popen[bytes], what: str, timeout: float = 30
) -> None:
    """Poll until ``condition`` holds, while ``victim`` still runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert victim.poll() is None, f"the sync ended before {what}"
        assert time.monotonic() < deadline, f"no sign of {what}"
        time.sleep(0.02)


# -- in-process -----------------------------------------------------------------------------


def test_sync_then_resync_say_what_they_replaced(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Each run prints one line per product and one for the table; -q prints nothing."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = f"{tmp_path}/usage.sqlite"
    first = invoke(*sync_args(database, oxystats_emulator, *FAST))
    assert first.exit_code == 0, first.stderr
    assert first.stdout == ""
    assert f"HB: replaced {YEAR_AGO}..2025-03-10" in first.stderr
    assert "complete through 2025-03-09" in first.stderr
    assert f"synced table usage in sqlite:///{database} as of 2025-03-10T12:00:00Z" in first.stderr

    later = emulator.advance(timedelta(days=10))
    second = invoke(
        *sync_args(database, oxystats_emulator, *FAST)[:-4],
        *("--now", later.isoformat(), "--base-url", oxystats_emulator.url, "-q"),
    )
    assert second.exit_code == 0, second.stderr
    assert second.stderr == ""
    assert table_rows(database) == truth(emulator, YEAR_AGO, later)


def test_the_first_run_needs_since(oxystats_emulator: RunningEmulator, tmp_path: Path) -> None:
    """No --since on a new table: one line, exit 2, nothing fetched."""
    result = invoke(
        "sync",
        *("--db", f"{tmp_path}/usage.sqlite", "--product", "HB"),
        *("--base-url", oxystats_emulator.url),
    )
    assert result.exit_code == 2
    assert "oxystats: error: table 'usage' has no HB usage yet: pass since (--since)" in (
        result.stderr
    )
    assert oxystats_emulator.emulator.counters.total == 0


def test_the_database_can_come_from_the_environment(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """$OXYSTATS_DATABASE_URL stands in for --db (a password stays off the command line)."""
    oxystats_emulator.emulator.now = NOW
    database = f"{tmp_path}/env.sqlite"
    args = sync_args(database, oxystats_emulator, *FAST)
    result = invoke(*args[:1], *args[3:], env={**ENV, "OXYSTATS_DATABASE_URL": database})
    assert result.exit_code == 0, result.stderr
    assert table_rows(database) == truth(oxystats_emulator.emulator, YEAR_AGO, NOW)


def test_help_lists_sync() -> None:
    """`oxystats --help` lists the command, and `oxystats sync --help` documents it."""
    assert "sync" in invoke("--help").stdout
    text = invoke("sync", "--help").stdout
    for option in ("--db", "--since", "--lookback", "--table", "--now", "--group-by"):
        assert option in text


# -- real processes --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_mid_sync_the_rerun_equals_an_uninterrupted_run(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str], sig: signal.Signals
) -> None:
    """Killed (or ^C) after some windows are written: the same command again completes the table."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    uninterrupted = new_database()
    clean = invoke(*sync_args(uninterrupted, oxystats_emulator, *FAST))
    assert clean.exit_code == 0, clean.stderr

    # Slow enough (about 4 s) that the sync is caught, and stopped, between two windows.
    emulator.faults = Faults(latency=0.1)
    database = new_database()
    args = sync_args(database, oxystats_emulator, *FAST, "--in-flight", "2")
    env = {**os.environ, **ENV}
    victim = subprocess.Popen(command(*args), env=env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(day for _, day in statuses(database)), victim, "a window written")
        victim.send_signal(signal.SIGSTOP)
        ((status, written),) = statuses(database)
        assert status == "running"
        assert written is not None
        assert written < NOW.date().isoformat()  # mid-sync: later windows are not written yet
        victim.send_signal(sig)
        victim.send_signal(signal.SIGCONT)
        _, stderr = victim.communicate(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.communicate()
    if sig == signal.SIGINT:
        assert victim.returncode == 130
        assert stderr == b"oxystats: interrupted\n"
        assert [status for status, _ in statuses(database)] == ["interrupted"]
    else:
        assert victim.returncode == -signal.SIGKILL

    emulator.faults = Faults()
    rerun = subprocess.run(command(*args), env=env, capture_output=True, timeout=60, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert [status for status, _ in statuses(database)] == ["interrupted", "complete"]
    assert table_rows(database) == table_rows(uninterrupted) == truth(emulator, YEAR_AGO, NOW)


def test_a_second_command_exits_75_while_one_runs(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Side by side: the second process says so and exits 75; the first completes, intact."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    emulator.faults = Faults(latency=0.02)  # long enough to be caught running
    database = new_database()
    args = sync_args(database, oxystats_emulator, *FAST, "--in-flight", "2")
    env = {**os.environ, **ENV}
    first = subprocess.Popen(command(*args), env=env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: bool(statuses(database)), first, "the first sync's run")
        # Held still mid-sync, lock and all, for as long as the second one takes.
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(
            command(*args), env=env, capture_output=True, text=True, timeout=60, check=False
        )
        first.send_signal(signal.SIGCONT)
        _, first_stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert second.returncode == 75
    assert second.stderr.startswith("oxystats: error: another sync of table 'usage' in ")
    assert "this one did nothing" in second.stderr
    assert first.returncode == 0, first_stderr
    assert [status for status, _ in statuses(database)] == ["complete"]
    assert table_rows(database) == truth(emulator, YEAR_AGO, NOW)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_command_runs_on_both_backends(
    oxystats_emulator: RunningEmulator, tmp_path: Path, backend: str
) -> None:
    """The hidden --backend runs the same sync on trio."""
    oxystats_emulator.emulator.now = NOW
    database = f"{tmp_path}/usage.sqlite"
    result = invoke(*sync_args(database, oxystats_emulator, *FAST, "--backend", backend))
    assert result.exit_code == 0, result.stderr
    assert table_rows(database) == truth(oxystats_emulator.emulator, YEAR_AGO, NOW)
