"""`PrometheusMetrics`: an event hook that turns client events into Prometheus metrics.

prometheus_client is an optional dependency (the ``prometheus`` extra): this
module imports it only when a `PrometheusMetrics` is made, so ``import
oxystats`` works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from oxystats._events import ClientEvent, PauseEvent, RequestEvent
from oxystats._retry import RetryEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusMetrics"]

REQUEST_DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Seconds: from a fast local answer to the default 30 s timeout."""

LIMITER_WAIT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: from no wait at all to a backlog of hundreds of requests at 10 per second."""


class PrometheusMetrics:
    """An event hook that counts what clients do, as Prometheus metrics.

    Pass it to every client whose requests it should count (one instance per
    registry: the metrics are registered when it is made):

    ```python
    metrics = oxystats.PrometheusMetrics()
    client = oxystats.AsyncClient(event_hooks=[metrics])
    ```

    Metrics (``oxystats`` is the `namespace`):

    - ``oxystats_requests_total{status}``: requests sent (every attempt, retries
      included), by HTTP status (``"200"``, ``"429"``, ...) or, when no answer
      came, by what failed (``"ConnectError"``, ``"AttemptTimeout"``, ...);
    - ``oxystats_request_duration_seconds``: histogram of the time from sending
      a request to its answer (or failure);
    - ``oxystats_retries_total{reason}``: retries scheduled, by the status
      (``"429"``, ``"503"``, ...) or the exception's class name that caused them;
    - ``oxystats_rate_limited_total``: 429 answers;
    - ``oxystats_limiter_wait_seconds``: histogram of the time each request
      waited for the rate limiter before it was sent;
    - ``oxystats_limiter_pauses_total``: pauses of a key's limiter after a 429
      or a 503 with ``Retry-After``, and ``oxystats_limiter_pause_seconds_total``,
      the seconds they held the key back.

    Args:
        registry: Where the metrics are registered; `None` is
            prometheus_client's default registry, the one its
            ``start_http_server`` and ``make_asgi_app`` serve.
        namespace: The prefix of every metric name.
        request_duration_buckets: Upper bounds, in seconds, of the buckets of
            ``oxystats_request_duration_seconds``.
        limiter_wait_buckets: Upper bounds, in seconds, of the buckets of
            ``oxystats_limiter_wait_seconds``.

    Raises:
        ImportError: prometheus_client is not installed
            (``pip install 'oxystats[prometheus]'``).
        ValueError: The registry already has these metrics (make one
            `PrometheusMetrics` per registry and pass it to every client).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "oxystats",
        request_duration_buckets: Sequence[float] = REQUEST_DURATION_BUCKETS,
        limiter_wait_buckets: Sequence[float] = LIMITER_WAIT_BUCKETS,
    ) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, not {type(namespace).__name__}")
        try:
            from prometheus_client import REGISTRY, Counter, Histogram
        except ImportError as exc:
            raise ImportError(
                "oxystats.PrometheusMetrics needs prometheus_client: "
                "pip install 'oxystats[prometheus]'"
            ) from exc
        registry = REGISTRY if registry is None else registry
        self._namespace = namespace
        self._requests = Counter(
            "requests",
            "Requests sent to the Dashboard API (every attempt), by HTTP status or failure.",
            ["status"],
            namespace=namespace,
            registry=registry,
        )
        self._duration = Histogram(
            "request_duration_seconds",
            "Seconds from sending a request to its answer or failure.",
            buckets=tuple(request_duration_buckets),
            namespace=namespace,
            registry=registry,
        )
        self._retries = Counter(
            "retries",
            "Retries scheduled, by the status or the exception that caused them.",
            ["reason"],
            namespace=namespace,
            registry=registry,
        )
        self._rate_limited = Counter(
            "rate_limited",
            "429 answers from the Dashboard API.",
            namespace=namespace,
            registry=registry,
        )
        self._limiter_wait = Histogram(
            "limiter_wait_seconds",
            "Seconds a request waited for the rate limiter before it was sent.",
            buckets=tuple(limiter_wait_buckets),
            namespace=namespace,
            registry=registry,
        )
        self._pauses = Counter(
            "limiter_pauses",
            "Pauses of a key's rate limiter after a 429 or a 503 with Retry-After.",
            namespace=namespace,
            registry=registry,
        )
        self._paused = Counter(
            "limiter_pause_seconds",
            "Seconds the pauses of a key's rate limiter held it back.",
            namespace=namespace,
            registry=registry,
        )

    def __repr__(self) -> str:
        return f"PrometheusMetrics(namespace={self._namespace!r})"

    def __call__(self, event: ClientEvent) -> None:
        """Count one event (a client calls this; see [`EventHook`][oxystats.EventHook])."""
        if isinstance(event, RequestEvent):
            outcome = str(event.status) if event.status is not None else event.error or "error"
            self._requests.labels(outcome).inc()
            self._duration.observe(event.elapsed)
            self._limiter_wait.observe(event.limiter_wait)
            if event.status == 429:
                self._rate_limited.inc()
        elif isinstance(event, RetryEvent):
            self._retries.labels(event.reason).inc()
        elif isinstance(event, PauseEvent):
            self._pauses.inc()
            self._paused.inc(event.seconds)
