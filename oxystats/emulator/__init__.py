"""A faithful local Dashboard API, for tests, demos and benchmarks.

>>> from oxystats.emulator import Emulator
>>> emulator = Emulator()          # default config: key "test-key", account "account-1"
>>> app = emulator.app             # a Starlette app: serve it, or use httpx.ASGITransport

See docs/emulator.md for the data, the limits, the faults, the jitter, the clock and the
fixtures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._command import main
from ._config import (
    ADMIN_PREFIX,
    DEFAULT_ACCOUNT,
    DEFAULT_KEY,
    ArrivalJitter,
    Dataset,
    EmulatorConfig,
    Faults,
    RateLimitRule,
    RateLimits,
)
from ._dataset import Cell, GroundTruth, InstanceRecord
from ._emulator import Emulator, KeyIdentity
from ._faults import DroppedConnection
from ._log import Counters, LogEntry
from ._server import RunningEmulator, serve, serve_in_thread

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "ADMIN_PREFIX",
    "DEFAULT_ACCOUNT",
    "DEFAULT_KEY",
    "ArrivalJitter",
    "Cell",
    "Counters",
    "Dataset",
    "DroppedConnection",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "GroundTruth",
    "InstanceRecord",
    "KeyIdentity",
    "LogEntry",
    "RateLimitRule",
    "RateLimits",
    "RunningEmulator",
    "create_app",
    "main",
    "serve",
    "serve_in_thread",
]


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """A new emulator's Starlette app; the `Emulator` is at ``app.state.emulator``."""
    return Emulator(config).app
