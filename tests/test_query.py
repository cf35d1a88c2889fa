"""Tests of argument checking: bad input fails before any request."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from oxystats import GroupBy, Product
from oxystats._query import UsageQuery, check_group_by, check_instances, check_products

FROM = date(2025, 1, 1)
TO = date(2025, 1, 31)


def test_a_good_query() -> None:
    """Products, strings and enum members are accepted and normalised."""
    query = UsageQuery.build(Product.HB, FROM, TO, ["day", GroupBy.TARGET], ["a", "b", "a"])
    assert query.product == "HB"
    assert query.grouping == (GroupBy.DAY, GroupBy.TARGET)
    assert query.instances == ("a", "b")
    assert query.start == datetime(2025, 1, 1, tzinfo=UTC)


def test_any_product_string_is_accepted() -> None:
    """Products are open-ended: a product added later works today."""
    assert UsageQuery.build("RP", FROM, TO, "DAY").product == "RP"


def test_single_group_by_value() -> None:
    """One GroupBy, or one string, is a grouping of one."""
    assert check_group_by(GroupBy.INSTANCE) == (GroupBy.INSTANCE,)
    assert check_group_by("TARGET") == (GroupBy.TARGET,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"product": ""}, ValueError, "product"),
        ({"product": " HB"}, ValueError, "whitespace"),
        ({"product": None}, TypeError, "product"),
        ({"product": 7}, TypeError, "product"),
        ({"group_by": []}, ValueError, "at least one"),
        ({"group_by": ["DAY", "DAY"]}, ValueError, "twice"),
        ({"group_by": ["WEEK"]}, ValueError, "unknown group_by"),
        ({"group_by": [1]}, TypeError, "group_by"),
        ({"group_by": None}, TypeError, "group_by"),
        ({"instances": "uuid-1"}, TypeError, "single string"),
        ({"instances": [1, 2]}, TypeError, "strings"),
        ({"instances": []}, ValueError, "empty"),
        ({"instances": [""]}, ValueError, "empty"),
        ({"instances": 5}, TypeError, "instances"),
        ({"date_from": datetime(2025, 1, 1)}, ValueError, "naive"),
        ({"date_from": "2025-01-01"}, TypeError, "date_from"),
        ({"date_from": TO, "date_to": FROM}, ValueError, "before"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    """Every bad argument raises ValueError or TypeError with a message naming it."""
    arguments: dict[str, object] = {
        "product": "HB",
        "date_from": FROM,
        "date_to": TO,
        "group_by": ["DAY"],
        "instances": None,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        UsageQuery.build(**arguments)  # type: ignore[arg-type]


def test_products_filter() -> None:
    """None means all; a lone string is one product; duplicates and empties are refused."""
    assert check_products(None) is None
    assert check_products("HB") == ("HB",)
    assert check_products([Product.HB, "DC"]) == ("HB", "DC")
    with pytest.raises(ValueError, match="duplicates"):
        check_products(["HB", "HB"])
    with pytest.raises(ValueError, match="empty"):
        check_products([])
    with pytest.raises(TypeError):
        check_products(3)


def test_instances_none_means_all() -> None:
    """No filter is None, not an empty tuple."""
    assert check_instances(None) is None
