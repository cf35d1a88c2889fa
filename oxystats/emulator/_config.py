"""The emulator's settings: frozen attrs classes, validated on construction.

Everything here is plain data. The running state (limiter buckets, the fault
stream, the request log) lives in `Emulator`, which reads these.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import attrs

from ._clock import check_now

__all__ = [
    "ADMIN_PREFIX",
    "DEFAULT_ACCOUNT",
    "DEFAULT_KEY",
    "ArrivalJitter",
    "Dataset",
    "EmulatorConfig",
    "Faults",
    "RateLimitRule",
    "RateLimits",
]

ADMIN_PREFIX = "/__emulator__"
"""Where the emulator's own endpoints (stats, log, reset, now) live: no auth, never logged."""

DEFAULT_KEY = "test-key"
"""The API key the default configuration accepts."""

DEFAULT_ACCOUNT = "account-1"
"""The account `DEFAULT_KEY` belongs to."""


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _probability(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _at_least_one(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 1 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 1, got {value!r}")


def _to_products(value: Iterable[str]) -> tuple[str, ...]:
    # A bare string is iterable too; "HB" must not become ("H", "B").
    if isinstance(value, str):
        return (value,)
    return tuple(str(getattr(item, "value", item)) for item in value)


def _to_date(value: date) -> date:
    # datetime is a subclass of date; keep only the calendar day (UTC by contract).
    if isinstance(value, datetime):
        return value.date()
    return value


@attrs.frozen
class Dataset:
    """The synthetic traffic served by the emulator, fully determined by these fields.

    Usage is hourly: every (instance, target, hour) cell is non-zero with
    probability ``density`` and is recorded at one instant inside its hour,
    so second-precise range boundaries matter. There is no usage outside
    ``[start, start + days)`` (UTC days).
    """

    seed: int = 0
    products: tuple[str, ...] = attrs.field(default=("HB", "DC"), converter=_to_products)
    instances_per_product: int = attrs.field(default=3, validator=_positive)
    targets: int = attrs.field(default=20, validator=_positive)
    start: date = attrs.field(default=date(2024, 1, 1), converter=_to_date)
    days: int = attrs.field(default=800, validator=_positive)
    density: float = attrs.field(default=0.4, validator=_positive)

    @products.validator
    def _check_products(self, _: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        if not value:
            raise ValueError("products must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"products must be unique, got {value!r}")
        for product in value:
            # "null" is the wire word for "all products", so it cannot name one.
            if not product or product == "null" or not product.isprintable() or " " in product:
                raise ValueError(f"invalid product name {product!r}")

    @density.validator
    def _check_density(self, _: attrs.Attribute[Any], value: float) -> None:
        if value > 1:
            raise ValueError(f"density must be in (0, 1], got {value!r}")


@attrs.frozen
class RateLimitRule:
    """One limit; every field left as ``None`` is not enforced.

    * ``window_requests`` per sliding ``window_seconds``: counts requests by
      arrival time; requests rejected with 429 do not count.
    * ``bucket_rate`` tokens per second with capacity ``bucket_burst``
      (default: the rate rounded up): a token bucket.
    * ``in_flight``: requests being processed at once.
    """

    window_requests: int | None = attrs.field(default=None, validator=_positive)
    window_seconds: float = attrs.field(default=1.0, validator=_positive)
    bucket_rate: float | None = attrs.field(default=None, validator=_positive)
    bucket_burst: int | None = attrs.field(default=None, validator=_positive)
    in_flight: int | None = attrs.field(default=None, validator=_positive)

    @bucket_burst.validator
    def _check_burst(self, _: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and self.bucket_rate is None:
            raise ValueError("bucket_burst needs bucket_rate")

    @property
    def burst(self) -> int:
        """The bucket's capacity: ``bucket_burst``, or the rate rounded up."""
        if self.bucket_burst is not None:
            return self.bucket_burst
        return max(1, math.ceil(self.bucket_rate or 1))


@attrs.frozen
class RateLimits:
    """Limits per API key and per account (shared by all the account's keys)."""

    per_key: RateLimitRule | None = None
    per_account: RateLimitRule | None = None

    @classmethod
    def documented(cls) -> RateLimits:
        """The vendor's limits read both ways (its page says neither): per second and in flight.

        Per key: 10 requests per sliding second and 10 in flight; per account:
        100 per sliding second and 100 in flight.
        """
        return cls(
            per_key=RateLimitRule(window_requests=10, window_seconds=1.0, in_flight=10),
            per_account=RateLimitRule(window_requests=100, window_seconds=1.0, in_flight=100),
        )

    @property
    def active(self) -> bool:
        """Whether any limit is configured at all."""
        return self.per_key is not None or self.per_account is not None


@attrs.frozen
class Faults:
    """Faults injected into authenticated API requests, reproducible from ``seed``.

    Every probability is one mutually exclusive outcome of a single draw per
    request (together they must not exceed 1). ``latency`` seconds, plus a
    uniform jitter of +/- ``latency_jitter``, delay every admitted request.
    ``retry_after`` is the ``Retry-After`` header of spurious 429s.

    The hostile faults misbehave the way broken proxies and servers do:
    ``ignore_page`` answers page 1 whatever page was asked; ``trickle_body``
    sends the body one byte every ``trickle_interval`` seconds;
    ``inflate_total_pages`` claims ``inflated_total_pages`` pages;
    ``grow_total_pages`` claims one page more on pages 2 and later than on
    page 1; ``oversized_body`` pads a 200's JSON with whitespace to
    ``oversized_bytes``; ``hang`` never answers at all.
    """

    seed: int = 0
    """The seed of the fault stream."""
    error_500: float = attrs.field(default=0.0, validator=_probability)
    """A 500 Internal server error."""
    error_503: float = attrs.field(default=0.0, validator=_probability)
    """A 503 Service unavailable."""
    spurious_429: float = attrs.field(default=0.0, validator=_probability)
    """A 429 although no limit was hit, with ``Retry-After: retry_after``."""
    drop_connection: float = attrs.field(default=0.0, validator=_probability)
    """The status line, headers and half the body, then the connection dies."""
    malformed_body: float = attrs.field(default=0.0, validator=_probability)
    """A 200 whose body is truncated JSON or JSON of the wrong shape (half each)."""
    latency: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds added before answering every admitted request."""
    latency_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    """A uniform +/- spread around ``latency``, in seconds."""
    retry_after: int = attrs.field(default=1, validator=_non_negative)
    """The ``Retry-After`` of spurious 429s, in seconds (0: no header)."""
    ignore_page: float = attrs.field(default=0.0, validator=_probability)
    """The ``page`` parameter is ignored: the answer is page 1, whatever was asked."""
    trickle_body: float = attrs.field(default=0.0, validator=_probability)
    """The body is sent one byte at a time, ``trickle_interval`` seconds apart."""
    inflate_total_pages: float = attrs.field(default=0.0, validator=_probability)
    """A 200 claiming ``inflated_total_pages`` in ``meta.pagination.total_pages``."""
    grow_total_pages: float = attrs.field(default=0.0, validator=_probability)
    """On pages 2 and later, a 200 claiming one more ``total_pages`` than page 1 does."""
    oversized_body: float = attrs.field(default=0.0, validator=_probability)
    """A 200 whose JSON is padded with whitespace to ``oversized_bytes``."""
    hang: float = attrs.field(default=0.0, validator=_probability)
    """No answer at all: the connection is held until the client or the server leaves."""
    trickle_interval: float = attrs.field(default=0.05, validator=_non_negative)
    """Seconds between two bytes of a trickled body."""
    inflated_total_pages: int = attrs.field(default=1_000_000_000, validator=_positive)
    """The ``total_pages`` an inflated page claims."""
    oversized_bytes: int = attrs.field(default=50_000_000, validator=_positive)
    """The size of an oversized body, in bytes (a larger real body is sent as is)."""

    def __attrs_post_init__(self) -> None:
        if self.error_total > 1.0 + 1e-12:
            raise ValueError(f"fault probabilities sum to {self.error_total}, more than 1")

    @property
    def error_total(self) -> float:
        """The probability that a request gets any fault other than latency."""
        return (
            self.error_500
            + self.error_503
            + self.spurious_429
            + self.drop_connection
            + self.malformed_body
            + self.ignore_page
            + self.trickle_body
            + self.inflate_total_pages
            + self.grow_total_pages
            + self.oversized_body
            + self.hang
        )

    @property
    def active(self) -> bool:
        """Whether any fault (or latency) can happen at all."""
        return self.error_total > 0 or self.latency > 0 or self.latency_jitter > 0


@attrs.frozen
class ArrivalJitter:
    """A network path that delays each request's arrival, reproducibly from ``seed``.

    Each authenticated API request is held for a random delay before the
    server stamps its arrival and applies the rate limits, as if it had
    crossed a real network: uniform in ``[0, max_delay]`` seconds, except
    that with probability ``spike_probability`` it is a spike, uniform in
    ``[max_delay, spike_factor * max_delay]``. The response is late by the
    same delay. The draws have a stream of their own: the same fault seed
    gives the same faults with or without jitter. ``max_delay=0`` (the
    default) is no jitter at all.
    """

    max_delay: float = attrs.field(default=0.0, validator=_non_negative)
    """The largest ordinary delay, in seconds."""
    spike_probability: float = attrs.field(default=0.0, validator=_probability)
    """The probability that a request's delay is a spike."""
    spike_factor: float = attrs.field(default=4.0, validator=_at_least_one)
    """The longest spike, as a multiple of ``max_delay``."""
    seed: int = 0
    """The seed of the delays' own random stream."""

    @property
    def active(self) -> bool:
        """Whether any request is delayed at all."""
        return self.max_delay > 0


def _to_keys(value: Mapping[str, str]) -> Mapping[str, str]:
    keys = dict(value)
    if not keys:
        raise ValueError("keys must not be empty")
    for key, account in keys.items():
        # Only the shape is checked; the messages never echo a key.
        if not key or any(ch.isspace() for ch in key) or not key.isprintable():
            raise ValueError("an API key must be non-empty printable text without spaces")
        if not account:
            raise ValueError("an account name must not be empty")
    # Read-only view: the config is frozen, so its mapping must be too.
    return types.MappingProxyType(keys)


def _redacted_keys(keys: Mapping[str, str]) -> str:
    return f"<{len(keys)} key(s) of {sorted(set(keys.values()))!r}>"


def _default_keys() -> Mapping[str, str]:
    return _to_keys({DEFAULT_KEY: DEFAULT_ACCOUNT})


def _check_now(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    check_now(value)


@attrs.frozen
class EmulatorConfig:
    """Everything an `Emulator` starts from.

    ``keys`` maps each accepted API key to the account it belongs to.
    ``log_size`` caps the request log (oldest entries are dropped first);
    ``cache_size`` is the number of full query results kept in memory.
    ``jitter`` delays each request's arrival like a network path (see
    [`ArrivalJitter`][oxystats.emulator.ArrivalJitter]). ``now`` starts the
    emulator's clock: usage recorded after it is invisible (``None``, the
    default: no clock, every day of the data is visible; see
    [`Emulator.now`][oxystats.emulator.Emulator.now]).
    """

    dataset: Dataset = attrs.field(factory=Dataset)
    # The repr shows accounts only: a config may end up in a log or a traceback.
    keys: Mapping[str, str] = attrs.field(
        factory=_default_keys, converter=_to_keys, repr=_redacted_keys
    )
    limits: RateLimits = attrs.field(factory=RateLimits)
    faults: Faults = attrs.field(factory=Faults)
    log_size: int = attrs.field(default=100_000, validator=_positive)
    cache_size: int = attrs.field(default=256, validator=_positive)
    jitter: ArrivalJitter = attrs.field(factory=ArrivalJitter)
    now: datetime | None = attrs.field(default=None, validator=_check_now)
