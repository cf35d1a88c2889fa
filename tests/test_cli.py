"""The ``oxystats`` command: in-process through click's CliRunner, and as real subprocesses.

Every command and format runs against the emulator over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import (
    ENV,
    FAST,
    csv_rows,
    invoke,
    run_process,
    truth,
    usage_args,
)
from click.testing import CliRunner

from oxystats.cli import cli
from oxystats.emulator import Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

# -- instances ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "jsonl"])
def test_instances_every_format(oxystats_emulator: RunningEmulator, fmt: str) -> None:
    """`instances` lists the key's instances of the asked products in every format."""
    result = invoke(oxystats_emulator, "instances", "--product", "HB", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    expected = oxystats_emulator.emulator.instance_list(["HB"])
    if fmt == "csv":
        assert list(csv.DictReader(io.StringIO(result.stdout))) == expected
    elif fmt == "json":
        assert json.loads(result.stdout) == expected
    elif fmt == "jsonl":
        assert [json.loads(line) for line in result.stdout.splitlines()] == expected
    else:
        for item in expected:
            assert item["uuid"] in result.stdout
    assert "dc-instance" not in result.stdout


# -- usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "table", "parquet"])
def test_usage_every_format_is_merged(
    oxystats_emulator: RunningEmulator, fmt: str, tmp_path: Path
) -> None:
    """`usage` writes merged rows (one per key, as AsyncClient.usage) in every format."""
    expected = truth(oxystats_emulator, ["TARGET"])
    out = tmp_path / f"out.{fmt}"
    result = invoke(
        oxystats_emulator, *usage_args("--group-by", "TARGET", "--format", fmt, "-o", str(out))
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it
    if fmt == "csv":
        got = csv_rows(out.read_text(), 1)
    elif fmt == "jsonl":
        items = [json.loads(line) for line in out.read_text().splitlines()]
        got = {(i["target"],): (i["requests"], i["traffic_bytes"]) for i in items}
        assert len(items) == len(got)
    elif fmt == "json":
        items = json.loads(out.read_text())
        got = {(i["target"],): (i["requests"], i["traffic_bytes"]) for i in items}
        assert len(items) == len(got)
    elif fmt == "parquet":
        table = pq.read_table(out)
        assert table.column_names == ["target", "requests", "traffic_bytes"]
        got = {(r["target"],): (r["requests"], r["traffic_bytes"]) for r in table.to_pylist()}
        assert table.num_rows == len(got)
    else:
        text = out.read_text()
        assert "total" in text
        assert f"{sum(v[0] for v in expected.values()):,}" in text
        return
    assert got == expected


def test_usage_columns_follow_group_by_order(oxystats_emulator: RunningEmulator) -> None:
    """Columns are the groupings in the order given, then requests and traffic_bytes."""
    result = invoke(
        oxystats_emulator,
        *usage_args("--group-by", "target", "--group-by", "DAY", "--format", "csv"),
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "target,day,requests,traffic_bytes"
    assert csv_rows(result.stdout, 2) == truth(oxystats_emulator, ["TARGET", "DAY"])


def test_usage_no_merge_streams_per_window_rows(oxystats_emulator: RunningEmulator) -> None:
    """--no-merge writes each window's rows as they are: keys repeat, sums still match."""
    result = invoke(oxystats_emulator, *usage_args("--group-by", "TARGET", "--no-merge"))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))[1:]
    sums: dict[tuple[str, ...], tuple[int, int]] = {}
    for target, requests, traffic in rows:
        old = sums.get((target,), (0, 0))
        sums[(target,)] = (old[0] + int(requests), old[1] + int(traffic))
    assert len(rows) == 2 * len(sums)  # two windows, every target in each
    assert sums == truth(oxystats_emulator, ["TARGET"])


def test_usage_format_follows_output_extension(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Without --format, the output file's extension picks it; stdout defaults to CSV."""
    out = tmp_path / "usage.jsonl"
    result = invoke(oxystats_emulator, *usage_args("-o", str(out)))
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text().splitlines()[0])["day"] == "2025-01-01"
    result = invoke(oxystats_emulator, *usage_args())
    assert result.stdout.startswith("day,requests,traffic_bytes\n2025-01-01,")


def test_usage_parquet_needs_an_output_file(oxystats_emulator: RunningEmulator) -> None:
    """Parquet is binary: without --output it is a usage error (2), in one line."""
    result = invoke(oxystats_emulator, *usage_args("--format", "parquet"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "--output" in result.stderr


def test_usage_iso_datetimes_with_offsets(oxystats_emulator: RunningEmulator) -> None:
    """Full ISO 8601 datetimes with an offset are taken to the second."""
    result = invoke(
        oxystats_emulator,
        "usage",
        "--product",
        "HB",
        "--from",
        "2025-01-01T10:00:00+02:00",
        "--to",
        "2025-01-03T09:59:59+02:00",
        *FAST,
    )
    assert result.exit_code == 0, result.stderr
    low = datetime(2025, 1, 1, 8, tzinfo=UTC)
    high = datetime(2025, 1, 3, 7, 59, 59, tzinfo=UTC)
    expected = oxystats_emulator.emulator.ground_truth("HB", low, high, ["DAY"]).rows
    assert csv_rows(result.stdout, 1) == expected


def test_unknown_instance_is_one_warning_line(oxystats_emulator: RunningEmulator) -> None:
    """An instance the API does not know gives a one-line warning; the run still succeeds."""
    result = invoke(oxystats_emulator, *usage_args("--instance", "no-such-instance"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("oxystats: warning: ")
    assert result.stderr.count("\n") == 1


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "2025-13-01", "--to", "2025-01-02"], "--from"),
        (["--from", "2025-01-01T00:00:00", "--to", "2025-01-02"], "offset"),
        (["--from", "2025-02-01", "--to", "2025-01-02"], "before"),
    ],
)
def test_bad_dates_are_one_line_and_exit_2(
    oxystats_emulator: RunningEmulator, args: list[str], needle: str
) -> None:
    """A bad date prints one line on stderr, exits 2, and sends no request."""
    result = invoke(oxystats_emulator, "usage", "--product", "HB", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("oxystats: error: ")
    assert result.stderr.count("\n") == 1
    assert needle in result.stderr
    assert result.stdout == ""
    assert oxystats_emulator.emulator.counters.total == 0


def test_bad_key_is_one_line_and_exit_1(oxystats_emulator: RunningEmulator) -> None:
    """A refused key (401) prints one line without the key and exits 1; no partial output."""
    result = invoke(oxystats_emulator, *usage_args(), env={"OXYLABS_API_KEY": "wrong-key-123"})
    assert result.exit_code == 1
    assert result.stderr.startswith("oxystats: error: the API key was refused (401")
    assert result.stderr.count("\n") == 1
    assert "wrong-key-123" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_missing_key_is_a_usage_error(oxystats_emulator: RunningEmulator) -> None:
    """No OXYLABS_API_KEY and no --api-key-file: one line, exit 2."""
    result = invoke(oxystats_emulator, *usage_args(), env={"OXYLABS_API_KEY": ""})
    assert result.exit_code == 2
    assert "OXYLABS_API_KEY" in result.stderr
    assert result.stderr.count("\n") == 1


def test_api_key_file(oxystats_emulator: RunningEmulator, tmp_path: Path) -> None:
    """--api-key-file reads the key (trailing newline ignored) and wins over nothing else."""
    key_file = tmp_path / "key"
    key_file.write_text(DEFAULT_KEY + "\n")
    result = invoke(
        oxystats_emulator,
        "instances",
        "--api-key-file",
        str(key_file),
        env={"OXYLABS_API_KEY": ""},
    )
    assert result.exit_code == 0, result.stderr
    assert "hb-instance-1" in result.stdout


def test_unreachable_server_is_exit_1() -> None:
    """A server that is not there: one line, exit 1, after the retries."""
    result = CliRunner().invoke(
        cli,
        ["instances", "--base-url", "http://127.0.0.1:9", "--max-retries", "0"],
        env=ENV,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("oxystats: error: cannot reach the API")
    assert result.stderr.count("\n") == 1


def test_debug_shows_the_traceback(oxystats_emulator: RunningEmulator) -> None:
    """--debug lets the exception through (CliRunner keeps it; a process prints it)."""
    result = invoke(oxystats_emulator, *usage_args("--debug"), env={"OXYLABS_API_KEY": "nope"})
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "AuthenticationError"


def test_subprocess_errors_have_no_traceback(oxystats_emulator: RunningEmulator) -> None:
    """As a real process: a bad date exits 2, a bad key 1, each with one stderr line."""
    bad_date = run_process("usage", "--product", "HB", "--from", "someday", "--to", "2025-01-01")
    assert bad_date.returncode == 2
    assert bad_date.stderr.count("\n") == 1
    assert "Traceback" not in bad_date.stderr
    bad_key = run_process(
        *usage_args("--base-url", oxystats_emulator.url), env={"OXYLABS_API_KEY": "bad-key-42"}
    )
    assert bad_key.returncode == 1
    assert bad_key.stderr.count("\n") == 1
    assert "bad-key-42" not in bad_key.stderr
    debug = run_process(
        *usage_args("--base-url", oxystats_emulator.url, "--debug"),
        env={"OXYLABS_API_KEY": "bad-key-42"},
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "bad-key-42" not in debug.stderr


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_refuses_other_arguments(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A checkpoint written for other arguments is refused with one clear line (exit 2)."""
    checkpoint = tmp_path / "run.sqlite"
    first = invoke(oxystats_emulator, *usage_args("--checkpoint", str(checkpoint)))
    assert first.exit_code == 0, first.stderr
    other = invoke(
        oxystats_emulator, *usage_args("--checkpoint", str(checkpoint), "--group-by", "TARGET")
    )
    assert other.exit_code == 2
    assert "was written for --group-by DAY, not --group-by TARGET" in other.stderr
    assert other.stderr.count("\n") == 1
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n" * 100)
    foreign = invoke(oxystats_emulator, *usage_args("--checkpoint", str(not_sqlite)))
    assert foreign.exit_code == 2
    assert "not an oxystats checkpoint" in foreign.stderr


HB_INSTANCE = "hb-instance-1"


@pytest.mark.parametrize(
    ("first", "second", "said"),
    [
        (
            ["--from", "2025-01-01", "--to", "2025-02-20"],
            ["--from", "2025-01-01", "--to", "2025-02-10"],
            "was written for --to 2025-02-20, not 2025-02-10; rerun with that,",
        ),
        (
            ["--from", "2025-01-01T10:00:00+02:00", "--to", "2025-01-31"],
            ["--from", "2025-01-01", "--to", "2025-01-31"],
            "was written for --from 2025-01-01T10:00:00+02:00, not 2025-01-01; rerun with that,",
        ),
        (
            ["--from", "2025-01-01", "--to", "2025-01-31", "--group-by", "TARGET"],
            ["--from", "2025-01-01", "--to", "2025-01-31", "--product", "DC"],
            "was written for --product HB, not DC; --group-by TARGET, not --group-by DAY; "
            "rerun with those,",
        ),
        (
            ["--from", "2025-01-01", "--to", "2025-01-31"],
            ["--from", "2025-01-01", "--to", "2025-01-31", "--instance", HB_INSTANCE],
            f"was written for no --instance, not --instance {HB_INSTANCE}; rerun with that,",
        ),
    ],
    ids=["to", "from-with-offset", "product-and-grouping", "instances"],
)
def test_checkpoint_mismatch_names_what_differs(
    oxystats_emulator: RunningEmulator,
    tmp_path: Path,
    first: list[str],
    second: list[str],
    said: str,
) -> None:
    """Refusing a checkpoint says which option differs, as typed, and nothing else."""
    checkpoint = tmp_path / "hb.sqlite"
    uuids = {i["name"]: i["uuid"] for i in oxystats_emulator.emulator.instance_list()}
    first = [uuids.get(arg, arg) for arg in first]
    second = [uuids.get(arg, arg) for arg in second]
    said = said.replace(HB_INSTANCE, uuids[HB_INSTANCE])
    product = [] if "--product" in second else ["--product", "HB"]
    done = invoke(
        oxystats_emulator, "usage", "--product", "HB", *first, "--checkpoint", str(checkpoint)
    )
    assert done.exit_code == 0, done.stderr
    oxystats_emulator.emulator.reset()
    stored = checkpoint.read_bytes()
    other = invoke(oxystats_emulator, "usage", *product, *second, "--checkpoint", str(checkpoint))
    assert other.exit_code == 2
    assert other.stderr == (
        f"oxystats: error: checkpoint {checkpoint} {said} or use another --checkpoint file\n"
    )
    assert oxystats_emulator.emulator.counters.total == 0
    assert checkpoint.read_bytes() == stored


def test_checkpoint_mismatch_of_unknown_arguments() -> None:
    """Arguments a checkpoint was written with but this version lacks still show, by name."""
    from oxystats.cli._fingerprint import explain_mismatch

    stored = {"product": "HB", "base_url": "http://127.0.0.1:8000", "region": "eu"}
    given = {"product": "HB", "base_url": "https://api.oxylabs.io"}
    assert explain_mismatch(Path("c.sqlite"), stored, given) == (
        "checkpoint c.sqlite was written for --base-url http://127.0.0.1:8000, "
        "not https://api.oxylabs.io; region eu, not no region; "
        "rerun with those, or use another --checkpoint file"
    )


def test_complete_checkpoint_fetches_nothing(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Rerunning a finished checkpointed run sends no usage request and writes the same bytes."""
    checkpoint = tmp_path / "run.sqlite"
    args = usage_args("--group-by", "DAY", "--group-by", "TARGET", "--checkpoint", str(checkpoint))
    first = invoke(oxystats_emulator, *args)
    assert first.exit_code == 0, first.stderr
    oxystats_emulator.emulator.reset()
    again = invoke(oxystats_emulator, *args)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert oxystats_emulator.emulator.counters.total == 0
    assert csv_rows(first.stdout, 2) == truth(oxystats_emulator, ["DAY", "TARGET"])


def test_checkpoint_no_merge_output_equals_plain_no_merge(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Raw rows come in (window, page, row) order with or without a checkpoint."""
    args = usage_args("--group-by", "TARGET", "--group-by", "DAY", "--no-merge", "--in-flight", "3")
    plain = invoke(oxystats_emulator, *args)
    stored = invoke(oxystats_emulator, *args, "--checkpoint", str(tmp_path / "c.sqlite"))
    assert plain.exit_code == stored.exit_code == 0
    assert plain.stdout == stored.stdout


def _stored_pages(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM pages").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize(
    ("sig", "extra"),
    [
        (signal.SIGKILL, ["--format", "csv"]),
        (signal.SIGINT, ["--format", "jsonl", "--no-merge"]),
        (signal.SIGINT, ["--format", "parquet"]),
    ],
)
def test_killed_backfill_resumes_to_identical_output(
    oxystats_emulator: RunningEmulator, tmp_path: Path, sig: signal.Signals, extra: list[str]
) -> None:
    """A backfill killed midway and restarted fetches only what is missing; same bytes out."""
    oxystats_emulator.emulator.faults = Faults(latency=0.02)
    start, end = date(2025, 1, 1), date(2025, 5, 31)
    grouping = ["--group-by", "DAY", "--group-by", "TARGET"]
    clean_out = tmp_path / "clean.out"
    clean = invoke(
        oxystats_emulator,
        *usage_args(*grouping, *extra, "-o", str(clean_out), start=start, end=end),
    )
    assert clean.exit_code == 0, clean.stderr

    checkpoint = tmp_path / "run.sqlite"
    out = tmp_path / "resumed.out"
    args = [
        *usage_args(*grouping, *extra, start=start, end=end),
        *["--rate", "15", "--burst", "1", "--in-flight", "2"],
        *["--checkpoint", str(checkpoint), "-o", str(out), "--base-url", oxystats_emulator.url],
    ]
    command = [sys.executable, "-m", "oxystats", *args]
    env = {**os.environ, **ENV}
    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while _stored_pages(checkpoint) < 8:
            assert victim.poll() is None, "the backfill ended before it could be interrupted"
            assert time.monotonic() < deadline, "no progress in the checkpoint"
            time.sleep(0.02)
        victim.send_signal(sig)
        _, stderr = victim.communicate(timeout=20)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    temporary = [path.name for path in tmp_path.iterdir() if path.name.endswith(".part")]
    if sig == signal.SIGINT:
        assert victim.returncode == 130
        lines = stderr.decode().splitlines()
        assert len(lines) == 1, stderr  # no traceback, not even an "Exception ignored"
        assert lines[0].endswith("run the same command again to resume")
        assert temporary == []
    else:
        assert victim.returncode == -signal.SIGKILL
        # Only a process killed outright leaves its temporary file behind.
        assert len(temporary) == 1
        assert temporary[0].startswith("resumed.out.")
    assert not out.exists()
    saved = _stored_pages(checkpoint)
    assert saved >= 8

    oxystats_emulator.emulator.reset()
    resumed = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    assert resumed.returncode == 0, resumed.stderr
    total = _stored_pages(checkpoint)
    assert total > saved
    usage_requests = [e for e in oxystats_emulator.emulator.log.snapshot() if "usage" in e.path]
    assert len(usage_requests) == total - saved
    assert out.read_bytes() == clean_out.read_bytes()


# -- demo, emulator, python -m ----------------------------------------------------------------


def test_demo_runs_with_no_key_and_no_network() -> None:
    """`oxystats demo` serves its own emulator, backfills and prints the summary."""
    done = run_process("demo", "--days", "15", env={"OXYLABS_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    assert "Top 5 targets by traffic" in done.stdout
    assert "matches the emulator's ground truth: yes" in done.stdout
    assert "physical bound" in done.stdout
    assert done.stderr == ""


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """`oxystats emulator --port 0` as a real process; yields its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "oxystats", "emulator", "--port", "0", "--documented-limits"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("oxystats emulator listening on "), line
        yield line.split()[-1]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def test_emulator_command_serves_other_tools(emulator_process: str) -> None:
    """`oxystats emulator` serves the API; `oxystats instances` reads it over HTTP."""
    done = run_process("instances", "--base-url", emulator_process, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 6


def test_emulator_command_help_and_bad_options() -> None:
    """The emulator's own options (limits, faults) show in its help; bad ones exit 2."""
    result = CliRunner().invoke(cli, ["emulator", "--help"])
    assert result.exit_code == 0
    assert "--documented-limits" in result.stdout
    assert "--error-500" in result.stdout
    assert "oxystats emulator" in result.stdout
    bad = CliRunner().invoke(cli, ["emulator", "--error-500", "2"])
    assert bad.exit_code == 2


def test_python_m_oxystats_and_help() -> None:
    """`python -m oxystats --help` lists every command."""
    done = run_process("--help")
    assert done.returncode == 0
    for command in ("demo", "instances", "usage", "emulator"):
        assert command in done.stdout


def test_core_import_needs_no_cli_extras() -> None:
    """`import oxystats` works without click, rich, pyarrow, pandas and polars."""
    code = (
        "import sys\n"
        "for name in ('click', 'rich', 'pyarrow', 'pandas', 'polars'):\n"
        "    sys.modules[name] = None\n"
        "import oxystats\n"
        "assert oxystats.Client and oxystats.UsageReport.to_pandas\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
