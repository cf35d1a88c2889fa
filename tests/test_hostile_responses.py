"""Hostile servers: 2xx answers that lie, contradict themselves or are not what was asked.

Every kind of lie is one entry of `USAGE_LIES`, `INSTANCES_LIES` or
`TRANSPORT_LIES` below (its id, what the server does, the exception and the
field it must name): that parametrisation is the table of kinds tried. Each
one must raise its documented exception and never return a result; a
``ResponseFormatError`` must name the offending field and the request.

The first two tables are served by `FakeApi` through ``httpx.MockTransport``
(an honest fake of the two endpoints, each lie rewriting its answer); the
third by `RawServer`, a real HTTP server on 127.0.0.1, where the lie is in
the bytes on the wire (encodings, lengths, sizes). The honest fake's answers
are checked first, so that every refusal below is the lie's doing.
"""

from __future__ import annotations

import functools
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import anyio
import attrs
import pytest
from hostile_servers import (
    INSTANCES_PATH,
    USAGE_PATH,
    Answer,
    Asked,
    Cell,
    Doc,
    Exchange,
    FakeApi,
    Lie,
    RawServer,
    guarded,
    honest_body,
    key_in,
    raised_by,
    standard_cells,
)

import oxystats

pytestmark = pytest.mark.anyio

Call = Callable[[oxystats.AsyncClient], Awaitable[object]]

JANUARY = (date(2025, 1, 1), date(2025, 1, 31))
"""One window of 31 days: 250 TARGET rows, three pages (100, 100, 50)."""
TWO_MONTHS = (date(2025, 1, 1), date(2025, 2, 28))
"""Two windows; every target has usage in both."""
ONE_DAY = (date(2025, 1, 1), date(2025, 1, 1))
"""One window of one page."""


async def usage_january(client: oxystats.AsyncClient) -> object:
    """``usage`` over one three-page window, by TARGET."""
    return await client.usage("HB", *JANUARY, ["TARGET"])


async def usage_two_months(client: oxystats.AsyncClient) -> object:
    """``usage`` over two three-page windows, by TARGET."""
    return await client.usage("HB", *TWO_MONTHS, ["TARGET"])


async def usage_one_day(client: oxystats.AsyncClient) -> object:
    """``usage`` over one one-page window, by TARGET."""
    return await client.usage("HB", *ONE_DAY, ["TARGET"])


async def usage_day_target(client: oxystats.AsyncClient) -> object:
    """``usage`` over one window, by DAY then TARGET."""
    return await client.usage("HB", *JANUARY, ["DAY", "TARGET"])


async def list_instances(client: oxystats.AsyncClient) -> object:
    """``instances()``: 150 instances, two pages."""
    return await client.instances()


# --- building lies -------------------------------------------------------------------


def set_field(doc: Any, path: str, value: object) -> None:
    """Set ``doc`` at a path such as ``meta.pagination.page`` or ``data[3].requests``."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for index in rest.rstrip("]").split("]["):
            if index:
                steps.append(int(index))
    target = doc
    for step in steps[:-1]:
        target = target[step]
    target[steps[-1]] = value


def on_page(number: int, change: Callable[[Doc], object]) -> Lie:
    """A lie: ``change`` page ``number`` in place (of every window); other pages honest."""

    def lie(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
        if asked.page == number:
            change(doc)
        return doc

    return lie


def on_pages_from(number: int, change: Callable[[Doc], object]) -> Lie:
    """A lie: ``change`` every page from ``number`` on, in place."""

    def lie(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
        if asked.page >= number:
            change(doc)
        return doc

    return lie


def setting(path: str, value: object, page: int = 1) -> Lie:
    """A lie: page ``page`` has ``value`` at ``path``."""
    return on_page(page, lambda doc: set_field(doc, path, value))


def pagination(number: int = 1, /, **values: int | bool) -> Lie:
    """A lie: page ``number`` claims these ``meta.pagination`` values."""
    return on_page(number, lambda doc: doc["meta"]["pagination"].update(values))


def raw(page: int, body: Callable[[Doc], bytes]) -> Lie:
    """A lie: page ``page`` is sent as the bytes ``body(honest_page)``."""

    def lie(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Answer:
        return body(doc) if asked.page == page else doc

    return lie


def ignore_page(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
    """A proxy that drops ``page``: every page is page 1."""
    return honest(1)


def relabel_page_one(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
    """Page 2 carries page 1's rows, labelled page 2 (a cache keyed without ``page``)."""
    if asked.page == 2:
        doc["data"] = honest(1)["data"]
    return doc


def shift_page(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
    """Page 2 is answered with page 3, which says it is page 3."""
    return honest(3) if asked.page == 2 else doc


def duplicate_across_pages(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
    """Page 2 repeats the first key of page 1."""
    if asked.page == 2:
        doc["data"][0]["grouped_by"] = honest(1)["data"][0]["grouped_by"]
    return doc


def in_second_window(lie: Lie) -> Lie:
    """``lie`` applied to the second window (February) only."""

    def second(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Answer:
        assert asked.date_from is not None
        if asked.date_from.astimezone(UTC) >= datetime(2025, 2, 1, tzinfo=UTC):
            return lie(asked, doc, honest)
        return doc

    return second


def swap_grouping(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Doc:
    """Asked DAY then TARGET, answers TARGET then DAY (keys swapped too)."""
    doc["meta"]["grouping"] = list(reversed(doc["meta"]["grouping"]))
    for row in doc["data"]:
        row["grouped_by"] = list(reversed(row["grouped_by"]))
    return doc


def json_with(doc: Doc, path: str, token: str) -> bytes:
    """``doc`` as JSON, with the raw JSON ``token`` at ``path``."""
    set_field(doc, path, 987654321987)
    return json.dumps(doc).replace("987654321987", token).encode()


def change_rows(change: Callable[[list[Doc]], object]) -> Callable[[Doc], object]:
    """A page change that edits the page's rows."""
    return lambda doc: change(doc["data"])


def extra_row(doc: Doc) -> None:
    """One more row, with a key no other row has."""
    doc["data"].append({"grouped_by": ["zzz.extra"], "requests": 1, "traffic_bytes": 1})


def extra_instance(doc: Doc) -> None:
    """One more instance, with a uuid no other instance has."""
    doc["data"].append({"uuid": "zzz", "name": "z", "status": "enabled", "product": "HB"})


def more_instances(doc: Doc) -> None:
    """Page 2 of 2 (50 instances) becomes page 2 of 3: 100 instances of 250."""
    doc["data"].extend(
        {"uuid": f"new-{i}", "name": "n", "status": "enabled", "product": "HB"} for i in range(50)
    )
    doc["meta"]["pagination"].update(total_pages=3, total_items=250)


def halve_per_page(doc: Doc) -> None:
    """The page size the server picked itself: 50, paginated consistently."""
    doc["data"] = doc["data"][:50]
    block = doc["meta"]["pagination"]
    block.update(per_page=50, total_pages=-(-block["total_items"] // 50))


def add_totals(requests: int) -> Callable[[Doc], object]:
    """A page change: ``totals.requests`` off by ``requests``."""
    return lambda doc: doc["totals"].update(requests=doc["totals"]["requests"] + requests)


def grow_total_pages(doc: Doc) -> None:
    """One page more than page 1 said (and items to match)."""
    block = doc["meta"]["pagination"]
    block.update(total_pages=block["total_pages"] + 1, total_items=block["total_items"] + 100)


def empty_pages(doc: Doc) -> None:
    """No items, no rows, yet a million pages."""
    doc["data"] = []
    doc["totals"] = {"requests": 0, "traffic_bytes": 0}
    doc["meta"]["pagination"].update(total_items=0, total_pages=10**6)


def deep_nesting(doc: Doc) -> bytes:
    """JSON nested 100,000 deep."""
    return b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def invalid_utf8(doc: Doc) -> bytes:
    """The honest page with bytes that are not UTF-8 inside a key."""
    return json.dumps(doc).replace("t000.example", "t000.\udcff").encode("utf-8", "surrogateescape")


# --- the tables ----------------------------------------------------------------------

PAGE = "meta.pagination.page"
PER_PAGE = "meta.pagination.per_page"
TOTAL_PAGES = "meta.pagination.total_pages"
TOTAL_ITEMS = "meta.pagination.total_items"
PAGE_COUNTS = (TOTAL_PAGES, TOTAL_ITEMS)


@attrs.frozen
class Case:
    """One kind of lie and what the client must make of it."""

    id: str
    what: str
    """What the server does, and what must happen."""
    lie: Lie
    fields: tuple[str, ...]
    """The exception's ``field`` starts with one of these."""
    call: Call = usage_january
    one_request: bool = False
    """The lie must be caught on page 1, before any other request."""


USAGE_LIES = [
    Case("ignore_page", "every page is page 1 (a proxy drops `page`)", ignore_page, (PAGE,)),
    Case(
        "page_relabelled", "page 2 repeats page 1's rows, labelled 2", relabel_page_one, ("data",)
    ),
    Case("page_shifted", "page 2 is answered with page 3", shift_page, (PAGE,)),
    Case("page_zero", "page 1 says it is page 0", pagination(page=0), (PAGE,)),
    Case("page_null", "meta.pagination.page is null", setting(PAGE, None), (PAGE,)),
    Case(
        "total_pages_grows",
        "pages 2+ claim one page more than page 1",
        on_pages_from(2, grow_total_pages),
        PAGE_COUNTS,
    ),
    Case(
        "total_pages_shrinks",
        "page 2 claims 2 pages (200 items) where page 1 claimed 3",
        pagination(2, total_pages=2, total_items=200),
        PAGE_COUNTS,
    ),
    Case(
        "total_pages_billion",
        "page 1 claims 10**9 pages (10**11 items)",
        pagination(total_pages=10**9, total_items=10**11),
        (TOTAL_PAGES,),
        one_request=True,
    ),
    Case(
        "total_pages_million_no_items",
        "page 1 claims 10**6 pages of 0 items",
        on_page(1, empty_pages),
        PAGE_COUNTS,
        one_request=True,
    ),
    Case(
        "total_pages_over_cap",
        "page 1 claims 10,001 pages, one past the cap (items to match)",
        pagination(total_pages=10_001, total_items=1_000_050),
        (TOTAL_PAGES,),
        one_request=True,
    ),
    Case(
        "total_pages_too_few",
        "page 1 claims 2 pages for 250 items (50 rows would be lost)",
        pagination(total_pages=2),
        PAGE_COUNTS,
    ),
    Case("total_pages_zero", "page 1 claims 0 pages", pagination(total_pages=0), (TOTAL_PAGES,)),
    Case(
        "total_pages_bool",
        "total_pages is true",
        setting(TOTAL_PAGES, True),
        (TOTAL_PAGES,),
    ),
    Case(
        "total_items_negative",
        "total_items is -1",
        pagination(total_items=-1),
        PAGE_COUNTS,
    ),
    Case(
        "total_items_changes",
        "page 3 claims 251 items where pages 1 and 2 claimed 250",
        pagination(3, total_items=251),
        ("data", TOTAL_ITEMS),
    ),
    Case(
        "per_page_differs",
        "the server pages by 50 although 100 were asked",
        on_pages_from(1, halve_per_page),
        (PER_PAGE,),
    ),
    Case("too_many_rows", "page 1 has 101 rows", on_page(1, extra_row), ("data",)),
    Case(
        "too_few_rows",
        "page 1 of 3 has 99 rows",
        on_page(1, change_rows(lambda rows: rows.pop())),
        ("data",),
    ),
    Case(
        "too_few_rows_last",
        "the last page has 49 rows of the 50 left",
        on_page(3, change_rows(lambda rows: rows.pop())),
        ("data",),
    ),
    Case(
        "rows_without_items",
        "page 1 has 100 rows but claims 0 items and 1 page",
        pagination(total_items=0, total_pages=1),
        ("data", TOTAL_ITEMS),
    ),
    Case(
        "duplicate_key_in_page",
        "page 1 has one key twice",
        setting("data[5].grouped_by", ["t004.example"]),
        ("data",),
    ),
    Case(
        "duplicate_key_across_pages",
        "page 2 repeats a key of page 1",
        duplicate_across_pages,
        ("data",),
    ),
    Case(
        "duplicate_key_second_window",
        "the second window's page 2 repeats a key of its page 1",
        in_second_window(duplicate_across_pages),
        ("data",),
        call=usage_two_months,
    ),
    Case(
        "requests_negative",
        "a row has -5 requests",
        setting("data[3].requests", -5),
        ("data[3].requests",),
    ),
    Case(
        "traffic_negative",
        "a row has -1 traffic bytes",
        setting("data[3].traffic_bytes", -1),
        ("data[3].traffic_bytes",),
    ),
    Case(
        "requests_bool",
        "a row has true requests",
        setting("data[3].requests", True),
        ("data[3].requests",),
    ),
    Case(
        "requests_float",
        "a row has 7.0 requests",
        setting("data[3].requests", 7.0),
        ("data[3].requests",),
    ),
    Case(
        "requests_string",
        'a row has "12" requests',
        setting("data[3].requests", "12"),
        ("data[3].requests",),
    ),
    Case(
        "requests_nan",
        "a row has NaN requests",
        raw(1, lambda doc: json_with(doc, "data[3].requests", "NaN")),
        ("data[3].requests", "body"),
    ),
    Case(
        "requests_huge_int",
        "a row has a 5,000-digit number of requests",
        raw(1, lambda doc: json_with(doc, "data[3].requests", "9" * 5000)),
        ("data[3].requests", "body"),
    ),
    Case(
        "totals_negative",
        "totals.requests is -1",
        setting("totals.requests", -1),
        ("totals.requests",),
    ),
    Case(
        "totals_float",
        "totals.traffic_bytes is 1.5",
        setting("totals.traffic_bytes", 1.5),
        ("totals.traffic_bytes",),
    ),
    Case("totals_null", "totals is null", setting("totals", None), ("totals",)),
    Case(
        "totals_differ_between_pages",
        "page 2's totals are one request more than page 1's",
        on_page(2, add_totals(1)),
        ("totals",),
    ),
    Case(
        "rows_do_not_sum_one_page",
        "a one-page window's rows sum to one request less than its totals",
        on_page(1, add_totals(1)),
        ("totals",),
        call=usage_one_day,
    ),
    Case(
        "rows_do_not_sum_window",
        "every page of a window agrees on totals its rows do not sum to",
        on_pages_from(1, add_totals(1)),
        ("totals",),
    ),
    Case(
        "grouping_mismatch",
        "grouped by DAY when TARGET was asked",
        setting("meta.grouping", ["DAY"]),
        ("meta.grouping",),
    ),
    Case(
        "grouping_reordered",
        "TARGET then DAY when DAY then TARGET was asked",
        swap_grouping,
        ("meta.grouping",),
        call=usage_day_target,
    ),
    Case(
        "grouping_changes_on_page_2",
        "page 2 says it is grouped by INSTANCE",
        setting("meta.grouping", ["INSTANCE"], page=2),
        ("meta.grouping",),
    ),
    Case(
        "grouped_by_string",
        "a row's grouped_by is a string, not an array",
        setting("data[0].grouped_by", "t000.example"),
        ("data[0].grouped_by",),
    ),
    Case(
        "grouped_by_number",
        "a row's key is a number",
        setting("data[0].grouped_by", [7]),
        ("data[0].grouped_by",),
    ),
    Case(
        "grouped_by_too_wide",
        "a row has two keys for a grouping of one",
        setting("data[0].grouped_by", ["t000.example", "x"]),
        ("data[0].grouped_by",),
    ),
    Case("data_null", "data is null", setting("data", None), ("data",)),
    Case("deep_nesting", "JSON nested 100,000 deep", raw(1, deep_nesting), ("body",)),
    Case("invalid_utf8", "a key with bytes that are not UTF-8", raw(1, invalid_utf8), ("body",)),
    Case(
        "html_200",
        "an HTML error page with status 200",
        raw(1, lambda doc: b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        ("body",),
    ),
    Case("empty_200", "an empty 200", raw(1, lambda doc: b""), ("body",)),
    Case("json_array", "a JSON array instead of an object", raw(1, lambda doc: b"[]"), ("body",)),
    Case(
        "error_object_200",
        "a JSON error object with status 200",
        raw(1, lambda doc: b'{"error": "Too many requests", "message": "slow down"}'),
        ("meta", "data", "totals"),
    ),
]

INSTANCES_LIES = [
    Case(
        "instances_ignore_page",
        "every page of instances is page 1",
        ignore_page,
        (PAGE,),
        call=list_instances,
    ),
    Case(
        "instances_duplicate_in_page",
        "one uuid twice on page 1",
        setting("data[1].uuid", "inst-0"),
        ("data",),
        call=list_instances,
    ),
    Case(
        "instances_duplicate_across_pages",
        "page 2 repeats a uuid of page 1",
        setting("data[0].uuid", "inst-0", page=2),
        ("data",),
        call=list_instances,
    ),
    Case(
        "instances_total_pages_billion",
        "page 1 claims 10**9 pages of instances",
        pagination(total_pages=10**9, total_items=10**11),
        (TOTAL_PAGES,),
        call=list_instances,
        one_request=True,
    ),
    Case(
        "instances_per_page_differs",
        "instances paged by 50 although 100 were asked",
        on_pages_from(1, halve_per_page),
        (PER_PAGE,),
        call=list_instances,
    ),
    Case(
        "instances_total_pages_grows",
        "page 2 claims 3 pages (and has 100 rows) where page 1 claimed 2",
        on_page(2, more_instances),
        PAGE_COUNTS,
        call=list_instances,
    ),
    Case(
        "instances_total_pages_too_few",
        "page 1 claims 1 page for 150 instances (50 would be lost)",
        pagination(total_pages=1),
        PAGE_COUNTS,
        call=list_instances,
    ),
    Case(
        "instances_too_many_rows",
        "page 1 has 101 instances",
        on_page(1, extra_instance),
        ("data",),
        call=list_instances,
    ),
    Case(
        "instances_total_items_negative",
        "total_items is -1",
        pagination(total_items=-1),
        PAGE_COUNTS,
        call=list_instances,
    ),
    Case(
        "instances_uuid_null",
        "an instance's uuid is null",
        setting("data[0].uuid", None),
        ("data[0].uuid",),
        call=list_instances,
    ),
]


def expected_rows(
    cells: Sequence[Cell], first: date, last: date, grouping: Sequence[str]
) -> dict[tuple[str, ...], tuple[int, int]]:
    """The exact merged rows of ``usage`` over whole UTC days ``first..last``."""
    rows: dict[tuple[str, ...], tuple[int, int]] = {}
    for cell in cells:
        if first <= cell.day <= last:
            key = tuple(cell.key(group) for group in grouping)
            requests, traffic = rows.get(key, (0, 0))
            rows[key] = (requests + cell.requests, traffic + cell.traffic_bytes)
    return rows


# --- the honest fake, first ---------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "grouping"),
    [
        (*JANUARY, ["TARGET"]),
        (*TWO_MONTHS, ["TARGET"]),
        (*ONE_DAY, ["TARGET"]),
        (*JANUARY, ["DAY", "TARGET"]),
    ],
    ids=["one window", "two windows", "one page", "day x target"],
)
async def test_the_honest_fake_gives_the_exact_report(
    first: date, last: date, grouping: list[str]
) -> None:
    """Without a lie, the fake's pages merge into the exact report: refusals are the lies' doing."""
    api = FakeApi()
    async with api.client() as client:
        report = await client.usage("HB", first, last, grouping)
    rows = {row.grouped_by: (row.requests, row.traffic_bytes) for row in report.rows}
    assert len(rows) == len(report.rows)
    assert rows == expected_rows(standard_cells(), first, last, grouping)
    assert report.totals.requests == sum(requests for requests, _ in rows.values())


async def test_the_honest_fake_lists_every_instance() -> None:
    """Without a lie, instances() gives the fake's 150 instances in order, from two pages."""
    api = FakeApi()
    async with api.client() as client:
        instances = await client.instances()
    assert [instance.uuid for instance in instances] == [f"inst-{i}" for i in range(150)]
    assert len(api.requests) == 2


def test_the_tables_hold_at_least_thirty_kinds() -> None:
    """The tables list at least 30 distinct kinds of lie, each described."""
    cases = [*USAGE_LIES, *INSTANCES_LIES]
    ids = [case.id for case in cases] + [case.id for case in TRANSPORT_LIES]
    assert len(set(ids)) == len(ids) >= 30
    assert all(case.what for case in cases)


# --- every lie ------------------------------------------------------------------------


@pytest.mark.parametrize("case", [*USAGE_LIES, *INSTANCES_LIES], ids=lambda case: case.id)
async def test_a_lying_page_is_refused(case: Case) -> None:
    """Each lying 2xx page raises ResponseFormatError naming its field and request; no result."""
    api = FakeApi(lie=case.lie)
    async with api.client(max_retries=0) as client:
        # Guards that turn a client which never stops into a failure, not a hung run.
        with guarded(5), anyio.fail_after(3):
            error = await raised_by(case.call(client), oxystats.ResponseFormatError, case.what)
    assert error.field is not None, f"{case.what}: no field named in {error}"
    assert error.field.startswith(case.fields), f"{case.what}: {error.field!r} in {error}"
    path = INSTANCES_PATH if case.call is list_instances else USAGE_PATH
    assert error.request.path == path
    assert path in str(error), f"the request is not named: {error}"
    assert "page=" in str(error), f"the request is not named: {error}"
    assert not key_in(str(error))
    if case.one_request:
        assert len(api.requests) == 1, f"{case.what}: refused only after {len(api.requests)}"


async def test_iter_usage_pages_checks_every_page() -> None:
    """iter_usage_pages from a server that ignores `page` raises ResponseFormatError at page 2."""
    api = FakeApi(lie=ignore_page)
    async with api.client(max_retries=0) as client:
        with anyio.fail_after(10), pytest.raises(oxystats.ResponseFormatError) as caught:
            async for _ in client.iter_usage_pages("HB", *JANUARY, ["TARGET"]):
                pass
    assert caught.value.field == PAGE


async def read_stream(client: oxystats.AsyncClient) -> None:
    """Read every page of ``stream_usage_pages`` over January."""
    async with client.stream_usage_pages("HB", *JANUARY, ["TARGET"]) as pages:
        async for _ in pages:
            pass


async def test_stream_usage_pages_checks_page_one_before_planning() -> None:
    """stream_usage_pages refuses 10**9 pages on page 1 at once, having sent one request."""
    api = FakeApi(lie=pagination(total_pages=10**9, total_items=10**11))
    async with api.client(max_retries=0) as client:
        with (
            guarded(5),
            anyio.fail_after(3),
            pytest.raises(oxystats.ResponseFormatError) as caught,
        ):
            await read_stream(client)
    assert caught.value.field == TOTAL_PAGES
    assert len(api.requests) == 1


# --- lies on the wire -----------------------------------------------------------------

FIFTY_MB = 50_000_000


def gzip_garbage(exchange: Exchange) -> None:
    """A body declared gzip that is not."""
    exchange.respond(200, b"this is not gzip at all", [("Content-Encoding", "gzip")])


CHUNKED = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def streamed_fifty_mb(exchange: Exchange) -> None:
    """An honest page padded with whitespace to 50 MB, chunked: no length up front."""
    body = honest_body(exchange)
    if not exchange.head(200, CHUNKED) or not exchange.send(chunk(body)):
        return
    padding = b" " * 65536
    sent = len(body)
    while sent < FIFTY_MB and exchange.send(chunk(padding)):
        sent += len(padding)
    exchange.send(b"0\r\n\r\n")


def declared_fifty_mb(exchange: Exchange) -> None:
    """Content-Length says 50 MB; 1 KB comes, then nothing."""
    declared = [("Content-Type", "application/json"), ("Content-Length", str(FIFTY_MB))]
    if exchange.head(200, declared):
        exchange.send(honest_body(exchange)[:1024])
        exchange.hang()


@functools.cache
def gzip_bomb_body() -> bytes:
    """An honest page 1 padded with 64 MiB of spaces (valid JSON), gzipped to about 64 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    parts = [compressor.compress(honest_january_page())]
    block = b" " * (1 << 20)
    parts.extend(compressor.compress(block) for _ in range(64))
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb(exchange: Exchange) -> None:
    """A 64 KB gzip body that inflates to 64 MiB."""
    exchange.respond(200, gzip_bomb_body(), [("Content-Encoding", "gzip")])


def honest_january_page() -> bytes:
    """Page 1 of the January TARGET query, honest."""
    api = FakeApi()
    asked = Asked(
        path=USAGE_PATH,
        page=1,
        per_page=100,
        date_from=datetime(2025, 1, 1, tzinfo=UTC),
        date_to=datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC),
        grouping=("TARGET",),
        instances=(),
        products=(),
    )
    return json.dumps(api.honest(asked)).encode()


def content_length_longer(exchange: Exchange) -> None:
    """Content-Length 100 bytes longer than the body; then the connection closes."""
    body = honest_body(exchange)
    length = str(len(body) + 100)
    if exchange.head(200, [("Content-Type", "application/json"), ("Content-Length", length)]):
        exchange.send(body)


def content_length_shorter(exchange: Exchange) -> None:
    """Content-Length covers the first 50 bytes of the JSON only."""
    body = honest_body(exchange)
    if exchange.head(200, [("Content-Type", "application/json"), ("Content-Length", "50")]):
        exchange.send(body)


def chunked_truncated(exchange: Exchange) -> None:
    """A chunked body that stops in the middle of a chunk."""
    body = honest_body(exchange)
    if exchange.head(200, CHUNKED):
        exchange.send(b"%x\r\n%s" % (len(body), body[: len(body) // 2]))


def bad_chunk_size(exchange: Exchange) -> None:
    """A chunked body whose chunk size is not hexadecimal."""
    if exchange.head(200, CHUNKED):
        exchange.send(b"zz\r\n{}\r\n0\r\n\r\n")


def not_http(exchange: Exchange) -> None:
    """Something that is not HTTP answers."""
    exchange.send(b"SSH-2.0-OpenSSH_9.6\r\n")


@attrs.frozen
class WireCase:
    """One lie on the wire and the exception it must end as."""

    id: str
    what: str
    handler: Callable[[Exchange], None]
    error: type[oxystats.OxystatsError]
    field: str | None = None


TRANSPORT_LIES = [
    WireCase(
        "gzip_garbage",
        "a body declared gzip that is not",
        gzip_garbage,
        oxystats.APIConnectionError,
    ),
    WireCase(
        "gzip_bomb",
        "a 64 KB gzip body that inflates to 64 MiB",
        gzip_bomb,
        oxystats.ResponseFormatError,
        "body",
    ),
    WireCase(
        "streamed_fifty_mb",
        "a 50 MB chunked body",
        streamed_fifty_mb,
        oxystats.ResponseFormatError,
        "body",
    ),
    WireCase(
        "declared_fifty_mb",
        "Content-Length: 50 MB, then silence",
        declared_fifty_mb,
        oxystats.ResponseFormatError,
        "body",
    ),
    WireCase(
        "content_length_longer",
        "Content-Length longer than the body, then close",
        content_length_longer,
        oxystats.APIConnectionError,
    ),
    WireCase(
        "content_length_shorter",
        "Content-Length cuts the JSON short",
        content_length_shorter,
        oxystats.ResponseFormatError,
        "body",
    ),
    WireCase(
        "chunked_truncated",
        "a chunked body cut in the middle of a chunk",
        chunked_truncated,
        oxystats.APIConnectionError,
    ),
    WireCase(
        "bad_chunk_size",
        "a chunk size that is not hex",
        bad_chunk_size,
        oxystats.APIConnectionError,
    ),
    WireCase("not_http", "an SSH banner instead of HTTP", not_http, oxystats.APIConnectionError),
]


@pytest.mark.parametrize("case", TRANSPORT_LIES, ids=lambda case: case.id)
async def test_a_lie_on_the_wire_ends_as_a_documented_error(case: WireCase) -> None:
    """Each lie in the bytes on the wire raises its documented oxystats error, never httpx's."""
    with RawServer(case.handler) as server:
        client = oxystats.AsyncClient("k", base_url=server.url, timeout=3, max_retries=0)
        async with client:
            with anyio.fail_after(10):
                error = await raised_by(usage_january(client), case.error, case.what)
    if case.field is not None:
        assert isinstance(error, oxystats.ResponseFormatError)
        assert error.field == case.field, str(error)


async def test_a_fifty_mb_body_is_not_read_to_the_end() -> None:
    """A 50 MB chunked body is refused at the cap: the client stops reading, so not all is sent."""
    with RawServer(streamed_fifty_mb) as server:
        client = oxystats.AsyncClient("k", base_url=server.url, timeout=5, max_retries=0)
        async with client:
            with anyio.fail_after(10), pytest.raises(oxystats.ResponseFormatError):
                await usage_january(client)
        # The handler writes on until the client's closed connection stops it (or it is all out).
        assert await anyio.to_thread.run_sync(server.exchanges[0].finished.wait, 10)
    assert server.sent_bytes < FIFTY_MB


async def test_a_declared_fifty_mb_body_is_refused_on_its_headers() -> None:
    """Content-Length: 50 MB is refused on the headers, long before the attempt's timeout."""
    with RawServer(declared_fifty_mb) as server:
        client = oxystats.AsyncClient("k", base_url=server.url, timeout=5, max_retries=0)
        async with client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.ResponseFormatError) as caught:
                await usage_january(client)
    assert caught.value.field == "body"
    assert time.monotonic() - started < 5
