"""Test helpers: the Dashboard API emulator as a pytest fixture or a context manager.

Enable the fixtures in your ``conftest.py``::

    pytest_plugins = ["oxystats.testing"]

then ask for ``oxystats_emulator``: a `RunningEmulator` with a fresh
`Emulator` (default config: key ``"test-key"``) served over real HTTP on
127.0.0.1. One uvicorn server is started per test session and each test gets a
new emulator behind it, so the fixture costs next to nothing per test.

Outside pytest, or for a non-default config::

    with emulator_server(limits=RateLimits.documented()) as running:
        ...  # running.url, running.emulator
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable, Iterator
from typing import Any

from oxystats.emulator import (
    DEFAULT_KEY,
    Emulator,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

__all__ = [
    "DEFAULT_KEY",
    "emulator_server",
    "max_in_window",
    "oxystats_emulator",
    "oxystats_emulator_server",
]


def emulator_server(**config: Any) -> contextlib.AbstractContextManager[RunningEmulator]:
    """Serve a new emulator in a background thread for the duration of a ``with`` block.

    Keyword arguments are `EmulatorConfig` fields (``dataset``, ``keys``,
    ``limits``, ``faults``, ...). The server stops when the block exits.
    """
    return serve_in_thread(EmulatorConfig(**config))


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most instants found in any half-open window ``(t - window, t]``.

    For checking a rate limit: pass the arrival times of the emulator's log
    (``[entry.time for entry in running.emulator.log]``) and the window length.
    """
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _serve_for_the_session() -> Iterator[RunningEmulator]:
    """One emulator server for the whole session (prefer ``oxystats_emulator``)."""
    with serve_in_thread(Emulator()) as running:
        yield running


def _fresh_emulator(oxystats_emulator_server: RunningEmulator) -> RunningEmulator:
    """A fresh default `Emulator` served over real HTTP (``.url``, ``.emulator``).

    Tests may change ``.emulator.limits`` and ``.emulator.faults`` freely: the
    next test gets a new emulator.
    """
    oxystats_emulator_server.use(Emulator())
    return oxystats_emulator_server


# The helpers work without pytest; only the fixtures need it.
if importlib.util.find_spec("pytest") is not None:
    import pytest

    oxystats_emulator_server = pytest.fixture(scope="session", name="oxystats_emulator_server")(
        _serve_for_the_session
    )
    oxystats_emulator = pytest.fixture(name="oxystats_emulator")(_fresh_emulator)
