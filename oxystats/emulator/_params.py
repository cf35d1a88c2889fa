"""Query-string parsing and validation for the two endpoints.

Every problem raises `BadRequest` naming the parameter, which the app turns
into a 400. Nothing here knows about HTTP beyond the query string.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import attrs

from ._dataset import GROUPINGS

__all__ = [
    "MAX_PER_PAGE",
    "MAX_RANGE",
    "BadRequest",
    "InstancesQuery",
    "UsageQuery",
    "parse_datetime",
    "parse_instances_query",
    "parse_usage_query",
]

MAX_PER_PAGE = 100
MAX_RANGE = timedelta(days=31)
_MAX_PAGE = 1_000_000_000
_MAX_FIELDS = 1_000

# The page's format: YYYY-MM-DDTHH:mm:ss with "Z" or a +HH:MM / -HH:MM offset.
# Fractional seconds are tolerated because isoformat() emits them.
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_DIGITS = re.compile(r"[0-9]{1,10}")


class BadRequest(Exception):
    """A malformed or missing parameter: becomes a 400 naming it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"Invalid parameter '{parameter}': {problem}.")
        self.parameter = parameter
        self.message = str(self)


@attrs.frozen
class InstancesQuery:
    """A validated ``GET /stats/v1/filters/instances`` query."""

    products: tuple[str, ...]
    page: int
    per_page: int


@attrs.frozen
class UsageQuery:
    """A validated ``GET /stats/v1/usage`` query.

    ``instances`` holds instance indices; ``None`` means no filter, an empty
    set means the filter matched nothing (so the result is empty).
    """

    product: str
    date_from: datetime
    date_to: datetime
    grouping: tuple[str, ...]
    instances: frozenset[int] | None
    page: int
    per_page: int


def _pairs(query_string: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query_string, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:
        raise BadRequest("query", f"more than {_MAX_FIELDS} parameters") from None


def _single(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        raise BadRequest(name, "given more than once")
    return values[0] if values else None


def _integer(pairs: list[tuple[str, str]], name: str, default: int, maximum: int) -> int:
    raw = _single(pairs, name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise BadRequest(name, f"must be an integer from 1 to {maximum}, got {raw!r}")
    return int(raw)


def parse_datetime(name: str, raw: str | None) -> datetime:
    """An ISO 8601 datetime with ``Z`` or an offset; naive or malformed is a `BadRequest`."""
    if raw is None:
        raise BadRequest(name, "missing (required)")
    if not _DATETIME.fullmatch(raw):
        # A raw '+' in a query string decodes to a space: say so, it is a classic.
        hint = " ('+' must be sent as %2B)" if " " in raw else ""
        raise BadRequest(
            name,
            "must be an ISO 8601 datetime with 'Z' or an offset such as +02:00 "
            f"(YYYY-MM-DDTHH:mm:ssZ), got {raw!r}{hint}",
        )
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(name, f"not a valid date and time: {raw!r}") from None


def parse_instances_query(query_string: str, products: tuple[str, ...]) -> InstancesQuery:
    """Validate the instances endpoint's parameters."""
    pairs = _pairs(query_string)
    wanted = [value for key, value in pairs if key == "products[]"]
    for product in wanted:
        if product != "null" and product not in products:
            raise BadRequest("products[]", f"unknown product {product!r}")
    # "null" (or no filter at all) means every product.
    selected = products if not wanted or "null" in wanted else tuple(dict.fromkeys(wanted))
    return InstancesQuery(
        products=selected,
        page=_integer(pairs, "page", 1, _MAX_PAGE),
        per_page=_integer(pairs, "per_page", MAX_PER_PAGE, MAX_PER_PAGE),
    )


def parse_usage_query(
    query_string: str, products: tuple[str, ...], index_of_uuid: Mapping[str, int]
) -> UsageQuery:
    """Validate the usage endpoint's parameters, including the 31-day rule."""
    pairs = _pairs(query_string)
    product = _single(pairs, "product")
    if product is None:
        raise BadRequest("product", "missing (required)")
    if product not in products:
        raise BadRequest("product", f"unknown product {product!r}")
    date_from = parse_datetime("date_from", _single(pairs, "date_from"))
    date_to = parse_datetime("date_to", _single(pairs, "date_to"))
    if date_to < date_from:
        raise BadRequest("date_to", "must not be earlier than date_from")
    if date_to - date_from > MAX_RANGE:
        raise BadRequest("date_to", "the range from date_from to date_to exceeds 31 days")
    return UsageQuery(
        product=product,
        date_from=date_from,
        date_to=date_to,
        grouping=_grouping(pairs),
        instances=_instance_filter(pairs, index_of_uuid),
        page=_integer(pairs, "page", 1, _MAX_PAGE),
        per_page=_integer(pairs, "per_page", MAX_PER_PAGE, MAX_PER_PAGE),
    )


def _grouping(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    # The page's table says group_by, its examples send group_by[]: accept both, in order.
    grouping = [value for key, value in pairs if key in ("group_by[]", "group_by")]
    if not grouping:
        raise BadRequest("group_by[]", f"missing (required; one or more of {', '.join(GROUPINGS)})")
    for value in grouping:
        if value not in GROUPINGS:
            raise BadRequest("group_by[]", f"unknown grouping {value!r}")
    if len(set(grouping)) != len(grouping):
        raise BadRequest("group_by[]", "a grouping is repeated")
    return tuple(grouping)


def _instance_filter(
    pairs: list[tuple[str, str]], index_of_uuid: Mapping[str, int]
) -> frozenset[int] | None:
    given = [value for key, value in pairs if key == "instances[]"]
    if not given:
        return None
    found: set[int] = set()
    for value in given:
        try:
            canonical = str(uuid.UUID(value))
        except ValueError:
            continue  # The page: invalid or unrecognised UUIDs are ignored.
        index = index_of_uuid.get(canonical)
        if index is not None:
            found.add(index)
    return frozenset(found)
