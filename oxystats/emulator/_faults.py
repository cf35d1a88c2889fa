"""Fault injection, reproducible from a seed.

Every authenticated API request draws exactly two numbers from one
`random.Random(seed)`, in the order the server receives the requests (before
any arrival jitter), whether or not it is later rate limited: the same seed
and the same sequence of requests always give the same sequence of faults,
independent of timing.
"""

from __future__ import annotations

import enum
import random

import attrs
import httpx

from ._config import Faults

__all__ = ["NO_FAULT", "DroppedConnection", "Fault", "FaultDecision", "FaultInjector"]


class Fault(enum.Enum):
    """What happens to one request."""

    NONE = "none"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    SPURIOUS_429 = "spurious_429"
    DROP_CONNECTION = "drop_connection"
    TRUNCATED_BODY = "truncated_body"
    WRONG_SHAPE_BODY = "wrong_shape_body"
    IGNORE_PAGE = "ignore_page"
    TRICKLE_BODY = "trickle_body"
    INFLATE_TOTAL_PAGES = "inflate_total_pages"
    GROW_TOTAL_PAGES = "grow_total_pages"
    OVERSIZED_BODY = "oversized_body"
    HANG = "hang"


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app after a partial body so the server closes the connection.

    Over real HTTP the server catches it and closes the socket, and the client
    sees httpx's own RemoteProtocolError. In-process, through
    `httpx.ASGITransport`, it reaches the client as is: being a
    RemoteProtocolError, it is handled exactly like the real thing.
    ``status`` is the status line that was sent before the drop.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class FaultDecision:
    """The fault drawn for one request and the latency to add before answering."""

    fault: Fault
    latency: float


NO_FAULT = FaultDecision(Fault.NONE, 0.0)


class FaultInjector:
    """Draws one `FaultDecision` per request from the configured `Faults`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)
        f = faults
        # Cumulative bands over [0, 1): one uniform draw picks at most one fault.
        # New faults go at the end, so a seed keeps giving the faults it gave.
        self._bands: list[tuple[float, Fault]] = []
        edge = 0.0
        for probability, fault in (
            (f.error_500, Fault.ERROR_500),
            (f.error_503, Fault.ERROR_503),
            (f.spurious_429, Fault.SPURIOUS_429),
            (f.drop_connection, Fault.DROP_CONNECTION),
            (f.malformed_body / 2, Fault.TRUNCATED_BODY),
            (f.malformed_body / 2, Fault.WRONG_SHAPE_BODY),
            (f.ignore_page, Fault.IGNORE_PAGE),
            (f.trickle_body, Fault.TRICKLE_BODY),
            (f.inflate_total_pages, Fault.INFLATE_TOTAL_PAGES),
            (f.grow_total_pages, Fault.GROW_TOTAL_PAGES),
            (f.oversized_body, Fault.OVERSIZED_BODY),
            (f.hang, Fault.HANG),
        ):
            edge += probability
            self._bands.append((edge, fault))

    def draw(self) -> FaultDecision:
        """The next request's fault; `NO_FAULT` (and no draw) when faults are off."""
        faults = self.faults
        if not faults.active:
            return NO_FAULT
        which = self._random.random()
        jitter = self._random.random()
        fault = Fault.NONE
        for edge, candidate in self._bands:
            if which < edge:
                fault = candidate
                break
        latency = max(0.0, faults.latency + (2.0 * jitter - 1.0) * faults.latency_jitter)
        return FaultDecision(fault, latency)
