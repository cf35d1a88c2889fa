"""The safety margin: how much later than sent a request may reach the server's clock.

Bookkeeping driven by ``now`` like `oxystats._schedule`: nothing here sleeps,
and only `SafetyMargin.value_now` (for statistics) reads a clock.

What the margin is for
----------------------
The client counts a request from the moment it was sent; the server counts it
from the moment it stamps its arrival, which comes later by a delay that
varies (the network, a busy gateway). If request ``k`` was stamped late and
request ``k + burst``, sent exactly one window after it, was not, the server
sees ``burst + 1`` requests in one window and refuses the second with 429. So
the client counts each request as starting *up to a margin* after it was sent.

Two things keep that cheap:

* **A request's own round trip bounds its delay.** A request answered ``x``
  seconds slower than the fastest answer seen lately cannot have been stamped
  more than ``x`` later than the fastest one (whatever delayed its arrival also
  delayed its answer). So once the request's answer is in, its start is moved
  from ``sent + margin`` to ``sent + min(margin, x)``: on a path whose answers
  take a steady time, the margin costs next to nothing, and only requests that
  were slow pay for it.
* **The margin learns.** It starts at `INITIAL_MARGIN` (100 ms; a gate caps
  it at a quarter of its window), which covers the jitter of an ordinary path,
  a loaded server stamping a burst included (measured here: the in-process
  emulator stamps up to 70 ms late on a busy machine).
  (`FASTEST_SLACK`, 5 ms, is added to every excess: the fastest answer is
  the one the server was quickest on, which may itself have arrived late.) A 429 that the client's
  own log allowed means that the path is worse: the margin doubles. A 429 of a
  request sent before that rise is the same event seen twice and changes
  nothing, so a one-off spike costs one 429, not one per window. After
  `QUIET` seconds without such a 429 it shrinks back, halving every
  `HALF_LIFE` seconds, down to `FLOOR_MARGIN`; steady jitter thus keeps it
  just above the jitter, and a spike long past stops costing throughput.
"""

from __future__ import annotations

import math
import time

__all__: list[str] = []

INITIAL_MARGIN = 0.1
"""Seconds: where the margin starts, before anything is known of the path."""

FLOOR_MARGIN = 0.005
"""Seconds: the least the margin shrinks back to after a long quiet."""

MAX_MARGIN = 1.0
"""Seconds: the most the margin grows to (a gate also caps it, see `gate_cap`)."""

MAX_MARGIN_FRACTION = 0.25
"""No window is lengthened by more than this fraction of itself."""

QUIET = 60.0
"""Seconds without an unexpected 429 before the margin starts shrinking."""

HALF_LIFE = 60.0
"""Seconds in which a shrinking margin halves."""

GROWTH = 2.0
"""What an unexpected 429 multiplies the margin by."""

FASTEST_SLACK = 0.005
"""Seconds added to every excess: the fastest answer may itself have arrived late.

(When the server's own time varies more than the path's, the fastest answer
is the one the server was quickest on, not one that met no delay on the way
in; the requests answered before there were enough answers to trust keep
their whole margin, cut only to their own round trip, which covers the cold
start, when this is worst.)"""

TRUSTED_AFTER = 8
"""Answers needed before the fastest of them is taken as the path's undelayed round trip."""

_BUCKET = 64
"""Round trips per bucket of the sliding minimum (it spans the last 64 to 128)."""


def gate_cap(window: float) -> float:
    """The most margin a window of ``window`` seconds gets: a quarter of it."""
    return MAX_MARGIN_FRACTION * window


class SafetyMargin:
    """One path's margin: the value that learns, and the fastest round trip lately.

    Shared by every key of an `Account` in one process: they travel the same
    path to the same server.
    """

    __slots__ = (
        "_current_min",
        "_peak",
        "_previous_min",
        "_quiet_since",
        "_raised_at",
        "_samples",
        "_seen",
        "clock",
        "floor",
        "initial",
        "refusals",
    )

    def __init__(self, initial: float = INITIAL_MARGIN, floor: float = FLOOR_MARGIN) -> None:
        self.initial = initial
        self.floor = min(floor, initial)
        self._peak = initial
        self._raised_at = -math.inf  # the last rise
        self._quiet_since: float | None = None  # the last rise, or the first use
        # A sliding minimum in two buckets: the fastest of the last 64 to 128 answers.
        self._previous_min = math.inf
        self._current_min = math.inf
        self._samples = 0
        self._seen = 0
        self.refusals = 0  # the unexpected 429s that raised the margin
        # Which clock `_raised_at` is on, as (identity, offset); see `Gate.rebase`.
        self.clock: tuple[object, float] | None = None

    def rebase(self, clock: object, offset: float) -> None:
        """Move the time of the last rise onto another event loop's clock."""
        if self.clock is not None and self.clock[0] is not clock:
            shift = offset - self.clock[1]
            self._raised_at += shift
            if self._quiet_since is not None:
                self._quiet_since += shift
        self.clock = (clock, offset)

    def value(self, now: float) -> float:
        """The margin at ``now``, in seconds."""
        if self._quiet_since is None:
            self._quiet_since = now
        quiet_for = now - self._quiet_since - QUIET
        if quiet_for <= 0:
            return self._peak
        shrunk: float = self._peak * 0.5 ** (quiet_for / HALF_LIFE)
        return max(self.floor, shrunk)

    def value_now(self) -> float:
        """The margin now, read from ``time.monotonic()`` moved onto the last loop's clock."""
        offset = 0.0 if self.clock is None else self.clock[1]
        return self.value(time.monotonic() + offset)

    def refused(self, sent_at: float, now: float) -> bool:
        """The server refused a request sent at ``sent_at``; grow unless it is old news.

        Returns:
            Whether the margin grew.
        """
        if sent_at <= self._raised_at:
            # Scheduled with the margin before the last rise: the rise already answered it.
            return False
        self._peak = min(MAX_MARGIN, GROWTH * self.value(now))
        self._raised_at = self._quiet_since = now
        self.refusals += 1
        return True

    def observe(self, round_trip: float) -> None:
        """Note one request's round trip (sent to answered), in seconds."""
        if self._samples == _BUCKET:
            self._previous_min, self._current_min, self._samples = self._current_min, math.inf, 0
        self._samples += 1
        self._seen += 1
        self._current_min = min(self._current_min, round_trip)

    @property
    def fastest(self) -> float:
        """The fastest round trip lately (``inf`` before the first)."""
        return min(self._previous_min, self._current_min)

    def excess(self, round_trip: float) -> float | None:
        """How much later than the fastest lately ``round_trip``'s request can have arrived.

        How much slower than that one it was, plus `FASTEST_SLACK`; `None` until trusted.

        The fastest answer is taken to have met no delay on its way in; that
        needs a few answers first (`TRUSTED_AFTER`), and stays an assumption
        about the path: one that delayed *every* request alike would fool it.
        """
        if self._seen < TRUSTED_AFTER:
            return None
        return max(0.0, round_trip - self.fastest) + FASTEST_SLACK
