"""The emulator's command line: every default in --help, and a banner saying what is served."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date

import httpx

from oxystats.emulator import Dataset, EmulatorConfig
from oxystats.emulator._command import _parser, describe


def test_every_option_says_its_default() -> None:
    """Each option's help text ends in its default, as argparse renders it."""
    parser = _parser()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help is not None, action.option_strings
        rendered = action.help % {**vars(action), "prog": parser.prog}
        assert "(default: " in rendered, action.option_strings


def test_help_shows_the_defaults() -> None:
    """``--help`` prints the defaults of the data, the jitter and the faults."""
    environment = {**os.environ, "COLUMNS": "1000"}  # no help text wrapped over lines
    result = subprocess.run(
        [sys.executable, "-m", "oxystats.emulator", "--help"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=30,
    )
    # Each option's entry: its line, and the next one when the option is long.
    options = result.stdout.split("\noptions:\n", 1)[1]
    entries = [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)|\n\n", options)]
    lines = {entry.split()[0]: entry for entry in entries if entry.startswith("-")}
    expected = {
        "--port": "(default: 8000)",
        "--key": "(default: test-key:account-1)",
        "--products": "(default: HB,DC)",
        "--start": "(default: 2024-01-01)",
        "--days": "(default: 800)",
        "--now": "(default: no clock, all data visible)",
        "--documented-limits": "(default: no limits)",
        "--arrival-jitter": "(default: 0.0)",
        "--jitter-spike-factor": "(default: 4.0)",
        "--error-500": "(default: 0.0)",
        "--hang": "(default: 0.0)",
        "--retry-after": "(default: 1)",
        "--trickle-interval": "(default: 0.05)",
        "--inflated-total-pages": "(default: 1000000000)",
        "--oversized-bytes": "(default: 50000000)",
    }
    for option, default in expected.items():
        assert lines[option].endswith(default), lines[option]


def test_banner_describes_the_data() -> None:
    """Under the URL: products and first and last UTC day, then whose keys (never the keys)."""
    config = EmulatorConfig(
        dataset=Dataset(products=("HB",), start=date(2025, 1, 1), days=31),
        keys={"secret-a": "acme", "secret-b": "zeta"},
    )
    assert describe(config) == [
        "  data: HB, UTC days 2025-01-01 to 2025-01-31 (31 days)",
        "  2 key(s) for acme, zeta",
    ]


def test_command_line_banner_says_data_and_clock() -> None:
    """``python -m oxystats.emulator`` says the data range and the clock, serves them, no key."""
    command = [
        sys.executable,
        "-m",
        "oxystats.emulator",
        "--port=0",
        "--key=cli-key:acct",
        "--products=HB",
        "--start=2025-01-01",
        "--days=31",
        "--now=2025-01-15T06:00:00+01:00",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[1].strip()
        banner = [process.stderr.readline() for _ in range(3)]
        assert httpx.get(url + "/__emulator__/now").json() == {"now": "2025-01-15T05:00:00Z"}
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert line.startswith("oxystats emulator listening on http://127.0.0.1:")
    assert banner == [
        "  data: HB, UTC days 2025-01-01 to 2025-01-31 (31 days)\n",
        "  clock: now is 2025-01-15T05:00:00Z; later usage is invisible\n",
        "  1 key(s) for acct\n",
    ]
    assert "cli-key" not in line + "".join(banner) + out + err
