"""Named aliases for what the public API accepts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import TypeAlias

from oxystats._models import GroupBy, Product

__all__ = ["DateLike", "GroupByLike", "Grouping", "InstanceIds", "ProductLike", "Products"]

DateLike: TypeAlias = date | datetime
"""A range end: a timezone-aware `datetime`, or a `date` (the whole UTC day)."""

ProductLike: TypeAlias = Product | str
"""A product: a [`Product`][oxystats.Product] member or any non-empty product string."""

Products: TypeAlias = ProductLike | Iterable[ProductLike] | None
"""One product, several, or `None` for every product."""

GroupByLike: TypeAlias = GroupBy | str
"""One grouping: a [`GroupBy`][oxystats.GroupBy] member or its name (``"DAY"``, ...)."""

Grouping: TypeAlias = GroupByLike | Iterable[GroupByLike]
"""One grouping or several, in order: the order of `UsageRow.grouped_by`."""

InstanceIds: TypeAlias = Iterable[str] | None
"""Instance UUIDs to filter by, or `None` for every instance."""
