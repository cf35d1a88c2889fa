"""What the command-line tests share: running ``oxystats`` in-process or as a process.

Every run talks to the emulator over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import UTC, date, datetime
from typing import Any

from click.testing import CliRunner, Result

from oxystats.cli import cli
from oxystats.emulator import RunningEmulator
from oxystats.testing import DEFAULT_KEY

START = date(2025, 1, 1)
END = date(2025, 2, 20)  # two windows: a TARGET-only grouping repeats keys across them
ENV = {"OXYLABS_API_KEY": DEFAULT_KEY}
FAST = ["--rate", "1000", "--burst", "100"]

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def invoke(
    running: RunningEmulator, *args: str, env: dict[str, str] | None = None, obj: Any = None
) -> Result:
    """Run ``oxystats ARGS --base-url <emulator>`` in-process (``obj``: click's, e.g. a Clock)."""
    return CliRunner().invoke(
        cli, [*args, "--base-url", running.url], env=ENV if env is None else env, obj=obj
    )


def usage_args(*extra: str, start: date = START, end: date = END) -> list[str]:
    """``usage`` arguments over the test range."""
    return ["usage", "--product", "HB", "--from", str(start), "--to", str(end), *FAST, *extra]


def run_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m oxystats ARGS`` as a real process, stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "oxystats", *args],
        env={**os.environ, **(ENV if env is None else env)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_on_terminal(
    *args: str, columns: int = 80
) -> tuple[subprocess.CompletedProcess[bytes], list[str]]:
    """Run ``python -m oxystats ARGS`` with stderr on a pseudo-terminal ``columns`` wide.

    Returns the finished process (stdout captured) and what the terminal shows
    of its stderr, line by line (see `screen_lines`).
    """
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "oxystats", *args],
            env={**env, **ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return done, screen_lines(drawn.decode())


def truth(
    running: RunningEmulator, grouping: list[str], start: date = START, end: date = END
) -> dict[tuple[str, ...], tuple[int, int]]:
    """The emulator's exact answer for the range."""
    low = datetime(start.year, start.month, start.day, tzinfo=UTC)
    high = datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=UTC)
    return running.emulator.ground_truth("HB", low, high, grouping).rows


def csv_rows(text: str, width: int) -> dict[tuple[str, ...], tuple[int, int]]:
    """Parse CSV output into the ground-truth shape (no key may repeat)."""
    rows = list(csv.reader(io.StringIO(text)))[1:]
    parsed = {tuple(row[:width]): (int(row[width]), int(row[width + 1])) for row in rows}
    assert len(parsed) == len(rows)
    return parsed


def usage_requests(running: RunningEmulator) -> int:
    """How many usage requests the emulator has answered."""
    return sum(1 for entry in running.emulator.log.snapshot() if "usage" in entry.path)


def screen_lines(drawn: str) -> list[str]:
    """What a terminal shows of ``drawn``, line by line: escape sequences out, ``\\r`` a break."""
    text = _ESCAPE.sub("", drawn).replace("\r\n", "\n").replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()]


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True
