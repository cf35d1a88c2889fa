"""The one cattrs converter, and the hooks that make it fast and strict.

The API's pages are structured by hand-written hooks: a usage page is
hundreds of rows a second in a backfill, and cattrs' generic hooks spend
most of their time on work these documented, flat shapes do not need.
Every hook checks types exactly (``bool`` is not an ``int``) and raises
`ShapeError` naming the first offending field, never a half-built object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import cattrs

from oxystats._models import (
    Instance,
    InstancesPage,
    Pagination,
    UsagePage,
    UsageRow,
    UsageTotals,
)

__all__: list[str] = []

T = TypeVar("T")


class ShapeError(Exception):
    """A JSON document does not have the documented shape."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _object(value: object, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ShapeError(field, f"expected an object, got {_type_name(value)}")
    return value


def _member(obj: dict[str, Any], name: str, field: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise ShapeError(f"{field}.{name}" if field else name, "missing") from None


def _int(obj: dict[str, Any], name: str, field: str) -> int:
    value = _member(obj, name, field)
    if type(value) is not int:
        where = f"{field}.{name}" if field else name
        raise ShapeError(where, f"expected an integer, got {_type_name(value)}")
    return value


def _str(obj: dict[str, Any], name: str, field: str) -> str:
    value = _member(obj, name, field)
    if type(value) is not str:
        where = f"{field}.{name}" if field else name
        raise ShapeError(where, f"expected a string, got {_type_name(value)}")
    return value


def _list(value: object, field: str) -> list[Any]:
    if type(value) is not list:
        raise ShapeError(field, f"expected an array, got {_type_name(value)}")
    return value


def _strings(value: object, field: str) -> tuple[str, ...]:
    items = tuple(_list(value, field))
    for index, item in enumerate(items):
        if type(item) is not str:
            raise ShapeError(f"{field}[{index}]", f"expected a string, got {_type_name(item)}")
    return items


def _pagination(meta: dict[str, Any]) -> Pagination:
    block = _object(_member(meta, "pagination", "meta"), "meta.pagination")
    field = "meta.pagination"
    pagination = Pagination(
        _int(block, "page", field),
        _int(block, "per_page", field),
        _int(block, "total_items", field),
        _int(block, "total_pages", field),
    )
    if pagination.total_pages < 1:
        raise ShapeError(f"{field}.total_pages", "must be at least 1")
    if pagination.page < 1:
        raise ShapeError(f"{field}.page", "must be at least 1")
    return pagination


def _slow_usage_row(value: object, index: int) -> UsageRow:
    field = f"data[{index}]"
    row = _object(value, field)
    return UsageRow(
        _strings(_member(row, "grouped_by", field), f"{field}.grouped_by"),
        _int(row, "requests", field),
        _int(row, "traffic_bytes", field),
    )


# A frozen attrs __init__ routes every field through object.__setattr__,
# which is half the cost of a row. Rows already checked by the fast path are
# built by writing their slots directly; equality, hashing and repr are the
# class's own, as if built through __init__ (test_convert checks it).
_new_row = UsageRow.__new__
_set_grouped_by = UsageRow.__dict__["grouped_by"].__set__
_set_requests = UsageRow.__dict__["requests"].__set__
_set_traffic_bytes = UsageRow.__dict__["traffic_bytes"].__set__


def _usage_rows(data: object) -> tuple[UsageRow, ...]:
    rows = _list(data, "data")
    built: list[UsageRow] = []
    append = built.append
    new, set_keys, set_requests, set_traffic = (
        _new_row,
        _set_grouped_by,
        _set_requests,
        _set_traffic_bytes,
    )
    try:
        # The fast path: one pass, exact type checks, no bookkeeping.
        for row in rows:
            keys = row["grouped_by"]
            requests = row["requests"]
            traffic = row["traffic_bytes"]
            if type(keys) is not list or type(requests) is not int or type(traffic) is not int:
                break
            grouped_by = tuple(keys)
            for key in grouped_by:
                if type(key) is not str:
                    break
            else:
                built_row = new(UsageRow)
                set_keys(built_row, grouped_by)
                set_requests(built_row, requests)
                set_traffic(built_row, traffic)
                append(built_row)
                continue
            break
        else:
            return tuple(built)
    except (KeyError, TypeError):
        pass
    # Something is off: walk again, slowly, to name the field.
    for index, row in enumerate(rows):
        _slow_usage_row(row, index)
    raise AssertionError("unreachable: the slow path found no fault")  # pragma: no cover


def structure_usage_page(obj: Any, _: type[UsagePage] = UsagePage) -> UsagePage:
    """Structure a ``GET /stats/v1/usage`` body."""
    body = _object(obj, "body")
    meta = _object(_member(body, "meta", ""), "meta")
    totals = _object(_member(body, "totals", ""), "totals")
    grouping = _strings(_member(meta, "grouping", "meta"), "meta.grouping")
    rows = _usage_rows(_member(body, "data", ""))
    width = len(grouping)
    for index, row in enumerate(rows):
        if len(row.grouped_by) != width:
            raise ShapeError(
                f"data[{index}].grouped_by",
                f"has {len(row.grouped_by)} values for a grouping of {width}",
            )
    return UsagePage(
        rows,
        UsageTotals(_int(totals, "requests", "totals"), _int(totals, "traffic_bytes", "totals")),
        _pagination(meta),
        grouping,
    )


def _instance(value: object, index: int) -> Instance:
    field = f"data[{index}]"
    item = _object(value, field)
    return Instance(
        _str(item, "uuid", field),
        _str(item, "name", field),
        _str(item, "status", field),
        _str(item, "product", field),
    )


def structure_instances_page(obj: Any, _: type[InstancesPage] = InstancesPage) -> InstancesPage:
    """Structure a ``GET /stats/v1/filters/instances`` body."""
    body = _object(obj, "body")
    meta = _object(_member(body, "meta", ""), "meta")
    data = _list(_member(body, "data", ""), "data")
    return InstancesPage(
        tuple(_instance(item, index) for index, item in enumerate(data)),
        _pagination(meta),
    )


def _make_converter() -> cattrs.Converter:
    made = cattrs.Converter()
    made.register_structure_hook(UsagePage, structure_usage_page)
    made.register_structure_hook(InstancesPage, structure_instances_page)
    return made


converter = _make_converter()
"""The project's one converter. Unstructuring uses cattrs' defaults."""


def structure(obj: Any, cls: type[T]) -> T:
    """Structure ``obj`` into ``cls`` with the project's converter."""
    hook: Callable[[Any, type[T]], T] = converter.get_structure_hook(cls)
    return hook(obj, cls)
