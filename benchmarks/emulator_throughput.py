"""How many full 100-row usage pages per second the emulator serves.

Run from the repository root::

    python -m benchmarks.emulator_throughput [--requests 20000] [--connections 32]

The emulator runs in a subprocess (uvicorn + httptools, one worker, no limits,
no faults). This process drives it with a deliberately thin load generator:
raw asyncio streams over keep-alive connections, one prebuilt HTTP/1.1
request, responses read by Content-Length. httpx would measure itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

from benchmarks._common import emulator_process

TARGET_RPS = 2_000.0
QUERY = urlencode(
    [
        ("product", "HB"),
        ("date_from", "2024-03-01T00:00:00Z"),
        ("date_to", "2024-03-31T23:59:59Z"),
        ("group_by[]", "DAY"),
        ("group_by[]", "TARGET"),
        ("page", "2"),
        ("per_page", "100"),
    ]
)


@contextlib.contextmanager
def emulator_address() -> Iterator[tuple[str, int]]:
    """Start the emulator in a subprocess (httptools); yield its (host, port)."""
    with emulator_process(["--http", "httptools"]) as address:
        url = urlsplit(address)
        assert url.hostname is not None
        assert url.port is not None
        yield url.hostname, url.port


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one response; return (status, body length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    await reader.readexactly(length)
    return status, length


async def _wait_ready(host: str, port: int, request: bytes) -> int:
    """Retry until the server answers; return the body size of one response."""
    deadline = time.monotonic() + 15
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.write(request)
        status, length = await _read_response(reader)
        writer.close()
        if status != 200:
            raise RuntimeError(f"warm-up request failed with {status}")
        return length


async def _worker(
    host: str, port: int, request: bytes, budget: list[int], deadline: float, out: list[float]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status, _ = await _read_response(reader)
            out.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def drive(
    host: str, port: int, requests: int, connections: int, seconds: float
) -> tuple[float, list[float], int, int]:
    """Send ``requests`` requests (or stop after ``seconds``).

    Returns requests per second, latencies, the count of non-200s and the body size.
    """
    request = (
        f"GET /stats/v1/usage?{QUERY} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Authorization: Bearer test-key\r\n"
        "Accept: application/json\r\n"
        "\r\n"
    ).encode()
    size = await _wait_ready(host, port, request)
    latencies: list[float] = []
    budget = [requests]
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(_worker(host, port, request, budget, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, sum(errors), size


def main() -> int:
    """Run the benchmark and print the figures and a PASS/FAIL line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    else:
        runner = uvloop.run
    with emulator_address() as (host, port):
        rps, latencies, errors, size = runner(
            drive(host, port, args.requests, args.connections, args.seconds)
        )
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"emulator throughput: 100-row usage page ({size} bytes), {args.connections} connections")
    print(f"  requests: {len(latencies)}  non-200: {errors}")
    print(f"  throughput: {rps:,.0f} req/s   p50: {p50:.2f} ms   p99: {p99:.2f} ms")
    verdict = "PASS" if rps >= TARGET_RPS and errors == 0 else "FAIL"
    print(f"{verdict}: {rps:,.0f} req/s against a target of {TARGET_RPS:,.0f} req/s")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
