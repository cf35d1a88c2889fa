"""PrometheusMetrics: every request, retry, 429 and limiter wait counted, by real clients."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from datetime import date

import attrs
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import oxystats
from oxystats.emulator import Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

FAST = oxystats.Limit(rate=1_000.0, burst=1_000, in_flight=4)


def fast_backoff(client: oxystats.AsyncClient) -> None:
    """Shrink the exponential backoff so fault tests run in milliseconds."""
    client._retry_policy = attrs.evolve(client._retry_policy, backoff_base=0.001, backoff_max=0.002)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def series(registry: CollectorRegistry, metric: str, label: str) -> dict[str, float]:
    """Every series of a labelled counter: label value -> count."""
    found: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == metric:
                found[s.labels[label]] = s.value
    return found


@pytest.mark.anyio
async def test_every_event_lands_in_its_metric(oxystats_emulator: RunningEmulator) -> None:
    """Requests by status, retries by reason, 429s, pauses and waits match what was sent."""
    oxystats_emulator.emulator.faults = Faults(
        seed=2, error_500=0.2, error_503=0.1, spurious_429=0.1, retry_after=0
    )
    registry = CollectorRegistry()
    metrics = oxystats.PrometheusMetrics(registry=registry)
    events: list[oxystats.ClientEvent] = []
    async with oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=oxystats_emulator.url,
        key_limit=FAST,
        event_hooks=[metrics, events.append],
    ) as client:
        fast_backoff(client)
        await client.usage("HB", date(2024, 1, 1), date(2024, 2, 29), ["DAY", "TARGET"])
        stats = client.stats
    log = oxystats_emulator.emulator.log
    by_status: dict[str, float] = {}
    for entry in log:
        by_status[str(entry.status)] = by_status.get(str(entry.status), 0) + 1
    assert series(registry, "oxystats_requests_total", "status") == by_status
    assert sum(by_status.values()) == stats.requests == len(log)
    assert {"200", "429", "500", "503"} <= set(by_status)

    retries = series(registry, "oxystats_retries_total", "reason")
    assert sum(retries.values()) == stats.retries > 0
    expected_reasons = {e.reason for e in events if isinstance(e, oxystats.RetryEvent)}
    assert set(retries) == expected_reasons
    assert stats.rate_limited == by_status["429"]
    assert sample(registry, "oxystats_rate_limited_total") == stats.rate_limited

    pauses = [e for e in events if isinstance(e, oxystats.PauseEvent)]
    assert sample(registry, "oxystats_limiter_pauses_total") == len(pauses) > 0
    assert sample(registry, "oxystats_limiter_pause_seconds_total") == pytest.approx(
        sum(e.seconds for e in pauses)
    )

    requests = [e for e in events if isinstance(e, oxystats.RequestEvent)]
    assert sample(registry, "oxystats_request_duration_seconds_count") == len(requests)
    assert sample(registry, "oxystats_request_duration_seconds_sum") == pytest.approx(
        sum(e.elapsed for e in requests)
    )
    assert sample(registry, "oxystats_limiter_wait_seconds_count") == len(requests)
    assert sample(registry, "oxystats_limiter_wait_seconds_sum") == pytest.approx(
        sum(e.limiter_wait for e in requests)
    )
    assert sample(registry, "oxystats_limiter_wait_seconds_sum") == pytest.approx(
        stats.limiter_wait, abs=0.01
    )


@pytest.mark.anyio
async def test_a_request_without_an_answer_is_counted_by_what_failed() -> None:
    """A refused connection counts as status="ConnectError", each attempt, with its retry."""
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = CollectorRegistry()
    async with oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=f"http://127.0.0.1:{port}",
        max_retries=1,
        event_hooks=[oxystats.PrometheusMetrics(registry=registry)],
    ) as client:
        fast_backoff(client)
        with pytest.raises(oxystats.APIConnectionError):
            await client.instances()
    assert series(registry, "oxystats_requests_total", "status") == {"ConnectError": 2.0}
    assert series(registry, "oxystats_retries_total", "reason") == {"ConnectError": 1.0}
    assert sample(registry, "oxystats_request_duration_seconds_count") == 2


@pytest.mark.anyio
async def test_one_metrics_object_counts_every_client_given_it(
    oxystats_emulator: RunningEmulator,
) -> None:
    """Two clients share one PrometheusMetrics; a second one on the same registry is refused."""
    registry = CollectorRegistry()
    metrics = oxystats.PrometheusMetrics(registry=registry)
    url = oxystats_emulator.url
    async with (
        oxystats.AsyncClient(DEFAULT_KEY, base_url=url, event_hooks=[metrics]) as first,
        oxystats.AsyncClient(DEFAULT_KEY, base_url=url, event_hooks=[metrics]) as second,
    ):
        await first.usage("HB", date(2024, 1, 1), date(2024, 1, 2), ["DAY"])
        await second.instances()
        await first.with_options(timeout=5.0).instances()
    assert sample(registry, "oxystats_requests_total", status="200") == 3
    with pytest.raises(ValueError, match="Duplicated"):
        oxystats.PrometheusMetrics(registry=registry)
    other = CollectorRegistry()
    oxystats.PrometheusMetrics(registry=other, namespace="billing")
    names = {family.name for family in other.collect()}
    assert "billing_requests" in names
    assert not any(name.startswith("oxystats") for name in names)


def test_the_exposition_has_conventional_names_and_types() -> None:
    """Counters end in _total, durations are histograms in seconds; help text is there."""
    registry = CollectorRegistry()
    oxystats.PrometheusMetrics(registry=registry)(
        oxystats.PauseEvent(seconds=2.0, reason="429 with Retry-After: 2")
    )
    text = generate_latest(registry).decode()
    for line in [
        "# TYPE oxystats_requests_total counter",
        "# TYPE oxystats_request_duration_seconds histogram",
        "# TYPE oxystats_retries_total counter",
        "# TYPE oxystats_rate_limited_total counter",
        "# TYPE oxystats_limiter_wait_seconds histogram",
        "# TYPE oxystats_limiter_pauses_total counter",
        "# TYPE oxystats_limiter_pause_seconds_total counter",
        "oxystats_limiter_pauses_total 1.0",
        "oxystats_limiter_pause_seconds_total 2.0",
        'oxystats_request_duration_seconds_bucket{le="30.0"} 0.0',
        'oxystats_limiter_wait_seconds_bucket{le="+Inf"} 0.0',
    ]:
        assert line in text.splitlines(), line


def test_bad_arguments_are_refused() -> None:
    """A namespace that is not a string is a TypeError; unsorted buckets a ValueError."""
    with pytest.raises(TypeError, match="namespace"):
        oxystats.PrometheusMetrics(namespace=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sorted"):
        oxystats.PrometheusMetrics(registry=CollectorRegistry(), limiter_wait_buckets=[2.0, 1.0])


def test_oxystats_imports_without_prometheus_client() -> None:
    """Without prometheus_client, import oxystats works; making the hook names the extra."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        import oxystats
        try:
            oxystats.PrometheusMetrics()
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'oxystats[prometheus]'" in done.stdout
