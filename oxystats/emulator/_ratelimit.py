"""Server-side rate limits: sliding windows, token buckets and in-flight caps.

A request is admitted only if every applicable rule (its key's and its
account's) admits it; the check and the bookkeeping happen together, with no
await in between, so concurrent requests cannot slip past a limit. Rejected
requests leave no trace in any rule's state.
"""

from __future__ import annotations

import math
import threading
from collections import deque

import attrs

from ._config import RateLimitRule, RateLimits

__all__ = ["Limiter", "Ticket"]

# An in-flight cap frees up when some request finishes, which the server cannot
# foresee; one second is the smallest whole Retry-After.
_IN_FLIGHT_WAIT = 1.0


class _RuleState:
    """The running state of one rule for one key or one account."""

    def __init__(self, rule: RateLimitRule) -> None:
        self.rule = rule
        self.arrivals: deque[float] = deque()
        self.tokens = float(rule.burst)
        self.refilled_at: float | None = None
        self.in_flight = 0

    def wait(self, now: float) -> float:
        """Seconds until this rule would admit a request; 0 if it does now."""
        rule = self.rule
        wait = 0.0
        if rule.window_requests is not None:
            horizon = now - rule.window_seconds
            arrivals = self.arrivals
            while arrivals and arrivals[0] <= horizon:
                arrivals.popleft()
            if len(arrivals) >= rule.window_requests:
                # Admitted once the arrival that fills the window has aged out.
                oldest = arrivals[len(arrivals) - rule.window_requests]
                wait = max(wait, oldest + rule.window_seconds - now)
        if rule.bucket_rate is not None:
            self._refill(now)
            if self.tokens < 1.0:
                wait = max(wait, (1.0 - self.tokens) / rule.bucket_rate)
        if rule.in_flight is not None and self.in_flight >= rule.in_flight:
            wait = max(wait, _IN_FLIGHT_WAIT)
        return wait

    def _refill(self, now: float) -> None:
        rate = self.rule.bucket_rate
        if rate is None:
            return
        if self.refilled_at is not None:
            self.tokens = min(float(self.rule.burst), self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now

    def admit(self, now: float) -> None:
        if self.rule.window_requests is not None:
            self.arrivals.append(now)
        if self.rule.bucket_rate is not None:
            self.tokens -= 1.0
        self.in_flight += 1


@attrs.frozen
class Ticket:
    """An admitted request's hold on its rules, returned with `Limiter.release`."""

    states: tuple[_RuleState, ...]


class Limiter:
    """Applies `RateLimits` per key and per account."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._per_key: dict[str, _RuleState] = {}
        self._per_account: dict[str, _RuleState] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str, account: str, now: float) -> Ticket | int:
        """Admit a request (a `Ticket`) or refuse it (the ``Retry-After`` in whole seconds)."""
        states: list[_RuleState] = []
        with self._lock:
            if self.limits.per_key is not None:
                states.append(self._state(self._per_key, key_id, self.limits.per_key))
            if self.limits.per_account is not None:
                states.append(self._state(self._per_account, account, self.limits.per_account))
            wait = max((state.wait(now) for state in states), default=0.0)
            if wait > 0:
                # Rounded to the millisecond first so float noise cannot add a second.
                return max(1, math.ceil(round(wait, 3)))
            for state in states:
                state.admit(now)
        return Ticket(tuple(states))

    def release(self, ticket: Ticket) -> None:
        """The admitted request has finished: free its in-flight slots."""
        with self._lock:
            for state in ticket.states:
                state.in_flight -= 1

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per key id (for the stats endpoint)."""
        with self._lock:
            return {key: state.in_flight for key, state in self._per_key.items()}

    @staticmethod
    def _state(table: dict[str, _RuleState], name: str, rule: RateLimitRule) -> _RuleState:
        state = table.get(name)
        if state is None:
            state = table[name] = _RuleState(rule)
        return state
