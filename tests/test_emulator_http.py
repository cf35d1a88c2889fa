"""The emulator over real HTTP: every documented status, the 31-day rule, pagination, filters."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from oxystats.emulator import DEFAULT_KEY, Faults, RateLimitRule, RateLimits, RunningEmulator

pytestmark = pytest.mark.anyio

USAGE = "/stats/v1/usage"
INSTANCES = "/stats/v1/filters/instances"
Params = list[tuple[str, str | int | float | bool | None]]


def usage_params(
    date_from: str = "2024-03-01T00:00:00Z",
    date_to: str = "2024-03-31T23:59:59Z",
    group_by: tuple[str, ...] = ("DAY", "TARGET"),
    product: str = "HB",
    **extra: str,
) -> Params:
    """Query parameters of a usage request, ``group_by[]`` repeated in order."""
    params: Params = [("product", product), ("date_from", date_from), ("date_to", date_to)]
    params += [("group_by[]", g) for g in group_by]
    return params + list(extra.items())


@contextlib.asynccontextmanager
async def connect(running: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client pointed at the emulator, authenticated with the default key.

    A context manager rather than an async fixture: async generator fixtures
    need trio >= 0.26 under anyio 4.16.
    """
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=running.url, headers=headers) as client:
        yield client


async def fetch_all(client: httpx.AsyncClient, params: Params) -> list[dict[str, Any]]:
    """Every row of a usage query, following the pagination."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await client.get(USAGE, params=[*params, ("page", str(page))])
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["data"]
        if page >= body["meta"]["pagination"]["total_pages"]:
            return rows
        page += 1


async def test_usage_200_has_the_documented_shape(oxystats_emulator: RunningEmulator) -> None:
    """A usage page has exactly the sample's keys, with ints and one key per grouping."""
    async with connect(oxystats_emulator) as client:
        response = await client.get(USAGE, params=usage_params())
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"data", "totals", "meta"}
        assert set(body["totals"]) == {"requests", "traffic_bytes"}
        assert set(body["meta"]) == {"pagination", "grouping"}
        assert set(body["meta"]["pagination"]) == {"page", "per_page", "total_items", "total_pages"}
        assert body["meta"]["grouping"] == ["DAY", "TARGET"]
        assert len(body["data"]) == 100
        for row in body["data"]:
            assert set(row) == {"grouped_by", "requests", "traffic_bytes"}
            assert len(row["grouped_by"]) == 2
            assert row["requests"] > 0
            assert isinstance(row["traffic_bytes"], int)
        keys = [tuple(row["grouped_by"]) for row in body["data"]]
        assert keys == sorted(keys)


async def test_instances_200_matches_the_sample(oxystats_emulator: RunningEmulator) -> None:
    """The instance list, called as on the page, has the sample's shape and echoes per_page."""
    async with connect(oxystats_emulator) as client:
        params: Params = [
            ("products[]", "HB"),
            ("products[]", "DC"),
            ("page", "1"),
            ("per_page", "50"),
        ]
        response = await client.get(INSTANCES, params=params)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"data", "meta"}
        assert body["meta"] == {
            "pagination": {"page": 1, "per_page": 50, "total_items": 6, "total_pages": 1}
        }
        assert {item["product"] for item in body["data"]} == {"HB", "DC"}
        for item in body["data"]:
            assert set(item) == {"uuid", "name", "status", "product"}
            assert item["status"] in {"enabled", "disabled"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], {"HB", "DC"}),
        ([("products[]", "null")], {"HB", "DC"}),
        ([("products[]", "DC")], {"DC"}),
    ],
)
async def test_instances_product_filter(
    oxystats_emulator: RunningEmulator, params: Params, expected: set[str]
) -> None:
    """No filter and the literal null both mean every product; a product filters."""
    async with connect(oxystats_emulator) as client:
        body = (await client.get(INSTANCES, params=params)).json()
        assert {item["product"] for item in body["data"]} == expected


async def test_instances_pagination(oxystats_emulator: RunningEmulator) -> None:
    """per_page=4 splits the six instances over two pages; page 3 is empty."""
    async with connect(oxystats_emulator) as client:
        pages = [
            (await client.get(INSTANCES, params={"per_page": 4, "page": page})).json()
            for page in (1, 2, 3)
        ]
        assert [len(p["data"]) for p in pages] == [4, 2, 0]
        assert all(p["meta"]["pagination"]["total_pages"] == 2 for p in pages)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic dGVzdA==", "Bearer a b", DEFAULT_KEY]
)
async def test_missing_or_malformed_key_is_403(
    oxystats_emulator: RunningEmulator, authorization: str | None
) -> None:
    """Without a usable Bearer key both endpoints answer 403 Forbidden."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        for path in (USAGE, INSTANCES):
            response = await client.get(path, params=usage_params())
            assert response.status_code == 403
            assert response.json() == {
                "error": "Forbidden",
                "message": "Access denied: missing API key. "
                "Please contact support or your account manager.",
            }


async def test_unknown_key_is_401(oxystats_emulator: RunningEmulator) -> None:
    """A well-formed Bearer header with an unknown key answers 401 Invalid request."""
    headers = {"Authorization": "Bearer not-a-key"}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        response = await client.get(USAGE, params=usage_params())
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid request"


async def test_bearer_scheme_is_case_insensitive(oxystats_emulator: RunningEmulator) -> None:
    """'bearer' works like 'Bearer' (RFC 7235 schemes are case-insensitive)."""
    headers = {"Authorization": f"bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=oxystats_emulator.url, headers=headers) as client:
        assert (await client.get(INSTANCES)).status_code == 200


def _drop(params: Params, name: str) -> Params:
    return [(k, v) for k, v in params if k != name]


def _set(params: Params, name: str, value: str) -> Params:
    return [*_drop(params, name), (name, value)]


BASE = usage_params()
BAD_USAGE = [
    ("product", _drop(BASE, "product")),
    ("product", _set(BASE, "product", "XX")),
    ("product", _set(BASE, "product", "hb")),
    ("date_from", _drop(BASE, "date_from")),
    ("date_from", _set(BASE, "date_from", "2024-03-01T00:00:00")),
    ("date_from", _set(BASE, "date_from", "2024-03-01")),
    ("date_from", _set(BASE, "date_from", "yesterday")),
    ("date_from", _set(BASE, "date_from", "2024-02-30T00:00:00Z")),
    ("date_from", _set(BASE, "date_from", "2024-03-01T00:00:00 02:00")),
    ("date_from", _set(BASE, "date_from", "2024-03-01T00:00:00+25:00")),
    ("date_to", _drop(BASE, "date_to")),
    ("date_to", _set(BASE, "date_to", "2024-03-31T23:59:59")),
    ("date_to", _set(BASE, "date_to", "2024-02-29T00:00:00Z")),
    ("group_by[]", _drop(BASE, "group_by[]")),
    ("group_by[]", [*BASE, ("group_by[]", "WEEK")]),
    ("group_by[]", [*BASE, ("group_by[]", "DAY")]),
    ("page", [*BASE, ("page", "0")]),
    ("page", [*BASE, ("page", "two")]),
    ("page", [*BASE, ("page", "-1")]),
    ("page", [*BASE, ("page", "1"), ("page", "2")]),
    ("per_page", [*BASE, ("per_page", "101")]),
    ("per_page", [*BASE, ("per_page", "0")]),
    ("per_page", [*BASE, ("per_page", "1.5")]),
]


@pytest.mark.parametrize(("parameter", "params"), BAD_USAGE)
async def test_bad_usage_parameter_is_400_naming_it(
    oxystats_emulator: RunningEmulator, parameter: str, params: Params
) -> None:
    """Each malformed or missing usage parameter gives a 400 whose message names it."""
    async with connect(oxystats_emulator) as client:
        response = await client.get(USAGE, params=params)
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "Bad request"
        assert f"'{parameter}'" in body["message"]


@pytest.mark.parametrize(
    ("parameter", "params"),
    [
        ("products[]", [("products[]", "XX")]),
        ("page", [("page", "0")]),
        ("per_page", [("per_page", "101")]),
    ],
)
async def test_bad_instances_parameter_is_400(
    oxystats_emulator: RunningEmulator, parameter: str, params: Params
) -> None:
    """Bad instance-list parameters give a 400 naming the parameter."""
    async with connect(oxystats_emulator) as client:
        response = await client.get(INSTANCES, params=params)
        assert response.status_code == 400
        assert f"'{parameter}'" in response.json()["message"]


@pytest.mark.parametrize(
    ("date_from", "date_to", "status"),
    [
        ("2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z", 200),
        ("2024-03-01T00:00:00Z", "2024-04-01T00:00:01Z", 400),
        ("2024-03-01T00:00:00+02:00", "2024-04-01T00:00:00+02:00", 200),
        ("2024-03-01T00:00:00+02:00", "2024-03-31T22:00:01Z", 400),
        ("2024-03-01T00:00:00-07:30", "2024-04-01T07:30:00Z", 200),
        ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z", 200),
        ("2024-03-01T00:00:01Z", "2024-03-01T00:00:00Z", 400),
        ("2024-03-01T02:00:00+02:00", "2024-03-01T00:00:00Z", 200),
    ],
)
async def test_31_day_boundary(
    oxystats_emulator: RunningEmulator, date_from: str, date_to: str, status: int
) -> None:
    """Exactly 31 days passes, one second more fails, a reversed range fails (offsets count)."""
    async with connect(oxystats_emulator) as client:
        response = await client.get(USAGE, params=usage_params(date_from, date_to))
        assert response.status_code == status, response.text


async def test_empty_result_is_one_page(oxystats_emulator: RunningEmulator) -> None:
    """A range before the data starts gives no rows, total_items 0 and total_pages 1."""
    async with connect(oxystats_emulator) as client:
        params = usage_params("2020-01-01T00:00:00Z", "2020-01-31T00:00:00Z")
        body = (await client.get(USAGE, params=params)).json()
        assert body["data"] == []
        assert body["totals"] == {"requests": 0, "traffic_bytes": 0}
        assert body["meta"]["pagination"] == {
            "page": 1,
            "per_page": 100,
            "total_items": 0,
            "total_pages": 1,
        }


async def test_last_partial_page_and_page_past_the_end(oxystats_emulator: RunningEmulator) -> None:
    """The last page holds the remainder; a page past the end is empty with the same meta."""
    async with connect(oxystats_emulator) as client:
        first = (await client.get(USAGE, params=usage_params(per_page="30"))).json()
        pagination = first["meta"]["pagination"]
        total, pages = pagination["total_items"], pagination["total_pages"]
        assert pages == -(-total // 30)
        assert total % 30 != 0
        last = (await client.get(USAGE, params=usage_params(per_page="30", page=str(pages)))).json()
        assert len(last["data"]) == total % 30
        past = (
            await client.get(USAGE, params=usage_params(per_page="30", page=str(pages + 1)))
        ).json()
        assert past["data"] == []
        assert past["meta"]["pagination"] == {**pagination, "page": pages + 1}
        assert past["totals"] == first["totals"] == last["totals"]


async def test_group_by_order_is_kept(oxystats_emulator: RunningEmulator) -> None:
    """TARGET then DAY gives (target, day) keys and meta.grouping in that order."""
    async with connect(oxystats_emulator) as client:
        body = (await client.get(USAGE, params=usage_params(group_by=("TARGET", "DAY")))).json()
        assert body["meta"]["grouping"] == ["TARGET", "DAY"]
        target, day = body["data"][0]["grouped_by"]
        assert target.startswith("www.target-")
        assert datetime.strptime(day, "%Y-%m-%d")


async def test_plain_group_by_is_an_alias(oxystats_emulator: RunningEmulator) -> None:
    """The table's spelling ``group_by`` gives the same answer as ``group_by[]``."""
    async with connect(oxystats_emulator) as client:
        brackets = await client.get(USAGE, params=usage_params(group_by=("INSTANCE", "DAY")))
        plain = [
            (k.replace("group_by[]", "group_by"), v)
            for k, v in usage_params(group_by=("INSTANCE", "DAY"))
        ]
        assert (await client.get(USAGE, params=plain)).json() == brackets.json()


async def test_instances_filter(oxystats_emulator: RunningEmulator) -> None:
    """Known UUIDs filter, unknown ones are ignored, only-unknown gives an empty result."""
    async with connect(oxystats_emulator) as client:
        hb = oxystats_emulator.emulator.instance_list(["HB"])
        wanted = hb[1]["uuid"]
        base = usage_params(group_by=("INSTANCE",))
        everything = (await client.get(USAGE, params=base)).json()
        assert len(everything["data"]) == 3
        one = (await client.get(USAGE, params=[*base, ("instances[]", wanted)])).json()
        assert [row["grouped_by"] for row in one["data"]] == [[wanted]]
        unknown = "00000000-0000-4000-8000-000000000000"
        mixed = [
            *base,
            ("instances[]", unknown),
            ("instances[]", "garbage"),
            ("instances[]", wanted),
        ]
        assert (await client.get(USAGE, params=mixed)).json() == one
        nothing = (await client.get(USAGE, params=[*base, ("instances[]", unknown)])).json()
        assert nothing["data"] == []
        assert nothing["meta"]["pagination"]["total_pages"] == 1


async def test_paged_rows_equal_ground_truth(oxystats_emulator: RunningEmulator) -> None:
    """Every page joined equals ground_truth, with second-precise offset edges."""
    async with connect(oxystats_emulator) as client:
        date_from, date_to = "2024-05-03T13:27:41+02:00", "2024-06-02T09:00:07-07:30"
        group_by = ("DAY", "INSTANCE", "TARGET")
        rows = await fetch_all(client, usage_params(date_from, date_to, group_by, product="DC"))
        truth = oxystats_emulator.emulator.ground_truth(
            "DC", datetime.fromisoformat(date_from), datetime.fromisoformat(date_to), group_by
        )
        assert len(rows) > 1000
        assert {tuple(r["grouped_by"]): (r["requests"], r["traffic_bytes"]) for r in rows} == (
            truth.rows
        )
        keys = [tuple(r["grouped_by"]) for r in rows]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys)
        body = (
            await client.get(USAGE, params=usage_params(date_from, date_to, group_by, "DC"))
        ).json()
        assert (body["totals"]["requests"], body["totals"]["traffic_bytes"]) == truth.totals


async def test_rate_limited_request_is_429_with_retry_after(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Past the per-key window the server answers 429 with a whole-second Retry-After."""
    async with connect(oxystats_emulator) as client:
        oxystats_emulator.emulator.limits = RateLimits(
            per_key=RateLimitRule(window_requests=2, window_seconds=5)
        )
        statuses = [(await client.get(INSTANCES)).status_code for _ in range(2)]
        response = await client.get(INSTANCES)
        assert statuses == [200, 200]
        assert response.status_code == 429
        assert response.json()["error"] == "Too many requests"
        assert 1 <= int(response.headers["retry-after"]) <= 5


@pytest.mark.parametrize(
    ("faults", "status"), [(Faults(error_500=1.0), 500), (Faults(error_503=1.0), 503)]
)
async def test_injected_server_errors(
    oxystats_emulator: RunningEmulator, faults: Faults, status: int
) -> None:
    """Faults with probability 1 turn every request into a documented 5xx JSON error."""
    async with connect(oxystats_emulator) as client:
        oxystats_emulator.emulator.faults = faults
        response = await client.get(USAGE, params=usage_params())
        assert response.status_code == status
        expected = "Internal server error" if status == 500 else "Service unavailable"
        assert response.json()["error"] == expected


async def test_dropped_connection_raises_transport_error(
    oxystats_emulator: RunningEmulator,
) -> None:
    """A dropped connection dies mid-body: httpx raises a TransportError, then recovers."""
    async with connect(oxystats_emulator) as client:
        oxystats_emulator.emulator.faults = Faults(drop_connection=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(USAGE, params=usage_params())
        oxystats_emulator.emulator.faults = Faults()
        assert (await client.get(USAGE, params=usage_params())).status_code == 200


async def test_log_and_counters_never_contain_the_key(oxystats_emulator: RunningEmulator) -> None:
    """Log entries and counters identify callers by account and label, never by key."""
    async with connect(oxystats_emulator) as client:
        await client.get(INSTANCES)
        await client.get(USAGE, params=usage_params())
        await client.get(INSTANCES, headers={"Authorization": "Bearer wrong-key"})
        emulator = oxystats_emulator.emulator
        dumped = json.dumps([entry.as_json() for entry in emulator.log]) + json.dumps(
            emulator.stats()
        )
        dumped += repr(emulator.log) + repr(emulator.counters) + repr(emulator.config)
        assert DEFAULT_KEY not in dumped
        assert "wrong-key" not in dumped
        assert [entry.key_id for entry in emulator.log] == [
            "account-1/key-1",
            "account-1/key-1",
            "?",
        ]
        assert [entry.status for entry in emulator.log] == [200, 200, 401]
        assert emulator.counters.by_key == {"account-1/key-1": 2, "?": 1}
        assert emulator.counters.by_status == {200: 2, 401: 1}


async def test_admin_endpoints(oxystats_emulator: RunningEmulator) -> None:
    """/__emulator__/stats counts API requests (not itself) and /__emulator__/reset clears."""
    async with connect(oxystats_emulator) as client:
        await client.get(INSTANCES)
        async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
            stats = (await anonymous.get("/__emulator__/stats")).json()
            assert stats["total"] == 1
            assert stats["by_status"] == {"200": 1}
            log = (await anonymous.get("/__emulator__/log")).json()
            assert [entry["path"] for entry in log] == [INSTANCES]
            assert (await anonymous.post("/__emulator__/reset")).status_code == 200
            assert (await anonymous.get("/__emulator__/stats")).json()["total"] == 0


async def test_unknown_path_404_and_wrong_method_405(oxystats_emulator: RunningEmulator) -> None:
    """Unknown paths are a JSON 404; POST on an endpoint is a JSON 405."""
    async with connect(oxystats_emulator) as client:
        missing = await client.get("/stats/v2/usage")
        assert missing.status_code == 404
        assert missing.json()["error"] == "Not found"
        wrong = await client.post(USAGE)
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET"
