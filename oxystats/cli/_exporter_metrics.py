"""The Prometheus side of ``oxystats exporter``: its series, and the server that serves them.

This module imports prometheus_client, so the command imports it only when it
runs: the rest of the command line works without the ``prometheus`` extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import click
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from oxystats.cli._poller import INSTANCE_LABEL, Snapshot

__all__ = ["ExporterMetrics", "serve_metrics"]

_USAGE_SERIES = {
    "today_requests": (
        "oxystats_usage_today_requests",
        "Requests made so far today (UTC), as the Dashboard API counts them.",
    ),
    "today_traffic_bytes": (
        "oxystats_usage_today_traffic_bytes",
        "Traffic so far today (UTC), in bytes, as the Dashboard API counts it.",
    ),
    "month_requests": (
        "oxystats_usage_month_to_date_requests",
        "Requests made so far this month (UTC), as the Dashboard API counts them.",
    ),
    "month_traffic_bytes": (
        "oxystats_usage_month_to_date_traffic_bytes",
        "Traffic so far this month (UTC), in bytes, as the Dashboard API counts it.",
    ),
}
"""`Figures` field -> series name and help."""


class ExporterMetrics:
    """The exporter's series: the last poll's figures, and how polling goes.

    Registers itself (for the figures, handed over at every scrape) and its
    poll counters on ``registry``.

    Args:
        registry: Where to register.
        label_names: The labels of the usage series (``UsagePoller.label_names``).
    """

    def __init__(self, registry: CollectorRegistry, label_names: Iterable[str]) -> None:
        self.snapshot: Snapshot | None = None
        """The last successful poll's; replaced whole, so a scrape never sees half of one."""
        self._label_names = list(label_names)
        registry.register(self)
        self.polls = Counter(
            "oxystats_exporter_polls",
            "Polls of the Dashboard API done, failed ones included.",
            registry=registry,
        )
        self.errors = Counter(
            "oxystats_exporter_poll_errors",
            "Polls that failed, by the class of the error.",
            ["error"],
            registry=registry,
        )
        self.last_success = Gauge(
            "oxystats_exporter_last_success_timestamp_seconds",
            "When the last successful poll ended (Unix time): the usage figures are its.",
            registry=registry,
        )
        self.last_duration = Gauge(
            "oxystats_exporter_last_poll_duration_seconds",
            "How long the last poll took, failed or not.",
            registry=registry,
        )

    def collect(self) -> Iterator[Metric]:
        """The usage series of the last snapshot (none before the first success).

        Called by the registry at every scrape, in the server's thread.
        """
        snapshot = self.snapshot
        if snapshot is None:
            return
        families = {
            field: GaugeMetricFamily(name, documentation, labels=self._label_names)
            for field, (name, documentation) in _USAGE_SERIES.items()
        }
        for labels, figures in snapshot.figures.items():
            for field, family in families.items():
                family.add_metric(list(labels), getattr(figures, field))
        yield from families.values()
        if snapshot.instances:
            info = GaugeMetricFamily(
                "oxystats_instance_info",
                "The instances the key may see (always 1), to join names to instance_uuid.",
                labels=["product", INSTANCE_LABEL, "name", "status"],
            )
            for instance in snapshot.instances:
                info.add_metric(
                    [instance.product, instance.uuid, instance.name, instance.status], 1
                )
            yield info


@contextlib.contextmanager
def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Iterator[str]:
    """Serve ``registry`` over HTTP on ``host:port`` while the block runs; yield the URL.

    prometheus_client's own server, in a thread of its own: it answers
    scrapes whatever the event loop is doing, and stops at the end of the block.

    Raises:
        click.ClickException: The address cannot be listened on.
    """
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
