"""Serving the emulator over real HTTP with uvicorn: in a thread, or blocking.

The listening socket is bound before uvicorn starts, so the port (even an
ephemeral one, ``port=0``) is known up front and a client connecting early
simply waits in the backlog.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._config import EmulatorConfig
from ._emulator import Emulator
from ._faults import DroppedConnection

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["RunningEmulator", "serve", "serve_in_thread"]

_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class _QuietDroppedConnections(logging.Filter):
    """Drop uvicorn's traceback for the *injected* dropped-connection fault.

    The fault works by raising after a partial body; uvicorn then closes the
    socket (the point) and logs the exception (noise).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_FILTER = _QuietDroppedConnections()


def _quiet_dropped_connections() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


class _Slot:
    """An ASGI app that forwards to a swappable emulator's app.

    Lets a long-lived server (e.g. one per test session) serve a fresh
    `Emulator` per test at no startup cost.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.emulator.app(scope, receive, send)


class RunningEmulator:
    """An emulator being served over HTTP: where it is and what it serves."""

    def __init__(self, slot: _Slot, host: str, port: int) -> None:
        self._slot = slot
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    @property
    def emulator(self) -> Emulator:
        """The `Emulator` answering requests now."""
        return self._slot.emulator

    def use(self, emulator: Emulator) -> Emulator:
        """Serve ``emulator`` from now on (same URL); return it."""
        self._slot.emulator = emulator
        return emulator

    def __repr__(self) -> str:
        return f"RunningEmulator(url={self.url!r})"


def _emulator_of(target: Emulator | EmulatorConfig | None) -> Emulator:
    return target if isinstance(target, Emulator) else Emulator(target)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.create_server((host, port), reuse_port=False, backlog=2048)
    sock.setblocking(False)
    return sock


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def serve_in_thread(
    target: Emulator | EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    http: str = "auto",
) -> Iterator[RunningEmulator]:
    """Serve an emulator with uvicorn in a daemon thread until the block exits.

    On exit the server stops accepting, gives the requests in progress one
    second to finish, then closes the connections still open without an answer.

    ``target`` is an `Emulator`, or the config of a new one (default config if
    ``None``). ``port=0`` picks a free port; see ``RunningEmulator.url``.
    """
    import uvicorn  # the emulator's state loads without the server's dependencies

    from ._uvicorn_server import EmulatorServer

    slot = _Slot(_emulator_of(target))
    sock = _bind(host, port)
    config = uvicorn.Config(
        slot,
        http=http,
        ws="none",
        lifespan="off",
        log_config=None,  # Leave the embedding program's logging alone.
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    _quiet_dropped_connections()
    server = EmulatorServer(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="oxystats-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator's server did not start")
            time.sleep(0.002)
        yield RunningEmulator(slot, _host_for_url(host), sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        sock.close()


def _freeze_startup_heap() -> None:
    """Keep the garbage collector's full passes short while serving.

    Arrivals are timestamped by the app, on the event loop, and a full
    collection that walks every module and the dataset pauses the loop for
    15-30 ms: requests that arrive meanwhile are stamped late, so the ones a
    window after them look early, and the rate limit refuses them. A client
    keeping exactly to the limit would see 429s that a real gateway, which
    stamps on arrival, would not send. Everything built so far lives as long
    as the server, so it is moved out of the collector's sight.
    """
    gc.collect()
    gc.freeze()


def serve(
    config: EmulatorConfig | Emulator | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    http: str = "auto",
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve an emulator in the foreground until interrupted (Ctrl+C).

    ``on_ready`` is called with the URL once the port is bound.
    """
    import uvicorn  # the emulator's state loads without the server's dependencies

    from ._uvicorn_server import EmulatorServer

    emulator = _emulator_of(config)
    sock = _bind(host, port)
    uvicorn_config = uvicorn.Config(
        emulator.app,
        http=http,
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    _quiet_dropped_connections()
    _freeze_startup_heap()
    if on_ready is not None:
        on_ready(f"http://{_host_for_url(host)}:{sock.getsockname()[1]}")
    try:
        EmulatorServer(uvicorn_config).run(sockets=[sock])
    finally:
        sock.close()
