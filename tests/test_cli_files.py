"""What ``-o/--output`` may write onto, the checkpoint it must not be, and Ctrl-C meanwhile.

Every run talks to the emulator over real HTTP on 127.0.0.1; interrupts are
real SIGINTs sent to real processes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import ENV, csv_rows, invoke, truth, usage_args, usage_requests

from oxystats.emulator import Faults, RunningEmulator


@pytest.fixture
def umask() -> int:
    """The process's umask (read by setting it, and set back at once)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def refused(result_stderr: str, needle: str) -> None:
    """One ``oxystats: error:`` line that says ``needle``."""
    assert result_stderr.startswith("oxystats: error: "), result_stderr
    assert result_stderr.count("\n") == 1, result_stderr
    assert needle in result_stderr, result_stderr


# -- where output may go ----------------------------------------------------------------------


def test_output_is_a_new_file_written_whole(
    oxystats_emulator: RunningEmulator, tmp_path: Path, umask: int
) -> None:
    """-o NEW writes the file, with the umask's permissions, and nothing else beside it."""
    out = tmp_path / "usage.csv"
    result = invoke(oxystats_emulator, *usage_args("-o", str(out)))
    assert result.exit_code == 0, result.stderr
    assert list(tmp_path.iterdir()) == [out]
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert csv_rows(out.read_text(), 1) == truth(oxystats_emulator, ["DAY"])


def test_existing_file_is_kept_unless_force(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """An existing file is refused before any request; --force replaces it, keeping its mode."""
    out = tmp_path / "usage.csv"
    out.write_text("precious\n")
    out.chmod(0o640)
    result = invoke(oxystats_emulator, *usage_args("-o", str(out)))
    assert result.exit_code == 2
    refused(result.stderr, f"--output {out} already exists; pass --force to replace it")
    assert out.read_text() == "precious\n"
    assert oxystats_emulator.emulator.counters.total == 0

    forced = invoke(oxystats_emulator, *usage_args("-o", str(out), "--force"))
    assert forced.exit_code == 0, forced.stderr
    assert csv_rows(out.read_text(), 1) == truth(oxystats_emulator, ["DAY"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert list(tmp_path.iterdir()) == [out]


def test_instances_output_follows_the_same_rules(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """`instances -o` refuses an existing file too, and replaces it with --force."""
    out = tmp_path / "instances.json"
    out.write_text("[]\n")
    result = invoke(oxystats_emulator, "instances", "-o", str(out))
    assert result.exit_code == 2
    refused(result.stderr, "pass --force")
    assert oxystats_emulator.emulator.counters.total == 0
    forced = invoke(oxystats_emulator, "instances", "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(out.read_text()) == oxystats_emulator.emulator.instance_list()


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _symlink_to_a_file(path: Path) -> Path:
    target = path.with_name("target.csv")
    target.write_text("precious\n")
    path.symlink_to(target)
    return path


def _dangling_symlink(path: Path) -> Path:
    path.symlink_to(path.with_name("nowhere.csv"))
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _device(path: Path) -> Path:
    return Path(os.devnull)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_directory, "is a directory"),
        (_symlink_to_a_file, "is a symbolic link"),
        (_dangling_symlink, "is a symbolic link"),
        (_fifo, "is a FIFO, not a regular file"),
        (_device, "is a device, not a regular file"),
    ],
    ids=["directory", "symlink", "dangling-symlink", "fifo", "device"],
)
def test_output_refuses_what_is_not_a_regular_file(
    oxystats_emulator: RunningEmulator, tmp_path: Path, make: object, needle: str
) -> None:
    """A directory, a symlink, a FIFO or a device is refused (even with --force), untouched."""
    assert callable(make)
    target: Path = make(tmp_path / "out.csv")
    before = sorted(os.listdir(tmp_path))
    kind = os.lstat(target).st_mode
    result = invoke(oxystats_emulator, *usage_args("-o", str(target), "--force"))
    assert result.exit_code == 2
    refused(result.stderr, needle)
    assert oxystats_emulator.emulator.counters.total == 0
    assert sorted(os.listdir(tmp_path)) == before
    assert os.lstat(target).st_mode == kind
    if target.is_symlink() and target.exists():
        assert target.read_text() == "precious\n"


def test_output_in_a_missing_directory_is_refused(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A path whose directory does not exist is refused before any request."""
    result = invoke(oxystats_emulator, *usage_args("-o", str(tmp_path / "no" / "out.csv")))
    assert result.exit_code == 2
    refused(result.stderr, "does not exist")
    assert oxystats_emulator.emulator.counters.total == 0


def test_dash_is_standard_output(
    oxystats_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-o - writes to standard output (CSV by default); a file named '-' is ./-."""
    monkeypatch.chdir(tmp_path)
    to_stdout = invoke(oxystats_emulator, *usage_args("-o", "-"))
    assert to_stdout.exit_code == 0, to_stdout.stderr
    assert csv_rows(to_stdout.stdout, 1) == truth(oxystats_emulator, ["DAY"])
    assert list(tmp_path.iterdir()) == []
    to_file = invoke(oxystats_emulator, *usage_args("-o", "./-"))
    assert to_file.exit_code == 0, to_file.stderr
    assert (tmp_path / "-").read_text() == to_stdout.stdout
    parquet = invoke(oxystats_emulator, *usage_args("-o", "-", "--format", "parquet"))
    assert parquet.exit_code == 2
    refused(parquet.stderr, "binary: pass --output FILE")


def test_failed_run_leaves_nothing_behind(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A run the API refuses leaves no file, temporary or not, and the old file as it was."""
    out = tmp_path / "usage.parquet"
    out.write_bytes(b"old")
    result = invoke(
        oxystats_emulator,
        *usage_args("-o", str(out), "--force"),
        env={"OXYLABS_API_KEY": "not-the-key"},
    )
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == [out]
    assert out.read_bytes() == b"old"


# -- the checkpoint is not an output ---------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "output", "exists"),
    [
        ("run.sqlite", "run.sqlite", False),
        ("run.sqlite", "./run.sqlite", True),
        ("run.sqlite", "{tmp}/run.sqlite", True),
        ("{tmp}/run.sqlite", "sub/../run.sqlite", False),
        ("run.sqlite", "link.sqlite", True),
        ("run.sqlite", "link.sqlite", False),
        ("link.sqlite", "run.sqlite", False),
        ("run.sqlite", "hard.sqlite", True),
        ("run.sqlite", "run.sqlite-wal", True),
        ("run.sqlite", "run.sqlite-journal", False),
    ],
)
def test_checkpoint_and_output_must_differ(
    oxystats_emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: str,
    output: str,
    exists: bool,
) -> None:
    """--checkpoint X -o X, however spelt, is refused before anything is written or sent."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    real = tmp_path / "run.sqlite"
    if exists:
        done = invoke(oxystats_emulator, *usage_args("--checkpoint", str(real)))
        assert done.exit_code == 0, done.stderr
        oxystats_emulator.emulator.reset()
    Path("link.sqlite").symlink_to("run.sqlite")
    if exists:
        os.link(real, "hard.sqlite")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}

    result = invoke(
        oxystats_emulator,
        *usage_args(
            "--checkpoint",
            checkpoint.format(tmp=tmp_path),
            "-o",
            output.format(tmp=tmp_path),
            "--force",
        ),
    )
    assert result.exit_code == 2
    refused(result.stderr, "would destroy the checkpoint")
    assert oxystats_emulator.emulator.counters.total == 0
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert after == before


def test_checkpoint_beside_its_output_is_fine(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A checkpoint and an output that differ only by extension are two files: it runs."""
    out = tmp_path / "run.csv"
    result = invoke(
        oxystats_emulator, *usage_args("--checkpoint", str(tmp_path / "run.sqlite"), "-o", str(out))
    )
    assert result.exit_code == 0, result.stderr
    assert csv_rows(out.read_text(), 1) == truth(oxystats_emulator, ["DAY"])


# -- Ctrl-C ---------------------------------------------------------------------------------


def _interrupt(
    command: list[str], ready: object, *, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    """Start ``command``, wait until ``ready()`` is true, send SIGINT and collect the end."""
    assert callable(ready)
    victim = subprocess.Popen(
        command, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert victim.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run never got ready to be interrupted"
            time.sleep(0.02)
        victim.send_signal(signal.SIGINT)
        stdout, stderr = victim.communicate(timeout=timeout)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    return subprocess.CompletedProcess(command, victim.returncode, stdout, stderr)


@pytest.mark.parametrize(
    ("fmt", "backend"),
    [
        ("csv", "asyncio"),
        ("jsonl", "asyncio"),
        ("json", "asyncio"),
        ("table", "asyncio"),
        ("parquet", "asyncio"),
        ("parquet", "trio"),
    ],
)
def test_ctrl_c_while_writing_leaves_the_old_file(
    oxystats_emulator: RunningEmulator, tmp_path: Path, fmt: str, backend: str
) -> None:
    """Ctrl-C while the output is open: exit 130, one line, no traceback, the old file intact."""
    oxystats_emulator.emulator.faults = Faults(latency=0.02)
    out = tmp_path / f"usage.{fmt}"
    out.write_bytes(b"the previous run's output")
    # --no-merge streams rows into the output while pages still come in.
    args = usage_args(
        *["--group-by", "DAY", "--group-by", "TARGET", "--no-merge", "--format", fmt],
        *["--rate", "15", "--burst", "1", "--in-flight", "2", "-o", str(out), "--force"],
        *["--base-url", oxystats_emulator.url, "--backend", backend],
        end=date(2025, 5, 31),
    )
    done = _interrupt(
        [sys.executable, "-m", "oxystats", *args],
        lambda: usage_requests(oxystats_emulator) >= 6,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.decode() == "oxystats: interrupted\n"
    assert done.stdout == b""
    assert list(tmp_path.iterdir()) == [out]
    assert out.read_bytes() == b"the previous run's output"


def test_ctrl_c_while_writing_from_the_checkpoint(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Ctrl-C while a finished checkpoint is written out: exit 130 and the resume line."""
    checkpoint = tmp_path / "run.sqlite"
    grouping = ["--group-by", "DAY", "--group-by", "TARGET", "--group-by", "INSTANCE"]
    args = [*usage_args(*grouping, "--checkpoint", str(checkpoint), "--format", "csv")]
    first = invoke(oxystats_emulator, *args)
    assert first.exit_code == 0, first.stderr
    # More than a pipe (64 KiB) and Python's buffer hold: the rerun must wait for us to read.
    assert len(first.stdout) > 2 * 65_536
    oxystats_emulator.emulator.reset()
    command = [sys.executable, "-m", "oxystats", *args, "--base-url", oxystats_emulator.url]
    victim = subprocess.Popen(
        command, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert victim.stdout is not None
        # Output has begun, and cannot end before we read more: the rerun is writing.
        assert victim.stdout.read(1) == b"d"
        victim.send_signal(signal.SIGINT)
        _, stderr = victim.communicate(timeout=20)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == 130
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].endswith("run the same command again to resume")
    assert oxystats_emulator.emulator.counters.total == 0  # nothing fetched: all was stored


def test_parquet_after_ctrl_c_resumes_to_a_whole_file(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """After Ctrl-C, the same Parquet command with its checkpoint finishes the file, whole."""
    oxystats_emulator.emulator.faults = Faults(latency=0.02)
    checkpoint = tmp_path / "run.sqlite"
    out = tmp_path / "usage.parquet"
    end = date(2025, 5, 31)  # about 30 pages at 15 per second: seconds to interrupt it in
    args = [
        *usage_args("--group-by", "DAY", "--group-by", "TARGET", end=end),
        *["--rate", "15", "--burst", "1", "--in-flight", "2", "-o", str(out)],
        *["--checkpoint", str(checkpoint), "--base-url", oxystats_emulator.url],
    ]
    command = [sys.executable, "-m", "oxystats", *args]
    done = _interrupt(command, lambda: usage_requests(oxystats_emulator) >= 6)
    assert done.returncode == 130, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"run the same command again to resume" in done.stderr
    assert [path.name for path in tmp_path.iterdir() if "usage" in path.name] == []
    resumed = subprocess.run(command, env={**os.environ, **ENV}, capture_output=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    table = pq.read_table(out)
    got = {
        (r["day"].isoformat(), r["target"]): (r["requests"], r["traffic_bytes"])
        for r in table.to_pylist()
    }
    assert got == truth(oxystats_emulator, ["DAY", "TARGET"], end=end)
