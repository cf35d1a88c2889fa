"""The data the API returns, as frozen attrs classes, and the enums of its vocabulary.

Nothing here does I/O; structuring JSON into these classes is `_convert`'s job.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from oxystats import _frames

__all__ = [
    "FetchedPage",
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
    """By UTC calendar day: keys are ``YYYY-MM-DD``."""
    TARGET = "TARGET"
    """By target: keys are hostnames."""
    INSTANCE = "INSTANCE"
    """By product instance: keys are instance UUIDs."""


@attrs.frozen
class Instance:
    """A product instance the account may access."""

    uuid: str
    """The instance's id, as `instances=` filters take it."""
    name: str
    """Its name."""
    status: str
    """Its status, such as ``"enabled"``."""
    product: str
    """The product it is an instance of."""


@attrs.frozen
class Pagination:
    """The ``meta.pagination`` block of every paginated response."""

    page: int
    """This page's number, from 1."""
    per_page: int
    """The page size asked for."""
    total_items: int
    """Items over every page."""
    total_pages: int
    """How many pages there are (at least 1, even with no items)."""


@attrs.frozen
class UsageTotals:
    """Requests and traffic summed over a whole query (every page)."""

    requests: int
    """Requests made."""
    traffic_bytes: int
    """Traffic, in bytes."""


@attrs.frozen
class UsageRow:
    """Usage for one combination of grouping keys."""

    grouped_by: tuple[str, ...]
    """One key per grouping, in the order of the query's grouping.

    A UTC date ``YYYY-MM-DD`` for ``DAY``, a hostname for ``TARGET``, an
    instance UUID for ``INSTANCE``.
    """
    requests: int
    """Requests made."""
    traffic_bytes: int
    """Traffic, in bytes."""


@attrs.frozen
class InstancesPage:
    """One page of ``GET /stats/v1/filters/instances``."""

    data: tuple[Instance, ...]
    """The instances on this page."""
    pagination: Pagination
    """Where this page is."""


@attrs.frozen
class UsagePage:
    """One page of ``GET /stats/v1/usage``."""

    data: tuple[UsageRow, ...]
    """The rows on this page (at most ``per_page``)."""
    totals: UsageTotals
    """Totals over the whole query, every page: the same on every page."""
    pagination: Pagination
    """Where this page is."""
    grouping: tuple[str, ...]
    """The grouping the server applied, in order."""


@attrs.frozen
class Window:
    """One request-sized slice of a date range: both ends inclusive, to the second."""

    start: datetime
    """The first second of the window."""
    end: datetime
    """The last second of the window, at most 31 days after `start`."""


@attrs.frozen
class FetchedPage:
    """One page of one window, as it was fetched.

    [`AsyncClient.iter_usage_pages`][oxystats.AsyncClient.iter_usage_pages] yields them.
    """

    window_index: int
    """The window's position, from 0, in chronological order.

    When an instance filter too long for one URL is split into parts, the
    windows of each part follow those of the part before: ``window_index``
    modulo the number of windows is the position within the range, and
    ``(window_index, number)`` still names one page of the whole call.
    """
    window: Window
    """The window the page belongs to."""
    number: int
    """The page number within the window, from 1."""
    page: UsagePage
    """The page itself."""

    @property
    def total_pages(self) -> int:
        """How many pages the window has."""
        return self.page.pagination.total_pages

    @property
    def window_totals(self) -> UsageTotals | None:
        """The window's totals, on the one page of the window that counts them.

        Every page of a window repeats the window's totals; adding
        `window_totals` of every page counts each window once (on page 1).
        """
        return self.page.totals if self.number == 1 else None


@attrs.frozen
class UsageReport:
    """The merged result of [`AsyncClient.usage`][oxystats.AsyncClient.usage]."""

    rows: list[UsageRow]
    """The rows, one per key.

    Rows with equal ``grouped_by`` from different windows are summed into
    one; rows keep the order in which their key first appeared, walking the
    windows chronologically and each window's pages in order (so a grouping
    that starts with ``DAY`` comes out chronologically).
    """
    totals: UsageTotals
    """Totals over the whole range."""
    grouping: tuple[GroupBy, ...]
    """The grouping, in the order of the keys of every row."""
    unknown_instances: tuple[str, ...] = ()
    """The requested instance ids the API does not know (and silently ignores)."""

    def to_arrow(self) -> Any:
        """The rows as a `pyarrow.Table` (needs the ``parquet`` extra).

        Columns: the groupings in order, lowercase (``day`` as a date), then
        ``requests`` and ``traffic_bytes``.
        """
        return _frames.to_arrow(self.grouping, self.rows)

    def to_pandas(self) -> Any:
        """The rows as a `pandas.DataFrame` (needs the ``pandas`` extra); columns as `to_arrow`."""
        return _frames.to_pandas(self.grouping, self.rows)

    def to_polars(self) -> Any:
        """The rows as a `polars.DataFrame` (needs the ``polars`` extra); columns as `to_arrow`."""
        return _frames.to_polars(self.grouping, self.rows)
