"""What ``oxystats exporter`` asks the API at every poll: this month's usage so far.

For each product, one call of the month so far grouped by day (and by
instance): one window, usually one page, so a poll costs a request or two per
product. Today's figures are the row of the current UTC day; the month's,
the sum of the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime

import attrs

from oxystats import AsyncClient, GroupBy, Instance

__all__ = ["INSTANCE_LABEL", "Figures", "Snapshot", "UsagePoller", "utc_now"]

INSTANCE_LABEL = "instance_uuid"
"""Not ``instance``: Prometheus gives that label to every scraped target itself."""


def utc_now() -> datetime:
    """The current time; its UTC date is "today" for the API."""
    return datetime.now(UTC)


@attrs.frozen
class Figures:
    """Usage of one product (or instance): today's and the month's so far."""

    today_requests: int = 0
    today_traffic_bytes: int = 0
    month_requests: int = 0
    month_traffic_bytes: int = 0

    def plus(self, requests: int, traffic_bytes: int, *, today: bool) -> Figures:
        """These figures with one day's row added (to today's too, if it is today's)."""
        return Figures(
            self.today_requests + (requests if today else 0),
            self.today_traffic_bytes + (traffic_bytes if today else 0),
            self.month_requests + requests,
            self.month_traffic_bytes + traffic_bytes,
        )


@attrs.frozen
class Snapshot:
    """What one successful poll found."""

    day: date
    """The UTC day that "today" was."""
    figures: Mapping[tuple[str, ...], Figures]
    """Label values (product, or product and instance UUID) to their figures."""
    instances: tuple[Instance, ...]
    """The instances listed during the poll (none if it did not need the list)."""


class UsagePoller:
    """Asks the API for this month's usage so far, per product (or instance).

    Args:
        client: The client to ask with.
        products: The products to poll; `None`: every product the key has
            instances of, listed again at every poll.
        by_instance: One set of figures per instance instead of per product.
        now: The current time, whose UTC date is "today".
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        products: tuple[str, ...] | None,
        by_instance: bool,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._products = products
        self._by_instance = by_instance
        self._now = now

    @property
    def label_names(self) -> tuple[str, ...]:
        """The labels of the usage series."""
        return ("product", INSTANCE_LABEL) if self._by_instance else ("product",)

    async def poll(self) -> Snapshot:
        """One poll: the figures of every product (or instance), zeros included.

        Raises:
            OxystatsError: The API or the network failed.
        """
        today = self._now().astimezone(UTC).date()
        instances: tuple[Instance, ...] = ()
        if self._products is None or self._by_instance:
            instances = tuple(await self._client.instances(self._products))
        products = self._products
        if products is None:
            products = tuple(dict.fromkeys(instance.product for instance in instances))
        grouping = [GroupBy.DAY, GroupBy.INSTANCE] if self._by_instance else [GroupBy.DAY]
        figures: dict[tuple[str, ...], Figures] = {}
        for product in products:
            # Zeros for what had no usage yet: a series that is missing is not a zero.
            if self._by_instance:
                for instance in instances:
                    if instance.product == product:
                        figures[(product, instance.uuid)] = Figures()
            else:
                figures[(product,)] = Figures()
            report = await self._client.usage(product, today.replace(day=1), today, grouping)
            for row in report.rows:
                key = (product, *row.grouped_by[1:])
                figures[key] = figures.get(key, Figures()).plus(
                    row.requests, row.traffic_bytes, today=row.grouped_by[0] == today.isoformat()
                )
        return Snapshot(today, figures, instances)
