"""The data the API returns, as frozen attrs classes, and the enums of its vocabulary.

Nothing here does I/O; structuring JSON into these classes is `_convert`'s job.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "GroupBy",
    "Instance",
    "InstancesPage",
    "Pagination",
    "Product",
    "UsagePage",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
    "Window",
]


class Product(enum.StrEnum):
    """The products the Dashboard API is known to cover.

    Products are open-ended: any non-empty string is accepted wherever a
    product is, so a product added by Oxylabs tomorrow works today.
    """

    HB = "HB"
    """Headless Browser."""
    DC = "DC"
    """Datacenter Proxies."""


class GroupBy(enum.StrEnum):
    """How usage rows are grouped; combine several, order matters."""

    DAY = "DAY"
    TARGET = "TARGET"
    INSTANCE = "INSTANCE"


@attrs.frozen
class Instance:
    """A product instance the account may access."""

    uuid: str
    name: str
    status: str
    product: str


@attrs.frozen
class Pagination:
    """The ``meta.pagination`` block of every paginated response."""

    page: int
    per_page: int
    total_items: int
    total_pages: int


@attrs.frozen
class UsageTotals:
    """Requests and traffic summed over a whole query (every page)."""

    requests: int
    traffic_bytes: int


@attrs.frozen
class UsageRow:
    """Usage for one combination of grouping keys.

    ``grouped_by`` holds one value per grouping, in the order of
    ``UsageReport.grouping``: a UTC date ``YYYY-MM-DD`` for ``DAY``, a
    hostname for ``TARGET``, an instance UUID for ``INSTANCE``.
    """

    grouped_by: tuple[str, ...]
    requests: int
    traffic_bytes: int


@attrs.frozen
class InstancesPage:
    """One page of ``GET /stats/v1/filters/instances``."""

    data: tuple[Instance, ...]
    pagination: Pagination


@attrs.frozen
class UsagePage:
    """One page of ``GET /stats/v1/usage``; ``totals`` cover the whole query."""

    data: tuple[UsageRow, ...]
    totals: UsageTotals
    pagination: Pagination
    grouping: tuple[str, ...]


@attrs.frozen
class Window:
    """One request-sized slice of a date range: both ends inclusive, to the second."""

    start: datetime
    end: datetime


@attrs.frozen
class UsageReport:
    """The merged result of `AsyncClient.usage`.

    Rows with equal ``grouped_by`` from different windows are summed into
    one; rows keep the order in which their key first appeared, walking the
    windows chronologically and each window's pages in order (so a grouping
    that starts with ``DAY`` comes out chronologically).
    ``unknown_instances`` lists the requested instance ids the API does
    not know (it ignores them silently; see `AsyncClient.usage`).
    """

    rows: list[UsageRow]
    totals: UsageTotals
    grouping: tuple[GroupBy, ...]
    unknown_instances: tuple[str, ...] = ()

    def to_arrow(self) -> Any:
        """The rows as a `pyarrow.Table` (needs the ``parquet`` extra).

        Columns: the groupings in order, lowercase (``day`` as a date), then
        ``requests`` and ``traffic_bytes``.
        """
        from oxystats._frames import to_arrow

        return to_arrow(self)

    def to_pandas(self) -> Any:
        """The rows as a `pandas.DataFrame` (needs the ``pandas`` extra); columns as `to_arrow`."""
        from oxystats._frames import to_pandas

        return to_pandas(self)

    def to_polars(self) -> Any:
        """The rows as a `polars.DataFrame` (needs the ``polars`` extra); columns as `to_arrow`."""
        from oxystats._frames import to_polars

        return to_polars(self)
