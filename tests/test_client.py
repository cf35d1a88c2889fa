"""End-to-end tests of AsyncClient against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest

import oxystats
from oxystats import GroupBy
from oxystats.emulator import Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

pytestmark = pytest.mark.anyio

PLUS_TWO = timezone(timedelta(hours=2))
MINUS_SEVEN_THIRTY = timezone(-timedelta(hours=7, minutes=30))
START = datetime(2024, 3, 5, 7, 13, 29, tzinfo=UTC)


@pytest.fixture
async def client(oxystats_emulator: RunningEmulator) -> AsyncIterator[oxystats.AsyncClient]:
    """A client of the emulator with a fast limit (the emulator enforces none here)."""
    async with oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=oxystats_emulator.url,
        key_limit=oxystats.Limit(rate=1000.0, burst=100, in_flight=10),
    ) as made:
        yield made


def as_truth(report: oxystats.UsageReport) -> dict[tuple[str, ...], tuple[int, int]]:
    """The report's rows as the emulator's ground-truth mapping (and no key twice)."""
    rows = {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows}
    assert len(rows) == len(report.rows)
    return rows


def assert_matches_truth(
    running: RunningEmulator,
    report: oxystats.UsageReport,
    start: datetime,
    end: datetime,
    instances: Iterable[str] | None = None,
) -> None:
    """The merged report equals the emulator's ground truth, rows and totals."""
    truth = running.emulator.ground_truth(
        "HB", start, end, [g.value for g in report.grouping], instances
    )
    assert as_truth(report) == truth.rows
    assert (report.totals.requests, report.totals.traffic_bytes) == truth.totals
    assert truth.rows, "a test over no data proves little"


@pytest.mark.parametrize(
    ("start", "length"),
    [
        (START, timedelta(days=1)),
        (START, timedelta(days=31)),
        (START, timedelta(days=31, seconds=1)),
        (START, timedelta(days=400)),
        (START.astimezone(PLUS_TWO), timedelta(days=45, hours=5)),
        (datetime(2024, 6, 30, 23, 59, 59, tzinfo=MINUS_SEVEN_THIRTY), timedelta(days=70)),
    ],
    ids=["1 day", "31 days", "31 days 1 s", "400 days", "+02:00", "-07:30"],
)
async def test_usage_equals_ground_truth(
    oxystats_emulator: RunningEmulator,
    client: oxystats.AsyncClient,
    start: datetime,
    length: timedelta,
) -> None:
    """DAY x TARGET over short, boundary and long ranges equals the ground truth exactly."""
    end = start + length
    report = await client.usage("HB", start, end, [GroupBy.DAY, GroupBy.TARGET])
    assert report.grouping == (GroupBy.DAY, GroupBy.TARGET)
    assert_matches_truth(oxystats_emulator, report, start, end)
    days = [row.grouped_by[0] for row in report.rows]
    assert days == sorted(days), "a DAY-first grouping comes out chronologically"


GROUPINGS = [
    combo
    for size in (1, 2, 3)
    for combo in itertools.permutations([GroupBy.DAY, GroupBy.TARGET, GroupBy.INSTANCE], size)
]


@pytest.mark.parametrize("grouping", GROUPINGS, ids=lambda g: "x".join(x.value for x in g))
async def test_every_grouping_and_order(
    oxystats_emulator: RunningEmulator,
    client: oxystats.AsyncClient,
    grouping: tuple[GroupBy, ...],
) -> None:
    """Every group_by combination, in every order, merges across windows to the truth."""
    end = START + timedelta(days=40)
    report = await client.usage("HB", START, end, grouping)
    assert report.grouping == grouping
    assert_matches_truth(oxystats_emulator, report, START, end)


async def test_instance_filter(
    oxystats_emulator: RunningEmulator, client: oxystats.AsyncClient
) -> None:
    """An instance filter narrows the result; an unknown UUID warns and is listed."""
    instances = await client.instances(["HB"])
    wanted = [instances[0].uuid, "00000000-0000-0000-0000-000000000000"]
    end = START + timedelta(days=35)
    with pytest.warns(oxystats.UnknownInstanceWarning, match="00000000"):
        report = await client.usage("HB", START, end, ["INSTANCE", "DAY"], instances=wanted)
    assert report.unknown_instances == ("00000000-0000-0000-0000-000000000000",)
    assert {row.grouped_by[0] for row in report.rows} == {instances[0].uuid}
    assert_matches_truth(oxystats_emulator, report, START, end, wanted)


async def test_instances_lists_every_page(
    oxystats_emulator: RunningEmulator, client: oxystats.AsyncClient
) -> None:
    """instances() returns what the emulator lists, filtered by product."""
    everything = await client.instances()
    assert [i.uuid for i in everything] == [
        i["uuid"] for i in oxystats_emulator.emulator.instance_list()
    ]
    assert {i.product for i in await client.instances("DC")} == {"DC"}


async def test_iter_usage_streams_the_same_usage(
    oxystats_emulator: RunningEmulator, client: oxystats.AsyncClient
) -> None:
    """Summed per key, iter_usage's unmerged rows equal usage()'s merged ones."""
    end = START + timedelta(days=100)
    sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    rows = 0
    async for row in client.iter_usage("HB", START, end, ["TARGET"]):
        sums[row.grouped_by][0] += row.requests
        sums[row.grouped_by][1] += row.traffic_bytes
        rows += 1
    report = await client.usage("HB", START, end, ["TARGET"])
    assert {key: tuple(value) for key, value in sums.items()} == as_truth(report)
    assert rows > len(report.rows), "TARGET-only keys repeat once per window"


async def test_iter_usage_pages_skips_what_is_done(client: oxystats.AsyncClient) -> None:
    """Pages listed in done= are not fetched again; the rest are."""
    end = START + timedelta(days=62)
    first = [page async for page in client.iter_usage_pages("HB", START, end, ["DAY", "TARGET"])]
    done = {(page.window_index, page.number): page.total_pages for page in first[::2]}
    before = client.stats.requests
    rest = [
        page
        async for page in client.iter_usage_pages("HB", START, end, ["DAY", "TARGET"], done=done)
    ]
    assert client.stats.requests - before == len(first) - len(done)
    assert {(p.window_index, p.number) for p in rest} | set(done) == {
        (p.window_index, p.number) for p in first
    }


async def test_empty_result_is_one_empty_report(client: oxystats.AsyncClient) -> None:
    """A range with no usage gives no rows and zero totals."""
    report = await client.usage("HB", date(2030, 1, 1), date(2030, 3, 1), ["DAY"])
    assert report.rows == []
    assert report.totals == oxystats.UsageTotals(0, 0)


BAD_CALLS: list[tuple[dict[str, object], type[Exception]]] = [
    ({"date_from": datetime(2025, 1, 1)}, ValueError),
    ({"date_to": date(2024, 1, 1)}, ValueError),
    ({"group_by": []}, ValueError),
    ({"group_by": ["DAY", "DAY"]}, ValueError),
    ({"group_by": ["HOUR"]}, ValueError),
    ({"product": ""}, ValueError),
    ({"instances": [7]}, TypeError),
    ({"instances": "one-uuid"}, TypeError),
    ({"date_from": "2025-01-01"}, TypeError),
]


@pytest.mark.parametrize(("change", "error"), BAD_CALLS)
async def test_bad_arguments_send_nothing(
    oxystats_emulator: RunningEmulator,
    client: oxystats.AsyncClient,
    change: dict[str, object],
    error: type[Exception],
) -> None:
    """Every bad argument raises before any request reaches the emulator."""
    arguments: dict[str, object] = {
        "product": "HB",
        "date_from": date(2025, 1, 1),
        "date_to": date(2025, 3, 1),
        "group_by": ["DAY"],
    }
    arguments.update(change)
    with pytest.raises(error):
        await client.usage(**arguments)  # type: ignore[arg-type]
    with pytest.raises(error):
        async for _ in client.iter_usage(**arguments):  # type: ignore[arg-type]
            pass
    assert oxystats_emulator.emulator.log == []


async def test_invalid_key_fails_after_one_request_without_the_key(
    oxystats_emulator: RunningEmulator,
) -> None:
    """401 raises AuthenticationError after one request; the key is nowhere in it."""
    key = "not-a-real-key"
    async with oxystats.AsyncClient(key, base_url=oxystats_emulator.url) as bad:
        with pytest.raises(oxystats.AuthenticationError) as caught:
            await bad.usage("HB", date(2025, 1, 1), date(2025, 12, 31), ["DAY"])
        assert "not-a-real-key" not in repr(bad)
    assert len(oxystats_emulator.emulator.log) == 1
    for text in (str(caught.value), repr(caught.value), caught.value.support_report()):
        assert key not in text
    assert caught.value.attempts == 1


async def test_missing_key_header_is_permission_denied(oxystats_emulator: RunningEmulator) -> None:
    """A request without Authorization (a proxy stripped it) raises PermissionDeniedError."""

    async def strip_auth(request: httpx.Request) -> None:
        del request.headers["Authorization"]

    async with httpx.AsyncClient(event_hooks={"request": [strip_auth]}) as http:
        client = oxystats.AsyncClient(
            "secret-key-123", base_url=oxystats_emulator.url, http_client=http
        )
        with pytest.raises(oxystats.PermissionDeniedError) as caught:
            await client.instances()
        await client.aclose()
        assert not http.is_closed, "an injected httpx client is not closed by oxystats"
    assert len(oxystats_emulator.emulator.log) == 1
    assert "secret-key-123" not in caught.value.support_report()


async def test_bad_request_is_not_retried(
    oxystats_emulator: RunningEmulator, client: oxystats.AsyncClient
) -> None:
    """A product the server refuses raises BadRequestError after exactly one request."""
    with pytest.raises(oxystats.BadRequestError) as caught:
        await client.usage("XX", date(2025, 1, 1), date(2025, 1, 2), ["DAY"])
    assert caught.value.status_code == 400
    assert "  product = XX" in caught.value.support_report()
    assert len(oxystats_emulator.emulator.log) == 1


async def test_first_failure_cancels_the_fan_out(oxystats_emulator: RunningEmulator) -> None:
    """A persistent 500 mid fan-out raises ServerError itself, not an ExceptionGroup."""
    oxystats_emulator.emulator.faults = Faults(seed=3, error_500=1.0)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, max_retries=1
    ) as client:
        with pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", START, START + timedelta(days=400), ["DAY"])
    assert caught.value.attempts == 2
    assert caught.value.status_code == 500


async def test_malformed_body_raises_format_error(oxystats_emulator: RunningEmulator) -> None:
    """A 200 whose body is not the documented shape raises ResponseFormatError."""
    oxystats_emulator.emulator.faults = Faults(seed=1, malformed_body=1.0)
    async with oxystats.AsyncClient(DEFAULT_KEY, base_url=oxystats_emulator.url) as client:
        with pytest.raises(oxystats.ResponseFormatError) as caught:
            await client.instances()
    assert "/stats/v1/filters/instances" in str(caught.value)


async def test_unreachable_server_raises_connection_error() -> None:
    """Nothing listening: APIConnectionError after the retries, with the cause chained."""
    async with oxystats.AsyncClient(
        "k", base_url="http://127.0.0.1:9", max_retries=2, timeout=2.0
    ) as client:
        with pytest.raises(oxystats.APIConnectionError) as caught:
            await client.instances()
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, httpx.TransportError)


async def test_stats_count_requests(client: oxystats.AsyncClient) -> None:
    """client.stats counts the requests sent."""
    await client.usage("HB", START, START + timedelta(days=63), ["DAY"])
    assert client.stats.requests == 3, "63 days are three windows of one page each"
    assert client.stats.retries == 0


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OXYLABS_API_KEY is read when no key is given; neither shows in repr."""
    monkeypatch.setenv("OXYLABS_API_KEY", "env-key-42")
    client = oxystats.AsyncClient()
    assert "env-key-42" not in repr(client)
    monkeypatch.delenv("OXYLABS_API_KEY")
    with pytest.raises(ValueError, match="OXYLABS_API_KEY"):
        oxystats.AsyncClient()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"base_url": "ftp://x"}, ValueError),
        ({"base_url": 3}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "30"}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"key_limit": 10}, TypeError),
        ({"account": "acct"}, TypeError),
        ({"http_client": object()}, TypeError),
    ],
)
def test_bad_client_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Bad options raise ValueError or TypeError at construction."""
    with pytest.raises(error):
        oxystats.AsyncClient("k", **kwargs)  # type: ignore[arg-type]
