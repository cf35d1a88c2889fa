"""Tests of the converter: documented JSON in, attrs classes out, or a named field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from oxystats import InstancesPage, Pagination, UsagePage, UsageRow, UsageTotals
from oxystats._convert import ShapeError, converter, structure


def usage_document(rows: int = 3) -> dict[str, Any]:
    """A usage page shaped like the vendor's sample."""
    return {
        "data": [
            {"grouped_by": ["2025-11-01", f"target-{i}"], "requests": i, "traffic_bytes": 10 * i}
            for i in range(rows)
        ],
        "totals": {"requests": 20, "traffic_bytes": 200},
        "meta": {
            "pagination": {"page": 1, "per_page": 100, "total_items": rows, "total_pages": 1},
            "grouping": ["DAY", "TARGET"],
        },
    }


def test_usage_page_is_structured() -> None:
    """A documented usage page becomes a UsagePage of UsageRows."""
    page = structure(usage_document(), UsagePage)
    assert page.data[2] == UsageRow(("2025-11-01", "target-2"), 2, 20)
    assert page.totals == UsageTotals(20, 200)
    assert page.pagination == Pagination(1, 100, 3, 1)
    assert page.grouping == ("DAY", "TARGET")


def test_fast_rows_behave_like_init_built_rows() -> None:
    """Rows built by the fast path are equal, hash and print like ones built by __init__."""
    fast = structure(usage_document(), UsagePage).data[1]
    slow = UsageRow(("2025-11-01", "target-1"), 1, 10)
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    with pytest.raises(AttributeError):
        fast.requests = 5  # type: ignore[misc]


def test_the_converter_is_the_entry_point() -> None:
    """converter.structure uses the same hooks."""
    assert converter.structure(usage_document(), UsagePage) == structure(
        usage_document(), UsagePage
    )


def test_empty_page_is_fine() -> None:
    """An empty result is one page with no rows."""
    document = usage_document(0)
    page = structure(document, UsagePage)
    assert page.data == ()


def mutate(path: str, value: object) -> dict[str, Any]:
    """A usage document with one field replaced (or removed, for ...)."""
    document = copy.deepcopy(usage_document())
    *parents, last = path.split(".")
    target: Any = document
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is ...:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("data", None, "data"),
        ("data.1.requests", "7", "data[1].requests"),
        ("data.1.requests", True, "data[1].requests"),
        ("data.2.traffic_bytes", 1.5, "data[2].traffic_bytes"),
        ("data.0.grouped_by", "2025-11-01", "data[0].grouped_by"),
        ("data.0.grouped_by", ["2025-11-01", 7], "data[0].grouped_by[1]"),
        ("data.0.grouped_by", ["2025-11-01"], "data[0].grouped_by"),
        ("data.1.requests", ..., "data[1].requests"),
        ("data.1", [], "data[1]"),
        ("totals", ..., "totals"),
        ("totals.requests", None, "totals.requests"),
        ("meta.pagination", ..., "meta.pagination"),
        ("meta.pagination.total_pages", 0, "meta.pagination.total_pages"),
        ("meta.pagination.page", "1", "meta.pagination.page"),
        ("meta.grouping", None, "meta.grouping"),
        ("meta", ..., "meta"),
    ],
)
def test_shape_errors_name_the_field(path: str, value: object, field: str) -> None:
    """Every deviation from the documented shape names the offending field."""
    with pytest.raises(ShapeError) as caught:
        structure(mutate(path, value), UsagePage)
    assert caught.value.field == field


def test_body_that_is_not_an_object() -> None:
    """A JSON array or string body is refused as a whole."""
    with pytest.raises(ShapeError, match="body"):
        structure([], UsagePage)


def test_instances_page_is_structured() -> None:
    """A documented instances page becomes an InstancesPage."""
    document = {
        "data": [
            {"uuid": "u-1", "name": "my-hb", "status": "enabled", "product": "HB"},
            {"uuid": "u-2", "name": "my-dc", "status": "disabled", "product": "DC"},
        ],
        "meta": {"pagination": {"page": 1, "per_page": 50, "total_items": 2, "total_pages": 1}},
    }
    page = structure(document, InstancesPage)
    assert [i.uuid for i in page.data] == ["u-1", "u-2"]
    assert page.data[1].status == "disabled"
    document["data"][1]["status"] = None  # type: ignore[index]
    with pytest.raises(ShapeError) as caught:
        structure(document, InstancesPage)
    assert caught.value.field == "data[1].status"
