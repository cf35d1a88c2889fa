"""The emulator's clock: usage exists only up to "now", for ground truth and over HTTP."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import pytest

from oxystats.emulator import (
    ADMIN_PREFIX,
    DEFAULT_KEY,
    Dataset,
    Emulator,
    EmulatorConfig,
    RunningEmulator,
)
from oxystats.emulator._command import _parser, config_from_args, describe

pytestmark = pytest.mark.anyio

SMALL = Dataset(seed=7, targets=5, instances_per_product=2, start=date(2024, 1, 1), days=10)
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 10, 23, 59, 59, tzinfo=UTC)
USAGE = "/stats/v1/usage"
NOW = "/__emulator__/now"


def brute_force(
    emulator: Emulator, now: datetime, date_from: datetime, date_to: datetime
) -> dict[tuple[str, ...], tuple[int, int]]:
    """HB's (DAY, TARGET) rows: every cell in [date_from, date_to] at or before now, one by one."""
    rows: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    day = SMALL.start
    while day < SMALL.start + timedelta(days=SMALL.days):
        for cell in emulator.iter_cells("HB", day):
            if date_from <= cell.instant <= date_to and cell.instant <= now:
                row = rows[(cell.instant.date().isoformat(), cell.target)]
                row[0] += cell.requests
                row[1] += cell.traffic_bytes
        day += timedelta(days=1)
    return {key: (r, b) for key, (r, b) in rows.items()}


def day_totals(emulator: Emulator) -> dict[str, int]:
    """HB's requests per UTC day over the whole data set, as ground truth sees them now."""
    truth = emulator.ground_truth("HB", START, END, ["DAY"])
    return {key[0]: requests for key, (requests, _) in truth.rows.items()}


@pytest.mark.parametrize(
    "now",
    [
        datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 4, 13, 27, 41, 999_999, tzinfo=UTC),
        datetime(2024, 1, 6, 2, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 1, 10, 23, 59, 59, tzinfo=UTC),
        datetime(2030, 1, 1, tzinfo=UTC),
    ],
)
def test_ground_truth_under_a_clock_equals_brute_force(now: datetime) -> None:
    """Ground truth under a clock is the sum of the cells whose instant is at or before now."""
    emulator = Emulator(EmulatorConfig(dataset=SMALL, now=now))
    date_from = datetime(2024, 1, 2, 7, 30, 5, tzinfo=UTC)
    for date_to in (END, datetime(2024, 1, 5, 18, 0, 0, tzinfo=UTC)):
        truth = emulator.ground_truth("HB", date_from, date_to, ["DAY", "TARGET"])
        expected = brute_force(emulator, now, date_from, date_to)
        assert truth.rows == expected
        assert truth.totals == (
            sum(r for r, _ in expected.values()),
            sum(b for _, b in expected.values()),
        )


def test_advancing_grows_today_and_reveals_later_days() -> None:
    """As now advances, the current day's totals grow and the next days appear."""
    emulator = Emulator(EmulatorConfig(dataset=SMALL))
    everything = day_totals(emulator)
    emulator.now = datetime(2024, 1, 4, 6, 0, tzinfo=UTC)
    morning = day_totals(emulator)
    assert sorted(morning) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert all(morning[day] == everything[day] for day in ("2024-01-01", "2024-01-03"))
    assert 0 < morning["2024-01-04"] < everything["2024-01-04"]
    assert emulator.advance(timedelta(hours=12)) == datetime(2024, 1, 4, 18, 0, tzinfo=UTC)
    evening = day_totals(emulator)
    assert morning["2024-01-04"] < evening["2024-01-04"] < everything["2024-01-04"]
    emulator.advance(timedelta(days=1))
    assert "2024-01-05" in day_totals(emulator)
    assert day_totals(emulator)["2024-01-04"] == everything["2024-01-04"]
    emulator.now = None
    assert day_totals(emulator) == everything


def test_iter_cells_is_the_raw_data_whatever_the_clock() -> None:
    """iter_cells ignores the clock: brute-force checks filter by instant themselves."""
    emulator = Emulator(EmulatorConfig(dataset=SMALL, now=START))
    cells = list(emulator.iter_cells("HB", date(2024, 1, 5)))
    assert cells
    assert cells == list(Emulator(EmulatorConfig(dataset=SMALL)).iter_cells("HB", date(2024, 1, 5)))


def test_clock_arguments() -> None:
    """now must be aware (or None); advance needs a clock, a timedelta and a forward move."""
    assert EmulatorConfig().now is None
    with pytest.raises(ValueError, match="aware"):
        EmulatorConfig(now=datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="datetime"):
        EmulatorConfig(now=date(2024, 1, 1))  # type: ignore[arg-type]
    emulator = Emulator()
    with pytest.raises(ValueError, match="no clock"):
        emulator.advance(timedelta(hours=1))
    with pytest.raises(ValueError, match="aware"):
        emulator.now = datetime(2024, 1, 1)
    assert emulator.now is None
    emulator.now = START
    with pytest.raises(ValueError, match="forward"):
        emulator.advance(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="timedelta"):
        emulator.advance(3600)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calendar"):
        emulator.advance(timedelta.max)
    assert emulator.now == START


def test_command_line_now() -> None:
    """--now takes an ISO 8601 instant with an offset, or a date meaning 00:00:00Z."""
    parse = _parser().parse_args
    assert config_from_args(parse([])).now is None
    assert config_from_args(parse(["--now=2025-03-10"])).now == datetime(2025, 3, 10, tzinfo=UTC)
    at = config_from_args(parse(["--now", "2025-03-10T12:00:00+02:00"])).now
    assert at == datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
    assert config_from_args(parse(["--now=2025-03-10T12:00:00Z"])).now == datetime(
        2025, 3, 10, 12, tzinfo=UTC
    )
    for bad in ("2025-03-10T12:00:00", "yesterday", "2025-02-30"):
        with pytest.raises(SystemExit):
            parse([f"--now={bad}"])


def test_banner_says_the_clock() -> None:
    """The ready banner names the clock when there is one."""
    lines = describe(
        EmulatorConfig(now=datetime(2025, 3, 10, 13, tzinfo=timezone(timedelta(hours=1))))
    )
    assert "  clock: now is 2025-03-10T12:00:00Z; later usage is invisible" in lines
    assert not any("clock" in line for line in describe(EmulatorConfig()))


@contextlib.asynccontextmanager
async def connect(running: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the emulator, with the default key."""
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=running.url, headers=headers) as client:
        yield client


async def by_day(client: httpx.AsyncClient) -> dict[str, Any]:
    """Page 1 of HB by day over the data's first ten days (one page: ten rows at most)."""
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("product", "HB"),
        ("date_from", "2024-01-01T00:00:00Z"),
        ("date_to", "2024-01-10T23:59:59Z"),
        ("group_by[]", "DAY"),
    ]
    response = await client.get(USAGE, params=params)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def rows_of(body: dict[str, Any]) -> dict[tuple[str, ...], tuple[int, int]]:
    """A usage body's rows as ground truth writes them."""
    return {tuple(r["grouped_by"]): (r["requests"], r["traffic_bytes"]) for r in body["data"]}


async def test_http_answers_follow_the_clock(oxystats_emulator: RunningEmulator) -> None:
    """The same query, asked again as the clock moves, always equals the ground truth then."""
    emulator = oxystats_emulator.use(Emulator(EmulatorConfig(dataset=SMALL)))
    async with connect(oxystats_emulator) as client:
        full = await by_day(client)
        for now in (
            datetime(2024, 1, 3, 9, 15, 30, tzinfo=UTC),
            datetime(2024, 1, 3, 21, 0, 0, tzinfo=UTC),
            datetime(2024, 1, 8, 6, 0, 0, tzinfo=UTC),
            datetime(2024, 1, 3, 9, 15, 30, tzinfo=UTC),
        ):
            emulator.now = now
            body = await by_day(client)
            truth = emulator.ground_truth("HB", START, END, ["DAY"])
            assert rows_of(body) == truth.rows
            assert (body["totals"]["requests"], body["totals"]["traffic_bytes"]) == truth.totals
            assert max(key[0] for key in truth.rows) == now.date().isoformat()
        emulator.now = None
        assert await by_day(client) == full


async def test_answers_while_the_clock_moves_are_each_of_one_now(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Requests racing a moving clock each get the figures of one "now", never a stale mix."""
    steps = [datetime(2024, 1, 2, tzinfo=UTC) + timedelta(hours=7 * n) for n in range(24)]
    reference = Emulator(EmulatorConfig(dataset=SMALL))
    possible = set()
    for now in steps:
        reference.now = now
        possible.add(reference.ground_truth("HB", START, END, ["DAY"]).totals)
    emulator = oxystats_emulator.use(Emulator(EmulatorConfig(dataset=SMALL, now=steps[0])))
    seen: list[tuple[int, int]] = []
    async with connect(oxystats_emulator) as client, anyio.create_task_group() as group:

        async def ask() -> None:
            for _ in range(12):
                totals = (await by_day(client))["totals"]
                seen.append((totals["requests"], totals["traffic_bytes"]))

        for _ in range(4):
            group.start_soon(ask)
        for now in steps[1:]:
            await anyio.sleep(0.005)
            emulator.now = now
    assert len(seen) == 48
    assert set(seen) <= possible
    assert len(set(seen)) > 1, "the clock moved while the requests ran"


async def test_admin_endpoint_moves_the_clock(oxystats_emulator: RunningEmulator) -> None:
    """GET and POST /__emulator__/now read, set and advance the clock over real HTTP."""
    emulator = oxystats_emulator.use(Emulator(EmulatorConfig(dataset=SMALL)))
    async with httpx.AsyncClient(base_url=oxystats_emulator.url) as admin:
        assert (await admin.get(NOW)).json() == {"now": None}
        response = await admin.post(NOW, json={"now": "2024-01-03T14:00:00+02:00"})
        assert response.status_code == 200
        assert response.json() == {"now": "2024-01-03T12:00:00Z"}
        assert emulator.now == datetime(2024, 1, 3, 12, tzinfo=UTC)
        async with connect(oxystats_emulator) as client:
            before = await by_day(client)
            moved = await admin.post(NOW, json={"advance_seconds": 86_400})
            assert moved.json() == {"now": "2024-01-04T12:00:00Z"}
            after = await by_day(client)
        assert len(after["data"]) == len(before["data"]) + 1
        assert after["totals"]["requests"] > before["totals"]["requests"]
        assert rows_of(after) == emulator.ground_truth("HB", START, END, ["DAY"]).rows
        assert (await admin.post(NOW, json={"now": "2024-01-05"})).json() == {
            "now": "2024-01-05T00:00:00Z"
        }
        assert (await admin.post(NOW, json={"now": None})).json() == {"now": None}
    # The server logs an API request just after answering it; admin requests never.
    with anyio.fail_after(5):
        while emulator.counters.total < 2:  # noqa: ASYNC110 (polled: nothing signals it)
            await anyio.sleep(0.01)
    assert emulator.stats()["total"] == 2, "admin requests are not counted"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"now": "2024-01-03T12:00:00"}',
        b'{"now": "soon"}',
        b'{"now": 1704283200}',
        b'{"now": "2024-01-03T12:00:00Z", "advance_seconds": 60}',
        b'{"later": 60}',
        b'{"advance_seconds": -60}',
        b'{"advance_seconds": "60"}',
        b'{"advance_seconds": true}',
        b'{"advance_seconds": NaN}',
        b'{"advance_seconds": 1e300}',
    ],
)
async def test_admin_endpoint_refuses_bad_bodies(
    oxystats_emulator: RunningEmulator, body: bytes
) -> None:
    """Anything but one of the two documented bodies is a JSON 400, and the clock stays put."""
    emulator = oxystats_emulator.emulator
    emulator.now = START
    async with httpx.AsyncClient(base_url=oxystats_emulator.url) as admin:
        response = await admin.post(f"{ADMIN_PREFIX}/now", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "Bad request"
    assert emulator.now == START


async def test_advancing_without_a_clock_is_a_400(oxystats_emulator: RunningEmulator) -> None:
    """advance_seconds needs a clock to advance."""
    async with httpx.AsyncClient(base_url=oxystats_emulator.url) as admin:
        response = await admin.post(NOW, json={"advance_seconds": 60})
    assert response.status_code == 400
    assert "no clock" in response.json()["message"]
