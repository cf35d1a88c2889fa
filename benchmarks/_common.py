"""Helpers shared by the benchmarks: the emulator in a subprocess, and its admin endpoints."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

ADMIN = "/__emulator__"

Rows = dict[tuple[str, ...], tuple[int, int]]
"""A merged usage result: grouping key -> (requests, traffic_bytes)."""


@contextlib.contextmanager
def emulator_process(options: Sequence[str] = ()) -> Iterator[str]:
    """Run ``python -m oxystats.emulator --port 0 OPTIONS`` in a subprocess; yield its URL.

    The emulator prints ``oxystats emulator listening on URL`` once its port is
    bound; it is stopped (SIGTERM, then SIGKILL) when the block exits.
    """
    command = [sys.executable, "-m", "oxystats.emulator", "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.split("listening on", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def emulator_stats(url: str) -> dict[str, Any]:
    """The emulator's counters (``GET /__emulator__/stats``)."""
    response = httpx.get(f"{url}{ADMIN}/stats", timeout=10)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def reset_emulator(url: str) -> None:
    """Clear the emulator's counters, log and limiter state (``POST /__emulator__/reset``)."""
    httpx.post(f"{url}{ADMIN}/reset", timeout=10).raise_for_status()


def count_status(stats: dict[str, Any], status: int) -> int:
    """How many responses had ``status``, from `emulator_stats`."""
    by_status: dict[str, int] = stats["by_status"]
    return by_status.get(str(status), 0)
