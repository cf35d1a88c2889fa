"""``oxystats exporter``: today's and this month's usage, polled and served to Prometheus.

Every ``--interval`` seconds a poll (`oxystats.cli._poller`) asks the API for
this month's usage so far; the last successful poll's figures are served on
``/metrics`` (`oxystats.cli._exporter_metrics`), with the client's own metrics
([`PrometheusMetrics`][oxystats.PrometheusMetrics]) and the exporter's: polls,
failed polls by error, the time of the last success. A failed poll is
counted and logged, never fatal: the server keeps serving the last figures,
and ``oxystats_exporter_last_success_timestamp_seconds`` says how old they are.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING

import anyio
import click

from oxystats import AsyncClient, GroupBy, OxystatsError, PrometheusMetrics, UsageQuery
from oxystats.cli._logging import cli_logger, command_logging
from oxystats.cli._options import ClientSettings, client_options
from oxystats.cli._poller import INSTANCE_LABEL, UsagePoller, utc_now

if TYPE_CHECKING:
    from oxystats.cli._exporter_metrics import ExporterMetrics

__all__ = ["DEFAULT_PORT", "exporter", "poll_once", "run_exporter"]

DEFAULT_PORT = 9816
"""Where ``oxystats exporter`` listens unless told otherwise."""


async def poll_once(poller: UsagePoller, metrics: ExporterMetrics) -> None:
    """One poll, counted; a failure is logged and counted, and the last figures stay."""
    started = time.monotonic()
    try:
        snapshot = await poller.poll()
    except Exception as exc:
        cli_logger.warning(
            "poll failed (%s): %s; the last figures stay served",
            type(exc).__name__,
            exc,
            # A bug is worth its traceback; a failure of the API or the network is not.
            exc_info=not isinstance(exc, OxystatsError),
            extra={"error": type(exc).__name__},
        )
        metrics.errors.labels(type(exc).__name__).inc()
    else:
        metrics.snapshot = snapshot
        metrics.last_success.set(time.time())
        cli_logger.debug(
            "polled %d series for %s",
            len(snapshot.figures),
            snapshot.day.isoformat(),
            extra={"series": len(snapshot.figures), "day": snapshot.day.isoformat()},
        )
    # Not for a cancelled poll: as far as the series go, it did not happen.
    metrics.last_duration.set(time.monotonic() - started)
    metrics.polls.inc()


async def run_exporter(poller: UsagePoller, metrics: ExporterMetrics, interval: float) -> None:
    """Poll every ``interval`` seconds (start to start), forever; cancel it to stop.

    A poll that overruns the interval is not followed by catch-up polls: the
    starts it missed are skipped.
    """
    next_start = anyio.current_time()
    while True:
        await poll_once(poller, metrics)
        next_start += interval
        now = anyio.current_time()
        if next_start < now:
            next_start += ((now - next_start) // interval + 1) * interval
        await anyio.sleep_until(next_start)


async def _until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for number in signals:
            cli_logger.info("stopping on %s", signal.Signals(number).name)
            scope.cancel()
            return


async def _serve(
    client: AsyncClient, poller: UsagePoller, metrics: ExporterMetrics, interval: float
) -> None:
    async with client, anyio.create_task_group() as group:
        if sys.platform != "win32":  # no signal receivers there; Ctrl+C still stops it
            group.start_soon(_until_signalled, group.cancel_scope)
        await run_exporter(poller, metrics, interval)


def _require_prometheus_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "oxystats exporter needs prometheus_client: pip install 'oxystats[cli,prometheus]'"
        ) from exc


@click.command()
@click.option(
    "--product",
    "products",
    multiple=True,
    metavar="PRODUCT",
    help="Poll this product (repeatable; default: every product the key has instances of).",
)
@click.option(
    "--by-instance",
    is_flag=True,
    help=f"One series per instance (label {INSTANCE_LABEL}) instead of one per product.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds from the start of one poll to the start of the next.",
)
@click.option(
    "--listen",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="The address to serve /metrics on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The port to serve /metrics on (0 picks a free one).",
)
@client_options
def exporter(
    products: tuple[str, ...],
    by_instance: bool,
    interval: float,
    listen: str,
    port: int,
    settings: ClientSettings,
) -> None:
    """Serve today's and this month's usage as Prometheus metrics, polled every --interval.

    Series per product (or per instance with --by-instance): requests and
    traffic bytes today (UTC) and this month so far; the client's own
    metrics (requests by status, retries, 429s, limiter waits); and
    oxystats_exporter_last_success_timestamp_seconds. A failed poll is
    counted and logged; the last figures stay served. Stop it with Ctrl+C or
    SIGTERM.
    """
    _require_prometheus_client()
    from prometheus_client import CollectorRegistry, disable_created_metrics

    from oxystats.cli._exporter_metrics import ExporterMetrics, serve_metrics

    today = utc_now().date()
    for product in products:  # a bad product is exit 2, before anything listens
        UsageQuery.build(product, today, today, [GroupBy.DAY])
    # No `*_created` series beside every counter: they say when this process started it.
    disable_created_metrics()
    with command_logging(quiet=settings.quiet, progress_bar=False):
        registry = CollectorRegistry()
        client = settings.make_client(event_hooks=[PrometheusMetrics(registry=registry)])
        poller = UsagePoller(client, products=products or None, by_instance=by_instance)
        metrics = ExporterMetrics(registry, poller.label_names)
        with serve_metrics(registry, listen, port) as url:
            # The URL alone on stdout, for scripts to read (as `oxystats emulator` does).
            click.echo(f"oxystats exporter listening on {url}")
            sys.stdout.flush()
            cli_logger.info(
                "polling %s every %g s from %s",
                ", ".join(products) if products else "every product of the key",
                interval,
                client.base_url,
            )
            anyio.run(_serve, client, poller, metrics, interval, backend=settings.backend)
