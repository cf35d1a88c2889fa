"""Worst-case wall time of one `usage()` call with default settings, against a server that hangs.

Run from the repository root (it takes about four minutes)::

    python -m benchmarks.hang
    python -m benchmarks.hang --timeout 1    # the same with timeout=1, in seconds

A server on 127.0.0.1 accepts every connection, reads the request and never
answers. One `AsyncClient(key, base_url=...)` with every other option left at
its default makes one ``usage()`` call over one day: one window, one page,
so one request and its retries.

The figure expected from the defaults: with no ``deadline``, the call is
bounded only by its attempts and the waits between them. Each attempt is
bounded as a whole by ``timeout`` (30 s for the client's own pool); a
timeout is retried ``max_retries`` times (6), so 7 attempts: 7 x 30 = 210 s.
Before the n-th retry the client waits a uniformly random time in
``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]`` (full jitter, base
0.5 s, cap 30 s): at most 0.5 + 1 + 2 + 4 + 8 + 16 = 31.5 s, 15.75 s on
average. So the call ends between 210 and 241.5 s, 225.75 s on average, and
never later than 241.5 s. The script computes these from the library's
defaults, measures one call, and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import date

import oxystats
from oxystats._options import DEFAULT_TIMEOUT
from oxystats._retry import RetryPolicy, backoff_cap

KEY = "bench-key"
DAY = date(2025, 1, 1)


class HangingServer:
    """Accepts, reads each request, answers nothing; notes when each request arrived."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.arrivals: list[float] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> HangingServer:
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.listener.close()
        for thread in list(self.threads):
            thread.join(timeout=5)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._start(self._hold, sock)

    def _hold(self, sock: socket.socket) -> None:
        with sock:
            request = b""
            while not self.stopping.is_set():
                readable, _, _ = select.select([sock], [], [], 0.1)
                if not readable:
                    continue
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return  # the client gave up
                request += chunk
                if b"\r\n\r\n" in request:
                    self.arrivals.append(time.monotonic())
                    request = b""


def expected(timeout: float) -> tuple[int, float, float, float]:
    """Attempts, and the shortest, mean and longest wall time the defaults allow."""
    max_retries = inspect.signature(oxystats.AsyncClient).parameters["max_retries"].default
    policy = RetryPolicy(max_retries=max_retries)
    attempts = max_retries + 1
    waits = sum(backoff_cap(policy, retry) for retry in range(1, max_retries + 1))
    shortest = attempts * timeout
    return attempts, shortest, shortest + waits / 2, shortest + waits


async def one_call(url: str, attempt_timeout: float | None) -> tuple[BaseException | None, float]:
    """One default ``usage()`` call; what it raised and how long it took."""
    # timeout=None is the default: the client's own 30 s per attempt.
    async with oxystats.AsyncClient(KEY, base_url=url, timeout=attempt_timeout) as client:
        started = time.monotonic()
        try:
            await client.usage("HB", DAY, DAY, ["DAY"])
        except Exception as exc:
            return exc, time.monotonic() - started
        return None, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout", type=float, default=None, help="timeout= for the client (default: none given)"
    )
    args = parser.parse_args()
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    attempts, shortest, mean, longest = expected(timeout)
    given = "default settings" if args.timeout is None else f"timeout={args.timeout:g}"
    print(f"one usage() call with {given}, against a server that never answers")
    print(
        f"computed: {attempts} attempts x {timeout:g} s + up to {longest - shortest:g} s of "
        f"backoff = {shortest:.1f} to {longest:.1f} s (mean {mean:.2f} s)"
    )
    with HangingServer() as server:
        error, elapsed = asyncio.run(one_call(server.url, args.timeout))
        arrivals = [arrival - server.arrivals[0] for arrival in server.arrivals]
    outcome = "returned a result" if error is None else f"{type(error).__name__}: {error}"
    print(f"measured: {elapsed:.1f} s, {len(arrivals)} requests; {outcome}")
    print(f"requests arrived at (s): {', '.join(f'{arrival:.1f}' for arrival in arrivals)}")
    print(f"measured / longest computed: {elapsed / longest:.3f}")


if __name__ == "__main__":
    main()
