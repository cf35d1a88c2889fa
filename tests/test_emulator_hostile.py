"""Hostile faults over real HTTP, seen by a plain httpx client: what each one looks like."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from oxystats.emulator import (
    DEFAULT_KEY,
    Emulator,
    EmulatorConfig,
    Faults,
    RateLimitRule,
    RateLimits,
    RunningEmulator,
    serve_in_thread,
)
from oxystats.emulator._app import _send_padded
from oxystats.emulator._command import _parser, config_from_args
from oxystats.emulator._faults import FaultInjector

pytestmark = pytest.mark.anyio

USAGE = "/stats/v1/usage"
INSTANCES = "/stats/v1/filters/instances"
HEADERS = {"Authorization": f"Bearer {DEFAULT_KEY}"}
Params = list[tuple[str, str | int | float | bool | None]]


def usage(page: int = 1, per_page: int = 30) -> Params:
    """A March of HB by day and target: 620 rows, several pages."""
    return [
        ("product", "HB"),
        ("date_from", "2024-03-01T00:00:00Z"),
        ("date_to", "2024-03-31T23:59:59Z"),
        ("group_by[]", "DAY"),
        ("group_by[]", "TARGET"),
        ("page", page),
        ("per_page", per_page),
    ]


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll until ``predicate()`` holds; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        # Polled: the server's thread signals nothing to this one.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def honest(running: RunningEmulator, path: str, params: Params) -> httpx.Response:
    """The answer without faults; the log and counters are cleared again afterwards."""
    emulator = running.emulator
    faults = emulator.faults
    emulator.faults = Faults()
    try:
        async with httpx.AsyncClient(base_url=running.url, headers=HEADERS) as client:
            response = await client.get(path, params=params)
    finally:
        emulator.faults = faults
        emulator.reset()
    assert response.status_code == 200
    return response


def counting_in_flight(emulator: Emulator) -> Emulator:
    """``emulator`` with an in-flight cap high enough never to bind, so that stats count them."""
    emulator.limits = RateLimits(per_key=RateLimitRule(in_flight=100))
    return emulator


async def get(running: RunningEmulator, path: str, params: Params) -> httpx.Response:
    """One request with a plain httpx client."""
    async with httpx.AsyncClient(base_url=running.url, headers=HEADERS) as client:
        return await client.get(path, params=params)


def test_existing_seeds_give_the_faults_they_gave() -> None:
    """The new bands come after the old ones: seed 42 draws exactly what it always drew."""
    injector = FaultInjector(
        Faults(
            seed=42,
            error_500=0.2,
            error_503=0.1,
            spurious_429=0.1,
            drop_connection=0.1,
            malformed_body=0.1,
            latency=0.01,
            latency_jitter=0.005,
        )
    )
    drawn = [injector.draw() for _ in range(12)]
    # Recorded before the hostile faults existed.
    assert [(d.fault.value, round(d.latency, 6)) for d in drawn] == [
        ("none", 0.00525),
        ("error_503", 0.007232),
        ("none", 0.011767),
        ("none", 0.005869),
        ("drop_connection", 0.005298),
        ("error_503", 0.010054),
        ("error_500", 0.006988),
        ("none", 0.010449),
        ("error_503", 0.010893),
        ("none", 0.005065),
        ("none", 0.011981),
        ("spurious_429", 0.006555),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "ignore_page",
        "trickle_body",
        "inflate_total_pages",
        "grow_total_pages",
        "oversized_body",
        "hang",
    ],
)
def test_each_hostile_fault_is_a_band_of_the_one_draw(name: str) -> None:
    """Each new probability is its own band: shared with another fault, only those two come out."""
    half: dict[str, Any] = {name: 0.5}
    injector = FaultInjector(Faults(seed=3, error_500=0.5, **half))
    assert {injector.draw().fault.value for _ in range(200)} == {"error_500", name}


def test_hostile_fault_validation() -> None:
    """The new probabilities count towards the sum; their settings are checked."""
    with pytest.raises(ValueError, match="sum"):
        Faults(hang=0.5, trickle_body=0.3, error_500=0.3)
    with pytest.raises(ValueError, match="probability"):
        Faults(ignore_page=2.0)
    with pytest.raises(ValueError, match="trickle_interval"):
        Faults(trickle_interval=-0.1)
    with pytest.raises(ValueError, match="oversized_bytes"):
        Faults(oversized_bytes=0)
    with pytest.raises(ValueError, match="inflated_total_pages"):
        Faults(inflated_total_pages=0)
    assert Faults(grow_total_pages=0.1).active
    defaults = Faults()
    assert (defaults.trickle_interval, defaults.inflated_total_pages) == (0.05, 1_000_000_000)
    assert defaults.oversized_bytes == 50_000_000


def test_command_line_hostile_flags() -> None:
    """Each hostile fault has its flag, and so does each of their settings."""
    args = _parser().parse_args(
        [
            "--ignore-page=0.1",
            "--trickle-body=0.05",
            "--trickle-interval=0.2",
            "--inflate-total-pages=0.02",
            "--inflated-total-pages=77",
            "--grow-total-pages=0.03",
            "--oversized-body=0.01",
            "--oversized-bytes=1000000",
            "--hang=0.04",
        ]
    )
    assert config_from_args(args).faults == Faults(
        ignore_page=0.1,
        trickle_body=0.05,
        trickle_interval=0.2,
        inflate_total_pages=0.02,
        inflated_total_pages=77,
        grow_total_pages=0.03,
        oversized_body=0.01,
        oversized_bytes=1_000_000,
        hang=0.04,
    )


async def test_ignore_page_answers_page_1(oxystats_emulator: RunningEmulator) -> None:
    """Whatever page is asked, the answer is page 1's body, byte for byte."""
    first = await honest(oxystats_emulator, USAGE, usage(page=1))
    oxystats_emulator.emulator.faults = Faults(ignore_page=1.0)
    for page in (1, 3, 50):
        response = await get(oxystats_emulator, USAGE, usage(page=page))
        assert response.status_code == 200
        assert response.content == first.content
        assert response.json()["meta"]["pagination"]["page"] == 1
    emulator = oxystats_emulator.emulator
    await wait_until(lambda: emulator.counters.total == 3)
    assert [entry.fault for entry in emulator.log] == ["ignore_page"] * 3
    assert emulator.counters.by_fault == {"ignore_page": 3}


async def test_inflated_total_pages(oxystats_emulator: RunningEmulator) -> None:
    """A 200 claiming inflated_total_pages pages, and otherwise the very page asked for."""
    expected = (await honest(oxystats_emulator, USAGE, usage(page=2))).json()
    oxystats_emulator.emulator.faults = Faults(inflate_total_pages=1.0)
    response = await get(oxystats_emulator, USAGE, usage(page=2))
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["pagination"]["total_pages"] == 1_000_000_000
    expected["meta"]["pagination"]["total_pages"] = 1_000_000_000
    assert body == expected
    assert int(response.headers["content-length"]) == len(response.content)
    oxystats_emulator.emulator.faults = Faults(inflate_total_pages=1.0, inflated_total_pages=99)
    body = (await get(oxystats_emulator, INSTANCES, [("per_page", 2)])).json()
    assert body["meta"]["pagination"] == {
        "page": 1,
        "per_page": 2,
        "total_items": 6,
        "total_pages": 99,
    }
    counters = oxystats_emulator.emulator.counters
    await wait_until(lambda: counters.total == 2)
    assert counters.by_fault == {"inflate_total_pages": 2}


async def test_total_pages_grow_after_page_1(oxystats_emulator: RunningEmulator) -> None:
    """Page 1 is honest; from page 2 on, total_pages is one more than page 1 said."""
    honest_pages = [
        (await honest(oxystats_emulator, USAGE, usage(page=page))).json() for page in (1, 2, 3)
    ]
    total = honest_pages[0]["meta"]["pagination"]["total_pages"]
    assert total == 21
    oxystats_emulator.emulator.faults = Faults(grow_total_pages=1.0)
    pages = [(await get(oxystats_emulator, USAGE, usage(page=page))).json() for page in (1, 2, 3)]
    assert pages[0] == honest_pages[0]
    for page, expected in zip(pages[1:], honest_pages[1:], strict=True):
        assert page["meta"]["pagination"]["total_pages"] == total + 1
        expected["meta"]["pagination"]["total_pages"] = total + 1
        assert page == expected
    counters = oxystats_emulator.emulator.counters
    await wait_until(lambda: counters.total == 3)
    assert counters.by_fault == {"grow_total_pages": 3}


async def test_trickled_body_passes_every_read_timeout_yet_takes_ages(
    oxystats_emulator: RunningEmulator,
) -> None:
    """One byte per interval: no single read waits long, the whole body takes len x interval."""
    expected = (await honest(oxystats_emulator, INSTANCES, [("per_page", 1)])).content
    interval, read_timeout = 0.005, 0.25
    oxystats_emulator.emulator.faults = Faults(trickle_body=1.0, trickle_interval=interval)
    # A read timeout far shorter than the whole body, far longer than one byte's wait.
    timeout = httpx.Timeout(5.0, read=read_timeout)
    async with httpx.AsyncClient(
        base_url=oxystats_emulator.url, headers=HEADERS, timeout=timeout
    ) as client:
        started = time.monotonic()
        async with client.stream("GET", INSTANCES, params={"per_page": 1}) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(expected))
            chunks = [chunk async for chunk in response.aiter_raw()]
        elapsed = time.monotonic() - started
    assert b"".join(chunks) == expected
    assert len(chunks) > len(expected) // 2, "the bytes came (nearly) one by one"
    assert elapsed >= (len(expected) - 1) * interval > 3 * read_timeout
    # Logged once the server is done, which may be just after the client is.
    emulator = oxystats_emulator.emulator
    await wait_until(lambda: emulator.counters.total == 1)
    assert [(entry.status, entry.fault) for entry in emulator.log] == [(200, "trickle_body")]


async def test_trickle_stops_when_the_client_leaves(oxystats_emulator: RunningEmulator) -> None:
    """A client that gives up frees the server's request long before the body would end."""
    emulator = counting_in_flight(oxystats_emulator.emulator)
    emulator.faults = Faults(trickle_body=1.0)  # 0.05 s a byte: minutes for a usage page
    async with (
        httpx.AsyncClient(base_url=oxystats_emulator.url, headers=HEADERS) as client,
        client.stream("GET", USAGE, params=usage()) as response,
    ):
        assert response.status_code == 200
        assert int(response.headers["content-length"]) > 1000
        # Leaving with the body unread: httpx closes the connection.
    await wait_until(lambda: emulator.counters.total == 1)
    assert [(entry.status, entry.fault) for entry in emulator.log] == [(200, "trickle_body")]
    assert emulator.stats()["in_flight"] == {"account-1/key-1": 0}


async def test_oversized_body_is_json_padded_to_the_size(
    oxystats_emulator: RunningEmulator,
) -> None:
    """A 200 of 50,000,000 bytes: the real page, then whitespace, still valid JSON."""
    expected = (await honest(oxystats_emulator, USAGE, usage())).content
    oxystats_emulator.emulator.faults = Faults(oversized_body=1.0)
    size = 0
    head = b""
    async with (
        httpx.AsyncClient(base_url=oxystats_emulator.url, headers=HEADERS) as client,
        client.stream("GET", USAGE, params=usage()) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-length"] == "50000000"
        async for chunk in response.aiter_raw():
            if size < len(expected):
                head += chunk[: len(expected) - size]
                tail = chunk[len(expected) - size :]
            else:
                tail = chunk
            assert not tail.strip(b" "), "only spaces after the JSON"
            size += len(chunk)
    assert size == 50_000_000
    assert head == expected
    assert json.loads(head + b"     ") == json.loads(expected)
    counters = oxystats_emulator.emulator.counters
    await wait_until(lambda: counters.total == 1)
    assert counters.by_fault == {"oversized_body": 1}


async def test_oversized_body_is_never_built_whole() -> None:
    """The padding goes out in chunks of at most 64 KiB, one send at a time."""
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append({**message, "body": len(message.get("body", b""))})

    await _send_padded(send, b'{"data":[]}', 1_000_000)
    start, *bodies = messages
    assert dict(start["headers"])[b"content-length"] == b"1000000"
    assert sum(m["body"] for m in bodies) == 1_000_000
    assert max(m["body"] for m in bodies) <= 65_536
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]


async def test_hang_never_answers(oxystats_emulator: RunningEmulator) -> None:
    """The request is accepted and held, with its slot, until the client goes away."""
    emulator = counting_in_flight(oxystats_emulator.emulator)
    emulator.faults = Faults(hang=1.0)
    gave_up: list[bool] = []
    async with (
        httpx.AsyncClient(base_url=oxystats_emulator.url, headers=HEADERS) as client,
        anyio.create_task_group() as group,
    ):

        async def ask() -> None:
            with anyio.move_on_after(0.5) as scope:
                await client.get(USAGE, params=usage())
            gave_up.append(scope.cancelled_caught)

        group.start_soon(ask)
        await wait_until(lambda: emulator.stats()["in_flight"] == {"account-1/key-1": 1})
        assert emulator.counters.total == 0, "accepted, held, not finished"
    assert gave_up == [True], "no answer came within 0.5 s"
    # The client has closed its connection: the server lets the request go.
    await wait_until(lambda: emulator.counters.total == 1)
    assert [(entry.status, entry.fault) for entry in emulator.log] == [(0, "hang")]
    assert emulator.counters.by_fault == {"hang": 1}
    assert emulator.stats()["in_flight"] == {"account-1/key-1": 0}


async def test_stopping_the_server_closes_a_hung_request_without_an_answer() -> None:
    """On stop, after the graceful timeout, the hung connection closes: no 500, no wait beyond."""
    emulator = counting_in_flight(Emulator(EmulatorConfig(faults=Faults(hang=1.0))))
    outcome: list[str] = []
    servers_before = set(threading.enumerate())
    async with (
        httpx.AsyncClient(headers=HEADERS, timeout=30) as client,
        anyio.create_task_group() as group,
    ):
        with serve_in_thread(emulator) as running:
            (server_thread,) = set(threading.enumerate()) - servers_before

            async def ask() -> None:
                try:
                    response = await client.get(running.url + USAGE, params=usage())
                except httpx.RemoteProtocolError:
                    outcome.append("closed without an answer")
                else:
                    outcome.append(f"answered {response.status_code}")

            group.start_soon(ask)
            await wait_until(lambda: emulator.stats()["in_flight"] == {"account-1/key-1": 1})
        # Leaving the block stopped the server: its thread is gone, the request ended.
        assert not server_thread.is_alive()
        assert [(entry.status, entry.fault) for entry in emulator.log] == [(0, "hang")]
    assert outcome == ["closed without an answer"]
