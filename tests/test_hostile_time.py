"""Hostile servers that take their time: every call ends within its bound, on both backends.

The bounds are the contract's, not margins tuned to pass: a call given
``deadline=D`` ends within ``D`` plus 1 s, whatever the server does (trickle
its body, never answer, claim 10**9 pages); an attempt given ``timeout=T``
ends within ``T`` plus 1 s, body included; no request goes out after a call's
deadline; a 503's ``Retry-After`` is waited for as a 429's is. Wall time is
measured with `time.monotonic`, on the caller's side.

Servers: `RawServer` (real sockets on 127.0.0.1) where the transport matters,
`FakeApi` through ``httpx.MockTransport`` where only the answers do. Every
call also runs under a generous outer guard, so that a client that never
stops fails its test instead of hanging the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from itertools import count

import anyio
import httpx
import pytest
from hostile_servers import (
    KEY,
    Answer,
    Asked,
    Doc,
    Exchange,
    FakeApi,
    Lie,
    RawServer,
    guarded,
    honest_body,
)

import oxystats

pytestmark = pytest.mark.anyio

WITHIN = 1.0
"""The contract: a call ends within its deadline (or an attempt its timeout) plus this."""

JANUARY = (date(2025, 1, 1), date(2025, 1, 31))
ONE_DAY = (date(2025, 1, 1), date(2025, 1, 1))


def trickle(exchange: Exchange) -> None:
    """An honest page, its body one byte every 50 ms (minutes for the whole of it)."""
    body = honest_body(exchange)
    if exchange.head(
        200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    ):
        exchange.trickle(body, 0.05)


def hang(exchange: Exchange) -> None:
    """The request is read; no answer ever comes."""
    exchange.hang()


def only_first_request(lie: Callable[[Doc], Answer]) -> Lie:
    """A lie told to the first request only; the others are honest."""
    requests = count()

    def told(asked: Asked, doc: Doc, honest: Callable[[int], Doc]) -> Answer:
        return lie(doc) if next(requests) == 0 else doc

    return told


def claiming(total_pages: int, total_items: int) -> Callable[[Doc], Answer]:
    """A page that claims these counts (consistent with each other)."""

    def claim(doc: Doc) -> Doc:
        doc["meta"]["pagination"].update(total_pages=total_pages, total_items=total_items)
        return doc

    return claim


def always(response: httpx.Response) -> Lie:
    """A lie: every request gets ``response``."""
    return lambda asked, doc, honest: response


def status(code: int, retry_after: str | None) -> httpx.Response:
    """An error response, with a ``Retry-After`` if given."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(code, headers=headers, json={"error": "try later"})


async def read_stream(client: oxystats.AsyncClient, into: list[oxystats.FetchedPage]) -> None:
    """Read ``stream_usage_pages`` over January into ``into``."""
    async with client.stream_usage_pages("HB", *JANUARY, ["TARGET"]) as stream:
        async for fetched in stream:
            into.append(fetched)


def page_one_then_silence(asked: Asked) -> float:
    """Page 1 at once; any later page in an hour."""
    return 0.0 if asked.page == 1 else 3600.0


# --- the deadline -------------------------------------------------------------------


async def test_a_trickling_body_ends_within_the_deadline() -> None:
    """A body sent one byte per 50 ms, timeout=0.3 and deadline=0.8: the call ends by 1.8 s."""
    with RawServer(trickle) as server:
        async with oxystats.AsyncClient(
            KEY, base_url=server.url, timeout=0.3, deadline=0.8
        ) as client:
            started = time.monotonic()
            with (
                anyio.fail_after(10),
                pytest.raises((oxystats.APIConnectionError, oxystats.DeadlineExceeded)),
            ):
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.8 + WITHIN


async def test_a_trickling_body_with_only_a_deadline_ends_within_it() -> None:
    """A trickling body, default timeouts and deadline=0.5: DeadlineExceeded by 1.5 s."""
    with RawServer(trickle) as server:
        async with oxystats.AsyncClient(KEY, base_url=server.url, deadline=0.5) as client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded) as caught:
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert caught.value.deadline == 0.5
    assert caught.value.requests == 1
    assert caught.value.pages == 0


async def test_a_hanging_server_ends_within_the_deadline() -> None:
    """A server that never answers, the default timeout, deadline=0.5: DeadlineExceeded by 1.5 s."""
    with RawServer(hang) as server:
        async with oxystats.AsyncClient(KEY, base_url=server.url, deadline=0.5) as client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded) as caught:
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert (caught.value.deadline, caught.value.requests, caught.value.pages) == (0.5, 1, 0)
    assert len(server.exchanges) == 1


async def test_the_deadline_bounds_instances() -> None:
    """instances() from a server that never answers, deadline=0.5: DeadlineExceeded by 1.5 s."""
    with RawServer(hang) as server:
        async with oxystats.AsyncClient(KEY, base_url=server.url, deadline=0.5) as client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded):
                await client.instances()
            elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN


async def test_a_billion_pages_end_within_the_deadline() -> None:
    """Page 1 claiming 10**9 pages, deadline=0.5: ResponseFormatError by 1.5 s, one request."""
    api = FakeApi(lie=only_first_request(claiming(10**9, 10**11)))
    async with api.client(deadline=0.5) as client:
        started = time.monotonic()
        with guarded(5), anyio.fail_after(3), pytest.raises(oxystats.ResponseFormatError) as caught:
            await client.usage("HB", *JANUARY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert caught.value.field == "meta.pagination.total_pages"
    assert len(api.requests) == 1


async def test_the_deadline_cancels_requests_in_flight() -> None:
    """Page 1 answers, every other request hangs for an hour: DeadlineExceeded by 1.5 s, 1 page."""
    api = FakeApi(delay=page_one_then_silence)
    async with api.client(deadline=0.5) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded) as caught:
            await client.usage("HB", *JANUARY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert caught.value.pages == 1
    assert caught.value.requests == len(api.requests) == 3


async def test_no_request_goes_out_after_the_deadline() -> None:
    """Ten windows from a server slow by 0.3 s, deadline=0.45: nothing is sent after 0.45 s."""
    api = FakeApi(delay=0.3)
    async with api.client(deadline=0.45) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded) as caught:
            # Ten windows: the first page alone at 0 s, the others' at 0.3 s, later pages at 0.6 s.
            await client.usage("HB", date(2024, 6, 1), date(2025, 3, 31), ["TARGET"])
        elapsed = time.monotonic() - started
    sent = [when - started for when, _ in api.sent]
    assert max(sent) < 0.45, f"requests sent at {sorted(sent)} s"
    assert elapsed <= 0.45 + WITHIN
    assert caught.value.requests == len(api.requests)
    assert caught.value.pages <= 1  # only the first page can be back by then


async def test_no_retry_wait_outlasts_the_deadline() -> None:
    """503 with Retry-After: 1 on every request, deadline=1.5: two requests, then the 503 raised."""
    api = FakeApi(lie=always(status(503, "1")))
    async with api.client(deadline=1.5) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", *ONE_DAY, ["TARGET"])
        elapsed = time.monotonic() - started
    # A third attempt would follow a wait ending at 2 s, past the deadline: not started.
    assert elapsed < 1.5
    assert len(api.requests) == 2
    assert caught.value.retry_after == 1.0
    assert caught.value.attempts == 2


async def test_the_deadline_bounds_the_wait_in_the_limiter() -> None:
    """429 with Retry-After: 5 pauses the key; the next call (deadline=0.5) ends unsent by 1.5 s."""
    api = FakeApi(lie=only_first_request(lambda doc: status(429, "5")))
    async with api.client(max_retries=0) as client:
        with anyio.fail_after(10), pytest.raises(oxystats.RateLimitError):
            await client.usage("HB", *ONE_DAY, ["TARGET"])
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded) as caught:
            await client.with_options(deadline=0.5).usage("HB", *ONE_DAY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert caught.value.requests == 0
    assert len(api.requests) == 1


async def test_the_deadline_bounds_a_stream() -> None:
    """stream_usage_pages, page 1 then silence, deadline=0.5: the stream raises by 1.5 s."""
    api = FakeApi(delay=page_one_then_silence)
    pages: list[oxystats.FetchedPage] = []
    async with api.client(deadline=0.5) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.DeadlineExceeded):
            await read_stream(client, pages)
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN
    assert len(pages) <= 1


async def test_the_callers_cancel_scope_fires_with_ten_thousand_pages_planned() -> None:
    """Page 1 claims 10,000 pages (the cap) and page 2 on never come: move_on_after(0.5) fires."""
    api = FakeApi(lie=only_first_request(claiming(10_000, 1_000_000)), delay=page_one_then_silence)
    async with api.client() as client:
        started = time.monotonic()
        with guarded(5), anyio.move_on_after(0.5) as scope:
            await client.usage("HB", *JANUARY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert scope.cancelled_caught
    assert elapsed <= 0.5 + WITHIN


def test_the_blocking_client_keeps_the_deadline() -> None:
    """The blocking Client against a server that never answers, deadline=0.5: raises by 1.5 s."""
    with (
        RawServer(hang) as server,
        oxystats.Client(KEY, base_url=server.url, deadline=0.5) as client,
    ):
        started = time.monotonic()
        with pytest.raises(oxystats.DeadlineExceeded):
            client.usage("HB", *JANUARY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + WITHIN


# --- the timeout of one attempt ---------------------------------------------------


async def test_a_trickling_body_cannot_outlast_the_timeout() -> None:
    """A body sent one byte per 50 ms, timeout=0.3, no retry: APIConnectionError by 1.3 s."""
    with RawServer(trickle) as server:
        async with oxystats.AsyncClient(
            KEY, base_url=server.url, timeout=0.3, max_retries=0
        ) as client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError):
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.3 + WITHIN
    assert len(server.exchanges) == 1


async def test_an_injected_client_keeps_its_own_timeout() -> None:
    """An injected httpx client with timeout=0.3 and no timeout= given: it times out by 1.3 s."""
    with RawServer(hang) as server:
        async with httpx.AsyncClient(timeout=0.3) as http:
            client = oxystats.AsyncClient(KEY, base_url=server.url, http_client=http, max_retries=0)
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError):
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.3 + WITHIN


async def test_an_explicit_timeout_wins_over_an_injected_clients() -> None:
    """An injected httpx client with a 60 s timeout, timeout=0.3 given: the call ends by 1.3 s."""
    with RawServer(hang) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            client = oxystats.AsyncClient(
                KEY, base_url=server.url, http_client=http, timeout=0.3, max_retries=0
            )
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError):
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.3 + WITHIN


async def test_an_explicit_timeout_bounds_a_trickle_through_an_injected_client() -> None:
    """A trickling body through an injected client (60 s reads), timeout=0.3: ends by 1.3 s."""
    with RawServer(trickle) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            client = oxystats.AsyncClient(
                KEY, base_url=server.url, http_client=http, timeout=0.3, max_retries=0
            )
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError):
                await client.usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.3 + WITHIN


async def test_a_views_timeout_wins_over_an_injected_clients() -> None:
    """with_options(timeout=0.3) on a client whose injected pool waits 60 s: ends by 1.3 s."""
    with RawServer(hang) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            client = oxystats.AsyncClient(KEY, base_url=server.url, http_client=http, max_retries=0)
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError):
                await client.with_options(timeout=0.3).usage("HB", *JANUARY, ["TARGET"])
            elapsed = time.monotonic() - started
    assert elapsed <= 0.3 + WITHIN


# --- Retry-After ------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_is_waited_for(code: int) -> None:
    """A 429 or a 503 with Retry-After: 1, then the answer: the retry comes 1 s later, no sooner."""
    api = FakeApi(lie=only_first_request(lambda doc: status(code, "1")))
    async with api.client() as client:
        with anyio.fail_after(10):
            report = await client.usage("HB", *ONE_DAY, ["TARGET"])
    assert report.rows
    (first, _), (second, _) = api.sent
    assert second - first >= 1.0


async def test_a_503_retry_after_beyond_the_cap_is_raised_at_once() -> None:
    """A 503 with Retry-After: 3600 (past the 120 s cap) is raised at once, carrying the value."""
    api = FakeApi(lie=always(status(503, "3600")))
    async with api.client() as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", *ONE_DAY, ["TARGET"])
        elapsed = time.monotonic() - started
    assert caught.value.retry_after == 3600.0
    assert len(api.requests) == 1
    assert elapsed < WITHIN


async def test_a_503_that_is_raised_carries_its_retry_after() -> None:
    """A 503 with Retry-After: 1 and no retries left: ServerError.retry_after is 1.0."""
    api = FakeApi(lie=always(status(503, "1")))
    async with api.client(max_retries=0) as client:
        with anyio.fail_after(10), pytest.raises(oxystats.ServerError) as caught:
            await client.usage("HB", *ONE_DAY, ["TARGET"])
    assert caught.value.retry_after == 1.0
    assert "Retry-After" in str(caught.value)
