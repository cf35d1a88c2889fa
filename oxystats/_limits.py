"""Rate limits as values: `Limit` and the documented defaults.

The Dashboard API allows a number of requests per API key and a larger number
across all the keys of one account, and answers 429 past either. A `Limit`
says how many requests may start per second, how many at once after a quiet
spell, and how many may be outstanding. How the client keeps to one is the
business of `oxystats._schedule` (the pure hand-out) and `oxystats._limiter`
(the waiting).
"""

from __future__ import annotations

import math

import attrs

__all__ = ["Limit"]


def _check_rate(value: float) -> float:
    """Validate and normalise ``Limit.rate`` (a converter, so it runs first)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"Limit.rate must be a number of requests per second, not {type(value).__name__}"
        )
    rate = float(value)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"Limit.rate must be a finite number greater than 0, got {value!r}")
    return rate


def _check_count(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    """Validate ``Limit.burst`` and ``Limit.in_flight``: whole numbers, at least 1."""
    # bool is a subclass of int, but Limit(burst=True) is a bug, not a burst of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Limit.{attribute.name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Limit.{attribute.name} must be at least 1, got {value!r}")


@attrs.frozen
class Limit:
    """One limit: requests per second, burst size, and requests outstanding.

    `Limit(rate=10.0, burst=10, in_flight=10)` lets at most `burst` requests
    start in any window of `burst / rate` seconds (so `rate` per second in
    steady state, and `burst` at once after a quiet spell), with at most
    `in_flight` of them awaiting a response at any time.

    Raises:
        ValueError: A field is out of range (`rate` not above 0, a count below 1).
        TypeError: A field has the wrong type (`burst` not an `int`, say).
    """

    rate: float = attrs.field(default=10.0, converter=_check_rate)
    """Requests per second in steady state; a finite number above 0."""
    burst: int = attrs.field(default=10, validator=_check_count)
    """How many requests may start at once after a quiet spell; at least 1."""
    in_flight: int = attrs.field(default=10, validator=_check_count)
    """How many requests may await a response at once; at least 1."""

    @property
    def window(self) -> float:
        """The sliding window, in seconds, in which at most `burst` requests start."""
        return self.burst / self.rate


DEFAULT_KEY_LIMIT = Limit(10.0, 10, 10)
"""The documented per-key limit: 10 requests per second, 10 in flight."""

DEFAULT_ACCOUNT_LIMIT = Limit(100.0, 100, 100)
"""The documented account-wide limit: 100 requests per second, 100 in flight."""
