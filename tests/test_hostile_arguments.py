"""A careless caller: every bad argument raises ValueError or TypeError before any request.

Every kind of bad argument is one entry of `BAD_OPTIONS` (client options,
given to `AsyncClient`, directly or through the environment),
`BAD_VIEW_OPTIONS` (given to ``with_options``) or `BAD_CALLS` (arguments of
a call): that parametrisation is the table of kinds tried. Each must raise
the documented exception, with a message naming the argument (and never
Python's "unexpected keyword argument": the option must be understood, then
refused), with no request sent: the client's only way out is a recording
`FakeApi` transport, which counts what reaches it.

The controls show the refusals are precise: loopback ``http://`` is
accepted, the opt-in accepts plain ``http://`` elsewhere, a raised
``max_windows`` allows a long range, and a long instance filter is split into
several requests whose URLs fit in 8 KB, merged exactly.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import httpx
import pytest
from click.testing import CliRunner
from hostile_servers import (
    FAKE_BASE_URL,
    KEY,
    KEY_CORE,
    Cell,
    FakeApi,
    closed_port_url,
    key_in,
)

import oxystats
from oxystats.cli import cli

pytestmark = pytest.mark.anyio

PLUS_FIVE = timezone(timedelta(hours=5))
MINUS_FIVE = timezone(-timedelta(hours=5))
JANUARY = (date(2025, 1, 1), date(2025, 1, 31))
UNEXPECTED = "unexpected keyword argument"
USAGE_ARGS = ["usage", "--product", "HB", "--from", "2025-01-01", "--to", "2025-01-31"]


@attrs.frozen
class Bad:
    """One bad argument, the exception it must raise and the name its message must give."""

    id: str
    value: Any
    error: type[Exception]
    names: str
    env: dict[str, str] = attrs.field(factory=dict)


def assert_refused(caught: pytest.ExceptionInfo[Exception], bad: Bad, api: FakeApi) -> None:
    """Refused as documented: the right class, the argument named, nothing sent, no secret shown."""
    message = str(caught.value)
    assert type(caught.value) is bad.error, f"{bad.id}: {caught.value!r}"
    assert bad.names in message, f"{bad.id}: {bad.names!r} not named in {message!r}"
    assert UNEXPECTED not in message, f"{bad.id}: the option is unknown: {message}"
    assert not key_in(message), f"{bad.id}: the key is echoed: {message!r}"
    assert "s3cret-pass" not in message, f"{bad.id}: the password is echoed: {message!r}"
    assert api.requests == [], f"{bad.id}: {len(api.requests)} request(s) sent"


# --- client options ----------------------------------------------------------------


def option(option_id: str, name: str, value: Any, error: type[Exception]) -> Bad:
    """A bad value for the client option ``name``."""
    return Bad(option_id, {name: value}, error, name)


def from_env(option_id: str, variable: str, value: str, names: str | None = None) -> Bad:
    """A bad value in the environment variable ``variable`` (the option left to it)."""
    option_name = "api_key" if variable == "OXYLABS_API_KEY" else "base_url"
    return Bad(option_id, {option_name: None}, ValueError, names or variable, {variable: value})


BAD_OPTIONS = [
    option("key_nul", "api_key", f"{KEY_CORE}\x00tail", ValueError),
    option("key_non_ascii", "api_key", f"{KEY_CORE}clé", ValueError),
    option("key_inner_space", "api_key", f"{KEY_CORE} tail", ValueError),
    option("key_header_injection", "api_key", f"{KEY_CORE}\r\nX-Evil: 1", ValueError),
    option("key_tab", "api_key", f"{KEY_CORE}\ttail", ValueError),
    option("key_del", "api_key", f"{KEY_CORE}\x7f", ValueError),
    option("key_empty", "api_key", "", ValueError),
    option("key_bytes", "api_key", KEY.encode(), TypeError),
    from_env("env_key_non_ascii", "OXYLABS_API_KEY", f"{KEY_CORE}ключ"),
    from_env("env_key_inner_space", "OXYLABS_API_KEY", f"{KEY_CORE} tail"),
    option("url_userinfo", "base_url", "https://user:s3cret-pass@api.example.com", ValueError),
    option("url_query", "base_url", "https://api.example.com/?debug=1", ValueError),
    option("url_empty_query", "base_url", "https://api.example.com/?", ValueError),
    option("url_fragment", "base_url", "https://api.example.com/#top", ValueError),
    option("url_port_99999", "base_url", "https://api.example.com:99999", ValueError),
    option("url_port_not_a_number", "base_url", "https://api.example.com:https", ValueError),
    option("url_ftp", "base_url", "ftp://api.example.com", ValueError),
    option("url_no_scheme", "base_url", "api.example.com", ValueError),
    option("url_no_host", "base_url", "https://", ValueError),
    option("url_empty", "base_url", "", ValueError),
    option("url_space_in_host", "base_url", "https://api example.com", ValueError),
    option("url_bytes", "base_url", b"https://api.example.com", TypeError),
    option("url_http_remote", "base_url", "http://api.example.com", ValueError),
    option("url_http_private_ip", "base_url", "http://10.0.0.1:8080", ValueError),
    option("url_http_lookalike", "base_url", "http://localhost.example.com", ValueError),
    option("url_http_remote_ipv6", "base_url", "http://[2001:db8::1]", ValueError),
    from_env("env_url_http_remote", "OXYLABS_BASE_URL", "http://api.example.com"),
    from_env("env_url_userinfo", "OXYLABS_BASE_URL", "https://u:s3cret-pass@api.example.com"),
    from_env("env_url_query", "OXYLABS_BASE_URL", "https://api.example.com/?x=1"),
    option("insecure_flag_not_bool", "allow_insecure_http", "no", TypeError),
    option("timeout_zero", "timeout", 0, ValueError),
    option("timeout_negative", "timeout", -1.0, ValueError),
    option("timeout_nan", "timeout", math.nan, ValueError),
    option("timeout_infinite", "timeout", math.inf, ValueError),
    option("timeout_bool", "timeout", True, TypeError),
    option("timeout_string", "timeout", "5", TypeError),
    option("deadline_zero", "deadline", 0, ValueError),
    option("deadline_negative", "deadline", -1, ValueError),
    option("deadline_nan", "deadline", math.nan, ValueError),
    option("deadline_bool", "deadline", True, TypeError),
    option("deadline_string", "deadline", "10", TypeError),
    option("retries_negative", "max_retries", -1, ValueError),
    option("retries_bool", "max_retries", True, TypeError),
    option("retries_float", "max_retries", 2.0, TypeError),
    option("retries_string", "max_retries", "6", TypeError),
    option("windows_zero", "max_windows", 0, ValueError),
    option("windows_negative", "max_windows", -5, ValueError),
    option("windows_bool", "max_windows", True, TypeError),
    option("windows_float", "max_windows", 10.5, TypeError),
    option("key_limit_dict", "key_limit", {"rate": 10}, TypeError),
    option("account_string", "account", "acct-1", TypeError),
    option("event_hooks_lone_function", "event_hooks", print, TypeError),
]


def _client_options(bad: Bad) -> dict[str, Any]:
    options: dict[str, Any] = {"api_key": KEY, "base_url": FAKE_BASE_URL, **bad.value}
    return options


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda bad: bad.id)
async def test_a_bad_client_option_is_refused_before_any_request(
    bad: Bad, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bad client option raises ValueError/TypeError naming it; nothing is sent."""
    for variable, value in bad.env.items():
        monkeypatch.setenv(variable, value)
    api = FakeApi()
    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        with pytest.raises((ValueError, TypeError)) as caught:
            oxystats.AsyncClient(http_client=http, **_client_options(bad))
    assert_refused(caught, bad, api)


def test_a_synchronous_http_client_is_refused() -> None:
    """An httpx.Client (not AsyncClient) as http_client raises TypeError naming http_client."""
    with httpx.Client() as http, pytest.raises(TypeError, match="http_client"):
        oxystats.AsyncClient(KEY, http_client=http)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        Bad("url_http_remote", {"base_url": "http://api.example.com"}, ValueError, "base_url"),
        Bad("windows_zero", {"max_windows": 0}, ValueError, "max_windows"),
        Bad("insecure_flag_not_bool", {"allow_insecure_http": 1}, TypeError, "allow_insecure"),
        Bad("backend_unknown", {"backend": "curio"}, ValueError, "backend"),
        Bad("backend_not_a_string", {"backend": 1}, TypeError, "backend"),
    ],
    ids=lambda bad: bad.id,
)
def test_the_blocking_client_refuses_the_same(bad: Bad) -> None:
    """oxystats.Client refuses bad options as AsyncClient does."""
    api = FakeApi()
    with pytest.raises((ValueError, TypeError)) as caught:
        oxystats.Client(**{"api_key": KEY, "base_url": FAKE_BASE_URL, **bad.value})
    assert_refused(caught, bad, api)


BAD_VIEW_OPTIONS = [
    option("view_timeout_negative", "timeout", -1, ValueError),
    option("view_timeout_bool", "timeout", False, TypeError),
    option("view_deadline_string", "deadline", "soon", TypeError),
    option("view_deadline_negative", "deadline", -0.5, ValueError),
    option("view_retries_bool", "max_retries", True, TypeError),
    option("view_retries_negative", "max_retries", -1, ValueError),
]


@pytest.mark.parametrize("bad", BAD_VIEW_OPTIONS, ids=lambda bad: bad.id)
async def test_a_bad_view_option_is_refused(bad: Bad) -> None:
    """Each bad with_options value raises ValueError/TypeError naming it; nothing is sent."""
    api = FakeApi()
    async with api.client() as client:
        with pytest.raises((ValueError, TypeError)) as caught:
            client.with_options(**bad.value)
    assert_refused(caught, bad, api)


# --- call arguments ------------------------------------------------------------------

Call = Callable[[oxystats.AsyncClient], Awaitable[object]]


def usage(*args: Any, **kwargs: Any) -> Call:
    """``client.usage(*args)``."""
    return lambda client: client.usage(*args, **kwargs)


def by_target(date_from: Any, date_to: Any) -> Call:
    """``client.usage("HB", date_from, date_to, ["TARGET"])``."""
    return usage("HB", date_from, date_to, ["TARGET"])


def grouped(group_by: Any) -> Call:
    """``client.usage`` over January, grouped by ``group_by``."""
    return usage("HB", *JANUARY, group_by)


def filtered(instances: Any) -> Call:
    """``client.usage`` over January, by TARGET, filtered by ``instances``."""
    return usage("HB", *JANUARY, ["TARGET"], instances)


def listing(products: Any) -> Call:
    """``client.instances(products)``."""
    return lambda client: client.instances(products)


async def first_page(client: oxystats.AsyncClient) -> object:
    """The first page of ``iter_usage_pages`` over a naive range."""
    pages = client.iter_usage_pages("HB", datetime(2025, 1, 1), date(2025, 1, 2), ["DAY"])
    return await anext(pages)


async def stream_with(client: oxystats.AsyncClient, buffer: Any) -> object:
    """Open ``stream_usage_pages`` over January with ``buffer``."""
    async with client.stream_usage_pages("HB", *JANUARY, ["TARGET"], buffer=buffer) as pages:
        return [page async for page in pages]


async def resume_with(client: oxystats.AsyncClient, done: Any) -> object:
    """Stream January, resuming from ``done``."""
    async with client.stream_usage_pages("HB", *JANUARY, ["TARGET"], done=done) as pages:
        return [page async for page in pages]


@attrs.frozen
class BadCall:
    """One call with a bad argument, the exception and the name its message must give."""

    id: str
    call: Call
    error: type[Exception]
    names: str
    options: dict[str, Any] = attrs.field(factory=dict)


BAD_CALLS = [
    BadCall(
        "naive_datetime", by_target(datetime(2025, 1, 1), date(2025, 1, 2)), ValueError, "date_from"
    ),
    BadCall("reversed_range", by_target(date(2025, 2, 1), date(2025, 1, 1)), ValueError, "date_to"),
    BadCall("date_string", by_target("2025-01-01", date(2025, 1, 2)), TypeError, "date_from"),
    BadCall("date_timestamp", by_target(1735689600, date(2025, 1, 2)), TypeError, "date_from"),
    BadCall(
        "year_1_east_of_utc",
        by_target(datetime(1, 1, 1, tzinfo=PLUS_FIVE), date(1, 1, 5)),
        ValueError,
        "0001-01-01",
    ),
    BadCall(
        "year_9999_west_of_utc",
        by_target(date(9999, 12, 1), datetime(9999, 12, 31, 23, 0, tzinfo=MINUS_FIVE)),
        ValueError,
        "9999-12-31",
    ),
    BadCall(
        "beyond_default_max_windows",
        by_target(date(1900, 1, 1), date(2100, 12, 31)),
        ValueError,
        "max_windows",
    ),
    BadCall(
        "whole_calendar", by_target(date(1, 1, 1), date(9999, 12, 30)), ValueError, "max_windows"
    ),
    BadCall(
        "beyond_own_max_windows",
        by_target(date(2025, 1, 1), date(2025, 5, 31)),
        ValueError,
        "max_windows",
        {"max_windows": 3},
    ),
    BadCall("group_by_empty", grouped([]), ValueError, "group_by"),
    BadCall("group_by_unknown", grouped(["WEEK"]), ValueError, "group_by"),
    BadCall("group_by_twice", grouped(["DAY", "day"]), ValueError, "group_by"),
    BadCall("group_by_int", grouped(5), TypeError, "group_by"),
    BadCall("group_by_bytes", grouped(b"DAY"), TypeError, "group_by"),
    BadCall("group_by_none_inside", grouped([None]), TypeError, "group_by"),
    BadCall("product_empty", usage("", *JANUARY, ["DAY"]), ValueError, "product"),
    BadCall("product_padded", usage(" HB", *JANUARY, ["DAY"]), ValueError, "product"),
    BadCall("product_none", usage(None, *JANUARY, ["DAY"]), TypeError, "product"),
    BadCall("product_int", usage(5, *JANUARY, ["DAY"]), TypeError, "product"),
    BadCall("instances_one_string", filtered("0000-aaaa"), TypeError, "instances"),
    BadCall("instances_empty", filtered([]), ValueError, "instances"),
    BadCall("instances_empty_id", filtered([""]), ValueError, "instance"),
    BadCall("instances_int", filtered([1]), TypeError, "instance"),
    BadCall("instances_none_inside", filtered([None]), TypeError, "instance"),
    BadCall("instances_id_too_long", filtered(["x" * 10_000]), ValueError, "instance"),
    BadCall("products_empty", listing([]), ValueError, "products"),
    BadCall("products_twice", listing(["HB", "HB"]), ValueError, "products"),
    BadCall("products_int", listing(5), TypeError, "products"),
    BadCall("products_empty_string", listing([""]), ValueError, "products"),
    BadCall("iter_naive_datetime", first_page, ValueError, "date_from"),
    BadCall("stream_buffer_zero", lambda client: stream_with(client, 0), ValueError, "buffer"),
    BadCall("stream_buffer_bool", lambda client: stream_with(client, True), TypeError, "buffer"),
    BadCall("done_not_a_mapping", lambda client: resume_with(client, [(0, 1)]), TypeError, "done"),
    BadCall("done_zero_pages", lambda client: resume_with(client, {(0, 1): 0}), ValueError, "done"),
    BadCall(
        "done_no_such_window", lambda client: resume_with(client, {(9, 1): 3}), ValueError, "done"
    ),
    BadCall(
        "done_page_past_total", lambda client: resume_with(client, {(0, 4): 3}), ValueError, "done"
    ),
    BadCall(
        "done_total_text", lambda client: resume_with(client, {(0, 1): "3"}), TypeError, "done"
    ),
    BadCall(
        "done_totals_disagree",
        lambda client: resume_with(client, {(0, 1): 3, (0, 2): 4}),
        ValueError,
        "done",
    ),
]


@pytest.mark.parametrize("bad", BAD_CALLS, ids=lambda bad: bad.id)
async def test_a_bad_call_argument_is_refused_before_any_request(bad: BadCall) -> None:
    """Each bad call argument raises ValueError/TypeError naming it; nothing is sent."""
    api = FakeApi()
    async with api.client(**bad.options) as client:
        with anyio.fail_after(5), pytest.raises((ValueError, TypeError)) as caught:
            await bad.call(client)
    assert_refused(caught, Bad(bad.id, None, bad.error, bad.names), api)


def test_the_tables_hold_at_least_forty_kinds() -> None:
    """The tables list at least 40 distinct kinds of bad argument."""
    ids = [bad.id for bad in [*BAD_OPTIONS, *BAD_VIEW_OPTIONS]] + [bad.id for bad in BAD_CALLS]
    assert len(set(ids)) == len(ids) >= 40


# --- what is not refused -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.5.6.7",
        "http://localhost:8080",
        "http://[::1]:8080",
        "https://api.example.com:8443/prefix",
    ],
)
def test_a_loopback_or_https_url_is_accepted(url: str) -> None:
    """Plain http:// to this machine, and any https://, need no opt-in."""
    client = oxystats.AsyncClient(KEY, base_url=url)
    assert client.base_url == url


def test_the_opt_in_accepts_plain_http_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """allow_insecure_http=True accepts http:// to another host, as argument or environment."""
    options: dict[str, Any] = {"allow_insecure_http": True}
    client = oxystats.AsyncClient(KEY, base_url="http://api.example.com", **options)
    assert client.base_url == "http://api.example.com"
    monkeypatch.setenv("OXYLABS_BASE_URL", "http://10.0.0.1:8080")
    assert oxystats.AsyncClient(KEY, **options).base_url == "http://10.0.0.1:8080"


async def test_a_raised_max_windows_allows_a_long_range() -> None:
    """Five windows are refused with max_windows=4 and fetched with max_windows=5."""
    five = (date(2025, 1, 1), date(2025, 5, 31))
    api = FakeApi()
    refusing: dict[str, Any] = {"max_windows": 4}
    async with api.client(**refusing) as client:
        with pytest.raises(ValueError, match="max_windows"):
            await client.usage("HB", *five, ["DAY"])
    allowing: dict[str, Any] = {"max_windows": 5}
    async with api.client(**allowing) as client:
        report = await client.usage("HB", *five, ["DAY"])
    assert report.rows
    assert len({request.url.params["date_from"] for request in api.requests}) == 5


def test_the_command_line_refuses_plain_http_elsewhere() -> None:
    """`oxystats usage --base-url http://api.example.com`: one stderr line, exit 2, no request."""
    # Were the refusal missing, a proxy nothing listens on would take the request, not the world.
    nowhere = closed_port_url()
    result = CliRunner().invoke(
        cli,
        [*USAGE_ARGS, "--base-url", "http://api.example.com", "--quiet"],
        env={"OXYLABS_API_KEY": KEY, "HTTP_PROXY": nowhere, "HTTPS_PROXY": nowhere},
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("oxystats: error: ")
    assert result.stderr.count("\n") == 1
    assert "base_url" in result.stderr or "base-url" in result.stderr


def test_the_command_line_has_the_opt_in() -> None:
    """`oxystats usage --help` offers --allow-insecure-http."""
    result = CliRunner().invoke(cli, ["usage", "--help"])
    assert result.exit_code == 0
    assert "--allow-insecure-http" in result.output


# --- a long instance filter ------------------------------------------------------

MANY = [f"{index:08x}-5e1f-4c2a-9b3d-{index:012x}" for index in range(10_000)]
"""Ten thousand instance ids: about 530 KB of query string together."""


def many_instances_api() -> FakeApi:
    """A fake API that knows `MANY`; every 50th instance has usage on ten January days."""
    cells = [
        Cell(date(2025, 1, day), "t.example", uuid, 1 + index % 7, 100 * (1 + index % 7))
        for index, uuid in enumerate(MANY)
        if index % 50 == 0
        for day in range(1, 11)
    ]
    listed = [{"uuid": uuid, "name": "n", "status": "enabled", "product": "HB"} for uuid in MANY]
    return FakeApi(cells, listed)


@pytest.mark.parametrize("grouping", [["INSTANCE"], ["DAY"]])
async def test_a_long_instance_filter_is_split_and_merged_exactly(grouping: list[str]) -> None:
    """10,000 instance ids: several requests, each URL within 8 KB, disjoint parts, exact sums."""
    api = many_instances_api()
    fast = oxystats.Limit(rate=10_000.0, burst=100, in_flight=10)
    options: dict[str, Any] = {"key_limit": fast, "account": oxystats.Account(fast)}
    async with api.client(**options) as client:
        with anyio.fail_after(30):
            report = await client.usage("HB", *JANUARY, grouping, MANY)
    usage_requests = [r for r in api.requests if r.url.path == "/stats/v1/usage"]
    assert len(usage_requests) > 1
    assert max(len(str(request.url)) for request in usage_requests) <= 8192
    parts = [
        r.url.params.get_list("instances[]") for r in usage_requests if r.url.params["page"] == "1"
    ]
    filtered_ids = [uuid for part in parts for uuid in part]
    assert sorted(filtered_ids) == sorted(MANY), "the parts are not disjoint, or miss ids"
    expected: dict[tuple[str, ...], tuple[int, int]] = {}
    for cell in api.cells:
        key = tuple(cell.key(group) for group in grouping)
        requests, traffic = expected.get(key, (0, 0))
        expected[key] = (requests + cell.requests, traffic + cell.traffic_bytes)
    assert {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows} == expected
    assert len(report.rows) == len(expected)
    assert report.totals.requests == sum(requests for requests, _ in expected.values())
    assert report.unknown_instances == ()


async def test_a_long_filter_with_unknown_ids_warns_once() -> None:
    """10,000 ids of which 3 unknown: one UnknownInstanceWarning naming 3, the rest merged."""
    api = many_instances_api()
    api.instance_list = api.instance_list[3:]
    fast = oxystats.Limit(rate=10_000.0, burst=100, in_flight=10)
    options: dict[str, Any] = {"key_limit": fast, "account": oxystats.Account(fast)}
    async with api.client(**options) as client:
        with anyio.fail_after(30), pytest.warns(oxystats.UnknownInstanceWarning) as warned:
            report = await client.usage("HB", *JANUARY, ["INSTANCE"], MANY)
    assert len(warned) == 1
    assert report.unknown_instances == tuple(MANY[:3])


def test_dates_the_windows_can_hold_are_accepted() -> None:
    """Year 1 and year 9999 in UTC, far from the ends of datetime, plan windows without error."""
    early = oxystats.UsageQuery.build("HB", date(1, 1, 2), date(1, 3, 1), ["DAY"])
    assert len(early.windows()) == 2
    late = oxystats.UsageQuery.build("HB", date(9999, 10, 1), date(9999, 11, 30), ["DAY"])
    assert len(late.windows()) == 2
    assert late.windows()[-1].end == datetime(9999, 11, 30, 23, 59, 59, tzinfo=UTC)
