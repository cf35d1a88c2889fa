"""Checking a caller's arguments before anything is sent. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from oxystats._models import GroupBy, Window
from oxystats._options import DEFAULT_MAX_WINDOWS, check_max_windows
from oxystats._types import DateLike, Grouping, InstanceIds, ProductLike
from oxystats._windows import normalize_range, split_range, window_count

__all__ = ["UsageQuery"]


def check_product(product: object, name: str = "product") -> str:
    """A product is any non-empty string (or a `Product` member)."""
    if not isinstance(product, str):
        raise TypeError(f"{name} must be a string such as 'HB', not {type(product).__name__}")
    value = str(product).strip()
    if not value:
        raise ValueError(f"{name} must not be empty")
    if value != str(product):
        raise ValueError(f"{name} must not have surrounding whitespace: {product!r}")
    return value


def check_products(products: object) -> tuple[str, ...] | None:
    """``None`` means all products; otherwise one or more distinct products."""
    if products is None:
        return None
    if isinstance(products, str):
        # A lone string is almost always meant as one product, not as letters.
        return (check_product(products, "products"),)
    if not isinstance(products, Iterable):
        raise TypeError(
            "products must be None, a string or an iterable of strings, "
            f"not {type(products).__name__}"
        )
    checked = tuple(check_product(item, "products[]") for item in products)
    if not checked:
        raise ValueError("products must not be empty; pass None for all products")
    if len(set(checked)) != len(checked):
        raise ValueError(f"products has duplicates: {list(checked)}")
    return checked


def check_group_by(group_by: object) -> tuple[GroupBy, ...]:
    """One or more distinct `GroupBy` values (members or their names), order kept."""
    items: tuple[object, ...]
    if isinstance(group_by, str):
        items = (group_by,)
    elif isinstance(group_by, Iterable):
        items = tuple(group_by)
    else:
        raise TypeError(
            "group_by must be a GroupBy, a string or an iterable of them, "
            f"not {type(group_by).__name__}"
        )
    if not items:
        raise ValueError("group_by must name at least one of DAY, TARGET, INSTANCE")
    grouping: list[GroupBy] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"group_by values must be GroupBy members or strings, not {type(item).__name__}"
            )
        try:
            value = GroupBy(item.upper()) if not isinstance(item, GroupBy) else item
        except ValueError:
            raise ValueError(
                f"unknown group_by value {item!r}; expected one of DAY, TARGET, INSTANCE"
            ) from None
        if value in grouping:
            raise ValueError(f"group_by names {value.value} twice")
        grouping.append(value)
    return tuple(grouping)


def check_instances(instances: object) -> tuple[str, ...] | None:
    """``None`` means every instance; otherwise one or more distinct UUID strings."""
    if instances is None:
        return None
    if isinstance(instances, str):
        raise TypeError("instances must be an iterable of instance ids, not a single string")
    if not isinstance(instances, Iterable):
        raise TypeError(
            f"instances must be None or an iterable of strings, not {type(instances).__name__}"
        )
    checked = tuple(instances)
    if not checked:
        raise ValueError("instances must not be empty; pass None for every instance")
    for item in checked:
        if not isinstance(item, str):
            raise TypeError(f"instance ids must be strings, not {type(item).__name__}: {item!r}")
        if not item.strip():
            raise ValueError("instance ids must not be empty")
    # Duplicates are harmless; drop them so the query string stays short.
    return tuple(dict.fromkeys(checked))


@attrs.frozen
class UsageQuery:
    """A checked usage query: the product, the whole range, the grouping, the filter.

    Build one with [`UsageQuery.build`][oxystats.UsageQuery.build], which takes
    the arguments of [`AsyncClient.usage`][oxystats.AsyncClient.usage] and
    checks them exactly as it does, to plan a call (its `windows`) before
    making it.
    """

    product: str
    """The product."""
    start: datetime
    """The first second of the range, inclusive."""
    end: datetime
    """The last second of the range, inclusive."""
    grouping: tuple[GroupBy, ...]
    """The groupings, in order."""
    instances: tuple[str, ...] | None
    """The instance ids to filter by, or `None` for all."""
    _windows: tuple[Window, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Derived here, so that no query holds windows that disagree with its range.
        try:
            windows = tuple(split_range(self.start, self.end))
        except OverflowError:
            raise ValueError(
                f"the range from {self.start} to {self.end} is too near the ends of the "
                "calendar to be converted to UTC and split into windows"
            ) from None
        object.__setattr__(self, "_windows", windows)

    @classmethod
    def build(
        cls,
        product: ProductLike,
        date_from: DateLike,
        date_to: DateLike,
        group_by: Grouping,
        instances: InstanceIds = None,
        *,
        max_windows: int = DEFAULT_MAX_WINDOWS,
    ) -> UsageQuery:
        """Check the arguments of a usage call as `AsyncClient.usage` does, and plan it.

        Args:
            product: As for `AsyncClient.usage`.
            date_from: As for `AsyncClient.usage`.
            date_to: As for `AsyncClient.usage`.
            group_by: As for `AsyncClient.usage`.
            instances: As for `AsyncClient.usage`.
            max_windows: The most 31-day windows the range may take.

        Raises:
            ValueError: An argument has the right type but a wrong value, or
                the range needs more than ``max_windows`` windows, or dates
                too near the ends of the calendar to plan windows around.
            TypeError: An argument has the wrong type.
        """
        checked_product = check_product(product)
        limit = check_max_windows(max_windows)
        grouping, checked_instances = check_group_by(group_by), check_instances(instances)
        try:
            start, end = normalize_range(date_from, date_to)
            count = window_count(start, end)
        except OverflowError:
            raise ValueError(
                f"the range from {date_from} to {date_to} is too near the ends of the calendar "
                "to be converted to UTC and split into windows"
            ) from None
        if count > limit:
            raise ValueError(
                f"the range {start.isoformat()} to {end.isoformat()} takes {count:,} windows "
                f"of 31 days, more than max_windows={limit:,}; narrow it, or raise max_windows"
            )
        return cls(checked_product, start, end, grouping, checked_instances)

    def windows(self) -> list[Window]:
        """The fewest windows of at most 31 days that cover the range exactly."""
        return list(self._windows)
