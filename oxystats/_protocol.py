"""The wire protocol: building requests and reading responses. Pure functions, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from oxystats._checks import PageFacts, check_instances_page, check_usage_page
from oxystats._convert import ShapeError, structure
from oxystats._errors import (
    APIError,
    RequestInfo,
    ResponseFormatError,
    error_for_status,
    redact,
)
from oxystats._models import GroupBy, InstancesPage, UsagePage, Window

__all__: list[str] = []

USAGE_PATH = "/stats/v1/usage"
INSTANCES_PATH = "/stats/v1/filters/instances"
PER_PAGE = 100
"""Always ask for the maximum page size: fewer requests under the same limits."""

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest response body read, decoded: a full page of 100 rows is about 10 KB."""

MAX_QUERY_URL_BYTES = 8 * 1024
"""The longest request URL sent: what servers and proxies commonly accept."""


def format_datetime(value: datetime) -> str:
    """ISO 8601 to the second, ``Z`` for UTC, the caller's offset otherwise."""
    text = value.isoformat(timespec="seconds")
    if value.utcoffset() == UTC.utcoffset(None):
        return text[: -len("+00:00")] + "Z"
    return text


def usage_request(
    product: str,
    window: Window,
    grouping: tuple[GroupBy, ...],
    instances: tuple[str, ...] | None,
    page: int,
) -> RequestInfo:
    """The ``GET /stats/v1/usage`` request for one page of one window."""
    params: list[tuple[str, str]] = [
        ("product", product),
        ("date_from", format_datetime(window.start)),
        ("date_to", format_datetime(window.end)),
    ]
    params.extend(("group_by[]", group.value) for group in grouping)
    if instances:
        params.extend(("instances[]", uuid) for uuid in instances)
    params.append(("page", str(page)))
    params.append(("per_page", str(PER_PAGE)))
    return RequestInfo("GET", USAGE_PATH, tuple(params))


def instances_request(products: tuple[str, ...] | None, page: int) -> RequestInfo:
    """The ``GET /stats/v1/filters/instances`` request for one page."""
    params: list[tuple[str, str]] = [("products[]", product) for product in products or ()]
    params.append(("page", str(page)))
    params.append(("per_page", str(PER_PAGE)))
    return RequestInfo("GET", INSTANCES_PATH, tuple(params))


def request_url(base_url: str, request: RequestInfo) -> httpx.URL:
    """The absolute URL of ``request``, its query encoded once, here.

    Handing httpx a finished URL spares it parsing a URL and merging
    parameters on every request. ``+`` in an offset is sent as ``%2B``: a bare
    ``+`` in a query string means a space.
    """
    if not request.params:
        return httpx.URL(base_url + request.path)
    return httpx.URL(f"{base_url}{request.path}?{urlencode(request.params)}")


def raise_for_status(
    status_code: int,
    content: bytes,
    request: RequestInfo,
    *,
    retry_after: float | None = None,
    secrets: tuple[str, ...] = (),
    timestamp: datetime | None = None,
) -> None:
    """Raise the documented `APIError` subclass for any status but 2xx."""
    if 200 <= status_code < 300:
        return
    body = redact(content.decode("utf-8", errors="replace"), secrets)
    error: APIError = error_for_status(
        status_code, request, body, timestamp=timestamp, retry_after=retry_after
    )
    raise error


def decode_json(content: bytes, request: RequestInfo) -> Any:
    """Parse a 2xx body as JSON, or raise `ResponseFormatError`."""
    try:
        return json.loads(content)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ResponseFormatError(
            f"body is not JSON ({type(exc).__name__}: {str(exc)[:200]})", request, field="body"
        ) from None
    except RecursionError:
        raise ResponseFormatError(
            "body is JSON nested too deeply to be a page", request, field="body"
        ) from None


def window_days(window: Window) -> tuple[date, date]:
    """The first and last UTC days a window touches."""
    return window.start.astimezone(UTC).date(), window.end.astimezone(UTC).date()


def parse_usage_page(
    document: Any,
    request: RequestInfo,
    grouping: tuple[GroupBy, ...],
    *,
    number: int,
    window: Window,
) -> tuple[UsagePage, PageFacts]:
    """Structure page ``number`` of a usage query and check it answers the question asked."""
    try:
        page = structure(document, UsagePage)
    except ShapeError as exc:
        raise ResponseFormatError(exc.message, request, field=exc.field) from None
    facts = check_usage_page(
        page,
        request,
        number=number,
        per_page=PER_PAGE,
        grouping=tuple(group.value for group in grouping),
        days=window_days(window),
    )
    return page, facts


def parse_instances_page(document: Any, request: RequestInfo, *, number: int) -> InstancesPage:
    """Structure page ``number`` of the instances and check it is the page asked for."""
    try:
        page = structure(document, InstancesPage)
    except ShapeError as exc:
        raise ResponseFormatError(exc.message, request, field=exc.field) from None
    check_instances_page(page, request, number=number, per_page=PER_PAGE)
    return page
