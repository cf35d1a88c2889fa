"""Arrival jitter: the delays a network path adds, reproducible from a seed.

Every authenticated API request draws exactly two numbers, in the order the
server receives the requests: whether it is a spike, and where in its range
the delay falls. The stream is seeded apart from the fault stream's, so the
same fault seed gives the same faults with or without jitter.
"""

from __future__ import annotations

import random

from ._config import ArrivalJitter

__all__ = ["ArrivalDelays"]


class ArrivalDelays:
    """Draws one arrival delay per request from an `ArrivalJitter`."""

    def __init__(self, jitter: ArrivalJitter) -> None:
        self.jitter = jitter
        # A string seed of its own: an integer seed shared with the fault
        # stream would give both streams the very same numbers.
        self._random = random.Random(f"oxystats-arrival-jitter:{jitter.seed}")
        self._low = jitter.max_delay
        self._spike_spread = (jitter.spike_factor - 1.0) * jitter.max_delay

    def draw(self) -> float:
        """The next request's delay in seconds."""
        uniform = self._random.random
        spike = uniform() < self.jitter.spike_probability
        where = uniform()
        if spike:
            return self._low + where * self._spike_spread
        return where * self._low
