"""``oxystats usage --dry-run``: the plan, checked against what a real run sends."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cli_helpers import invoke

from oxystats import Limit
from oxystats.cli._plan import minimum_seconds
from oxystats.emulator import RunningEmulator

NO_KEY = {"OXYLABS_API_KEY": ""}
WINDOW_LINE = re.compile(r"^ +\d+  (\S+) (\S+) \.\. (\S+) (\S+)  ", re.MULTILINE)

FOURTEEN_MONTHS = """\
Dry run: the plan of this command; nothing is sent.
product     HB
group by    DAY, TARGET
instances   all
range       2024-11-01 00:00:00 .. 2025-12-31 23:59:59 UTC (426 days)
windows     14 windows of at most 31 days:
             1  2024-11-01 00:00:00 .. 2024-12-01 23:59:59  31 days
             2  2024-12-02 00:00:00 .. 2025-01-01 23:59:59  31 days
             3  2025-01-02 00:00:00 .. 2025-02-01 23:59:59  31 days
             4  2025-02-02 00:00:00 .. 2025-03-04 23:59:59  31 days
             5  2025-03-05 00:00:00 .. 2025-04-04 23:59:59  31 days
                ... 6 more windows ...
            12  2025-10-08 00:00:00 .. 2025-11-07 23:59:59  31 days
            13  2025-11-08 00:00:00 .. 2025-12-08 23:59:59  31 days
            14  2025-12-09 00:00:00 .. 2025-12-31 23:59:59  23 days
requests    14 first pages, one per window; how many more pages a window has is
            known only once its page 1 is in
time        at least 1.0 s for them at 10/s, burst 10 (--rate, --burst); a lower
            bound: later pages, latency and retries only add to it
output      parquet to {out} (a new file)
checkpoint  {checkpoint} (new)
"""


def plan(running: RunningEmulator, *args: str) -> str:
    """The dry run's standard output, with no API key in the environment."""
    result = invoke(running, "usage", "--product", "HB", *args, "--dry-run", env=NO_KEY)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert running.emulator.counters.total == 0
    for line in result.stdout.splitlines():
        assert len(line) <= 80, line
    return result.stdout


def test_dry_run_of_a_14_month_backfill(
    oxystats_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan shows the UTC range, the windows (abbreviated), the requests and the least time."""
    monkeypatch.chdir(tmp_path)
    shown = plan(
        oxystats_emulator,
        *[
            "--from",
            "2024-11-01",
            "--to",
            "2025-12-31",
            "--group-by",
            "DAY",
            "--group-by",
            "TARGET",
        ],
        *["-o", "hb.parquet", "--checkpoint", "hb.sqlite"],
    )
    assert shown == FOURTEEN_MONTHS.format(out="hb.parquet", checkpoint="hb.sqlite")
    assert list(tmp_path.iterdir()) == []  # neither the output nor the checkpoint is created


def test_dry_run_lists_up_to_ten_windows(oxystats_emulator: RunningEmulator) -> None:
    """Ten windows are all listed, in UTC, whatever offset was given."""
    shown = plan(oxystats_emulator, "--from", "2025-01-01T02:00:00+02:00", "--to", "2025-10-27")
    assert "range       2025-01-01 00:00:00 .. 2025-10-27 23:59:59 UTC (300 days)" in shown
    assert "10 windows of at most 31 days:" in shown
    assert "more windows" not in shown
    # Midnight at +02:00 is not a UTC midnight: the windows are 31 days to the second.
    assert "\n             9  2025-09-06 00:00:08 .. 2025-10-07 00:00:08  31.00 days\n" in shown
    assert "\n            10  2025-10-07 00:00:09 .. 2025-10-27 23:59:59  21.00 days\n" in shown


def test_dry_run_agrees_with_a_real_run(oxystats_emulator: RunningEmulator) -> None:
    """A real run sends one page 1 per window shown, for exactly the windows shown."""
    args = ["--from", "2025-01-01", "--to", "2025-06-30", "--group-by", "TARGET"]
    shown = plan(oxystats_emulator, *args)
    planned = {
        (f"{match[1]}T{match[2]}", f"{match[3]}T{match[4]}")
        for match in WINDOW_LINE.finditer(shown)
    }
    assert len(planned) == 6
    assert "6 first pages" in shown
    result = invoke(oxystats_emulator, "usage", "--product", "HB", *args, "--rate", "1000")
    assert result.exit_code == 0, result.stderr
    sent = set()
    for entry in oxystats_emulator.emulator.log.snapshot():
        query = parse_qs(entry.query)
        if "usage" in entry.path and query["page"] == ["1"]:
            bounds = (query["date_from"][0], query["date_to"][0])
            sent.add(tuple(_utc(moment) for moment in bounds))
    assert sent == planned


def _utc(moment: str) -> str:
    """A wire timestamp as the plan spells it (UTC, to the second)."""
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S")


def test_dry_run_time_is_a_lower_bound(oxystats_emulator: RunningEmulator) -> None:
    """At --rate 5 --burst 1, five one-page windows take at least the 0.8 s the plan says."""
    args = ["--from", "2025-01-01", "--to", "2025-05-31", "--rate", "5", "--burst", "1"]
    shown = plan(oxystats_emulator, *args)
    assert "at least 0.8 s for them at 5/s, burst 1 (--rate, --burst)" in shown
    started = time.monotonic()
    result = invoke(oxystats_emulator, "usage", "--product", "HB", *args)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert oxystats_emulator.emulator.counters.total == 5
    assert elapsed >= 0.8


def test_dry_run_names_the_account_limit_when_it_binds(
    oxystats_emulator: RunningEmulator,
) -> None:
    """With a key limit above the account's, the account-wide 100/s is what bounds the time."""
    shown = plan(
        oxystats_emulator,
        *["--from", "2016-01-01", "--to", "2025-12-31", "--rate", "1000", "--burst", "1000"],
    )
    assert "118 windows" in shown
    assert "... 110 more windows ..." in shown
    assert "at least 1.0 s for them at 100/s, burst 100 (the account-wide" in shown


def test_dry_run_still_checks_the_arguments(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A dry run refuses what a run would refuse (an existing --output), before anything."""
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    result = invoke(
        oxystats_emulator,
        *["usage", "--product", "HB", "--from", "2025-01-01", "--to", "2025-01-31"],
        *["-o", str(out), "--dry-run"],
        env=NO_KEY,
    )
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert out.read_text() == "precious\n"


@pytest.mark.parametrize(
    ("requests", "limits", "seconds"),
    [
        (0, [Limit()], 0.0),
        (1, [Limit()], 0.0),
        (10, [Limit()], 0.0),
        (11, [Limit()], 1.0),
        (21, [Limit()], 2.0),
        (14, [Limit(rate=2.0, burst=1)], 6.5),
        (14, [Limit(), Limit(rate=1.0, burst=2)], 12.0),
    ],
)
def test_minimum_seconds(requests: int, limits: list[Limit], seconds: float) -> None:
    """No more than burst starts in any window of burst / rate seconds, under every limit."""
    assert minimum_seconds(requests, limits) == pytest.approx(seconds)
